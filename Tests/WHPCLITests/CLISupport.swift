import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore
import WHPTestSupport

/// Helpers local to the CLI suites: `verify --json` parsed, the log read
/// straight from the store, raw-SQL tampering, key files and file modes.

/// `whp verify --json`, parsed: `{ok, events, head, checks: [{name, ok, detail, first_bad_seq?}]}`.
struct VerifyReport {
    struct Check {
        var ok: Bool
        var detail: String
        var firstBadSeq: Int?
    }
    var ok: Bool
    var events: Int
    var head: String
    var checks: [String: Check]
    var checkNames: Set<String> { Set(checks.keys) }
    var failedNames: Set<String> { Set(checks.filter { !$0.value.ok }.map(\.key)) }

    init(_ text: String) throws {
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let obj = try #require(
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            "verify --json prints one JSON object: \(text)")
        ok = try #require(obj["ok"] as? Bool)
        events = try #require(obj["events"] as? Int)
        head = try #require(obj["head"] as? String)
        let list = try #require(obj["checks"] as? [[String: Any]])
        var checks: [String: Check] = [:]
        for c in list {
            let name = try #require(c["name"] as? String)
            #expect(checks[name] == nil, "check \(name) is reported once")
            checks[name] = Check(
                ok: try #require(c["ok"] as? Bool), detail: c["detail"] as? String ?? "",
                firstBadSeq: c["first_bad_seq"] as? Int)
        }
        self.checks = checks
    }

    /// Expects check `name` to be reported, failed, at `seq` (when given).
    func expectFails(_ name: String, at seq: Int?, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let c = checks[name] else {
            Issue.record("verify reports no check \"\(name)\" (has \(checkNames.sorted()))", sourceLocation: sourceLocation)
            return
        }
        #expect(!c.ok, "check \(name) should fail", sourceLocation: sourceLocation)
        if let seq {
            #expect(
                c.firstBadSeq == seq, "check \(name): first_bad_seq \(c.firstBadSeq.map(String.init) ?? "absent"), expected \(seq) (\(c.detail))",
                sourceLocation: sourceLocation)
        }
    }

    func expectPasses(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let c = checks[name] else {
            Issue.record("verify reports no check \"\(name)\" (has \(checkNames.sorted()))", sourceLocation: sourceLocation)
            return
        }
        #expect(c.ok, "check \(name) should pass: \(c.detail)", sourceLocation: sourceLocation)
    }
}

/// Runs `whp verify --json EXTRA` on the trial's store and parses the report.
func verifyJSON(_ t: TrialFolder, _ extra: [String] = []) throws -> (RunResult, VerifyReport) {
    let r = try t.verify(["--json"] + extra)
    return (r, try VerifyReport(r.stdout))
}

/// Runs `whp verify --json --bundle DIR EXTRA`.
func verifyBundleJSON(_ dir: URL, _ extra: [String] = []) throws -> (RunResult, VerifyReport) {
    let r = try runWHP(["verify", "--json", "--bundle", dir.path] + extra)
    return (r, try VerifyReport(r.stdout))
}

/// Raw SQL on the store, as an insider with the database file would do it.
func tamper(_ t: TrialFolder, _ sql: String) throws {
    let store = try Store.open(path: t.store.path)
    try store.unsafeExecute(sql)
}

/// A SQL string literal.
func sqlQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }

/// `s` with the first occurrence of `old` replaced by `new`; nil if `old` does not occur.
func replacingFirst(_ s: String, _ old: String, with new: String) -> String? {
    guard let r = s.range(of: old) else { return nil }
    return s.replacingCharacters(in: r, with: new)
}

/// The hex text of a key file, without its newline.
func keyHex(_ url: URL) throws -> String {
    try String(contentsOf: url, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
}

func fileMode(_ url: URL) throws -> Int {
    let attrs = try FileManager.default.attributesOfItem(atPath: url.path)
    return try #require(attrs[.posixPermissions] as? Int) & 0o777
}

func setMode(_ url: URL, _ mode: Int) throws {
    try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
}

func exists(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.path) }

/// Every regular file under `dir`, as (relative path, bytes).
func filesUnder(_ dir: URL) throws -> [(String, Data)] {
    let fm = FileManager.default
    var out: [(String, Data)] = []
    guard let e = fm.enumerator(atPath: dir.path) else { return [] }
    while let rel = e.nextObject() as? String {
        var isDir: ObjCBool = false
        let full = dir.appendingPathComponent(rel)
        if fm.fileExists(atPath: full.path, isDirectory: &isDir), !isDir.boolValue {
            out.append((rel, try Data(contentsOf: full)))
        }
    }
    return out.sorted { $0.0 < $1.0 }
}

