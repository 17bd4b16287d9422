import Foundation
import Testing
@testable import WHPCrypto
@testable import WHPDomain

/// The `key_check` and `providers` sections of vectors.json (RULES2 R4,
/// R15), byte for byte: the key check a `trial_started` binds, the provider
/// seeds, and whole provider sequences whose shares change part-way through
/// a block (the open block is abandoned).
struct ProviderVectors: Decodable, Sendable {
    struct KeyCheck: Decodable, Sendable { let key: String; let hex: String }
    struct ProviderSeed: Decodable, Sendable { let stratum: String; let j: Int; let hex: String }
    struct ProviderBlockSeed: Decodable, Sendable { let stratum: String; let b: Int; let hex: String }
    struct Phase: Decodable, Sendable { let shares: [String: Int]; let draws: Int }
    struct Draw: Decodable, Sendable {
        let index: Int
        let block: Int?
        let block_size: Int?
        let position: Int?
        let provider: String
        let provider_seed: String
        let shares: String
    }
    struct Sequence: Decodable, Sendable, CustomTestStringConvertible {
        let stratum: String
        let block_multipliers: [Int]
        let method: String
        let phases: [Phase]
        let draws: [Draw]
        var testDescription: String { "\(method) \(stratum) \(phases.count) phases" }
    }
    struct Providers: Decodable, Sendable {
        let provider_seed: [ProviderSeed]
        let provider_block_seed: [ProviderBlockSeed]
        let sequences: [Sequence]
    }

    let seed: String
    let trial_id: String
    let key_check: [KeyCheck]
    let providers: Providers

    static let loaded: Result<ProviderVectors, any Error> = Result {
        guard let url = Bundle.module.url(forResource: "vectors", withExtension: "json", subdirectory: "Fixtures") else {
            throw FixtureError.missing("Fixtures/vectors.json is not in the test bundle")
        }
        return try JSONDecoder().decode(ProviderVectors.self, from: Data(contentsOf: url))
    }
    static func get() throws -> ProviderVectors { try loaded.get() }
}

@Suite("RULES2 vectors: key check and providers")
struct ProviderVectorTests {
    @Test("key_check: HMAC(key, enc(\"whp/key-check/v1\"))")
    func keyCheck() throws {
        let v = try ProviderVectors.get()
        #expect(v.key_check.count >= 2)
        for k in v.key_check {
            #expect(Derivation.keyCheck(try Fixture.key(k.key)).hex == k.hex, "key \(k.key.prefix(8))…")
        }
    }

    @Test("provider_seed and provider_block_seed")
    func seeds() throws {
        let v = try ProviderVectors.get()
        let s = try Fixture.key(v.seed)
        #expect(!v.providers.provider_seed.isEmpty && !v.providers.provider_block_seed.isEmpty)
        for p in v.providers.provider_seed {
            #expect(Derivation.providerSeed(seed: s, trialID: v.trial_id, providerStratum: p.stratum, index: p.j).hex == p.hex)
        }
        for q in v.providers.provider_block_seed {
            #expect(Derivation.providerBlockSeed(seed: s, trialID: v.trial_id, providerStratum: q.stratum, block: q.b).hex == q.hex)
        }
    }

