import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPTestSupport

// Helpers shared by the end-to-end suites of `whp serve`: parsed responses,
// more request builders, a calendar of our own, a seeded generator, and an
// independent re-derivation of ALLOCATION.md §2–§4 that uses nothing of the
// service but `Crypto.hmac` (its own byte encoding, its own draws).

// MARK: - Responses

/// One response line, parsed.
struct Resp: CustomStringConvertible {
    let line: String
    let obj: [String: Any]

    init(_ line: String) {
        self.line = line
        obj = ((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]) ?? [:]
    }

    /// The echoed id; nil when the response says `"id": null` (or the line is not JSON).
    var id: String? { obj["id"] as? String }
    var idIsNull: Bool { obj["id"] is NSNull }
    var ok: Bool { obj["ok"] as? Bool == true }
    var result: [String: Any] { obj["result"] as? [String: Any] ?? [:] }
    var error: [String: Any] { obj["error"] as? [String: Any] ?? [:] }
    var code: String? { ok ? nil : error["code"] as? String }
    var message: String? { error["message"] as? String }
    var field: String? { error["field"] as? String }
    func str(_ key: String) -> String? { result[key] as? String }
    func strings(_ key: String) -> [String]? { result[key] as? [String] }
    var description: String { line }

    /// The response without its `id`, keys sorted: what an identical repeat must reproduce.
    var withoutID: String {
        var o = obj
        o.removeValue(forKey: "id")
        return String(decoding: (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
    }
}

/// `status` as the gatekeeper sees it: the log's length and head.
struct LogHead: Equatable, CustomStringConvertible {
    var events: Int
    var head: String
    init?(_ r: Resp) {
        guard r.ok, let e = r.result["events"] as? Int, let h = r.str("head") else { return nil }
        events = e; head = h
    }
    var description: String { "\(events)@\(head.prefix(12))" }
}

// MARK: - Requests beyond `Req`

enum Q {
    static func status(_ id: String, role: String = "evaluation_admin") -> String {
        Req.line(Req.envelope(id, "status", role: role))
    }
    static func refer(
        _ id: String, _ rid: String, claimant: [String: String], district: String,
        group: String = "disability", date: String, actor: String = "WC0001"
    ) -> String {
        Req.line(
            Req.envelope(
                id, "refer", role: "work_coach", actor: actor,
                [
                    "referral_id": rid, "claimant": claimant,
                    "district": district, "group": group, "referral_date": date,
                ]))
    }
    static func cancel(_ id: String, _ rid: String, reason: String = "claimant moved away") -> String {
        Req.line(Req.envelope(id, "cancel", role: "work_coach", ["referral_id": rid, "reason": reason]))
    }
    static func capacity(_ id: String, run: String, district: String, date: String, _ c: Int) -> String {
        Req.line(Req.gatekeep(id, run: run, district: district, date: date, capacity: c))
    }
    static func decide(_ id: String, run: String, district: String, date: String, _ d: [(String, Bool)]) -> String {
        Req.line(Req.decide(id, run: run, district: district, date: date, d))
    }
    static func outcome(
        _ id: String, rid: String? = nil, claimant: [String: String]? = nil,
        audience: String? = nil, name: String? = nil
    ) -> String {
        var f: [String: Any] = [:]
        if let rid { f["referral_id"] = rid }
        if let claimant { f["claimant"] = claimant }
        if let audience { f["audience"] = audience }
        if let name { f["name"] = name }
        return Req.line(Req.envelope(id, "outcome", role: "work_coach", f))
    }
    static func eligibility(_ id: String, claimant: [String: String], date: String) -> String {
        Req.line(Req.envelope(id, "eligibility", role: "work_coach", ["claimant": claimant, "date": date]))
    }
    static func disclose(_ id: String, _ rid: String, reason: String = "evaluation audit") -> String {
        Req.line(Req.envelope(id, "disclose", role: "work_coach", ["referral_id": rid, "reason": reason]))
    }
    static func optOut(_ id: String, claimant: [String: String], date: String) -> String {
        Req.line(Req.envelope(id, "opt_out", role: "evaluation_admin", ["claimant": claimant, "date": date]))
    }
    static func flag(_ id: String, _ rid: String, reason: String) -> String {
        Req.line(Req.envelope(id, "flag_error", role: "gatekeeper", ["referral_id": rid, "reason": reason]))
    }
    static func pending(_ id: String, district: String, date: String) -> String {
        Req.line(Req.envelope(id, "pending", role: "gatekeeper", ["district": district, "gk_date": date]))
    }
    static func nino(_ n: Int) -> [String: String] { ["nino": Req.nino(n)] }
    static func ref(_ n: Int) -> [String: String] { ["ref": String(700_000_000_000 + n)] }
}

/// A session being written: request lines, each remembered under a tag so its
/// response can be found again after the whole session has run.
struct Script {
    var lines: [String] = []
    private(set) var tags: [String: Int] = [:]
    private var counter = 0

    /// Appends a line; returns its index (the response has the same index).
    @discardableResult
    mutating func add(_ line: String, tag: String? = nil) -> Int {
        lines.append(line)
        if let tag { precondition(tags[tag] == nil, "tag \(tag) used twice"); tags[tag] = lines.count - 1 }
        return lines.count - 1
    }

    /// A fresh request id.
    mutating func nextID(_ prefix: String = "q") -> String {
        counter += 1
        return "\(prefix)-\(counter)"
    }

    func index(_ tag: String) -> Int { tags[tag]! }
}

extension TrialFolder {
    /// Runs a script through one `whp serve`; expects exit 0 and one response per line, ids echoed.
    func run(_ s: Script, now: String?, sourceLocation: SourceLocation = #_sourceLocation) throws -> [Resp] {
        let (r, out) = try serveStreaming(s.lines, now: now)
        #expect(r.status == 0, "serve exit \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
        try #require(
            out.count == s.lines.count, "\(out.count) responses to \(s.lines.count) requests; stderr: \(r.stderr)",
            sourceLocation: sourceLocation)
        let resps = out.map(Resp.init)
        for (i, line) in s.lines.enumerated() {
            let sent = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            if let id = sent?["id"] as? String, (1...128).contains(id.unicodeScalars.count) {
                #expect(resps[i].id == id, "response \(i) echoes \(resps[i].id ?? "null"), sent \(id)", sourceLocation: sourceLocation)
            }
        }
        return resps
    }

    /// The gatekeeper's `status` in a one-request session.
    func logHead(now: String = "2019-06-01T12:00:00Z") throws -> LogHead {
        let (_, out) = try serve([Q.status("head")], now: now)
        return try #require(out.first.map(Resp.init).flatMap(LogHead.init), "status answered \(out)")
    }
}

// MARK: - A calendar of our own (proleptic Gregorian, day numbers)

struct Day: Comparable, Hashable, CustomStringConvertible {
    /// Days since 1970-01-01.
    let n: Int
    init(n: Int) { self.n = n }