/// enc(s) of ALLOCATION.md, written out again so hashes are re-derived independently of WHPCore's writer.
func enc(_ b: [UInt8]) -> [UInt8] {
    let n = UInt32(b.count)
    return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + b
}
func enc(_ s: String) -> [UInt8] { enc(Array(s.utf8)) }
func u32(_ n: Int) -> [UInt8] { [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }

func hexBytes(_ hex: String) throws -> [UInt8] {
    try #require(Bytes32(hex: hex)).bytes
}

/// A small trial built through `whp serve` as DCAMS would: referrals in a
/// lottery PSC district (devon-cornwall), a fifo non-PSC one (example-north)
/// and example-south; capacity runs in the first two (devon twice), a manual
/// `decisions` run in example-south. Every request succeeds.
enum SmallTrial {
    static let devon = "devon-cornwall", north = "example-north", south = "example-south"

    static func requests() -> [[String: Any]] {
        var reqs: [[String: Any]] = []
        for n in 0..<9 {
            reqs.append(
                Req.refer(
                    "rd\(n)", referral: "D-\(n)", nino: Req.nino(100 + n), district: devon,
                    group: n % 2 == 0 ? "disability" : "early_access", date: "2017-11-0\(1 + n)"))
        }
        for n in 0..<6 {
            reqs.append(
                Req.refer(
                    "rn\(n)", referral: "N-\(n)", nino: Req.nino(200 + n), district: north,
                    group: n % 2 == 0 ? "disability" : "early_access", date: "2017-11-0\(1 + n)"))
        }
        for n in 0..<4 {
            reqs.append(Req.refer("rs\(n)", referral: "S-\(n)", nino: Req.nino(300 + n), district: south, date: "2017-11-0\(1 + n)"))
        }
        reqs.append(Req.gatekeep("g1", run: "run-devon-1", district: devon, date: "2017-11-20", capacity: 6))
        reqs.append(Req.gatekeep("g2", run: "run-north-1", district: north, date: "2017-11-20", capacity: 4))
        reqs.append(
            Req.decide(
                "g3", run: "run-south-1", district: south, date: "2017-11-20",
                [("S-0", true), ("S-1", false), ("S-2", true)]))
        for n in 9..<12 {
            reqs.append(Req.refer("rd\(n)", referral: "D-\(n)", nino: Req.nino(100 + n), district: devon, date: "2017-12-0\(n - 8)"))
        }
        reqs.append(Req.gatekeep("g4", run: "run-devon-2", district: devon, date: "2017-12-10", capacity: 2))
        return reqs
    }

    static func build() throws -> TrialFolder {
        let t = try TrialFolder.withFifo()
        let i = try t.initialise()
        try #require(i.status == 0, "whp init: \(i.stderr)")
        let reqs = requests()
        let answers = try t.serveJSON(reqs)
        try #require(answers.count == reqs.count, "one response per request")
        let failed = answers.filter { ($0["ok"] as? Bool) != true }
        try #require(failed.isEmpty, "every request of the small trial succeeds: \(failed)")
        return t
    }

    /// The allocated events of the log, in order.
    static func allocations(_ log: [LogEvent]) -> [LogEvent] { log.filter { $0.type == "allocated" } }
}

func u64(_ n: Int) -> [UInt8] { (0..<8).reversed().map { UInt8(truncatingIfNeeded: UInt64(n) >> (8 * UInt64($0))) } }

/// ALLOCATION.md §7 written out again: `E_n`, and `h_n = H(h_{n−1} ‖ E_n)`.
enum SpecChain {
    static func eventBytes(seq: Int, type: String, payload: [String: String]) -> [UInt8] {
        let keys = payload.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var out = enc("whp/event/v1") + u64(seq) + enc(type) + u32(keys.count)
        for k in keys { out += enc(k) + enc(payload[k]!) }
        return out
    }

    static func genesis(trialID: String, commitmentHex: String) throws -> [UInt8] {
        Crypto.sha256(enc("whp/genesis/v1") + enc(trialID) + (try hexBytes(commitmentHex))).bytes
    }

    static func next(_ previous: [UInt8], _ e: LogEvent) -> [UInt8] {
        Crypto.sha256(previous + eventBytes(seq: e.seq, type: e.type, payload: e.payload)).bytes
    }

    /// Every h_n of `log` from the genesis of its trial_started.
    static func hashes(_ log: [LogEvent]) throws -> [String] {
        let first = try #require(log.first)
        var h = try genesis(trialID: try #require(first.payload["trial_id"]), commitmentHex: try #require(first.payload["commitment"]))
        return log.map { e in
            h = next(h, e)
            return Hex.encode(h)
        }
    }
}
