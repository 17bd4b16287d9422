import Foundation
import Testing
import WHPPostgres
import WHPTestSupport

/// The PostgreSQL store through the doors users use: `--store`, `migrate-store`,
/// and every command that reads a trial. (The whole stdio protocol suite, the
/// multi-instance suite and the kill -9 campaign run on PostgreSQL as well:
/// `scripts/test` runs them again with `WHP_TEST_BACKEND=postgres`.)
/// These tests need the server `scripts/test` starts; without it they fail
/// with that reason rather than pass by skipping.
@Suite("PostgreSQL store: migrate-store, verify, export, audit-bundle", .serialized)
struct PostgresStoreTests {
    static let now = "2018-01-31T12:00:00Z"
    static let seed = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

    /// A SQLite trial (whatever WHP_TEST_BACKEND says) with referrals, gatekeeper runs,
    /// allocations, a cancellation, an opt-out and a flag.
    static func servedTrial() throws -> TrialFolder {
        let t = try TrialFolder(sqliteOnly: true)
        try #require(try t.initialise(now: "2017-10-02T09:00:00Z", seedHex: seed).status == 0)
        let districts = ["devon-cornwall", "example-north", "leicestershire-northants", "example-south"]
        var lines: [String] = []
        for k in 0..<240 {
            lines.append(
                Req.line(
                    Req.refer(
                        "r\(k)", referral: "R\(k)", nino: Req.nino(k), district: districts[k % 4],
                        group: k % 3 == 0 ? "early_access" : "disability", date: "2017-11-\(10 + k % 15)")))
        }
        lines.append(Req.line(Req.envelope("c1", "cancel", role: "work_coach", ["referral_id": "R7", "reason": "moved away"])))
        for (j, d) in districts.enumerated() {
            lines.append(Req.line(Req.gatekeep("g\(j)", run: "run-\(j)", district: d, date: "2017-12-01", capacity: 40)))
        }
        lines.append(Req.line(Req.envelope("o1", "opt_out", role: "evaluation_admin", ["claimant": ["nino": Req.nino(12)], "date": "2018-01-05"])))
        lines.append(Req.line(Req.envelope("f1", "flag_error", role: "gatekeeper", ["referral_id": "R13", "reason": "other"])))
        let r = try runWHP(["serve"] + t.common, env: ["WHP_NOW": now], stdin: Data((lines.joined(separator: "\n") + "\n").utf8))
        try #require(r.status == 0, "\(r.stderr)")
        let failed = r.stdout.split(separator: "\n").filter { $0.contains("\"ok\":false") }
        try #require(failed.isEmpty, "the setup session failed: \(failed.prefix(3))")
        return t
    }

    /// `--config/--data` of `t` with the store at `store`.
    static func args(_ t: TrialFolder, store: String) -> [String] {
        ["--config", t.config.path, "--data", t.data.path, "--store", store]
    }

    static func checkpoint(_ t: TrialFolder, store: String) throws -> String {
        let r = try runWHP(["checkpoint"] + args(t, store: store))
        try #require(r.status == 0, "checkpoint on \(store): \(r.stderr)")
        return r.stdout
    }

