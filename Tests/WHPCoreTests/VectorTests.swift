import Foundation
import Testing
@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

/// Every vector of the spec's vectors.json (ALLOCATION.md), byte for byte.
@Suite("ALLOCATION.md vectors")
struct VectorTests {

    @Test("§1 commitment C = H(enc(tag) ‖ enc(trial_id) ‖ S)")
    func commitment() throws {
        let v = try Fixture.vectors()
        let c = Derivation.commitment(trialID: v.trial_id, seed: try Fixture.seed())
        #expect(c.hex == v.commitment)
        #expect(hexString(c.bytes) == v.commitment)
    }

    @Test("Notation: enc(s) = u32(len) ‖ UTF-8 bytes", arguments: try Fixture.vectors().enc)
    func enc(_ v: Vectors.EncVector) {
        #expect(hexString(ByteWriter.enc(v.s)) == v.hex)
        var w = ByteWriter()
        w.enc(bytes: Array(v.s.utf8))
        #expect(hexString(w.bytes) == v.hex)
    }

    @Test("§2 allocation seed a_i", arguments: try Fixture.vectors().alloc_seed)
    func allocSeed(_ v: Vectors.AllocSeedVector) throws {
        let f = try Fixture.vectors()
        let a = Derivation.allocationSeed(seed: try Fixture.seed(), trialID: f.trial_id, stratum: v.stratum, index: v.i)
        #expect(a.hex == v.hex)
    }

    @Test("§2 block seed k_b", arguments: try Fixture.vectors().block_seed)
    func blockSeed(_ v: Vectors.BlockSeedVector) throws {
        let f = try Fixture.vectors()
        let k = Derivation.blockSeed(seed: try Fixture.seed(), trialID: f.trial_id, stratum: v.stratum, block: v.b)
        #expect(k.hex == v.hex)
    }

    @Test("§3 uniform(seed, n)", arguments: try Fixture.vectors().uniform)
    func uniform(_ v: Vectors.UniformVector) throws {
        let seed = try Fixture.key(v.seed)
        let x = try #require(Uniform.draw(seed, v.n))
        #expect(x == v.value)
        #expect(x < v.n)
    }

    @Test("§3 the vectors include n = 1 and n = 2^32")
    func uniformCoversBounds() throws {
        let ns = try Fixture.vectors().uniform.map(\.n)
        #expect(ns.contains(1))
        #expect(ns.contains(1 << 32))
        #expect(ns.count == 7)
    }

    @Test("§4 allocation sequences, 24 draws each from a fresh stratum", arguments: try Fixture.vectors().sequences)
    func sequence(_ v: Vectors.SequenceVector) throws {
        let f = try Fixture.vectors()
        let seed = try Fixture.seed()
        let method = try #require(AllocationMethod(rawValue: v.method))
        let w = weights(v.weights)
        #expect(v.allocations.count == 24)
        var state = StratumState()
        for expected in v.allocations {
            let (draw, next) = Allocator.next(
                state: state, seed: seed, trialID: f.trial_id, stratum: v.stratum,
                weights: w, method: method, multipliers: v.block_multipliers)
            #expect(draw.stratum == v.stratum)
            #expect(draw.index == expected.index)
            #expect(draw.arm.rawValue == expected.arm, "arm at index \(expected.index)")
            #expect(draw.allocSeed.hex == expected.alloc_seed, "alloc_seed at index \(expected.index)")
            #expect(draw.block == expected.block, "block at index \(expected.index)")
            #expect(draw.blockSize == expected.block_size, "block_size at index \(expected.index)")
            #expect(draw.position == expected.position, "position at index \(expected.index)")
            #expect(next.nextIndex == expected.index + 1)
            state = next
        }
    }

