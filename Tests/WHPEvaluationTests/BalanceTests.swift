import Foundation
import Testing
import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON
import WHPTestSupport

struct BalanceTests {
    static let config = TrialConfig(
        trialID: "t", groups: ["disability"],
        districts: [
            District(id: "psc-d", name: "P", psc: true, gatekeeperRule: .fifo, weights: Weights(whp: 1, psc: 1, rcg: 1)),
            District(id: "plain", name: "N", psc: false, gatekeeperRule: .lottery, weights: Weights(whp: 1, rcg: 1)),
        ])

    /// Upper-tail probabilities at the textbook 5% and 0.1% critical values.
    @Test(arguments: [(3.841, 1, 0.05), (5.991, 2, 0.05), (18.307, 10, 0.05), (10.828, 1, 0.001), (28.869, 18, 0.05)])
    func chiSquareTail(_ x: Double, _ df: Int, _ p: Double) {
        #expect(abs(Balance.chiSquareUpperTail(x, df: df) - p) < p * 0.002)
    }

    @Test func chiSquareTailEdges() {
        #expect(Balance.chiSquareUpperTail(0, df: 3) == 1)
        #expect(Balance.chiSquareUpperTail(1000, df: 2) < 1e-100)
    }

    /// Honest allocations: the permuted-block draws of the spec, over many referrals on varied dates.
    static func honest(_ district: District, count: Int) -> [AllocatedReferral] {
        var state = StratumState()
        let seed = Bytes32(hex: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")!
        return (0..<count).map { i in
            let (draw, next) = Allocator.next(
                state: state, seed: seed, trialID: "t", stratum: district.id, weights: district.weights,
                method: .permutedBlock, multipliers: [1, 2])
            state = next
            return AllocatedReferral(
                district: district.id, group: "disability",
                referralDate: CivilDate("2017-11-01")!.adding(days: i / 7), arm: draw.arm)
        }
    }

    @Test func honestAllocationsPass() {
        let all = Self.honest(Self.config.districts[0], count: 1200) + Self.honest(Self.config.districts[1], count: 800)
        let r = Balance.report(all, config: Self.config)
        #expect(r.ok, "\(r.checks.filter { !$0.passed })")
        #expect(r.checks.filter(\.tested).count == 6, "three checks for each of the two districts")
    }

    @Test func armsFollowingReferralOrderFail() {
        // The first half of the referrals all WHP, the second all RCG: balanced overall, but ordered.
        let list = (0..<400).map { i in
            AllocatedReferral(
                district: "plain", group: "disability", referralDate: CivilDate("2017-11-01")!.adding(days: i / 3),
                arm: i < 200 ? .whp : .rcg)
        }
        let r = Balance.report(list, config: Self.config)
        #expect(!r.ok)
        let failed = r.checks.filter { !$0.passed }.map(\.name)
        #expect(failed.contains("plain: arm vs referral order (deciles)"))
        #expect(!failed.contains { $0.contains("arm shares") }, "the shares themselves are right")
    }

    @Test func armsFollowingWeekdayFail() {
        let list = (0..<700).map { i -> AllocatedReferral in
            let d = CivilDate("2017-11-06")!.adding(days: i % 7)  // a Monday onwards
            return AllocatedReferral(district: "plain", group: "disability", referralDate: d, arm: d.isoWeekday <= 3 ? .whp : .rcg)
        }
        let failed = Balance.report(list, config: Self.config).checks.filter { !$0.passed }.map(\.name)
        #expect(failed.contains("plain: arm vs referral weekday"))
    }

    @Test func sharesDriftingFromWeightsFail() {
        let list = (0..<300).map { i in
            AllocatedReferral(
                district: "psc-d", group: "disability", referralDate: CivilDate("2017-11-01")!.adding(days: i % 20),
                arm: i % 10 < 6 ? .whp : (i % 10 < 8 ? .psc : .rcg))
        }
        let failed = Balance.report(list, config: Self.config).checks.filter { !$0.passed }.map(\.name)
        #expect(failed.contains { $0.hasPrefix("psc-d: arm shares") })
    }

    @Test func smallDistrictsAreNotTested() {
        let list = Self.honest(Self.config.districts[1], count: 10)
        let r = Balance.report(list, config: Self.config)
        #expect(r.ok && r.checks.allSatisfy { !$0.tested })
    }

    @Test func publicationSuppressesSmallCells() {
        let list = Self.honest(Self.config.districts[1], count: 14)
        let published = Balance.text(Balance.report(list, config: Self.config, publish: true), config: Self.config, publish: true)
        let internalText = Balance.text(Balance.report(list, config: Self.config), config: Self.config, publish: false)
        #expect(published.contains("FOR PUBLICATION") && published.contains("*") && !published.contains("<10"))
        #expect(!published.contains(" 7 ") && internalText.contains("7"), "7 WHP and 7 RCG are shown only internally")
    }

    @Test func balanceThroughTheCLI() throws {
        let t = try TrialFolder()
        try #require(t.initialise().status == 0)
        var reqs: [[String: Any]] = (0..<60).map { i in
            Req.refer("r\(i)", referral: "R-\(i)", nino: Req.nino(7000 + i), district: "example-north", date: "2017-11-0\(1 + i % 9)")
        }
        reqs.append(Req.gatekeep("g", run: "run-1", district: "example-north", date: "2017-11-20", capacity: 60))
        _ = try t.serveJSON(reqs)
        let r = try runWHP(["report", "balance"] + t.common + ["--publish"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("example-north: arm vs referral order (deciles)") && r.stdout.contains("All balance checks pass."))
        #expect(try runWHP(["report", "balance"] + t.common + ["--alpha", "2"]).status == 2)
    }
}