    init(_ iso: String) {
        let p = iso.split(separator: "-").map { Int($0)! }
        n = Day.daysFromCivil(p[0], p[1], p[2])
    }

    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    var ymd: (Int, Int, Int) {
        let z = n + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp + (mp < 10 ? 3 : -9)
        return (m <= 2 ? y + 1 : y, m, d)
    }

    var iso: String { let (y, m, d) = ymd; return String(format: "%04d-%02d-%02d", y, m, d) }
    var description: String { iso }

    static let months = [
        "January", "February", "March", "April", "May", "June", "July", "August",
        "September", "October", "November", "December",
    ]
    /// `13 November 2017`.
    var long: String { let (y, m, d) = ymd; return "\(d) \(Day.months[m - 1]) \(y)" }

    func plus(_ k: Int) -> Day { Day(n: n + k) }

    /// ALLOCATION.md §8: keep the day, clamp to the target month's end.
    func addingMonths(_ k: Int) -> Day {
        let (y, m, d) = ymd
        let total = (y * 12 + (m - 1)) + k
        let ty = total / 12, tm = total % 12 + 1
        let last = Day(n: Day.daysFromCivil(tm == 12 ? ty + 1 : ty, tm == 12 ? 1 : tm + 1, 1) - 1).ymd.2
        return Day(n: Day.daysFromCivil(ty, tm, min(d, last)))
    }