    @Test("a trial moves SQLite → PostgreSQL → SQLite with equal heads, verifies on each, and keeps serving on PostgreSQL")
    func roundTrip() throws {
        let t = try Self.servedTrial()
        let pg = try TestBackend.createDatabase()
        defer { TestBackend.dropDatabase(pg) }

        let m = try runWHP(["migrate-store", "--from", t.data.path, "--to", pg])
        try #require(m.status == 0, "migrate-store: \(m.stdout) \(m.stderr)")
        #expect(m.stdout.contains("both heads"))
        #expect(try Self.checkpoint(t, store: pg) == Self.checkpoint(t, store: t.store.path), "the copy's head is the source's")

        let v = try runWHP(["verify"] + Self.args(t, store: pg) + ["--seeds", t.seeds.path, "--seed", t.seedFile.path])
        #expect(v.status == 0, "verify --seed on PostgreSQL: \(v.stdout) \(v.stderr)")

        // Export on both engines at the same head, with the same clock: the same bytes,
        // and the same export_made event, so the heads stay equal.
        let outSQLite = t.root.appendingPathComponent("export-sqlite").path, outPG = t.root.appendingPathComponent("export-pg").path
        for (store, out) in [(t.store.path, outSQLite), (pg, outPG)] {
            let e = try runWHP(["export"] + Self.args(t, store: store) + ["--out", out, "--no-progress"], env: ["WHP_NOW": Self.now])
            try #require(e.status == 0, "export on \(store): \(e.stderr)")
        }
        for file in ["allocations.csv", "codebook.md", "manifest.json"] {
            let a = try Data(contentsOf: URL(fileURLWithPath: outSQLite + "/" + file))
            let b = try Data(contentsOf: URL(fileURLWithPath: outPG + "/" + file))
            #expect(a == b, "\(file) differs between the engines")
        }
        #expect(try Self.checkpoint(t, store: pg) == Self.checkpoint(t, store: t.store.path))

        // The reports read the same on both.
        for report in [["report", "consort"], ["report", "balance"]] {
            let a = try runWHP(report + Self.args(t, store: t.store.path)), b = try runWHP(report + Self.args(t, store: pg))
            #expect(a.status == b.status && a.stdout == b.stdout, "\(report.joined(separator: " ")) differs: \(a.stderr) \(b.stderr)")
        }

        // The PostgreSQL trial goes on serving, then verifies; its audit bundle verifies on its own.
        var more: [String] = []
        for k in 300..<340 {
            more.append(Req.line(Req.refer("m\(k)", referral: "R\(k)", nino: Req.nino(k), district: "example-north", date: "2018-01-20")))
        }
        more.append(Req.line(Req.gatekeep("mg", run: "run-more", district: "example-north", date: "2018-01-25", capacity: 20)))
        let s = try runWHP(
            ["serve"] + Self.args(t, store: pg), env: ["WHP_NOW": "2018-02-01T09:00:00Z"],
            stdin: Data((more.joined(separator: "\n") + "\n").utf8))
        #expect(s.status == 0)
        #expect(s.stdout.split(separator: "\n").count == more.count && !s.stdout.contains("\"ok\":false"), "\(s.stdout.prefix(400))")
        let v2 = try runWHP(["verify", "--json"] + Self.args(t, store: pg) + ["--seeds", t.seeds.path, "--seed", t.seedFile.path])
        #expect(v2.status == 0, "verify after serving on PostgreSQL: \(v2.stdout)")
        let bundle = t.root.appendingPathComponent("bundle").path
        let b = try runWHP(["audit-bundle"] + Self.args(t, store: pg) + ["--seeds", t.seeds.path, "--out", bundle])
        try #require(b.status == 0, "audit-bundle on PostgreSQL: \(b.stderr)")
        let vb = try runWHP(["verify", "--bundle", bundle, "--seed", t.seedFile.path])
        #expect(vb.status == 0, "the PostgreSQL trial's bundle verifies: \(vb.stdout)")

        // And back to a new SQLite file.
        let back = t.root.appendingPathComponent("back.sqlite").path
        let m2 = try runWHP(["migrate-store", "--from", pg, "--to", back])
        try #require(m2.status == 0, "migrate-store back: \(m2.stdout) \(m2.stderr)")
        #expect(try Self.checkpoint(t, store: back) == Self.checkpoint(t, store: pg))
        let v3 = try runWHP(["verify"] + Self.args(t, store: back) + ["--seeds", t.seeds.path, "--seed", t.seedFile.path])
        #expect(v3.status == 0, "verify of the copy back: \(v3.stdout)")
    }

