import Foundation
import Testing
@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

/// Sanity of the permuted-block method (ALLOCATION.md §4) over long runs.
@Suite("Permuted-block balance")
struct BlockBalanceTests {

    static func run(
        _ count: Int, stratum: String, weights: Weights, multipliers: [Int],
        method: AllocationMethod = .permutedBlock
    ) throws -> [AllocationDraw] {
        let seed = try Fixture.seed()
        let trialID = try Fixture.vectors().trial_id
        var state = StratumState()
        var draws: [AllocationDraw] = []
        draws.reserveCapacity(count)
        for _ in 0..<count {
            let (d, next) = Allocator.next(
                state: state, seed: seed, trialID: trialID, stratum: stratum,
                weights: weights, method: method, multipliers: multipliers)
            draws.append(d)
            state = next
        }
        return draws
    }

    /// Checks the block structure of a run: consecutive blocks, positions
    /// 0..<size, sizes W·m with m in M, and at every block end each arm has
    /// exactly weight × m allocations in that block. Returns the multipliers
    /// of the completed blocks and the arm at position 0 of each.
    static func checkBlocks(_ draws: [AllocationDraw], weights: Weights, multipliers: [Int]) throws -> (ms: [Int], firsts: [Arm]) {
        var ms: [Int] = [], firsts: [Arm] = []
        var counts: [Arm: Int] = [:]
        var expectedBlock = 0, expectedPosition = 0
        for (i, d) in draws.enumerated() {
            #expect(d.index == i)
            let block = try #require(d.block), size = try #require(d.blockSize), position = try #require(d.position)
            #expect(block == expectedBlock, "index \(i)")
            #expect(position == expectedPosition, "index \(i)")
            #expect(size % weights.total == 0)
            let m = size / weights.total
            #expect(multipliers.contains(m), "block \(block) has size \(size)")
            #expect(weights[d.arm] > 0, "arm \(d.arm) has weight 0")
            if position == 0 { counts = [:]; firsts.append(d.arm) }
            counts[d.arm, default: 0] += 1
            // Never more of an arm than its share of the block.
            #expect(counts[d.arm, default: 0] <= weights[d.arm] * m, "block \(block) over-deals \(d.arm)")
            if position == size - 1 {
                for arm in Arm.allCases {
                    #expect(counts[arm, default: 0] == weights[arm] * m, "block \(block), arm \(arm)")
                }
                ms.append(m)
                expectedBlock += 1
                expectedPosition = 0
            } else {
                expectedPosition += 1
            }
        }
        return (ms, firsts)
    }

    /// |observed − expected| within 5 standard deviations of a binomial count.
    static func plausible(_ observed: Int, trials: Int, p: Double) -> Bool {
        let mean = Double(trials) * p
        let sd = (Double(trials) * p * (1 - p)).squareRoot()
        return abs(Double(observed) - mean) <= 5 * sd
    }

    @Test("WHP 1 PSC 1 RCG 1, M = [1, 2], 3,000 allocations: every block is balanced")
    func equalWeights() throws {
        let w = Weights(whp: 1, psc: 1, rcg: 1)
        let draws = try Self.run(3000, stratum: "devon-cornwall", weights: w, multipliers: [1, 2])
        let (ms, firsts) = try Self.checkBlocks(draws, weights: w, multipliers: [1, 2])
        #expect(ms.count > 300)
        // Both multipliers are drawn, each about half the time.
        let ones = ms.filter { $0 == 1 }.count
        #expect(ones > 0 && ones < ms.count)
        #expect(Self.plausible(ones, trials: ms.count, p: 0.5), "\(ones) of \(ms.count) blocks have m = 1")
        // Each arm opens a block about a third of the time.
        for arm in Arm.allCases {
            let n = firsts.filter { $0 == arm }.count
            #expect(Self.plausible(n, trials: firsts.count, p: 1.0 / 3), "\(arm) opens \(n) of \(firsts.count) blocks")
        }
        // Overall the arms differ by at most one open block's worth.
        let total = Dictionary(grouping: draws, by: \.arm).mapValues(\.count)
        let spread = (total.values.max() ?? 0) - (total.values.min() ?? 0)
        #expect(total.count == 3)
        #expect(spread <= 2 * 2)
    }

    @Test("unequal weights with a zero arm: WHP 2 PSC 0 RCG 1, M = [2, 3]")
    func unequalWeights() throws {
        let w = Weights(whp: 2, psc: 0, rcg: 1)
        let draws = try Self.run(3000, stratum: "example-north|early_access", weights: w, multipliers: [2, 3])
        let (ms, _) = try Self.checkBlocks(draws, weights: w, multipliers: [2, 3])
        #expect(!draws.contains { $0.arm == .psc })
        #expect(Set(ms) == [2, 3])
    }

    @Test("simple method: arms in proportion to the weights, PSC weight 0 never drawn")
    func simpleMethod() throws {
        let w = Weights(whp: 2, psc: 0, rcg: 1)
        let draws = try Self.run(3000, stratum: "example-north", weights: w, multipliers: [1], method: .simple)
        #expect(draws.allSatisfy { $0.block == nil && $0.blockSize == nil && $0.position == nil })
        #expect(!draws.contains { $0.arm == .psc })
        let whp = draws.filter { $0.arm == .whp }.count
        #expect(Self.plausible(whp, trials: draws.count, p: 2.0 / 3), "\(whp) WHP of \(draws.count)")
    }

    @Test("a stratum's sequence does not depend on other strata, and strata differ")
    func strataIndependent() throws {
        let w = Weights(whp: 1, psc: 1, rcg: 1)
        let a = try Self.run(60, stratum: "devon-cornwall", weights: w, multipliers: [1, 2])
        let b = try Self.run(60, stratum: "devon-cornwall|disability", weights: w, multipliers: [1, 2])
        let a2 = try Self.run(60, stratum: "devon-cornwall", weights: w, multipliers: [1, 2])
        #expect(a == a2)
        #expect(a.map(\.allocSeed) != b.map(\.allocSeed))
    }

    @Test("a state rebuilt mid-block continues the same sequence")
    func resumeFromState() throws {
        let seed = try Fixture.seed()
        let trialID = try Fixture.vectors().trial_id
        let w = Weights(whp: 1, psc: 1, rcg: 1)
        let draws = try Self.run(40, stratum: "devon-cornwall", weights: w, multipliers: [1, 2])
        // Rebuild the state after draw k from the stored facts, as verify does.
        for k in [1, 4, 10, 25] {
            let last = draws[k - 1]
            let block = try #require(last.block), size = try #require(last.blockSize), pos = try #require(last.position)
            var dealt = ArmCounts()
            for d in draws[(k - 1 - pos)..<k] { dealt[d.arm] += 1 }
            let state = StratumState(nextIndex: k, block: block, blockStart: k - 1 - pos, blockSize: size, dealt: dealt)
            let (next, _) = Allocator.next(
                state: state, seed: seed, trialID: trialID, stratum: "devon-cornwall",
                weights: w, method: .permutedBlock, multipliers: [1, 2])
            #expect(next == draws[k], "resumed after \(k)")
        }
    }
}