    static func < (a: Day, b: Day) -> Bool { a.n < b.n }
}

// MARK: - Independent re-derivation of ALLOCATION.md §2–§4

/// Written from the spec alone: its own `enc`/`u64`, its own `uniform`, its own
/// urn walk. Only HMAC-SHA256 itself comes from the project (`Crypto.hmac`).
enum Independent {
    static let arms = ["WHP", "PSC", "RCG"]

    static func u32(_ n: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: UInt32(n) >> (24 - 8 * $0)) } }
    static func u64(_ n: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: n >> (56 - 8 * UInt64($0))) } }
    static func enc(_ s: String) -> [UInt8] { let b = Array(s.utf8); return u32(b.count) + b }

    static func hmac(_ key: [UInt8], _ msg: [UInt8]) -> [UInt8] { Crypto.hmac(key: Bytes32(key)!, msg).bytes }

    static func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
    static func unhex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = s.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    /// §3 `uniform(seed, n)`.
    static func uniform(_ seed: [UInt8], _ n: UInt64) -> UInt64 {
        let r = (0 &- n) % n
        var j: UInt64 = 0
        while true {
            let h = hmac(seed, enc("whp/uniform/v1") + u64(j))
            let x = h.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            if x <= UInt64.max - r { return x % n }
            j += 1
        }
    }

    static func allocSeed(_ s: [UInt8], trial: String, stratum: String, index: Int) -> [UInt8] {
        hmac(s, enc("whp/alloc/v1") + enc(trial) + enc(stratum) + u64(UInt64(index)))
    }
    static func blockSeed(_ s: [UInt8], trial: String, stratum: String, block: Int) -> [UInt8] {
        hmac(s, enc("whp/block/v1") + enc(trial) + enc(stratum) + u64(UInt64(block)))
    }
    static func lotteryKey(_ s: [UInt8], trial: String, run: String, referral: String) -> [UInt8] {
        hmac(s, enc("whp/gatekeeper/v1") + enc(trial) + enc(run) + enc(referral))
    }

    /// Bytes compared as unsigned values, a proper prefix first.
    static func lessBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }

    /// One draw of a stratum.
    struct Draw: Equatable {
        var index: Int
        var arm: String
        var allocSeed: String
        var block: Int?
        var blockSize: Int?
        var position: Int?
    }

    /// Replays one stratum's allocations in order.
    struct Stratum {
        let seed: [UInt8]
        let trial: String
        let name: String
        /// Weights in canonical arm order (WHP, PSC, RCG).
        let weights: [Int]
        let multipliers: [Int]
        let permuted: Bool
        var next = 0
        var block = -1
        var blockStart = 0
        var blockSize = 0
        var dealt = [0, 0, 0]

        init(seed: [UInt8], trial: String, name: String, weights: [Int], multipliers: [Int], permuted: Bool) {
            self.seed = seed; self.trial = trial; self.name = name; self.weights = weights
            self.multipliers = multipliers; self.permuted = permuted
        }

        mutating func draw() -> Draw {
            let i = next
            next += 1
            let a = Independent.allocSeed(seed, trial: trial, stratum: name, index: i)
            let w = weights.reduce(0, +)
            if !permuted {
                var t = Int(Independent.uniform(a, UInt64(w)))
                for (k, wk) in weights.enumerated() {
                    if t < wk { return Draw(index: i, arm: Independent.arms[k], allocSeed: Independent.hex(a)) }
                    t -= wk
                }
                fatalError("walk fell off the urn")
            }
            if block < 0 || i >= blockStart + blockSize {
                blockStart = block < 0 ? 0 : blockStart + blockSize
                block += 1
                let k = Independent.blockSeed(seed, trial: trial, stratum: name, block: block)
                blockSize = w * multipliers[Int(Independent.uniform(k, UInt64(multipliers.count)))]
                dealt = [0, 0, 0]
            }
            let p = i - blockStart
            let m = blockSize / w
            var t = Int(Independent.uniform(a, UInt64(blockSize - p)))
            for k in 0..<3 {
                let r = weights[k] * m - dealt[k]
                if t < r {
                    dealt[k] += 1
                    return Draw(
                        index: i, arm: Independent.arms[k], allocSeed: Independent.hex(a),
                        block: block, blockSize: blockSize, position: p)
                }
                t -= r
            }
            fatalError("walk fell off the urn")
        }
    }
}