    @Test("migrate-store refuses a target that holds a trial, an existing file, and a source whose chain breaks; nothing is copied")
    func refusals() throws {
        let t = try Self.servedTrial()
        let pg = try TestBackend.createDatabase()
        defer { TestBackend.dropDatabase(pg) }
        try #require(try runWHP(["migrate-store", "--from", t.data.path, "--to", pg]).status == 0)
        let again = try runWHP(["migrate-store", "--from", t.data.path, "--to", pg])
        #expect(again.status == 1)
        #expect(again.stderr.contains("already holds a trial"), "\(again.stderr)")

        let existing = try runWHP(["migrate-store", "--from", pg, "--to", t.store.path])
        #expect(existing.status == 1)
        #expect(existing.stderr.contains("already exists"), "\(existing.stderr)")

        // An insider edits event 3's payload in the source: the copy is refused at that seq.
        try t.openStore().unsafeExecute("UPDATE events SET payload = replace(payload, 'disability', 'early_access') WHERE seq = 3")
        let fresh = try TestBackend.createDatabase()
        defer { TestBackend.dropDatabase(fresh) }
        let broken = try runWHP(["migrate-store", "--from", t.data.path, "--to", fresh])
        #expect(broken.status == 1)
        #expect(broken.stderr.contains("chain breaks at seq 3"), "\(broken.stderr)")
        let empty = try runWHP(["checkpoint"] + Self.args(t, store: fresh))
        #expect(empty.status == 2 && empty.stderr.contains("no trial_started"), "nothing was copied: \(empty.stdout) \(empty.stderr)")
    }

    @Test("verify on PostgreSQL names a tampered derived row and a tampered event at their seq")
    func tamperOnPostgres() throws {
        let t = try Self.servedTrial()
        let log = try readLog(t)
        let pg = try TestBackend.createDatabase()
        defer { TestBackend.dropDatabase(pg) }
        try #require(try runWHP(["migrate-store", "--from", t.data.path, "--to", pg]).status == 0)
        // R7 was referred and then cancelled: its row was last touched by the cancel.
        let cancelSeq = try #require(log.first { $0.type == "cancelled" }?.seq)
        let target = try TestBackend.openStore(pg)
        try target.unsafeExecute("UPDATE referrals SET cancel_reason = 'edited' WHERE referral_id = 'R7'")
        let v = try runWHP(["verify", "--json"] + Self.args(t, store: pg) + ["--seeds", t.seeds.path])
        #expect(v.status == 1)
        let report = try #require((try? JSONSerialization.jsonObject(with: Data(v.stdout.utf8))) as? [String: Any])
        let checks = (report["checks"] as? [[String: Any]]) ?? []
        let derived = try #require(checks.first { $0["name"] as? String == "derived_tables" })
        #expect(derived["ok"] as? Bool == false)
        #expect(derived["first_bad_seq"] as? Int == cancelSeq, "\(derived)")

        try target.unsafeExecute("UPDATE referrals SET cancel_reason = 'moved away' WHERE referral_id = 'R7'")
        try target.unsafeExecute("UPDATE events SET payload = replace(payload, '2017-11', '2017-12') WHERE seq = 5")
        let v2 = try runWHP(["verify", "--json"] + Self.args(t, store: pg) + ["--seeds", t.seeds.path])
        #expect(v2.status == 1)
        let checks2 = ((try? JSONSerialization.jsonObject(with: Data(v2.stdout.utf8))) as? [String: Any])?["checks"] as? [[String: Any]] ?? []
        #expect(checks2.first { $0["name"] as? String == "chain" }?["first_bad_seq"] as? Int == 5, "\(v2.stdout)")
    }

