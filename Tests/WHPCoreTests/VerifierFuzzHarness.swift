// The verifier fuzz harness's core (docs/reliability.md §3), shared by the
// libFuzzer target (fuzz/FuzzVerifier.swift, built by `scripts/fuzz verify`,
// which compiles this file into it) and by the corpus replay in `swift test`
// (VerifierCorpusTests). It imports no test framework, so both can build it.
//
// An input is the text of an audit bundle's `events.jsonl`. Each input is
// verified twice through `BundleReader` and `AuditVerifier`, the code `whp
// verify --bundle` runs:
//   1. as it is, without the seed: the framing, the line parser and the
//      chain see every byte the fuzzer wrote;
//   2. re-chained (every parseable line's hash recomputed per ALLOCATION.md §7
//      from the genesis of its trial_started), with the trial's seed and its
//      commitment file: the mutations get past `chain` and reach every check
//      behind it (draws, blocks, locks, runs, providers, follow-ups, seeds).
// Any trap (overflow, bounds, force unwrap, precondition) is a crash, and so
// is a report that breaks the report's own rules (a check named twice, a
// failed check without its detail or its seq, ok while a check failed, an
// event count other than the input's lines).
//
// `mutate` is the structure-aware mutator the target installs as
// LLVMFuzzerCustomMutator: it edits events rather than bytes (a payload value
// replaced by a boundary value, one copied from another event, a line repeated,
// dropped or moved, a type or seq changed), and otherwise falls back to
// libFuzzer's byte mutations.

import WHPAudit
import WHPConfig
import WHPCrypto
import WHPDomain
import WHPJSON

enum VerifierFuzz {
    /// One trial the inputs may belong to: its config (as the bundle's
    /// district-config), the config's hash and the seed its log was made with.
    struct Trial {
        var name: String
        var config: TrialConfig
        var configHash: Bytes32
        var seed: Bytes32
    }

    enum SetupError: Error { case trials(String) }

    /// The trials under `root` (`fuzz/verify-trials`): each folder holds a
    /// `district-config/` and the `seed.hex` its corpus logs were made with.
    static func loadTrials(root: String) throws -> [Trial] {
        var out: [Trial] = []
        for name in ["demo", "simple"] {
            let dir = root + "/" + name
            let files: [ConfigFile]
            do { files = try ConfigFolder.read(dir + "/district-config") } catch { throw SetupError.trials("\(dir): \(error)") }
            let config: TrialConfig
            do { config = try TrialConfig.parse(files: files) } catch { throw SetupError.trials("\(dir): \(error)") }
            guard let seedText = try? String(contentsOfFile: dir + "/seed.hex", encoding: .utf8),
                let seed = Bytes32(hex: String(seedText.prefix(64)))
            else { throw SetupError.trials("\(dir)/seed.hex: not 64 hex digits") }
            out.append(Trial(name: name, config: config, configHash: TrialConfig.hash(of: files), seed: seed))
        }
        return out
    }