/// The shipped districts (district-config/districts.toml), as the tests model them.
struct DistrictModel {
    var id: String
    var psc: Bool
    var lottery: Bool
    /// WHP, PSC, RCG.
    var weights: [Int]

    static let shipped: [DistrictModel] = [
        DistrictModel(id: "lincolnshire-nottinghamshire-rutland", psc: true, lottery: true, weights: [1, 1, 1]),
        DistrictModel(id: "leicestershire-northants", psc: true, lottery: true, weights: [1, 1, 1]),
        DistrictModel(id: "dorset-wiltshire-hampshire-iow", psc: true, lottery: true, weights: [1, 1, 1]),
        DistrictModel(id: "devon-cornwall", psc: true, lottery: true, weights: [1, 1, 1]),
        DistrictModel(id: "example-north", psc: false, lottery: true, weights: [1, 0, 1]),
        DistrictModel(id: "example-south", psc: false, lottery: true, weights: [2, 0, 1]),
    ]
    static let pscIDs: Set<String> = Set(shipped.filter(\.psc).map(\.id))
}

/// The trial seeds the suites import (so draws can be re-derived).
enum Seeds {
    static let a = "5eed0000000000000000000000000000000000000000000000000000000000a1"
    static let b = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
}

/// Records one issue listing the first few problems (a long list would drown the report).
func expectNone(_ problems: [String], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    if !problems.isEmpty {
        Issue.record("\(problems.count) \(what); first: \(problems.prefix(4).joined(separator: " | "))", sourceLocation: sourceLocation)
    }
}

/// Reads a file as lines of JSON objects (an audit bundle's events.jsonl).
func jsonLines(_ url: URL) throws -> [[String: Any]] {
    let text = try String(contentsOf: url, encoding: .utf8)
    return try text.split(separator: "\n").map {
        try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
    }
}

/// Expects an error response with `code` (and `field`, when given).
func expectError(
    _ r: Resp, _ code: String, field: String? = nil, _ note: String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(r.code == code, "\(note) expected \(code): \(r.line)", sourceLocation: sourceLocation)
    if let field { #expect(r.field == field, "\(note) expected field \(field): \(r.line)", sourceLocation: sourceLocation) }
}

/// Expects a success; returns its result.
@discardableResult
func expectOK(_ r: Resp, _ note: String = "", sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
    #expect(r.ok, "\(note) expected ok: \(r.line)", sourceLocation: sourceLocation)
    return r.result
}

/// Expects an `eligibility` answer.
func expectEligibility(
    _ r: Resp, eligible: Bool, from: String?, _ note: String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(
        r.ok && r.result["eligible"] as? Bool == eligible && r.str("eligible_from") == from,
        "\(note) expected eligible=\(eligible) eligible_from=\(from ?? "absent"): \(r.line)", sourceLocation: sourceLocation)
}