    /// ALLOCATION.md §7 "without S": every arm follows from its stored
    /// alloc_seed, block size and the earlier arms of its block.
    @Test(
        "§7 permuted-block arms re-derive without S from stored facts",
        arguments: try Fixture.vectors().sequences.filter { $0.method == "permuted_block" })
    func sequenceVerifiableWithoutSeed(_ v: Vectors.SequenceVector) throws {
        let w = weights(v.weights)
        var dealt = ArmCounts()
        var currentBlock = -1
        for a in v.allocations {
            let block = try #require(a.block), size = try #require(a.block_size), position = try #require(a.position)
            if block != currentBlock { dealt = ArmCounts(); currentBlock = block }
            let seed = try Fixture.key(a.alloc_seed)
            let arm = Allocator.permutedBlockArm(allocSeed: seed, weights: w, blockSize: size, position: position, dealt: dealt)
            #expect(arm?.rawValue == a.arm, "index \(a.index)")
            if let arm { dealt[arm] += 1 }
        }
    }

    @Test("§4 the block sizes in the sequences are the ones S derives")
    func blockSizesFromSeed() throws {
        let f = try Fixture.vectors()
        let seed = try Fixture.seed()
        for v in f.sequences where v.method == "permuted_block" {
            for a in v.allocations where a.position == 0 {
                let size = Allocator.blockSize(
                    seed: seed, trialID: f.trial_id, stratum: v.stratum, block: try #require(a.block),
                    weights: weights(v.weights), multipliers: v.block_multipliers)
                #expect(size == a.block_size)
            }
        }
    }

    @Test("§2 gatekeeper lottery key", arguments: try Fixture.vectors().lottery_key)
    func lotteryKey(_ v: Vectors.LotteryKeyVector) throws {
        let f = try Fixture.vectors()
        let g = Derivation.lotteryKey(seed: try Fixture.seed(), trialID: f.trial_id, runID: v.run_id, referralID: v.referral_id)
        #expect(g.hex == v.hex)
    }

    @Test("§5 claimant pseudonym under Kp", arguments: try Fixture.vectors().pseudonym)
    func pseudonym(_ v: Vectors.PseudonymVector) throws {
        let kp = try Fixture.key(try Fixture.vectors().pseudonym_key)
        #expect(Derivation.pseudonym(key: kp, normalisedID: v.id).hex == v.hex)
    }

    @Test("§5 pseudonyms from ids as typed (normalised before hashing)")
    func pseudonymFromParsedIDs() throws {
        let f = try Fixture.vectors()
        let kp = try Fixture.key(f.pseudonym_key)
        let expected = Dictionary(uniqueKeysWithValues: f.pseudonym.map { ($0.id, $0.hex) })
        let nino = try #require(ClaimantID.nino(parsing: "ab 12 34 56 c"))
        let ref = try #require(ClaimantID.reference(parsing: "123456789012"))
        #expect(Derivation.pseudonym(key: kp, claimant: nino).hex == expected["NINO:AB123456C"])
        #expect(Derivation.pseudonym(key: kp, claimant: ref).hex == expected["REF:123456789012"])
    }

    @Test("§5 research id under Ke", arguments: try Fixture.vectors().research_id)
    func researchID(_ v: Vectors.ResearchIDVector) throws {
        let ke = try Fixture.key(try Fixture.vectors().research_key)
        #expect(Derivation.researchID(key: ke, pseudonym: Pseudonym(hex: v.claimant)) == v.hex)
    }

    @Test("§8 add_months", arguments: try Fixture.vectors().add_months)
    func addMonths(_ v: Vectors.AddMonthsVector) throws {
        let d = try date(v.date)
        #expect(d.adding(months: v.months).iso == v.result)
    }

    @Test("§6 config hash over the given files")
    func configHash() throws {
        let v = try Fixture.vectors().config_hash
        let files = v.files.map { ConfigFile(path: $0.key, bytes: Array($0.value.utf8)) }
        #expect(TrialConfig.hash(of: files).hex == v.hex)
        #expect(TrialConfig.hash(of: files.reversed()).hex == v.hex)
    }

    @Test("§7 genesis h_0 from trial_id and C")
    func genesis() throws {
        let f = try Fixture.vectors()
        let c = try Fixture.key(f.commitment)
        #expect(Derivation.genesis(trialID: f.trial_id, commitment: c).hex == f.chain.genesis)
    }