    /// The trial an input is for: the one whose trial_id it names, else the first.
    static func trial(for input: [UInt8], in trials: [Trial]) -> Trial {
        for t in trials.dropFirst() where contains(input, Array("\"trial_id\":\"\(t.config.trialID)\"".utf8)) { return t }
        return trials[0]
    }

    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, hay.count >= needle.count else { return false }
        var i = 0
        while i + needle.count <= hay.count {
            if hay[i] == needle[0] && hay[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }

    /// Runs one input through both passes; returns the two reports.
    @discardableResult
    static func run(_ input: [UInt8], trials: [Trial]) -> (raw: AuditReport, rechained: AuditReport) {
        let t = trial(for: input, in: trials)
        var raw = BundleReader(verifier: AuditVerifier(config: t.config, configHash: t.configHash, seed: nil, commitmentFile: nil))
        raw.read(input)
        let r1 = raw.finish()
        check(r1, input: input)

        let chained = rechain(input)
        let commitment = PublishedCommitment(
            trialID: t.config.trialID, commitment: Derivation.commitment(trialID: t.config.trialID, seed: t.seed).hex,
            configHash: t.configHash.hex)
        var full = BundleReader(
            verifier: AuditVerifier(config: t.config, configHash: t.configHash, seed: t.seed, commitmentFile: commitment),
            checkpointSeq: 1)
        full.read(chained)
        let r2 = full.finish()
        check(r2, input: chained)
        return (r1, r2)
    }

    static func fail(_ message: String) -> Never {
        fatalError("verifier fuzz invariant broken: " + message)
    }

    /// The report's own rules: each check once, in name order; a failed one
    /// says why; `ok` exactly when no check failed; one event per non-empty line.
    static func check(_ report: AuditReport, input: [UInt8]) {
        let names = report.checks.map(\.name)
        if Set(names).count != names.count { fail("a check is reported twice: \(names)") }
        if names != names.sorted() { fail("checks out of order: \(names)") }
        for c in report.checks where !c.ok && c.detail.isEmpty { fail("check \(c.name) failed without a detail") }
        // RULES2 R10: a failed check names the seq of the first event that breaks it.
        for c in report.checks where !c.ok && c.firstBadSeq == nil { fail("check \(c.name) failed without a seq: \(c.detail)") }
        if report.ok != report.checks.allSatisfy(\.ok) { fail("ok disagrees with the checks") }
        if !names.contains("chain") { fail("no chain check") }
        var lines = 0
        var framer = BundleLineFramer()
        let count: (BundleLineFramer.Item) -> Void = { item in
            if case .line(let b) = item, b.isEmpty { return }
            lines += 1
        }
        framer.feed(input, count)
        framer.end(count)
        if report.events != lines { fail("\(lines) lines but \(report.events) events") }
    }

    // MARK: - Re-chaining (ALLOCATION.md §7)

    /// The input with every parseable event line's `hash` recomputed:
    /// `h_0` from the first well-formed trial_started, `h_n = H(h_{n−1} ‖ E_n)`.
    /// Lines that do not parse are left as they are (they break the chain
    /// where they stand, as they would in a real log).
    static func rechain(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count + 64)
        // The hash the verifier will chain the next event from, as it decides it.
        var previous: Bytes32?
        var framer = BundleLineFramer()
        let emit: (BundleLineFramer.Item) -> Void = { item in
            guard case .line(let bytes) = item else { return }
            defer { out.append(0x0a) }
            guard let line = try? JSON.parse(bytes).objectValue, let seq = line["seq"]?.intValue,
                let type = line["type"]?.stringValue, let stored = line["hash"]?.stringValue, line["payload"]?.objectValue != nil
            else {
                // Not an event line: the verifier chains nothing from it.
                previous = nil
                out.append(contentsOf: bytes)
                return
            }
            guard let payload = flatPayload(line["payload"]) else {
                previous = Bytes32(hex: stored)
                out.append(contentsOf: bytes)
                return
            }
            if seq == 1 {
                guard let g = genesis(type: type, payload) else {
                    previous = Bytes32(hex: stored)
                    out.append(contentsOf: bytes)
                    return
                }
                previous = g
            }
            guard let p = previous else {
                out.append(contentsOf: bytes)
                return
            }
            let h = Chain.next(previous: p, encoded: encoded(seq: seq, type: type, payload))
            previous = h
            var o = line
            o["hash"] = .string(h.hex)
            out.append(contentsOf: JSON.encode(.object(o)))
        }
        framer.feed(input, emit)
        framer.end(emit)
        return out
    }