    @Test("--store errors say what is wrong, exit 2 (1 for serve's start-up guard), and never print a password")
    func storeErrors() throws {
        let t = try Self.servedTrial()
        let unreachable = "postgres://whp:sekrit-pw@127.0.0.1:1/nowhere?sslmode=disable"
        let v = try runWHP(["verify"] + Self.args(t, store: unreachable) + ["--seeds", t.seeds.path])
        #expect(v.status == 2)
        #expect(v.stderr.contains("cannot connect to postgres://whp@127.0.0.1:1/nowhere"), "\(v.stderr)")
        #expect(!(v.stdout + v.stderr).contains("sekrit"))
        let s = try runWHP(["serve"] + Self.args(t, store: unreachable), stdin: Data())
        #expect(s.status == 1, "\(s.stderr)")
        #expect(!(s.stdout + s.stderr).contains("sekrit"))

        let malformed = try runWHP(["checkpoint"] + Self.args(t, store: "postgres://whp@127.0.0.1:notaport/x"))
        #expect(malformed.status == 2 && malformed.stderr.contains("postgres://user@host:port/database"), "\(malformed.stderr)")
        let option = try runWHP(["checkpoint"] + Self.args(t, store: "postgres://whp@127.0.0.1:5432/x?timeout=3"))
        #expect(option.status == 2 && option.stderr.contains("only sslmode"), "\(option.stderr)")

        let empty = try TestBackend.createDatabase()
        defer { TestBackend.dropDatabase(empty) }
        let none = try runWHP(["checkpoint"] + Self.args(t, store: empty))
        #expect(none.status == 2 && none.stderr.contains("not initialised"), "\(none.stderr)")
    }
}

/// "A lost race retries transparently": with the chain lock switched off
/// (through the test seam `PostgresBackend.racingWriters`), two in-process
/// services really race for the next seq; the loser's transaction fails on
/// `events_pkey`, is rolled back and runs again. Every request is still
/// answered ok exactly once and the log is one chain.
@Suite("PostgreSQL: a lost race is retried", .serialized)
struct LostRaceTests {
    @Test("two instances without the chain lock: the loser retries, every answer ok, one chain")
    func racesAreRetried() throws {
        var sawRetry = false
        for round in 0..<5 where !sawRetry {
            let t = try TrialFolder(sqliteOnly: true)
            try #require(try t.initialise(now: "2017-10-02T09:00:00Z").status == 0)
            let pg = try TestBackend.createDatabase()
            defer { TestBackend.dropDatabase(pg) }
            try #require(try runWHP(["migrate-store", "--from", t.data.path, "--to", pg]).status == 0)
            let sessions = (0..<2).map { k in
                (0..<400).map { i in
                    Req.line(
                        Req.refer(
                            "k\(k)-\(i)", referral: "K\(k)-\(i)", nino: Req.nino(100_000 * (k + 1) + i),
                            district: "example-north", date: "2017-11-01"))
                }
            }
            let raceLogs = InMemoryLogs()
            let doors = try (0..<2).map { _ in
                try InProcessService(t, now: "2018-01-31T12:00:00Z", backend: try PostgresBackend.racingWriters(url: pg, logs: raceLogs))
            }
            nonisolated(unsafe) var results: [[String]] = [[], []]
            let lock = NSLock()
            DispatchQueue.concurrentPerform(iterations: 2) { k in
                // Groups of 100: the two writers interleave their commits.
                var answers: [String] = []
                for start in stride(from: 0, to: 400, by: 100) { answers += doors[k].send(Array(sessions[k][start..<start + 100])) }
                lock.lock(); results[k] = answers; lock.unlock()
            }
            for (k, answers) in results.enumerated() {
                #expect(
                    answers.count == 400 && answers.allSatisfy { $0.contains("\"ok\":true") },
                    "round \(round), instance \(k): \(answers.filter { !$0.contains("\"ok\":true") }.prefix(3)); \(doors[k].logs.messages.suffix(3))")
            }
            if raceLogs.messages.contains(where: { $0.contains("lost a race") }) { sawRetry = true }
            let v = try runWHP([
                "verify", "--config", t.config.path, "--data", t.data.path, "--store", pg,
                "--seeds", t.seeds.path, "--seed", t.seedFile.path,
            ])
            #expect(v.status == 0, "one chain after racing writers: \(v.stdout)")
            let head = try runWHP(["checkpoint", "--config", t.config.path, "--data", t.data.path, "--store", pg])
            #expect(head.stdout.contains("\"seq\":801"), "1 + 800 referrals, each once: \(head.stdout)")
        }
        #expect(sawRetry, "in five rounds the two instances never raced: the retry path was not exercised")
    }
}