    @Test("§7 event bytes E_n and chained hashes h_n")
    func chain() throws {
        let f = try Fixture.vectors()
        #expect(f.chain.events.count == 4)
        var h = Derivation.genesis(trialID: f.trial_id, commitment: try Fixture.key(f.commitment))
        for (k, e) in f.chain.events.enumerated() {
            #expect(e.seq == k + 1)
            let event = Event(seq: e.seq, type: e.type, payload: e.payload)
            #expect(hexString(event.encoded) == e.event_bytes, "E_\(e.seq)")
            h = Chain.next(previous: h, event: event)
            #expect(h.hex == e.hash, "h_\(e.seq)")
        }
    }

    /// The service appends from the typed event's entries, never from a map
    /// (`StoreTransaction.append`): they must give the vectors' bytes too.
    @Test("§7 E_n from each chain vector's typed event, as the store appends it")
    func chainFromTypedEvents() throws {
        let f = try Fixture.vectors()
        for e in f.chain.events {
            let typed = try TrialEvent.decode(type: e.type, e.payload)
            #expect(typed.sortedPairs.map(\.key) == e.payload.keys.sorted { $0.utf8Precedes($1) }, "\(e.type): the same keys, in order")
            #expect(Dictionary(uniqueKeysWithValues: typed.sortedPairs) == e.payload, "\(e.type): the same entries")
            #expect(hexString(Event.encoded(seq: e.seq, type: typed.type.rawValue, sortedPairs: typed.sortedPairs)) == e.event_bytes, "E_\(e.seq)")
        }
    }

    /// The chain's payloads agree with the other vectors (the same trial, seen
    /// from the log): an auditor holding S can re-derive them.
    @Test("§7 chain payloads match the seed-derived vectors")
    func chainPayloadsConsistent() throws {
        let f = try Fixture.vectors()
        let seed = try Fixture.seed()
        let events = f.chain.events
        try #require(events.count == 4)
        let started = events[0].payload
        #expect(started["commitment"] == f.commitment)
        #expect(started["config_hash"] == f.config_hash.hex)
        #expect(started["trial_id"] == f.trial_id)

        let referred = events[1].payload
        let kp = try Fixture.key(f.pseudonym_key)
        let nino = try #require(ClaimantID.nino(parsing: "AB 12 34 56 C"))
        #expect(referred["claimant"] == Derivation.pseudonym(key: kp, claimant: nino).hex)

        let decision = events[2].payload
        let key = Derivation.lotteryKey(
            seed: seed, trialID: f.trial_id, runID: try #require(decision["run_id"]),
            referralID: try #require(decision["referral_id"]))
        #expect(decision["lottery_key"] == key.hex)

        let allocated = events[3].payload
        let (draw, _) = Allocator.next(
            state: StratumState(), seed: seed, trialID: f.trial_id,
            stratum: try #require(allocated["stratum"]), weights: Weights(whp: 1, psc: 1, rcg: 1),
            method: .permutedBlock, multipliers: [1, 2])
        #expect(allocated["alloc_seed"] == draw.allocSeed.hex)
        #expect(allocated["arm"] == draw.arm.rawValue)
        #expect(allocated["index"] == String(draw.index))
        #expect(allocated["block"] == draw.block.map(String.init))
        #expect(allocated["block_size"] == draw.blockSize.map(String.init))
        #expect(allocated["position"] == draw.position.map(String.init))
    }

    /// Keys sort by UTF-8 bytes, not by Swift's String order: U+212B (ANGSTROM
    /// SIGN, bytes e2 84 ab) normalises to U+00C5, so Swift puts it before
    /// U+00C6 (c3 86); byte order puts it after.
    @Test("§7 payload keys are ordered by UTF-8 bytes")
    func eventKeyOrder() {
        let event = Event(seq: 7, type: "x", payload: ["\u{212B}": "1", "\u{C6}": "2", "a_b": "3", "a": "4", "B": "5"])
        func u32(_ n: Int) -> [UInt8] { [0, 0, UInt8(n >> 8), UInt8(n & 0xff)] }
        func enc(_ s: String) -> [UInt8] { u32(s.utf8.count) + Array(s.utf8) }
        var expected = enc("whp/event/v1") + [0, 0, 0, 0, 0, 0, 0, 7] + enc("x") + u32(5)
        for (k, v) in [("B", "5"), ("a", "4"), ("a_b", "3"), ("\u{C6}", "2"), ("\u{212B}", "1")] {
            expected += enc(k) + enc(v)
        }
        #expect(hexString(event.encoded) == hexString(expected))
        #expect(event.sortedKeys == ["B", "a", "a_b", "\u{C6}", "\u{212B}"])
    }

    @Test("trial_started payload is built as PROTOCOL.md §6 and the chain vector say")
    func trialStartedPayload() throws {
        let f = try Fixture.vectors()
        let e = f.chain.events[0]
        let config = TrialConfig(
            trialID: f.trial_id, method: .permutedBlock, blockMultipliers: [1, 2],
            stratifyByGroup: false, frontlineRCG: .hidden, groups: ["disability"], districts: [])
        let recordedAt = try #require(e.payload["recorded_at"])
        let at = try #require(Instant(recordedAt))
        let payload = config.trialStartedPayload(
            commitment: try Fixture.key(f.commitment),
            configHash: try Fixture.key(f.config_hash.hex), recordedAt: at)
        #expect(payload == e.payload)
    }
}

/// ALLOCATION.md §3's rejection branch, which no vector reaches.
@Suite("uniform rejection")
struct UniformRejectionTests {
    /// Records which words a draw asked for.
    final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var js: [UInt64] = []
        func record(_ j: UInt64) { lock.lock(); js.append(j); lock.unlock() }
        var requested: [UInt64] { lock.lock(); defer { lock.unlock() }; return js }
    }