    /// `E_n` (ALLOCATION.md §7), for any seq a line may hold (a negative one wraps, as the verifier hashes it).
    static func encoded(seq: Int, type: String, _ payload: [String: String]) -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.enc("whp/event/v1")
        w.u64(UInt64(truncatingIfNeeded: seq))
        w.enc(type)
        w.u32(UInt32(truncatingIfNeeded: payload.count))
        for k in payload.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            w.enc(k)
            w.enc(payload[k] ?? "")
        }
        return w.bytes
    }

    static func genesis(type: String, _ payload: [String: String]) -> Bytes32? {
        guard type == EventType.trialStarted.rawValue, let id = payload["trial_id"],
            let c = payload["commitment"].flatMap({ Bytes32(hex: $0) })
        else { return nil }
        return Derivation.genesis(trialID: id, commitment: c)
    }

    static func flatPayload(_ v: JSONValue?) -> [String: String]? {
        guard let o = v?.objectValue else { return nil }
        var p: [String: String] = [:]
        for (k, v) in o.entries {
            guard let s = v.stringValue else { return nil }
            p[k] = s
        }
        return p
    }

    // MARK: - The structure-aware mutator

    /// Values that sit on a boundary of some rule of the verifier.
    static let decimals = [
        "0", "1", "2", "3", "5", "6", "-1", "01", "00", "+1", " 1", "1 ", "1.0", "1e3", "", "2147483646", "2147483647",
        "2147483648", "4294967295", "4294967296", "4294967297", "30000000000", "9223372036854775807", "9223372036854775808",
        "18446744073709551616", "99999999999999999999999",
    ]
    static let dates = [
        "9999-12-31", "9999-12-30", "0001-01-01", "0000-01-01", "1899-12-31", "1900-01-01", "2999-12-31", "3000-01-01",
        "2016-02-29", "2017-02-29", "2017-13-01", "2017-00-10", "2017-11-31", "2017-11-01", "2017-10-31", "2018-06-01",
        "2019-02-28", "2019-03-01", "2017-1-01", "20171101", "",
    ]
    static let instants = [
        "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "1900-01-01T00:00:00Z", "2999-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z", "2017-10-31T09:00:00Z", "2018-06-01T12:00:00Z", "2018-06-01T24:00:00Z", "2018-06-01T12:60:00Z",
        "2018-06-01 12:00:00Z", "2018-06-01T12:00:00", "",
    ]
    static let words = [
        "WHP", "PSC", "RCG", "whp", "selected", "not_selected", "lottery", "fifo", "manual", "permuted_block", "simple",
        "true", "false", "hidden", "dcams", "2", "1", "provider_referral", "started", "did_not_start", "left", "declined",
        "completed", "other", "wrong_group", "ineligible", "duplicate", "disability", "early_access", "devon-cornwall",
        "example-north", "example-south", "prov-a", "prov-b", "prov-a=1,prov-b=1", "prov-a=0,prov-b=1", "prov-a=1000,prov-b=1000",
        "prov-a=1001,prov-b=1", "prov-b=1,prov-a=1", "prov-a=1", "whp/v1", "1,2", "1,1000", "0", "", "\u{0}", "é",
        String(repeating: "0", count: 64), String(repeating: "f", count: 64), String(repeating: "F", count: 64),
        String(repeating: "a", count: 63),
    ]
    static let eventTypes = EventType.allCases.map(\.rawValue) + ["", "unknown", "Referred"]

    /// A mutation of `input` (at most `maxSize` bytes), or nil to let libFuzzer's own mutator run.
    static func mutate(_ input: [UInt8], maxSize: Int, seed: UInt32) -> [UInt8]? {
        var rng = Mix(UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1)
        var lines: [JSONObject?] = []
        var raw: [ArraySlice<UInt8>] = []
        var framer = BundleLineFramer()
        let take: (BundleLineFramer.Item) -> Void = { item in
            guard case .line(let b) = item, !b.isEmpty else { return }
            raw.append(b)
            lines.append(try? JSON.parse(b).objectValue)
        }
        framer.feed(input, take)
        framer.end(take)
        guard lines.contains(where: { $0 != nil }), rng.below(8) != 0 else { return nil }
        var edits = 1 + rng.below(3)
        while edits > 0 {
            edits -= 1
            // Lines come and go with the edits: the parsed ones are found again each time.
            let parsed = lines.indices.filter { lines[$0] != nil }
            guard !parsed.isEmpty else { break }
            let i = parsed[rng.below(parsed.count)]
            guard var o = lines[i] else { continue }
            switch rng.below(12) {
            case 0...4:
                // A payload value: a boundary value of its kind, or one copied from another event.
                guard var p = o["payload"]?.objectValue, !p.isEmpty else { continue }
                let k = p.keys[rng.below(p.count)]
                let current = p[k]?.stringValue ?? ""
                p[k] = .string(value(for: k, current: current, lines: lines, rng: &rng))
                o["payload"] = .object(p)
                lines[i] = o
            case 5:
                // A key dropped, or one taken from another event.
                guard var p = o["payload"]?.objectValue else { continue }
                if rng.below(2) == 0, !p.isEmpty {
                    let k = p.keys[rng.below(p.count)]
                    p = JSONObject(p.entries.filter { $0.key != k }.map { ($0.key, $0.value) })
                } else if let other = lines[parsed[rng.below(parsed.count)]]?["payload"]?.objectValue, !other.isEmpty {
                    let e = other.entries[rng.below(other.count)]
                    p[e.key] = e.value
                }
                o["payload"] = .object(p)
                lines[i] = o
            case 6:
                o["type"] = .string(eventTypes[rng.below(eventTypes.count)])
                lines[i] = o
            case 7:
                let seqs = [0, 1, -1, Int.max, Int.max - 1, Int.min, i, i + 2, 1 << 31, 1 << 53]
                o["seq"] = .int(seqs[rng.below(seqs.count)])
                lines[i] = o
            case 8:
                // A line repeated (a replayed event), right after itself or later.
                let at = rng.below(2) == 0 ? i + 1 : i + 1 + rng.below(lines.count - i)
                lines.insert(o, at: min(at, lines.count))
                raw.insert(raw[i], at: min(at, raw.count))
            case 9:
                if lines.count > 1 {
                    lines.remove(at: i)
                    raw.remove(at: i)
                }
            case 10:
                let j = rng.below(lines.count)
                lines.swapAt(i, j)
                raw.swapAt(i, j)
            default:
                // The payload of one event under another's type (allocation ↔ decision, say).
                let j = parsed[rng.below(parsed.count)]
                if let t = lines[j]?["type"] { o["type"] = t }
                lines[i] = o
            }
        }
        // Mostly renumber, so the mutation is judged by what it means, not by its seq.
        let renumber = rng.below(4) != 0
        var out: [UInt8] = []
        var n = 0
        for (k, line) in lines.enumerated() {
            if var o = line {
                n += 1
                if renumber { o["seq"] = .int(n) }
                out.append(contentsOf: JSON.encode(.object(o)))
            } else {
                out.append(contentsOf: raw[k])
            }
            out.append(0x0a)
        }
        return out.count <= maxSize ? out : nil
    }

    static func value(for key: String, current: String, lines: [JSONObject?], rng: inout Mix) -> String {
        switch rng.below(10) {
        case 0...1:
            // The same key's value in another event (a reused id, a repeated index or date).
            let others = lines.compactMap { $0?["payload"]?[key]?.stringValue }
            if !others.isEmpty { return others[rng.below(others.count)] }
        case 2:
            if let n = Int(current) {
                let deltas = [1, -1, 2, -2, 1000]
                return String(n &+ deltas[rng.below(deltas.count)])
            }
        default:
            break
        }
        let looksDate = current.utf8.count == 10 && current.utf8.dropFirst(4).first == 0x2d
        let looksInstant = current.utf8.count == 20 && current.hasSuffix("Z")
        let looksNumber = !current.isEmpty && current.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && current.utf8.count < 12
        let pool: [String]
        switch rng.below(6) {
        case 0: pool = words
        case 1: pool = decimals
        default: pool = looksInstant ? instants : looksDate ? dates : looksNumber ? decimals : words
        }
        return pool[rng.below(pool.count)]
    }

    /// SplitMix64, local so the harness needs nothing from the test support.
    struct Mix {
        var state: UInt64
        init(_ s: UInt64) { state = s }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
    }
}
