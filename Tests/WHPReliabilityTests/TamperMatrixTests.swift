import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore
import WHPTestSupport

/// The tamper matrix: one generated trial (referrals, cancellations, fifo,
/// lottery and manual gatekeeper runs, allocations in every district, opt-outs,
/// flags, disclosures), copied afresh for each case and changed with raw SQL as
/// an insider with write access to the file would. Every case must make
/// `whp verify --json --seed S --checkpoint C` exit 1 and name the right check
/// and first_bad_seq (C is a checkpoint of the untouched log, taken before).
///
/// Log tampering — change a payload, delete, reorder (swap two events' seq),
/// insert a forged event, truncate the tail — each at the start, the middle
/// and the end of the log; three insider variants that also re-compute every
/// later hash (the chain holds no secret); and derived rows — change, delete,
/// insert in `referrals`, `runs`, `strata`, `opt_outs` (first, middle, last
/// row) and `trial`. TamperTests (CLI suite) holds the single hand-written
/// cases; this is the systematic sweep.
@Suite("tamper matrix")
struct TamperMatrixTests {
    @Test("untampered copy verifies with every check", .tags(.tamper))
    func control() throws {
        let base = try BaseTrial.shared.get()
        let t = try base.copy()
        let v = try t.verifyReport(["--seed", t.seedFile.path, "--checkpoint", base.checkpointFile(in: t)])
        #expect(v.status == 0 && v.ok, "\(v)")
        #expect(v.events == base.n)
        for name in [
            "chain", "config_hash", "draws", "locks", "psc", "recorded_at", "derived_tables", "commitment",
            "derived_seeds", "lottery", "checkpoint", "gatekeeper",
        ] {
            #expect(v.checks[name]?.ok == true, "\(name): \(v)")
        }
        // The base trial exercises what the matrix needs.
        let types = Set(base.log.map(\.type))
        #expect(
            types.isSuperset(of: [
                "trial_started", "referred", "cancelled", "gatekeeper_decision", "allocated",
                "opted_out", "flagged_in_error", "disclosed",
            ]))
        #expect(Set(base.log.compactMap { $0.type == "gatekeeper_decision" ? $0.payload["rule"] : nil }) == ["fifo", "lottery", "manual"])
        #expect(base.log.last?.type == "flagged_in_error", "the newest event changes a derived table")
        #expect(base.rows["strata"]!.count == 6 && base.rows["opt_outs"]!.count == 3 && base.rows["runs"]!.count >= 8)
    }

    @Test("tampering is caught by verify with the right check and first_bad_seq", .tags(.tamper), arguments: TamperCase.all)
    func caught(_ c: TamperCase) throws {
        let base = try BaseTrial.shared.get()
        let t = try base.copy()
        let plan = try c.resolve(base)
        do {
            let store = try t.openStore()
            try store.unsafeExecute(plan.sql)
            if let from = plan.rehashFrom { try rehash(store, from: from) }
        }
        var args = ["--seed", t.seedFile.path]
        if c.withCheckpoint { args += ["--checkpoint", try base.checkpointFile(in: t)] }
        let v = try t.verifyReport(args)
        #expect(v.status == 1, "\(c.name): verify must exit 1, got \(v.status): \(v)")
        #expect(!v.ok)
        for (check, seq) in plan.fails {
            guard let got = v.checks[check] else { Issue.record("\(c.name): no check \(check) in \(v)"); continue }
            #expect(!got.ok, "\(c.name): check \(check) should fail: \(v)")
            if let seq { #expect(got.seq == seq, "\(c.name): \(check) first_bad_seq \(got.seq.map(String.init) ?? "none"), expected \(seq) — \(got.detail)") }
        }
        for check in plan.passes { #expect(v.checks[check]?.ok == true, "\(c.name): \(check) should still pass: \(v)") }
        if plan.exclusive {
            #expect(v.failed == Set(plan.fails.map(\.0)), "\(c.name): only \(plan.fails.map(\.0)) should fail: \(v)")
        }
        TamperLedger.shared.record(c.name, failed: v.failed.sorted().map { "\($0)@\(v.checks[$0]?.seq.map(String.init) ?? "-")" })
    }
}

/// Report precision (found by the matrix; fixed in 5b6a503): with the newest
/// event deleted and no checkpoint, only `derived_tables` can see it. It used
/// to name the affected row's *previous* last_seq (an intact, verifying event)
/// because `Store.firstDifference` took MIN(last_seq) over both sides of the
/// difference. Now, for a row that differs, the later of the two sides'
/// `last_seq` is blamed (the event the log no longer explains), and the
/// earliest such event over all rows is reported: the missing event itself.
@Suite("verify report precision")
struct ReportPrecisionTests {
    @Test("derived_tables names the missing newest event, not an intact earlier one")
    func deletedNewestEventIsNamed() throws {
        let base = try BaseTrial.shared.get()
        let t = try base.copy()
        let newest = base.event(base.n)
        let rid = try #require(newest.payload["referral_id"], "the newest event is a flag on a referral")
        let previous = try #require(base.log.last { $0.seq < base.n && $0.payload["referral_id"] == rid }).seq
        do { try t.openStore().unsafeExecute("DELETE FROM events WHERE seq = \(base.n);") }
        let v = try t.verifyReport(["--seed", t.seedFile.path])
        #expect(v.status == 1)
        #expect(v.failed == ["derived_tables"], "the chain cannot see a deleted newest event; the derived tables can: \(v)")
        #expect(v.checks["derived_tables"]?.seq == base.n, "first_bad_seq should be the missing event \(base.n); \(previous) is intact: \(v)")
    }
}

extension Tag {
    @Tag static var tamper: Self
}

/// What each case broke, for the report (docs/reliability.md).
final class TamperLedger: @unchecked Sendable {
    static let shared = TamperLedger()
    private let lock = NSLock()
    private var rows: [String: [String]] = [:]
    func record(_ name: String, failed: [String]) {
        lock.withLock { rows[name] = failed }
        if let path = Env.vars["WHP_TAMPER_TABLE"] {
            let text = lock.withLock { rows.sorted { $0.key < $1.key }.map { "| \($0.key) | \($0.value.joined(separator: ", ")) |" }.joined(separator: "\n") }
            try? (text + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
    }
}

// MARK: - The base trial

final class BaseTrial: @unchecked Sendable {
    static let shared = Result { try BaseTrial() }

    let trial: TrialFolder
    let log: [LogEvent]
    let checkpointText: String
    var n: Int { log.count }
    var m: Int { log.count / 2 }
    /// Derived rows as (key, last_seq), derived independently from the log, sorted by last_seq.
    let rows: [String: [(key: String, lastSeq: Int)]]

    /// Built once on SQLite; each copy goes to the engine under test.
    init() throws {
        let t = try RelTrial.make(sqliteOnly: true)
        let d = RelTrial.districts
        var a: [String] = []
        for i in 0..<84 {
            a.append(
                R.refer(
                    "a\(i)", "T-\(i)", claimant: R.nino(5000 + i), district: d[i % 6], group: RelTrial.groups[i % 2],
                    date: "2019-01-\(String(format: "%02d", 1 + i % 28))"))
        }
        for rid in ["T-0", "T-7", "T-13"] { a.append(R.cancel("c-\(rid)", rid)) }
        for (k, district) in d.enumerated() where district != "example-north" {
            a.append(R.capacity("g\(k)", run: "RUN-\(district)", district: district, date: "2019-02-01", 5))
        }
        let north = (0..<84).filter { $0 % 6 == 4 }.map { "T-\($0)" }
        a.append(
            R.decide(
                "manual", run: "RUN-north-manual", district: "example-north", date: "2019-02-01",
                north.enumerated().map { ($0.element, $0.offset % 2 == 0) }))
        // A second wave, so strata run over several blocks.
        for i in 84..<120 {
            a.append(R.refer("a\(i)", "T-\(i)", claimant: R.nino(5000 + i), district: d[i % 3], group: RelTrial.groups[i % 2], date: "2019-02-10"))
        }
        for k in 0..<3 { a.append(R.capacity("h\(k)", run: "RUN2-\(d[k])", district: d[k], date: "2019-02-15", 8)) }
        let first = try t.session(a)
        guard first.status == 0, first.responses.count == a.count, first.responses.allSatisfy({ Reply($0).ok }) else {
            throw ChildError("base trial, session 1: \(first.responses.filter { !Reply($0).ok }.prefix(3)) \(first.stderr)")
        }
        let decided = first.responses.map(Reply.init).flatMap { $0.strings("selected") + $0.strings("not_selected") }
        var b: [String] = []
        b.append(R.optOut("o1", claimant: R.nino(5001), date: "2019-03-01"))
        b.append(R.disclose("x1", decided[0]))
        b.append(R.optOut("o2", claimant: R.nino(5040), date: "2019-03-02"))
        b.append(R.flag("f1", decided[1], reason: "ineligible"))
        b.append(R.refer("late", "T-late", claimant: R.nino(7000), district: "devon-cornwall", date: "2019-03-01"))
        b.append(R.optOut("o3", claimant: ["ref": "123456789012"], date: "2019-03-03"))
        b.append(R.disclose("x2", decided[5]))
        b.append(R.flag("f2", decided[7], reason: "wrong_group"))
        let second = try t.session(b)
        guard second.status == 0, second.responses.count == b.count, second.responses.allSatisfy({ Reply($0).ok }) else {
            throw ChildError("base trial, session 2: \(second.responses) \(second.stderr)")
        }
        let cp = try execWHP(["checkpoint"] + t.common)
        guard cp.status == 0 else { throw ChildError("checkpoint: \(cp.stderr)") }
        trial = t
        checkpointText = cp.stdout.joined(separator: "\n") + "\n"
        log = try readLog(t)

        var referrals: [String: Int] = [:], runs: [String: Int] = [:], strata: [String: Int] = [:], optOuts: [String: Int] = [:]
        for e in log {
            switch e.type {
            case "referred", "cancelled", "gatekeeper_decision", "allocated", "flagged_in_error":
                if let r = e.payload["referral_id"] { referrals[r] = e.seq }
                if e.type == "gatekeeper_decision", let run = e.payload["run_id"] { runs[run] = e.seq }
                if e.type == "allocated", let s = e.payload["stratum"] { strata[s] = e.seq }
            case "opted_out":
                if let c = e.payload["claimant"], optOuts[c] == nil { optOuts[c] = e.seq }
            default: break
            }
        }
        func sorted(_ d: [String: Int]) -> [(key: String, lastSeq: Int)] {
            d.map { (key: $0.key, lastSeq: $0.value) }.sorted { ($0.lastSeq, $0.key) < ($1.lastSeq, $1.key) }
        }
        rows = ["referrals": sorted(referrals), "runs": sorted(runs), "strata": sorted(strata), "opt_outs": sorted(optOuts)]
    }

    /// A fresh copy of the trial folder (config, keys, store, commitment).
    func copy() throws -> TrialFolder {
        let t = try TrialFolder()
        let fm = FileManager.default
        try fm.removeItem(at: t.config)
        try fm.copyItem(at: trial.config, to: t.config)
        try fm.copyItem(at: trial.data, to: t.data)
        try fm.copyItem(at: trial.seeds, to: t.seeds)
        for key in ["seed.hex", "pseudonym.key", "evaluation.key"] {
            let p = t.data.appendingPathComponent("keys/\(key)").path
            if fm.fileExists(atPath: p) { try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: p) }
        }
        if let url = t.postgresURL {
            let m = try execWHP(["migrate-store", "--from", trial.data.path, "--to", url])
            guard m.status == 0 else { throw ChildError("migrate-store to the copy: \(m.stderr)") }
        }
        return t
    }

    func checkpointFile(in t: TrialFolder) throws -> String {
        let f = t.root.appendingPathComponent("checkpoint.json")
        try checkpointText.write(to: f, atomically: true, encoding: .utf8)
        return f.path
    }

    func event(_ seq: Int) -> LogEvent { log[seq - 1] }

    /// The first event at or after `seq` that carries an actor.
    func withActor(from seq: Int) -> LogEvent { log[(seq - 1)...].first { $0.payload["actor"] != nil }! }

    func row(_ table: String, _ pos: Position) -> (key: String, lastSeq: Int) {
        let r = rows[table]!
        switch pos {
        case .start: return r.first!
        case .middle: return r[r.count / 2]
        case .end: return r.last!
        }
    }

    func seq(_ pos: Position) -> Int {
        switch pos {
        case .start: 1;
        case .middle: m;
        case .end: n
        }
    }
}

// MARK: - Cases

enum Position: String, CaseIterable, Sendable { case start, middle, end }

struct TamperPlan {
    var sql: String
    /// Checks that must fail, with their first_bad_seq (nil: any).
    var fails: [(String, Int?)]
    var passes: [String] = []
    /// Only the listed checks may fail.
    var exclusive = false
    /// Re-compute every stored hash from this seq on, as an insider would.
    var rehashFrom: Int?
}

struct TamperCase: Sendable, CustomTestStringConvertible {
    let name: String
    var withCheckpoint = true
    let resolve: @Sendable (BaseTrial) throws -> TamperPlan
    var testDescription: String { name }

    static let forgedClaimant = String(repeating: "ab", count: 32)

    static func forgedReferred(seq: Int) -> String {
        let p = PayloadJSON.encode([
            "referral_id": "FORGED-E\(seq)", "claimant": forgedClaimant, "district": "devon-cornwall",
            "group": "disability", "referral_date": "2019-01-05", "actor": "work_coach:WC0001",
            "recorded_at": RelTrial.now,
        ])
        return "INSERT INTO events(seq, type, payload, hash) VALUES (\(seq), 'referred', \(sqlQuote(p)), \(sqlQuote(String(repeating: "5a", count: 32))));"
    }

    /// Moves events seq ≥ from by `by` (two steps: seq is the primary key).
    static func shift(from: Int, by: Int) -> String {
        "UPDATE events SET seq = -seq WHERE seq >= \(from); UPDATE events SET seq = -seq + \(by) WHERE seq < 0;"
    }

    static func swap(_ a: Int, _ b: Int) -> String {
        "UPDATE events SET seq = -1 WHERE seq = \(a); UPDATE events SET seq = \(a) WHERE seq = \(b); UPDATE events SET seq = \(b) WHERE seq = -1;"
    }

    static var log: [TamperCase] {
        var out: [TamperCase] = []
        for pos in Position.allCases {
            out.append(
                TamperCase(name: "log: change a payload at the \(pos)") { b in
                    let target = pos == .start ? b.event(1) : pos == .middle ? b.withActor(from: b.m) : b.event(b.n)
                    var p = target.payload
                    if pos == .start { p["recorded_at"] = "2018-12-01T09:00:01Z" } else { p["actor"] = p["actor"]! + "X" }
                    return TamperPlan(
                        sql: "UPDATE events SET payload = \(sqlQuote(PayloadJSON.encode(p))) WHERE seq = \(target.seq);",
                        fails: [("chain", target.seq)], exclusive: true)
                })
            out.append(
                TamperCase(name: "log: delete an event at the \(pos)", withCheckpoint: pos != .end) { b in
                    let s = b.seq(pos)
                    // The newest event deleted, no checkpoint: the chain cannot see it; the derived tables can.
                    // (derived_tables names the missing event itself: see ReportPrecisionTests.)
                    let fails: [(String, Int?)] = pos == .end ? [("derived_tables", s)] : [("chain", s)]
                    return TamperPlan(sql: "DELETE FROM events WHERE seq = \(s);", fails: fails, passes: pos == .end ? ["chain"] : [])
                })
            out.append(
                TamperCase(name: "log: swap two events' seq at the \(pos)") { b in
                    let s = pos == .end ? b.n - 1 : b.seq(pos)
                    var fails: [(String, Int?)] = [("chain", s)]
                    if pos == .end { fails.append(("checkpoint", b.n)) }
                    return TamperPlan(sql: swap(s, s + 1), fails: fails)
                })
            out.append(
                TamperCase(name: "log: insert a forged event at the \(pos)") { b in
                    let s = pos == .end ? b.n + 1 : b.seq(pos)
                    var fails: [(String, Int?)] = [("chain", s)]
                    if pos != .end { fails.append(("checkpoint", b.n)) }
                    return TamperPlan(sql: shift(from: s, by: 1) + forgedReferred(seq: s), fails: fails)
                })
            out.append(
                TamperCase(name: "log: truncate the tail at the \(pos) (checkpoint)") { b in
                    let keep = pos == .start ? 1 : pos == .middle ? b.m : b.n - 1
                    return TamperPlan(
                        sql: "DELETE FROM events WHERE seq > \(keep);", fails: [("checkpoint", b.n), ("derived_tables", pos == .end ? b.n : nil)],
                        passes: ["chain"])
                })
        }
        // The insider re-computes every later hash: the chain passes; the checkpoint
        // (and what the events mean) still catch it.
        out.append(
            TamperCase(name: "log, re-hashed: delete a middle event and renumber") { b in
                TamperPlan(
                    sql: "DELETE FROM events WHERE seq = \(b.m);" + shift(from: b.m + 1, by: -1),
                    fails: [("checkpoint", b.n), ("derived_tables", nil)], passes: ["chain"], rehashFrom: b.m)
            })
        out.append(
            TamperCase(name: "log, re-hashed: insert a forged referral in the middle") { b in
                TamperPlan(
                    sql: shift(from: b.m, by: 1) + forgedReferred(seq: b.m),
                    fails: [("checkpoint", b.n), ("derived_tables", b.m)], passes: ["chain"], rehashFrom: b.m)
            })
        out.append(
            TamperCase(name: "log, re-hashed: swap two referrals in the middle") { b in
                // Two adjacent `referred` events: swapping them changes nothing but their order.
                let s = b.log[(b.m - 1)...].first { $0.type == "referred" && b.event($0.seq + 1).type == "referred" }!.seq
                // Their rows' referred_seq differ from the rebuild: reported at the smaller of the two rows' last_seq.
                let ids = [b.event(s), b.event(s + 1)].compactMap { $0.payload["referral_id"] }
                let lastSeq = b.rows["referrals"]!.filter { ids.contains($0.key) }.map(\.lastSeq).min()
                return TamperPlan(sql: swap(s, s + 1), fails: [("checkpoint", b.n), ("derived_tables", lastSeq)], passes: ["chain"], rehashFrom: s)
            })
        return out
    }

    static var derived: [TamperCase] {
        var out: [TamperCase] = []
        let tables: [(table: String, key: String, change: String, insert: @Sendable (Int) -> String)] = [
            (
                "referrals", "referral_id", "grp = CASE grp WHEN 'disability' THEN 'early_access' ELSE 'disability' END",
                { s in
                    "INSERT INTO referrals(referral_id, referred_seq, claimant, person, district, grp, referral_date, status, disclosed, last_seq) VALUES ('FORGED-ROW', \(1_000_000 + s), '\(forgedClaimant)', '\(forgedClaimant)', 'devon-cornwall', 'disability', '2019-01-05', 'awaiting_gatekeeper', 0, \(s));"
                }
            ),
            (
                "runs", "run_id", "capacity = COALESCE(capacity, 0) + 1",
                { s in
                    "INSERT INTO runs(run_id, district, gk_date, rule, capacity, first_seq, last_seq) VALUES ('FORGED-RUN', 'devon-cornwall', '2019-02-01', 'lottery', 3, \(s), \(s));"
                }
            ),
            (
                "strata", "stratum", "dealt_whp = dealt_whp + 1",
                { s in
                    "INSERT INTO strata(stratum, next_index, block, block_start, block_size, dealt_whp, dealt_psc, dealt_rcg, last_seq) VALUES ('forged-stratum', 1, 0, 0, 3, 1, 0, 0, \(s));"
                }
            ),
            (
                "opt_outs", "claimant", "date = '2019-03-31'",
                { s in
                    "INSERT INTO opt_outs(claimant, date, last_seq) VALUES ('\(forgedClaimant)', '2019-03-01', \(s));"
                }
            ),
        ]
        for t in tables {
            for pos in Position.allCases {
                out.append(
                    TamperCase(name: "\(t.table): change the \(pos) row") { b in
                        let r = b.row(t.table, pos)
                        return TamperPlan(
                            sql: "UPDATE \(t.table) SET \(t.change) WHERE \(t.key) = \(sqlQuote(r.key));",
                            fails: [("derived_tables", r.lastSeq)], exclusive: true)
                    })
                out.append(
                    TamperCase(name: "\(t.table): delete the \(pos) row") { b in
                        let r = b.row(t.table, pos)
                        return TamperPlan(
                            sql: "DELETE FROM \(t.table) WHERE \(t.key) = \(sqlQuote(r.key));",
                            fails: [("derived_tables", r.lastSeq)], exclusive: true)
                    })
                out.append(
                    TamperCase(name: "\(t.table): insert a row at the \(pos)") { b in
                        let s = pos == .start ? 2 : b.seq(pos)
                        return TamperPlan(sql: t.insert(s), fails: [("derived_tables", s)], exclusive: true)
                    })
            }
        }
        out.append(
            TamperCase(name: "trial: change the policy row") { _ in
                TamperPlan(
                    sql: "UPDATE trial SET frontline_rcg = CASE frontline_rcg WHEN 'dcams' THEN 'hidden' ELSE 'dcams' END;", fails: [("derived_tables", 1)],
                    exclusive: true)
            })
        return out
    }

    static let all: [TamperCase] = log + derived
}