    @Test("n = 3: x = 2^64 − 1 is in the biased tail, so j = 1 is used")
    func skipsBiasedTail() throws {
        let seed = try Fixture.seed()
        let rec = Recorder()
        let words: Uniform.WordSource = { s, j in
            rec.record(j)
            return j == 0 ? UInt64.max : Uniform.hmacWords(s, j)
        }
        let x = try #require(Uniform.draw(seed, 3, words: words))
        #expect(x == Uniform.hmacWords(seed, 1) % 3)
        #expect(rec.requested == [0, 1])
    }

    @Test("several rejections in a row, then a synthetic word")
    func skipsRepeatedly() throws {
        let seed = try Fixture.seed()
        let rec = Recorder()
        let words: Uniform.WordSource = { _, j in
            rec.record(j)
            return j < 3 ? UInt64.max : 7
        }
        #expect(Uniform.draw(seed, 3, words: words) == 7 % 3)
        #expect(rec.requested == [0, 1, 2, 3])
    }

    /// The bound `x ≤ 2^64 − 1 − r` with `r = 2^64 mod n`: the largest accepted word
    /// is taken at j = 0, the smallest rejected one is not.
    @Test(
        "acceptance bound is exactly 2^64 − 1 − (2^64 mod n)",
        arguments: [2, 3, 5, 6, 7, 1000, (1 << 31) + 1, (1 << 32) - 1, 1 << 32, 1] as [UInt64])
    func boundary(_ n: UInt64) throws {
        let seed = try Fixture.seed()
        // 2^64 mod n computed another way than the source's (0 − n) mod n.
        let r = (UInt64.max % n + 1) % n
        let top = UInt64.max - r
        let acceptRec = Recorder()
        let accepted = Uniform.draw(
            seed, n,
            words: { _, j in
                acceptRec.record(j); return j == 0 ? top : 0
            })
        #expect(accepted == top % n)
        #expect(acceptRec.requested == [0])
        if r > 0 {
            let rejectRec = Recorder()
            let drawn = Uniform.draw(
                seed, n,
                words: { _, j in
                    rejectRec.record(j); return j == 0 ? top + 1 : 42
                })
            let x = try #require(drawn)
            #expect(x == 42 % n)
            #expect(rejectRec.requested == [0, 1])
        }
    }

    @Test("the default word source is word j of the HMAC stream")
    func defaultSourceIsHMAC() throws {
        let seed = try Fixture.seed()
        var w = ByteWriter()
        w.enc("whp/uniform/v1"); w.u64(0)
        let h = Crypto.hmac(key: seed, w.bytes).bytes
        let x = h.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(Uniform.hmacWords(seed, 0) == x)
        #expect(Uniform.draw(seed, 1 << 32) == x % (1 << 32))
    }
}
