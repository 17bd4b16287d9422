import Foundation
import Testing
@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

/// One stored event as the store or a bundle holds it.
struct StoredEvent {
    var seq: Int
    var type: String
    var payloadText: String
    var hash: String
}

/// Generated trials: a mostly well-formed log (referrals, cancellations,
/// lottery and fifo runs with their allocations, flags, opt-outs, disclosures,
/// exports) built with the pure domain functions, chained as the store chains it.
struct TrialLogGenerator {
    let config: TrialConfig
    let configHash: Bytes32
    let seed: Bytes32

    static func make(stratify: Bool, method: AllocationMethod, rcg: FrontlineRCG) -> TrialLogGenerator {
        let config = TrialConfig(
            trialID: "whp-test", method: method, blockMultipliers: [1, 2], stratifyByGroup: stratify, frontlineRCG: rcg,
            groups: ["disability", "early_access"],
            districts: [
                District(id: "devon-cornwall", name: "D", psc: true, gatekeeperRule: .lottery, weights: Weights(whp: 1, psc: 1, rcg: 1)),
                District(id: "north", name: "N", psc: false, gatekeeperRule: .fifo, weights: Weights(whp: 2, rcg: 1)),
            ])
        return TrialLogGenerator(
            config: config, configHash: Crypto.sha256(Array("config".utf8)),
            seed: Bytes32(hex: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")!)
    }

    func log(_ rng: inout TestRNG, referrals n: Int) -> [StoredEvent] {
        var payloads: [(String, [String: String])] = []
        var clock = Instant("2017-10-31T09:00:00Z")!
        func at() -> String {
            clock = Instant(seconds: clock.seconds + rng.below(3) * 3600)
            return clock.iso
        }
        payloads.append(
            (
                "trial_started",
                config.trialStartedPayload(
                    commitment: Derivation.commitment(trialID: config.trialID, seed: seed), configHash: configHash, recordedAt: clock)
            ))
        struct R {
            var id: String; var claimant: String; var district: String; var group: String; var date: CivilDate; var seq: Int; var pending = true;
            var decided = false; var flagged = false
        }
        var refs: [R] = []
        var strata: [String: StratumState] = [:]
        let claimants = (0..<max(4, n / 2)).map { i in Crypto.sha256(Array("claimant \(i)".utf8)).hex }
        var day = CivilDate("2017-11-01")!
        var runNo = 0
        while refs.count < n {
            let r = rng.below(10)
            if r < 6 {
                let d = config.districts[rng.below(2)], g = config.groups[rng.below(2)]
                let id = "R\(refs.count)"
                let ref = R(id: id, claimant: claimants[rng.below(claimants.count)], district: d.id, group: g, date: day, seq: payloads.count + 1)
                refs.append(ref)
                payloads.append(
                    (
                        "referred",
                        [
                            "referral_id": id, "claimant": ref.claimant, "district": d.id, "group": g,
                            "referral_date": day.iso, "actor": "work_coach:WC\(rng.below(9))", "recorded_at": at(),
                        ]
                    ))
            } else if r == 6, let k = refs.indices.filter({ refs[$0].pending }).randomElement(using: &rng) {
                refs[k].pending = false
                payloads.append(("cancelled", ["referral_id": refs[k].id, "reason": "mistake", "actor": "work_coach:WC1", "recorded_at": at()]))
            } else if r == 7 {
                day = day.adding(days: rng.below(20))
            } else if r == 8 {
                // A gatekeeper run over one district's pending referrals.
                let d = config.districts[rng.below(2)]
                let gk = day
                let pending = refs.indices.filter { refs[$0].pending && refs[$0].district == d.id && refs[$0].date <= gk }
                guard !pending.isEmpty else { continue }
                runNo += 1
                let runID = "gk-\(runNo)"
                let capacity = rng.below(pending.count + 2)
                let sel = GatekeeperSelection.select(
                    pending.map { PendingReferral(referralID: refs[$0].id, referralDate: refs[$0].date, referredSeq: refs[$0].seq) },
                    capacity: capacity, rule: d.gatekeeperRule
                ) {
                    Derivation.lotteryKey(seed: seed, trialID: config.trialID, runID: runID, referralID: $0)
                }
                for k in pending {
                    var p = [
                        "run_id": runID, "referral_id": refs[k].id, "gk_date": gk.iso, "rule": d.gatekeeperRule.rawValue,
                        "decision": sel.selected.contains(refs[k].id) ? "selected" : "not_selected",
                        "capacity": String(capacity), "actor": "gatekeeper:GK", "recorded_at": at(),
                    ]
                    if let key = sel.keys[refs[k].id] { p["lottery_key"] = key.hex }
                    payloads.append(("gatekeeper_decision", p))
                    refs[k].pending = false
                    refs[k].decided = true
                }
                for k in pending where sel.selected.contains(refs[k].id) {
                    let stratum = config.stratum(district: d.id, group: refs[k].group)
                    let (draw, next) = Allocator.next(
                        state: strata[stratum] ?? StratumState(), seed: seed, trialID: config.trialID, stratum: stratum,
                        weights: d.weights, method: config.method, multipliers: config.blockMultipliers)
                    strata[stratum] = next
                    var p = [
                        "referral_id": refs[k].id, "run_id": runID, "gk_date": gk.iso, "claimant": refs[k].claimant,
                        "district": d.id, "group": refs[k].group, "stratum": stratum, "index": String(draw.index),
                        "arm": draw.arm.rawValue, "alloc_seed": draw.allocSeed.hex, "recorded_at": at(),
                    ]
                    if let b = draw.block, let s = draw.blockSize, let pos = draw.position {
                        p["block"] = String(b); p["block_size"] = String(s); p["position"] = String(pos)
                    }
                    payloads.append(("allocated", p))
                }
            } else {
                switch rng.below(4) {
                case 0:
                    if let k = refs.indices.filter({ refs[$0].decided && !refs[$0].flagged }).randomElement(using: &rng) {
                        refs[k].flagged = true
                        payloads.append(
                            ("flagged_in_error", ["referral_id": refs[k].id, "reason": "duplicate", "actor": "gatekeeper:GK", "recorded_at": at()]))
                    }
                case 1:
                    payloads.append(
                        (
                            "opted_out",
                            ["claimant": claimants[rng.below(claimants.count)], "date": "2017-11-20", "actor": "evaluation_admin:EV2", "recorded_at": at()]
                        ))
                case 2:
                    if let k = refs.indices.randomElement(using: &rng) {
                        payloads.append(("disclosed", ["referral_id": refs[k].id, "reason": "asked", "actor": "work_coach:WC3", "recorded_at": at()]))
                    }
                default:
                    payloads.append(
                        (
                            "export_made",
                            [
                                "manifest_sha256": Crypto.sha256([UInt8(rng.below(256))]).hex, "rows": "3",
                                "removed_opted_out": "0", "recorded_at": at(),
                            ]
                        ))
                }
            }
        }
        return TrialLogGenerator.chain(
            payloads.enumerated().map { (i, p) in (i + 1, p.0, PayloadJSON.encode(p.1)) },
            trialID: config.trialID, commitment: Derivation.commitment(trialID: config.trialID, seed: seed))
    }

    /// Hashes as the store does; a payload that does not decode keeps a hash of its text so the chain goes on.
    static func chain(_ events: [(Int, String, String)], trialID: String, commitment: Bytes32) -> [StoredEvent] {
        var prev = Derivation.genesis(trialID: trialID, commitment: commitment)
        return events.map { seq, type, text in
            if let p = try? PayloadJSON.decode(text), seq >= 0 {
                prev = Chain.next(previous: prev, event: Event(seq: seq, type: type, payload: p))
            } else {
                prev = Crypto.sha256(prev.bytes + Array(text.utf8))
            }
            return StoredEvent(seq: seq, type: type, payloadText: text, hash: prev.hex)
        }
    }
}

extension TestRNG: RandomNumberGenerator {}

/// The dictionary-free verifier path against the verifier as it was, report
/// for report, on generated trials and on hostile edits of them.
@Suite struct AuditFastPathTests {
    struct Outcome: Equatable, CustomStringConvertible {
        var events: Int, head: String, checks: [CheckResult]
        var description: String {
            checks.filter { !$0.ok }.map { "\($0.name)@\($0.firstBadSeq.map(String.init) ?? "-"): \($0.detail)" }.joined(separator: "\n")
        }
    }

    static func reference(_ g: TrialLogGenerator, _ log: [StoredEvent], seed: Bool, file: Bool) -> Outcome {
        var v = ReferenceAuditVerifier(
            config: g.config, configHash: g.configHash, seed: seed ? g.seed : nil,
            commitmentFile: file ? (g.config.trialID, Derivation.commitment(trialID: g.config.trialID, seed: g.seed).hex, g.configHash.hex) : nil)
        for e in log { v.consume(seq: e.seq, type: e.type, payload: try? PayloadJSON.decode(e.payloadText), storedHash: e.hash) }
        let r = v.finish(events: log.count, head: log.last?.hash ?? "")
        return Outcome(events: r.events, head: r.head, checks: r.checks)
    }

    static func fast(_ g: TrialLogGenerator, _ log: [StoredEvent], seed: Bool, file: Bool, text: Bool) -> Outcome {
        var v = AuditVerifier(
            config: g.config, configHash: g.configHash, seed: seed ? g.seed : nil,
            commitmentFile: file
                ? PublishedCommitment(
                    trialID: g.config.trialID, commitment: Derivation.commitment(trialID: g.config.trialID, seed: g.seed).hex, configHash: g.configHash.hex)
                : nil)
        for e in log {
            if text {
                // What verify's rebuild projects: the event exactly when its payload
                // parses and decodes as its type, whatever the checks make of it.
                let decoded = v.consume(seq: e.seq, type: e.type, payloadText: e.payloadText, storedHash: e.hash)
                let expected = (try? PayloadJSON.decode(e.payloadText)).flatMap { try? TrialEvent.decode(type: e.type, $0) }
                #expect(decoded == expected, "event \(e.seq) (\(e.type)): \(e.payloadText.prefix(200))")
            } else {
                v.consume(seq: e.seq, type: e.type, payload: try? PayloadJSON.decode(e.payloadText), storedHash: e.hash)
            }
        }
        let r = v.finish(events: log.count, head: log.last?.hash ?? "")
        return Outcome(events: r.events, head: r.head, checks: r.checks)
    }

    static func agree(_ g: TrialLogGenerator, _ log: [StoredEvent], _ what: String) {
        for seed in [true, false] {
            let file = seed
            let ref = reference(g, log, seed: seed, file: file)
            // The checks RULES2 added (links, follow_up) are not the reference's:
            // on these logs they must pass; the reference's checks must agree exactly.
            let names = Set(ref.checks.map(\.name))
            for text in [true, false] {
                let now = fast(g, log, seed: seed, file: file, text: text)
                let common = Outcome(events: now.events, head: now.head, checks: now.checks.filter { names.contains($0.name) })
                #expect(common == ref, "\(text ? "text" : "dict") path, \(what), seed \(seed)")
                let othersPass = now.checks.filter { !names.contains($0.name) }.allSatisfy { $0.ok }
                #expect(othersPass, "\(what): \(now)")
            }
        }
    }

    static let generators: [TrialLogGenerator] = [
        .make(stratify: false, method: .permutedBlock, rcg: .hidden),
        .make(stratify: true, method: .permutedBlock, rcg: .dcams),
        .make(stratify: false, method: .simple, rcg: .hidden),
    ]

    @Test func wellFormedTrialsVerifyAndAgree() {
        var rng = TestRNG(11)
        for g in Self.generators {
            for n in [0, 1, 5, 40, 150] {
                let log = g.log(&rng, referrals: n)
                Self.agree(g, log, "clean trial of \(n)")
                if n == 150 {
                    let out = Self.fast(g, log, seed: true, file: true, text: true)
                    // The generator's logs break only the lock rule (claimants are re-referred at random).
                    #expect(out.checks.filter { !$0.ok }.allSatisfy { $0.name == "locks" }, "\(out)")
                }
            }
        }
    }

    /// Text edits a tamperer (or a broken disk) could make to a stored payload.
    static func mutate(_ text: String, _ rng: inout TestRNG, others: [StoredEvent]) -> String {
        var u = Array(text.utf8)
        let dict = (try? PayloadJSON.decode(text)) ?? [:]
        let keys = dict.keys.sorted()
        func reencode(_ d: [String: String], shuffled: Bool) -> String {
            guard shuffled else { return PayloadJSON.encode(d) }
            var pairs = Array(d)
            pairs.shuffle(using: &rng)
            var w = JSONWriter()
            w.beginObject()
            for (k, v) in pairs { w.key(k); w.string(v) }
            w.endObject()
            return String(decoding: w.bytes, as: UTF8.self)
        }
        switch rng.below(24) {
        case 0 where !u.isEmpty:  // flip a byte
            u[rng.below(u.count)] ^= UInt8(1 << rng.below(8))
        case 1 where !u.isEmpty:  // truncate
            u.removeSubrange(rng.below(u.count)...)
        case 2:  // whitespace between tokens
            if let i = u.firstIndex(of: 0x3A) { u.insert(contentsOf: [0x20, 0x0A, 0x09, 0x0D][0..<(1 + rng.below(4))], at: i + 1) }
            if rng.below(2) == 0 { u.insert(0x20, at: 0); u.append(0x0A) }
        case 3:  // keys out of order
            return reencode(dict, shuffled: true)
        case 4 where !keys.isEmpty:  // a key repeated
            let k = keys[rng.below(keys.count)]
            u.removeLast()
            u += Array(",\"\(k)\":\"x\"}".utf8)
        case 5 where !keys.isEmpty:  // a key dropped
            var d = dict
            d[keys[rng.below(keys.count)]] = nil
            return reencode(d, shuffled: rng.below(2) == 0)
        case 6:  // an escaped spelling of a plain character (same value, other bytes)
            if let i = u.firstIndex(of: 0x3A), i + 2 < u.count, u[i + 1] == 0x22, u[i + 2] >= 0x20, u[i + 2] < 0x7F, u[i + 2] != 0x22, u[i + 2] != 0x5C {
                let c = u[i + 2]
                u.replaceSubrange((i + 2)...(i + 2), with: Array(String(format: "\\u%04x", Int(c)).utf8))
            }
        case 7 where !keys.isEmpty:  // escaped key
            let k = keys[rng.below(keys.count)]
            var d = dict
            let v = d.removeValue(forKey: k)!
            var s = reencode(d, shuffled: false)
            s.removeLast()
            return s + (d.isEmpty ? "" : ",") + "\"\\u00\(String(k.utf8.first!, radix: 16))\(k.dropFirst())\":\"\(v)\"}"
        case 8 where !keys.isEmpty:  // a value swapped for another event's value of that key
            let k = keys[rng.below(keys.count)]
            if let o = others.randomElement(using: &rng), let v = (try? PayloadJSON.decode(o.payloadText))?[k] {
                var d = dict; d[k] = v
                return reencode(d, shuffled: false)
            }
        case 9 where !keys.isEmpty:  // odd spellings of numbers, dates, hashes, arms
            let k = keys[rng.below(keys.count)]
            var d = dict
            let v = d[k]!
            let spellings = [
                "+" + v, "0" + v, "-" + v, v.uppercased(), v + " ", " " + v, "", "-0", "+0", "9223372036854775807",
                "9223372036854775808", "１", String(v.dropLast()), v + "0", "2017-02-29", "2017-13-01", "2017-1-01",
                "2017-11-20T24:00:00Z", "2017-11-20T23:59:60Z", "2017-11-20 09:00:00Z", "wHP", "RCG", "PSC",
            ]
            d[k] = spellings[rng.below(spellings.count)]
            return reencode(d, shuffled: false)
        case 10 where !keys.isEmpty:  // canonically equivalent but different spellings
            let k = keys[rng.below(keys.count)]
            var d = dict
            let forms = ["\u{212A}", "e\u{301}", "\u{E9}", "K", ";", "\u{37E}", "`", "\u{1FEF}", "Å", "A\u{30A}"]
            d[k] = d[k]! + forms[rng.below(forms.count)]
            if rng.below(3) == 0 { d[forms[rng.below(forms.count)]] = "v"; d[forms[rng.below(forms.count)]] = "w" }
            return reencode(d, shuffled: rng.below(2) == 0)
        case 11:  // not a flat object of strings
            let bad = [
                "", " ", "{", "}", "[]", "null", "\"x\"", "{\"a\":1}", "{\"a\":null}", "{\"a\":{\"b\":\"c\"}}", "{\"a\":\"b\",}",
                "{,\"a\":\"b\"}", "{\"a\" \"b\"}", "{\"a\":\"b\"} x", "\u{FEFF}{}", "{\"a\":\"b\"}{}", "{\"a\":\"\u{1}\"}", "{\"a\":\"\\x\"}",
                "{\"a\":\"\\ud800\"}", "{\"a\":\"\\u00\"}", "{\"a\":'b'}", "{a:\"b\"}", "{}", "{ }", "\t{}\r\n", "{\"\":\"\"}",
            ]
            return bad[rng.below(bad.count)]
        case 12:  // raw invalid UTF-8 / control bytes
            if !u.isEmpty { u.insert([0xFF, 0xC0, 0xED, 0x01, 0x7F, 0x80][rng.below(6)], at: rng.below(u.count)) }
            return String(decoding: u, as: UTF8.self)
        default:
            break
        }
        return String(decoding: u, as: UTF8.self)
    }

    /// RULES2 R10 made the verifier stricter than the reference (every value
    /// is typed before it is used: a `disclosed` without its reason, a decimal
    /// with a sign, a date outside 1900–2999 now fail). So on hostile logs the
    /// two paths of the verifier must agree exactly, and the verifier must
    /// never pass a log the reference fails, nor pass a check it fails.
    static func neverMoreLenient(_ g: TrialLogGenerator, _ log: [StoredEvent], _ what: String) {
        for seed in [true, false] {
            let file = seed
            let ref = reference(g, log, seed: seed, file: file)
            let text = fast(g, log, seed: seed, file: file, text: true)
            #expect(text == fast(g, log, seed: seed, file: file, text: false), "text and dict paths, \(what), seed \(seed)")
            let failedBefore = Set(ref.checks.filter { !$0.ok }.map(\.name))
            let failedNow = Set(text.checks.filter { !$0.ok }.map(\.name))
            #expect(failedBefore.isEmpty || !failedNow.isEmpty, "\(what): the reference fails \(failedBefore), now nothing fails")
        }
    }

    /// `verify` rebuilds the derived tables from the events `consume` hands
    /// back, so a log whose first event is not its trial_started (the chain
    /// fails there) still has that event projected, as when the rebuild
    /// parsed every payload itself.
    @Test func aFirstEventThatIsNotTheTrialStartIsStillHandedBack() {
        var rng = TestRNG(14)
        let g = Self.generators[0]
        let log = g.log(&rng, referrals: 3)
        var moved = log[1]
        moved.seq = 1
        var v = AuditVerifier(config: g.config, configHash: g.configHash, seed: g.seed, commitmentFile: nil)
        let decoded = v.consume(seq: moved.seq, type: moved.type, payloadText: moved.payloadText, storedHash: moved.hash)
        #expect(decoded != nil && decoded == (try? TrialEvent.decode(type: moved.type, PayloadJSON.decode(moved.payloadText))), "\(moved.type)")
        let report = v.finish(events: 1, head: moved.hash)
        #expect(report.checks.contains { $0.name == "chain" && !$0.ok })
    }

    @Test func hostileEditsAreNeverJudgedMoreLenientlyThanBefore() {
        var rng = TestRNG(12)
        for (gi, g) in Self.generators.enumerated() {
            let base = g.log(&rng, referrals: 30)
            for round in 0..<160 {
                var log = base
                for _ in 0..<(1 + rng.below(3)) {
                    let k = rng.below(log.count)
                    switch rng.below(10) {
                    case 0: log[k].hash = [log[k].hash.uppercased(), String(log[k].hash.dropLast()), "", "zz", log[rng.below(log.count)].hash][rng.below(5)]
                    case 1: log[k].seq = [log[k].seq + 1, log[k].seq - 1, 0, log[k].seq + 100][rng.below(4)]
                    case 2: log[k].type = ["referred", "allocated", "gatekeeper_decision", "cancelled", "nonsense", "", "Referred"][rng.below(7)]
                    case 3: if log.count > 2 { log.remove(at: max(1, k)) }
                    case 4: log.insert(log[k], at: k)
                    default: log[k].payloadText = Self.mutate(log[k].payloadText, &rng, others: log)
                    }
                }
                Self.neverMoreLenient(g, log, "generator \(gi) round \(round), edits kept")
                // The same edits with the chain re-computed, so the rules behind the chain are what catch them.
                let rechained = TrialLogGenerator.chain(
                    log.map { ($0.seq, $0.type, $0.payloadText) }, trialID: g.config.trialID,
                    commitment: Derivation.commitment(trialID: g.config.trialID, seed: g.seed))
                Self.neverMoreLenient(g, rechained, "generator \(gi) round \(round), re-chained")
            }
        }
    }
}

/// `PayloadFields.parse` against `PayloadJSON.decode`: the same verdict and the
/// same keys and values, in byte order.
@Suite struct PayloadFieldsTests {
    static func check(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        var f = PayloadFields()
        let ok = f.parse(text)
        let expected = try? PayloadJSON.decode(text)
        #expect(ok == (expected != nil), "\(text.debugDescription)", sourceLocation: sourceLocation)
        guard let expected, ok else { #expect(f.count == 0, sourceLocation: sourceLocation); return }
        var pairs: [(String, String)] = []
        for i in 0..<f.count {
            pairs.append(f.withField(i) { (String(decoding: $0, as: UTF8.self), String(decoding: $1, as: UTF8.self)) })
        }
        let want = expected.keys.sorted { $0.utf8Precedes($1) }.map { ($0, expected[$0]!) }
        #expect(pairs.map(\.0) == want.map(\.0) && pairs.map(\.1) == want.map(\.1), "\(text.debugDescription)", sourceLocation: sourceLocation)
        #expect(pairs.map { Array($0.0.utf8) } == want.map { Array($0.0.utf8) }, sourceLocation: sourceLocation)
        #expect(pairs.map { Array($0.1.utf8) } == want.map { Array($0.1.utf8) }, sourceLocation: sourceLocation)
        #expect(f.dictionary() == expected, "dictionary() of \(text.debugDescription)", sourceLocation: sourceLocation)
        for (k, v) in want {
            if k == "referral_id" { #expect(f["referral_id"] == v, sourceLocation: sourceLocation) }
        }
    }

    @Test func fixedCases() {
        for t in [
            "{}", " {} ", "{\"a\":\"b\"}", "{\"b\":\"1\",\"a\":\"2\"}", "{\"a\":\"1\",\"a\":\"2\"}", "{\"a\":\"1\",\"b\":\"2\",\"a\":\"3\"}",
            "{\"ab\":\"1\",\"a\":\"2\"}", "{\"a\":\"1\",\"ab\":\"2\"}", "{\"\":\"\"}", "{\"\":\"1\",\"\":\"2\"}", "", " ", "{", "{\"a\"}",
            "{\"a\":}", "{\"a\":\"b\",}", "{\"a\":\"b\"", "{\"a\":\"b\"}}", "{\"a\":1}", "{\"a\":true}", "{\"a\":[]}", "[]", "\"a\"",
            "{\"a\":\"b\"}\u{0}", "{\"a\":\"\t\"}", "{\"a\":\"\\t\"}", "{\"a\":\"\\u0041\"}", "{\"\\u0061\":\"1\",\"a\":\"2\"}",
            "{\"K\":\"1\",\"\u{212A}\":\"2\"}", "{\"e\u{301}\":\"1\",\"\u{E9}\":\"2\"}", "{\"é\":\"1\"}", "\u{FEFF}{}",
            "{\"a\":\"b\"}\n", "\n\r\t {\n\"a\"\n:\n\"b\"\n}\n", "{\"a\":\"b\" , \"c\" : \"d\"}", "{\"referral_id\":\"R-1\"}",
            "{\"a\":\"\u{7F}\"}", "{\"a\":\"\\/\"}",
            "{ \"a\":\"b\",\"b\":\"c\",\"c\":\"d\",\"d\":\"e\",\"e\":\"f\",\"f\":\"g\",\"g\":\"h\",\"h\":\"i\",\"a\":\"j\"}",
        ] {
            Self.check(t)
        }
    }

    @Test func generatedCases() {
        var rng = TestRNG(13)
        let alphabet: [String] = [
            "{", "}", "\"", ":", ",", " ", "\n", "a", "b", "referral_id", "1", "\\", "\\\"", "\\u0041", "é", "\u{212A}", "K",
            "[", "]", "null", "\u{1}", "\t", "x",
        ]
        for _ in 0..<4000 {
            var s = ""
            for _ in 0..<rng.below(14) { s += alphabet[rng.below(alphabet.count)] }
            Self.check(s)
            // Well-formed objects with random keys (duplicates, prefixes, order).
            var t = "{"
            let n = rng.below(7)
            for i in 0..<n {
                if i > 0 { t += [",", " ,", ", "][rng.below(3)] }
                let k = ["a", "ab", "b", "", "referral_id", "claimant", "K", "\u{212A}", "é", "e\u{301}", "a\\u0062"][rng.below(11)]
                let v = ["", "v", "R-\(rng.below(9))", "\\n", "é", "2017-11-01"][rng.below(6)]
                t += "\"\(k)\"" + [":", " : "][rng.below(2)] + "\"\(v)\""
            }
            t += "}"
            Self.check(t)
        }
    }

    @Test func storedPayloadsOfATrial() {
        var rng = TestRNG(14)
        let g = TrialLogGenerator.make(stratify: true, method: .permutedBlock, rcg: .hidden)
        for e in g.log(&rng, referrals: 60) {
            Self.check(e.payloadText)
            var u = Array(e.payloadText.utf8)
            for _ in 0..<6 {
                var m = u
                m[rng.below(m.count)] = UInt8(rng.below(256))
                Self.check(String(decoding: m, as: UTF8.self))
            }
            u.swapAt(rng.below(u.count), rng.below(u.count))
            Self.check(String(decoding: u, as: UTF8.self))
        }
    }
}
