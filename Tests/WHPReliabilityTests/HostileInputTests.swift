import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPTestSupport

/// Property-based hostile input through one live `whp serve` (PROTOCOL.md §1–§2):
/// random bytes, truncated and mutated valid requests, invalid UTF-8, raw control
/// characters, deep nesting, huge and non-integer numbers, duplicate keys, BOMs,
/// bad ids, and lines around the 65,536-byte limit. Each line must get exactly
/// one response, in order, that is a JSON object with `ok: true`, or `ok: false`
/// and a code of §2 (never `internal`), with the expected code where the kind
/// of line decides it; and the server must still be alive at the end (a valid
/// request is answered and it exits 0 at EOF).
///
/// The libFuzzer harness (fuzz/, scripts/fuzz) covers the same path in process;
/// its committed corpus is replayed here through the real binary too.
@Suite("hostile input through serve")
struct HostileInputTests {
    @Test("a few thousand hostile lines: one protocol answer each, the server stays up")
    func hostileLines() throws {
        let t = try RelTrial.make()
        let seed = runSeed()
        var g = HostileGenerator(seed: seed)
        let count = Env.int("WHP_HOSTILE_LINES") ?? 3000
        var lines: [HostileGenerator.Line] = []
        for _ in 0..<count { lines.append(g.next()) }
        lines.append(
            .init(
                bytes: Array(R.refer("alive-1", "ALIVE-1", claimant: R.nino(777), district: "devon-cornwall", date: "2019-01-10").utf8),
                kind: "alive", expect: .ok, id: "alive-1"))
        lines.append(.init(bytes: Array(R.status("alive-2").utf8), kind: "alive", expect: .ok, id: "alive-2"))
        var input: [UInt8] = []
        for l in lines { input += l.bytes; input.append(0x0a) }

        let start = Date()
        let r = try execWHP(["serve"] + t.common, env: ["WHP_NOW": RelTrial.now], stdin: input)
        let seconds = Date().timeIntervalSince(start)
        #expect(r.status == 0, "serve exits 0 at EOF: \(r.stderr.suffix(500))")
        #expect(r.stdout.count == lines.count, "\(lines.count) lines, \(r.stdout.count) answers")
        var problems: [String] = []
        var byKind: [String: Int] = [:]
        for (l, out) in zip(lines, r.stdout) {
            byKind[l.kind, default: 0] += 1
            let a = Reply(out)
            let shown = String(decoding: l.bytes.prefix(120), as: UTF8.self)
            guard a.isObject, let ok = a.obj["ok"] as? Bool else { problems.append("[\(l.kind)] not a JSON object answer: \(out.prefix(200))"); continue }
            if !ok {
                guard let code = a.code, protocolCodes.contains(code) else { problems.append("[\(l.kind)] unknown error code: \(out.prefix(200))"); continue }
                if code == "internal" { problems.append("[\(l.kind)] internal for \(shown)") }
            }
            let idOK = a.obj["id"] is NSNull || a.obj["id"] is String
            if !idOK { problems.append("[\(l.kind)] id is neither null nor a string: \(out.prefix(200))") }
            switch l.expect {
            case .any: break
            case .ok: if !ok { problems.append("[\(l.kind)] expected ok: \(shown) → \(out.prefix(200))") }
            case .code(let c): if a.code != c { problems.append("[\(l.kind)] expected \(c): \(shown) → \(out.prefix(200))") }
            case .oneOf(let cs):
                if ok || !cs.contains(a.code ?? "") { problems.append("[\(l.kind)] expected one of \(cs.sorted()): \(shown) → \(out.prefix(200))") }
            }
            if let id = l.id, !(a.obj["id"] is NSNull), a.id != id { problems.append("[\(l.kind)] id \(a.id ?? "?") expected \(id)") }
            if l.id == nil, ["bad_json", "too_large"].contains(a.code ?? ""), !(a.obj["id"] is NSNull) {
                problems.append("[\(l.kind)] \(a.code!) must answer id null: \(out.prefix(200))")
            }
        }
        expectNoProblems(problems, "hostile lines (WHP_TEST_SEED=\(String(seed, radix: 16)))")
        Env.progress(
            String(
                format: "hostile input: %d lines (%d bytes) through one serve in %.2f s; kinds %@", lines.count, input.count, seconds,
                byKind.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")))
        let v = try t.verifyReport(["--seed", t.seedFile.path])
        #expect(v.status == 0 && v.ok, "\(v)")
    }

    @Test("the committed fuzz corpus replays through serve: one answer per line")
    func fuzzCorpusThroughServe() throws {
        let dir = WHPBinary.repoRoot.appendingPathComponent("fuzz/corpus")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        try #require(!files.isEmpty)
        let t = try RelTrial.make()
        var input: [UInt8] = []
        var expected = 0
        for f in files {
            var bytes = Array(try Data(contentsOf: dir.appendingPathComponent(f)))
            if bytes.last != 0x0a { bytes.append(0x0a) }  // a final line without \n ends at the file's end
            input += bytes
            expected += referenceLineCount(bytes)
        }
        input += Array((R.status("corpus-end") + "\n").utf8)
        let r = try execWHP(["serve"] + t.common, env: ["WHP_NOW": RelTrial.now], stdin: input)
        #expect(r.status == 0)
        #expect(r.stdout.count == expected + 1, "\(files.count) corpus files, \(expected) lines")
        for out in r.stdout {
            let a = Reply(out)
            #expect(a.isObject && (a.ok || protocolCodes.subtracting(["internal"]).contains(a.code ?? "")), "\(out.prefix(300))")
        }
        #expect(Reply(r.stdout.last ?? "").ok)
    }
}

/// Lines PROTOCOL.md §1 answers in `bytes`: split at \n, one trailing \r
/// dropped, empty lines skipped.
func referenceLineCount(_ bytes: [UInt8]) -> Int {
    bytes.split(separator: 0x0a, omittingEmptySubsequences: false).filter { line in
        var l = line
        if l.last == 0x0d { l = l.dropLast() }
        return !l.isEmpty
    }.count
}

/// Generates hostile request lines (never containing \n, never empty after
/// dropping one trailing \r), each with what its answer must be.
struct HostileGenerator {
    enum Expect { case any, ok, code(String), oneOf(Set<String>) }
    struct Line { var bytes: [UInt8]; var kind: String; var expect: Expect; var id: String? = nil }

    var rng: SplitMix
    var n = 0
    init(seed: UInt64) { rng = SplitMix(seed) }

    static let decoderCodes: Set<String> = ["bad_json", "bad_request", "unknown_op", "forbidden", "invalid_field", "unknown_district", "unknown_group"]

    /// Valid requests of every op (some will be refused by state; that is fine).
    mutating func valid(_ id: String) -> String {
        n += 1
        switch rng.int(0...9) {
        case 0: return R.refer(id, "H-\(n)", claimant: R.nino(400_000 + n), district: rng.pick(RelTrial.districts), date: "2019-01-15")
        case 1: return R.cancel(id, "H-\(rng.int(1...max(1, n)))")
        case 2: return R.pending(id, district: rng.pick(RelTrial.districts), date: "2019-02-01")
        case 3: return R.capacity(id, run: "HR-\(n)", district: rng.pick(RelTrial.districts), date: "2019-02-01", rng.int(0...3))
        case 4: return R.flag(id, "H-\(rng.int(1...max(1, n)))")
        case 5: return R.optOut(id, claimant: ["ref": String(100_000_000_000 + n)], date: "2019-03-01")
        case 6: return R.disclose(id, "H-\(rng.int(1...max(1, n)))")
        case 7:
            return Req.line(
                Req.envelope(id, "eligibility", role: "work_coach", ["claimant": ["nino": Req.nino(400_000 + rng.int(0...max(1, n)))], "date": "2019-03-01"]))
        case 8: return Req.line(Req.envelope(id, "outcome", role: "work_coach", ["referral_id": "H-\(rng.int(1...max(1, n)))", "audience": "claimant"]))
        default: return R.status(id)
        }
    }

    mutating func bytesWithout0A(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in
            var b = UInt8.random(in: 0...255, using: &rng); if b == 0x0a { b = 0x0b }; return b
        }
    }

    /// Makes sure a line is neither empty nor just "\r", and holds no \n.
    func safe(_ b: [UInt8]) -> [UInt8] {
        var b = b.map { $0 == 0x0a ? 0x20 : $0 }
        if b.isEmpty || b == [0x0d] { b = [0x7b] + b }
        return b
    }

    mutating func next() -> Line {
        let id = "h\(n)-\(rng.int(0...999))"
        switch rng.int(0...15) {
        case 0:
            return Line(bytes: safe(bytesWithout0A(rng.int(1...300))), kind: "random-bytes", expect: .any)
        case 1:
            // A valid request cut short: never a complete JSON value.
            let v = Array(valid(id).utf8)
            return Line(bytes: safe(Array(v.prefix(rng.int(1...v.count - 1)))), kind: "truncated", expect: .code("bad_json"))
        case 2, 3:
            // A valid request with 1–6 random byte edits.
            var v = Array(valid(id).utf8)
            for _ in 0..<rng.int(1...6) {
                let i = rng.int(0...v.count - 1)
                switch rng.int(0...2) {
                case 0: v[i] = UInt8.random(in: 0...255, using: &rng)
                case 1: v.insert(UInt8.random(in: 0...255, using: &rng), at: i)
                default: if v.count > 1 { v.remove(at: i) }
                }
            }
            return Line(bytes: safe(v), kind: "mutated", expect: .any)
        case 4:
            // Invalid UTF-8 inside a string value.
            let bad: [[UInt8]] = [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82], [0x80]]
            let v = Array(valid(id).utf8)
            let quote = v.indices.filter { v[$0] == 0x22 }
            let at = quote[rng.int(0...quote.count - 1)] + (rng.chance(0.5) ? 1 : 0)
            return Line(bytes: Array(v[..<at]) + rng.pick(bad) + Array(v[at...]), kind: "invalid-utf8", expect: .code("bad_json"))
        case 5:
            // Deep nesting in an ignored field: within the parser's depth cap it is ignored (ok).
            let depth = rng.chance(0.5) ? rng.int(1...60) : rng.int(70...30_000)
            let open = rng.chance(0.5) ? "[" : "{\"a\":"
            let close = open == "[" ? "]" : "}"
            let line =
                "{\"v\":1,\"id\":\"\(id)\",\"op\":\"status\",\"actor\":{\"role\":\"gatekeeper\",\"id\":\"G\"},\"deep\":"
                + String(repeating: open, count: depth) + "0" + String(repeating: close, count: depth) + "}"
            let fits = line.utf8.count <= 65_536
            return Line(
                bytes: Array(line.utf8), kind: "deep-nesting", expect: !fits ? .code("too_large") : depth <= 60 ? .ok : .code("bad_json"),
                id: depth <= 60 ? id : nil)
        case 6:
            // Unclosed nesting.
            return Line(
                bytes: Array(String(repeating: rng.pick(["[", "{\"a\":", "[{\"b\":"]), count: rng.int(1...20_000)).utf8), kind: "unclosed-nesting",
                expect: .oneOf(["bad_json", "too_large"]))
        case 7:
            // Numbers: huge, negative, fractional, exponent, or just past 2^31 − 1.
            let nums = [
                "1e400", "123456789012345678901234567890", "-1", "1.0", "1e0", "2147483648", "9" + String(repeating: "9", count: 400),
                "-2147483649", "0.5", "1E+2", "0x10", "01", "+1", "NaN", "Infinity", "1.", ".5", "-",
            ]
            let num = rng.pick(nums)
            if rng.chance(0.5) {
                let line = "{\"v\":\(num),\"id\":\"\(id)\",\"op\":\"status\",\"actor\":{\"role\":\"gatekeeper\",\"id\":\"G\"}}"
                let invalidJSON = ["0x10", "01", "+1", "NaN", "Infinity", "1.", ".5", "-"].contains(num)
                return Line(bytes: Array(line.utf8), kind: "number-v", expect: .code(invalidJSON ? "bad_json" : "bad_request"), id: invalidJSON ? nil : id)
            }
            let line =
                "{\"v\":1,\"id\":\"\(id)\",\"op\":\"gatekeep\",\"actor\":{\"role\":\"gatekeeper\",\"id\":\"G\"},\"run_id\":\"N-\(n)\",\"district\":\"devon-cornwall\",\"gk_date\":\"2019-02-01\",\"capacity\":\(num)}"
            let invalidJSON = ["0x10", "01", "+1", "NaN", "Infinity", "1.", ".5", "-"].contains(num)
            return Line(bytes: Array(line.utf8), kind: "number-capacity", expect: .code(invalidJSON ? "bad_json" : "invalid_field"), id: invalidJSON ? nil : id)
        case 8:
            // Around the 65,536-byte limit (the \r of a CRLF is not counted).
            let target = rng.pick([65_535, 65_536, 65_537, 65_540, 70_000, 200_000])
            let head = "{\"v\":1,\"id\":\"\(id)\",\"op\":\"status\",\"actor\":{\"role\":\"gatekeeper\",\"id\":\"G\"},\"pad\":\""
            let pad = max(0, target - head.utf8.count - 2)
            var b = Array((head + String(repeating: "x", count: pad) + "\"}").utf8)
            let crlf = rng.chance(0.3)
            if crlf { b.append(0x0d) }
            return Line(bytes: b, kind: "long-line", expect: target <= 65_536 ? .ok : .code("too_large"), id: target <= 65_536 ? id : nil)
        case 9:
            // Duplicate keys (anywhere) and a byte-order mark.
            let v = valid(id)
            if rng.chance(0.5) {
                let dup = v.replacingOccurrences(of: "\"actor\":{", with: "\"actor\":{\"id\":\"X\",")
                return Line(bytes: Array(dup.utf8), kind: "duplicate-key", expect: .code("bad_json"))
            }
            return Line(bytes: [0xef, 0xbb, 0xbf] + Array(v.utf8), kind: "bom", expect: .code("bad_json"))
        case 10:
            // Raw control characters and NUL inside strings (JSON forbids them unescaped).
            // After an opening quote (the valid lines hold no escaped quotes), so inside a string.
            let v = Array(valid(id).utf8)
            let quote = v.indices.filter { v[$0] == 0x22 }
            let at = quote[2 * rng.int(0...quote.count / 2 - 1)] + 1
            return Line(bytes: Array(v[..<at]) + [rng.pick([0x00, 0x01, 0x09, 0x1f, 0x0d])] + Array(v[at...]), kind: "control-char", expect: .code("bad_json"))
        case 11:
            // Bad ids: too long, empty, not a string → bad_request with id null.
            let bad = rng.pick(["\"" + String(repeating: "i", count: 129) + "\"", "\"\"", "17", "null", "[\"a\"]", "true"])
            let line = "{\"v\":1,\"id\":\(bad),\"op\":\"status\",\"actor\":{\"role\":\"gatekeeper\",\"id\":\"G\"}}"
            return Line(bytes: Array(line.utf8), kind: "bad-id", expect: .code("bad_request"))
        case 12:
            // Not an object at top level, or trailing garbage.
            let v = valid(id)
            let line = rng.pick(["[" + v + "]", "\"" + id + "\"", "42", "null", v + " x", v + v, v + ",", " " + v + " \t"])
            return Line(bytes: Array(line.utf8), kind: "shape", expect: line == " " + v + " \t" ? .any : .code("bad_json"))
        case 13:
            // Escapes: lone surrogates, valid pairs, odd escapes in the id.
            let esc = rng.pick(["\\ud800", "\\udc00x", "\\ud83d\\ude00", "\\u0000", "\\/", "\\x41", "\\u12", "é", "\\\""])
            let line = "{\"v\":1,\"id\":\"e\(esc)\",\"op\":\"status\",\"actor\":{\"role\":\"gatekeeper\",\"id\":\"G\"}}"
            return Line(bytes: Array(line.utf8), kind: "escapes", expect: .any)
        default:
            // Valid, answered ok or refused by state: the service keeps working between hostile lines.
            return Line(bytes: Array(valid(id).utf8), kind: "valid", expect: .any, id: id)
        }
    }
}