    /// Replays each sequence through `ProviderDraw.next` and
    /// `ProviderStratumState.apply` (what the engine does) and compares every
    /// field of every draw, including the block a share change abandons.
    @Test("sequences, draw by draw, through the engine's state", arguments: try ProviderVectors.get().providers.sequences)
    func sequence(_ sq: ProviderVectors.Sequence) throws {
        let v = try ProviderVectors.get()
        let s = try Fixture.key(v.seed)
        let method = try #require(AllocationMethod(rawValue: sq.method))
        #expect(sq.phases.reduce(0) { $0 + $1.draws } == sq.draws.count)
        var state = ProviderStratumState()
        var k = 0
        var abandoned = 0
        for phase in sq.phases {
            let shares = ProviderShares(phase.shares)
            for _ in 0..<phase.draws {
                try #require(k < sq.draws.count)
                let want = sq.draws[k]
                k += 1
                let got = try #require(
                    ProviderDraw.next(
                        state: state, seed: s, trialID: v.trial_id, stratum: sq.stratum,
                        shares: shares, method: method, multipliers: sq.block_multipliers))
                #expect(got.index == want.index)
                #expect(got.provider == want.provider, "draw \(want.index)")
                #expect(got.seed.hex == want.provider_seed)
                #expect(got.shares == want.shares)
                #expect(got.slot?.block == want.block)
                #expect(got.slot?.size == want.block_size)
                #expect(got.slot?.position == want.position)
                if let slot = got.slot, slot.position == 0, state.block >= 0,
                    state.nextIndex < state.blockStart + state.blockSize
                {
                    abandoned += 1
                }
                state.apply(got)
                // The store keeps `dealt` as text; a state read back from it continues identically.
                state = ProviderStratumState(
                    nextIndex: state.nextIndex, block: state.block, blockStart: state.blockStart,
                    blockSize: state.blockSize, shares: state.shares, dealtText: state.dealtText)
            }
        }
        if method == .permutedBlock && sq.phases.count > 1 {
            // A sequence with a share change mid-block must exercise the abandonment.
            let changesMidBlock = sq.draws.indices.contains { i in
                i > 0 && sq.draws[i].shares != sq.draws[i - 1].shares && (sq.draws[i - 1].position ?? 0) + 1 < (sq.draws[i - 1].block_size ?? 0)
            }
            #expect(abandoned == (changesMidBlock ? 1 : 0))
        }
    }

    @Test("the vectors include an abandoned block and a zero share")
    func coverage() throws {
        let v = try ProviderVectors.get()
        let zeroShare = v.providers.sequences.contains { $0.phases.contains { $0.shares.values.contains(0) } }
        #expect(zeroShare)
        let simple = v.providers.sequences.contains { $0.method == "simple" }
        #expect(simple)
    }

    @Test("a zero-share provider is never drawn; shares text lists it")
    func zeroShareText() {
        let shares = ProviderShares(["p-3": 0, "p-1": 1, "p-2": 1])
        #expect(shares.text == "p-1=1,p-2=1,p-3=0")
        #expect(shares.drawable.map(\.id) == ["p-1", "p-2"])
        #expect(ProviderShares(text: shares.text) == shares)
        #expect(ProviderShares(text: "p-2=1,p-1=1") == nil, "ids out of order")
        #expect(ProviderShares(text: "p-1=1,p-1=2") == nil, "repeated id")
        #expect(ProviderShares(text: "p-1=1001") == nil)
        #expect(ProviderShares(text: "") == nil)
        #expect(ProviderShares(text: "p-1=01") == nil, "not a canonical decimal")
    }

    @Test("crafted block facts give nil, never a trap")
    func craftedFacts() {
        let seed = Bytes32(unchecked: [UInt8](repeating: 7, count: 32))
        let shares = ProviderShares(["a": 2, "b": 1])
        #expect(ProviderDraw.permutedBlock(seed: seed, shares: shares, blockSize: 4, position: 0, dealt: [:]) == nil, "size not a multiple of W")
        #expect(ProviderDraw.permutedBlock(seed: seed, shares: shares, blockSize: 3, position: 3, dealt: [:]) == nil)
        #expect(ProviderDraw.permutedBlock(seed: seed, shares: shares, blockSize: 3, position: 1, dealt: ["b": 2]) == nil)
        #expect(ProviderDraw.permutedBlock(seed: seed, shares: shares, blockSize: 3, position: -1, dealt: [:]) == nil)
        #expect(ProviderDraw.permutedBlock(seed: seed, shares: ProviderShares(["a": 0]), blockSize: 3, position: 0, dealt: [:]) == nil)
        #expect(ProviderDraw.simple(seed: seed, shares: ProviderShares(["a": 0])) == nil)
        #expect(ProviderDraw.blockSize(blockSeed: seed, shares: shares, multipliers: []) == nil)
    }

    @Test("shares in force: latest effective on or before the date, ties by seq")
    func sharesInForce() throws {
        let configured = ProviderShares(["a": 1, "b": 1])
        let changes = [
            SharesInForce.Change(effective: try date("2018-03-01"), shares: "a=2,b=1", seq: 10),
            SharesInForce.Change(effective: try date("2018-03-01"), shares: "a=3,b=1", seq: 12),
            SharesInForce.Change(effective: try date("2018-02-01"), shares: "a=0,b=1", seq: 20),
        ]
        #expect(SharesInForce.on(try date("2018-01-31"), changes: changes, configured: configured) == configured)
        #expect(SharesInForce.on(try date("2018-02-15"), changes: changes, configured: configured)?.text == "a=0,b=1")
        #expect(SharesInForce.on(try date("2018-03-01"), changes: changes, configured: configured)?.text == "a=3,b=1")
        #expect(SharesInForce.on(try date("2019-01-01"), changes: changes, configured: configured)?.text == "a=3,b=1")
        #expect(
            SharesInForce.on(try date("2019-01-01"), changes: [.init(effective: try date("2018-01-01"), shares: "junk", seq: 1)], configured: configured) == nil
        )
    }
}
