import Foundation
import Testing
import WHPTestSupport
#if canImport(Glibc)
    import Glibc
#endif

/// Faults of the real database (RULES2 R10's auditor must find nothing
/// missing): the PostgreSQL server is killed (SIGKILL of the postmaster) while
/// two `whp serve` instances pipeline referrals and gatekeeper runs into one
/// trial, and started again. Afterwards:
///
/// - nothing acknowledged is lost: a fresh `serve` replaying every `ok`
///   answer gets it back byte for byte and appends nothing;
/// - every request was answered, `ok` or `internal` (no other code: every
///   request is valid and unique; only a capacity run may find nothing
///   pending, `wrong_state`), and each one answered `internal` succeeds
///   when it is sent again (it had no effect, or its effect is found by its
///   idempotency key);
/// - both instances recover by themselves: the same processes answer `ok`
///   again after every restart, and exit 0 at the end of their input;
/// - the log holds each referral once, and `verify --seed` passes.
///
/// The test kills a server of its own (`scripts/postgres start|kill|restart`
/// in a temporary folder), never the shared one at `WHP_TEST_POSTGRES_URL`:
/// the other PostgreSQL suites run beside it. It runs with
/// `WHP_TEST_BACKEND=postgres`; `WHP_PG_RESTARTS=N` sets the number of
/// restarts (2 here, ≥ 50 in `scripts/crash-soak`).
@Suite("PostgreSQL server killed and restarted under two serve instances", .enabled(if: TestBackend.current == .postgres))
struct PostgresRestartTests {
    /// What an instance that stopped answering was doing, written to a file
    /// that outlives the test (its path goes to stderr): every thread's stack
    /// twice, a second apart (by `gdb` where it is installed), its CPU time
    /// and open files, and what the server's backends were waiting for.
    func diagnose(_ children: [Child], server: PrivatePostgres) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("whp-pg-restart-diagnosis-\(getpid()).txt").path
        var text = ""
        let sql = """
            SELECT pid, state, wait_event_type, wait_event, backend_xid, xact_start, left(query, 80) FROM pg_stat_activity WHERE datname IS NOT NULL;
            SELECT locktype, objid, pid, mode, granted FROM pg_locks WHERE locktype = 'advisory';
            """
        text += "== server\n" + ((try? PrivatePostgres.run(["psql", server.adminURL.components(separatedBy: "?")[0], "-Atc", sql])) ?? "(psql failed)")
        for round in 0..<2 {
            for (k, c) in children.enumerated() {
                text += "\n== instance \(k) pid \(c.pid), round \(round)\n"
                text += ((try? String(contentsOfFile: "/proc/\(c.pid)/stat", encoding: .utf8)) ?? "") + "\n"
                text += ((try? PrivatePostgres.run(["ls", "-l", "/proc/\(c.pid)/fd"])) ?? "") + "\n"
                // Each descriptor's flags (O_NONBLOCK is 04000) and each thread's CPU time and wait channel.
                text +=
                    ((try? PrivatePostgres.run([
                        "sh", "-c",
                        "grep -H flags /proc/\(c.pid)/fdinfo/*; for t in /proc/\(c.pid)/task/*; do echo $t $(cut -d' ' -f14,15 $t/stat) $(cat $t/wchan); done",
                    ])) ?? "") + "\n"
                if FileManager.default.isExecutableFile(atPath: "/usr/bin/gdb") {
                    text += (try? PrivatePostgres.run(["gdb", "-p", "\(c.pid)", "-batch", "-ex", "thread apply all bt 60"])) ?? "(gdb failed)"
                }
            }
            sleep(1)
        }
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test func postmasterKilledWhileTwoInstancesPipeline() throws {
        let restarts = max(Env.int("WHP_PG_RESTARTS") ?? 2, 1)
        let seed = runSeed()
        let server = try PrivatePostgres.start()
        defer { server.stop() }
        let url = try server.createDatabase("whp_restart")
        let trial = try RestartTrial(url: url)

        let errFiles = (0..<2).map { trial.root.appendingPathComponent("serve-\($0).err").path }
        let children = try (0..<2).map { try Child(["serve"] + trial.common, env: ["WHP_NOW": RelTrial.now], stderrPath: errFiles[$0]) }
        let streams = (0..<2).map { Stream(writer: $0, seed: seed &+ UInt64($0)) }
        for (k, c) in children.enumerated() {
            c.write(R.status("ready-\(k)"))
            var ready: [String] = []
            while ready.isEmpty, c.pump(timeout: 10) { ready = c.takeLines() }
            try #require(ready.count == 1 && Reply(ready[0]).ok, "instance \(k) did not start: \(ready)")
        }
        let writers = zip(children, streams).map { c, s in onThread { s.write(to: c) } }
        let readers = zip(children, streams).map { c, s in onThread { s.read(from: c) } }

        // Each restart waits until both instances answered `ok` after the last
        // one (so they recovered by themselves), then kills the postmaster
        // after a random further delay, keeps it down a moment while requests
        // keep coming, and starts it again.
        var rng = SplitMix(seed)
        var problems: [String] = []
        var killedPIDs: Set<String> = []
        var slowestRecovery = 0.0
        for r in 0..<restarts {
            let marks = streams.map(\.answered)
            let back = Date()
            for (k, s) in streams.enumerated() where !s.waitForOK(after: marks[k], timeout: 60) {
                problems.append("restart \(r): instance \(k) answered no ok within 60 s of the server's return")
            }
            guard problems.isEmpty else { break }
            if r > 0 { slowestRecovery = max(slowestRecovery, Date().timeIntervalSince(back)) }
            usleep(UInt32(rng.int(20_000...300_000)))
            let killed = try server.killPostmaster()
            killedPIDs.insert(killed)
            usleep(UInt32(rng.int(0...400_000)))
            try server.restart()
            if restarts > 2 { Env.progress("[pg-restart \(r + 1)/\(restarts)] postmaster \(killed) killed and restarted; answers \(streams.map(\.answered))") }
        }
        // After the last restart both must answer ok again, with no restart of their own.
        let marks = streams.map(\.answered)
        for (k, s) in streams.enumerated() where !s.waitForOK(after: marks[k], timeout: 60) {
            problems.append("after the last restart: instance \(k) answered no ok within 60 s")
        }
        streams.forEach { $0.stop() }
        // An instance that stopped answering stops reading too, and its writer
        // would wait on a full pipe for ever: the test fails, it does not hang.
        if !problems.isEmpty {
            Env.progress("pg-restart: \(problems.joined(separator: "; "))")
            Env.progress("pg-restart: an instance stopped answering; diagnosis in \(diagnose(children, server: server))")
            children.forEach { $0.kill9() }
        }
        writers.forEach { $0.wait() }
        readers.forEach { $0.wait() }
        let statuses = children.map { $0.wait() }
        let stderrs = errFiles.map { (try? String(contentsOfFile: $0, encoding: .utf8)) ?? "" }
        for (k, st) in statuses.enumerated() where st != 0 {
            problems.append("instance \(k) exited \(st) (it must ride out the restarts): \(stderrs[k].suffix(2000))")
        }
        #expect(problems.isEmpty || killedPIDs.count == restarts, "each restart killed a new postmaster: \(killedPIDs)")

        // Every request answered at its position: `ok`, `internal`, or for a capacity run with nothing pending `wrong_state`.
        var acked: [(kind: Kind, line: String, answer: Reply)] = []
        var nothingPending = 0
        var failedLines: [String] = []
        for (k, s) in streams.enumerated() {
            let (sent, answers) = s.snapshot()
            if sent.count != answers.count { problems.append("instance \(k): \(sent.count) requests sent, \(answers.count) answered") }
            for (req, line) in zip(sent, answers) {
                let a = Reply(line)
                if a.id != req.id { problems.append("instance \(k): answer \(line) for request \(req.id)") }
                if a.ok {
                    acked.append((req.kind, req.line, a))
                } else if a.code == "internal" {
                    failedLines.append(req.line)
                } else if req.kind == .gatekeep && a.code == "wrong_state" {
                    // A capacity run in a district whose pending referrals another
                    // run had just decided: nothing to decide is a right answer
                    // (seen once in a 50-restart soak, with the writers' window).
                    nothingPending += 1
                } else {
                    problems.append("instance \(k): \(req.line) answered \(line)")
                }
            }
        }
        let totalSent = streams.reduce(0) { $0 + $1.snapshot().sent.count }
        #expect(!failedLines.isEmpty, "some requests met the dead server (else the kill missed the stream)")

        // Nothing acknowledged is lost: the replay gives every first answer and appends nothing.
        problems += try trial.replay(acked)
        // Every request answered `internal` succeeds when sent again.
        let retry = try trial.session(failedLines)
        if retry.status != 0 || retry.responses.count != failedLines.count {
            problems.append("the retry serve exited \(retry.status) with \(retry.responses.count)/\(failedLines.count) answers: \(retry.stderr)")
        }
        for (line, answer) in zip(failedLines, retry.responses) where !Reply(answer).ok {
            problems.append("retry of a request answered internal: \(line) → \(answer)")
        }

        // The log holds every referral once, and every one sent.
        let log = try trial.log()
        var referred: [String: Int] = [:]
        for e in log where e.type == "referred" { referred[e.referralID ?? "", default: 0] += 1 }
        let twice = referred.filter { $0.value > 1 }.keys.sorted()
        if !twice.isEmpty { problems.append("referred more than once: \(twice.prefix(5))") }
        let sentReferrals = Set(streams.flatMap { $0.snapshot().sent.compactMap(\.referralID) })
        let missing = sentReferrals.subtracting(referred.keys)
        if !missing.isEmpty { problems.append("\(missing.count) referrals sent are not in the log, e.g. \(missing.sorted().prefix(5))") }

        let v = try trial.verifyReport(["--seed", trial.folder.seedFile.path])
        if !(v.status == 0 && v.ok) { problems.append("verify --seed after the restarts: \(v)") }

        let summary = """
            pg-restart summary: restarts=\(restarts) requests_sent=\(totalSent) acknowledged_ok=\(acked.count) \
            answered_internal=\(failedLines.count) retried_ok=\(zip(failedLines, retry.responses).filter { Reply($0.1).ok }.count) \
            events=\(log.count) runs_with_nothing_pending=\(nothingPending) slowest_recovery_s=\(String(format: "%.1f", slowestRecovery)) verify=\(v.ok ? "ok" : "FAILED") problems=\(problems.count) seed=\(String(seed, radix: 16))
            """
        Env.progress(summary)
        #expect(problems.isEmpty, "\(summary)\n\(problems.prefix(20).joined(separator: "\n"))")
    }
}

/// The trial of the restart test: the test config (dcams, one fifo district)
/// in a temporary folder, its events on the private server.
struct RestartTrial {
    let folder: TrialFolder
    let url: String
    var root: URL { folder.root }
    var common: [String] { folder.common + ["--store", url] }

    init(url: String) throws {
        self.url = url
        folder = try TrialFolder.withFifo(["example-north"], sqliteOnly: true)
        let seedFile = folder.root.appendingPathComponent("imported-seed.hex")
        try (RelTrial.seedHex + "\n").write(to: seedFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: seedFile.path)
        let r = try execWHP(
            ["init"] + common + ["--seeds", folder.seeds.path, "--import-seed", seedFile.path], env: ["WHP_NOW": RelTrial.initNow])
        guard r.status == 0 else { throw ChildError("init on PostgreSQL failed: \(r.stderr)") }
    }

    /// One serve over `lines`; an hour at most (the 50-restart soak replays some 100,000 requests).
    func session(_ lines: [String]) throws -> (status: Int32, responses: [String], stderr: String) {
        let r = try execWHP(
            ["serve"] + common, env: ["WHP_NOW": RelTrial.now], stdin: Array((lines.joined(separator: "\n") + "\n").utf8), timeout: 3600)
        return (r.status, r.stdout, r.stderr)
    }

    func verifyReport(_ extra: [String] = []) throws -> Report {
        let r = try execWHP(["verify", "--json"] + common + ["--seeds", folder.seeds.path] + extra, timeout: 3600)
        return try Report(status: r.status, text: r.stdout.joined(separator: "\n"), stderr: r.stderr)
    }

    /// `type` and `referral_id` of every event, read with psql (not the code under test).
    func log() throws -> [(type: String, referralID: String?)] {
        let out = try PrivatePostgres.run(
            [
                "psql", url.components(separatedBy: "?")[0], "-v", "ON_ERROR_STOP=1", "-qAtF", "\t", "-c",
                "SELECT type, COALESCE(payload::json->>'referral_id', '') FROM events ORDER BY seq",
            ])
        return out.split(separator: "\n").map { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
            return (String(f[0]), f.count > 1 && !f[1].isEmpty ? String(f[1]) : nil)
        }
    }

    /// Every acknowledged success sent again, between two `status` calls: each
    /// must give its first answer byte for byte, and the event count must not move.
    func replay(_ acked: [(kind: Kind, line: String, answer: Reply)]) throws -> [String] {
        let toReplay = acked.filter { $0.kind != .readOnly }
        let lines = [R.status("replay-before")] + toReplay.map(\.line) + [R.status("replay-after")]
        let s = try session(lines)
        guard s.status == 0, s.responses.count == lines.count else {
            return ["the replay serve exited \(s.status) with \(s.responses.count)/\(lines.count) answers: \(s.stderr)"]
        }
        var problems: [String] = []
        for (k, a) in toReplay.enumerated() where s.responses[k + 1] != a.answer.line {
            problems.append("replay of \(a.line)\n   gave  \(s.responses[k + 1])\n   first \(a.answer.line)")
        }
        let before = Reply(s.responses[0]).events ?? -1, after = Reply(s.responses[lines.count - 1]).events ?? -2
        if before != after { problems.append("replaying the acknowledged requests appended \(after - before) events: one was lost") }
        return problems
    }
}

/// One instance's stream: requests made as they are sent (fresh claimants,
/// so every one is valid whatever the others do), paced in small chunks; the
/// answers read back as they come.
final class Stream: @unchecked Sendable {
    struct Sent {
        var id: String, kind: Kind, line: String, referralID: String?
    }
    static let districts = ["devon-cornwall", "example-north", "example-south", "leicestershire-northants"]

    let writer: Int
    private var rng: SplitMix
    private let lock = NSLock()
    private var sent: [Sent] = []
    private var answers: [String] = []
    private var oks: [Int] = []
    private var stopped = false

    init(writer: Int, seed: UInt64) {
        self.writer = writer
        rng = SplitMix(seed)
    }

    var answered: Int { lock.withLock { answers.count } }

    func stop() { lock.withLock { stopped = true } }

    func snapshot() -> (sent: [Sent], answers: [String]) { lock.withLock { (sent, answers) } }

    /// Whether an answer after position `mark` is `ok`, within `timeout` seconds.
    func waitForOK(after mark: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if lock.withLock({ oks.last.map { $0 >= mark } ?? false }) { return true }
            usleep(10_000)
        }
        return false
    }

    private func next(_ i: Int) -> Sent {
        let id = "i\(writer)-\(i)"
        if i % 40 == 39 {
            let d = rng.pick(Self.districts)
            return Sent(
                id: id, kind: .gatekeep, line: R.capacity(id, run: "i\(writer)-run-\(i)", district: d, date: "2019-02-01", rng.int(1...4)), referralID: nil)
        }
        if i % 97 == 50 { return Sent(id: id, kind: .readOnly, line: R.status(id), referralID: nil) }
        let rid = "i\(writer)-r\(i)"
        let line = R.refer(
            id, rid, claimant: R.nino(1_000_000 * (writer + 1) + i), district: rng.pick(Self.districts), group: rng.pick(RelTrial.groups),
            date: "2019-01-\(String(format: "%02d", rng.int(1...31)))")
        return Sent(id: id, kind: .refer, line: line, referralID: rid)
    }

    /// At most this many requests unanswered, like a real pipelining client.
    /// Without a window the writers outran a debug whp on PostgreSQL, the
    /// backlog grew without bound, and after a restart an instance re-running
    /// a failed group one request at a time, each waiting for the chain lock
    /// behind the other instance's ever larger groups, said nothing for over
    /// 60 s: slow, not stuck (its threads kept using CPU), yet the test read
    /// it as a hang.
    static let window = 256

    /// Writes until stopped: chunks of 1–8 lines, pauses of 1–6 ms, never more
    /// than `window` requests unanswered.
    func write(to c: Child) {
        var i = 0
        while !lock.withLock({ stopped }) {
            if lock.withLock({ sent.count - answers.count }) >= Self.window {
                usleep(1_000)
                continue
            }
            var chunk: [Sent] = []
            for _ in 0..<rng.int(1...8) {
                chunk.append(next(i))
                i += 1
            }
            lock.withLock { sent += chunk }
            if !c.write(Array((chunk.map(\.line).joined(separator: "\n") + "\n").utf8)) { break }
            usleep(UInt32(rng.int(1_000...6_000)))
        }
        c.closeStdin()
    }

    func read(from c: Child) {
        while c.pump(timeout: 0.2) {
            let lines = c.takeLines()
            guard !lines.isEmpty else { continue }
            lock.withLock {
                for l in lines {
                    if Reply(l).ok { oks.append(answers.count) }
                    answers.append(l)
                }
            }
        }
        let rest = c.takeLines()
        lock.withLock { answers += rest }
    }
}

/// A throw-away PostgreSQL server of the test's own (`scripts/postgres`),
/// which the test may kill and restart.
final class PrivatePostgres: @unchecked Sendable {
    let dir: String
    let adminURL: String

    private init(dir: String, adminURL: String) {
        self.dir = dir
        self.adminURL = adminURL
    }

    static var script: String { WHPBinary.repoRoot.appendingPathComponent("scripts/postgres").path }

    static func start() throws -> PrivatePostgres {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("whp-pg-restart-\(UUID().uuidString)").path
        let out = try run([script, "start", dir])
        return PrivatePostgres(dir: dir, adminURL: out.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func createDatabase(_ name: String) throws -> String {
        try Self.run(["psql", adminURL.components(separatedBy: "?")[0], "-v", "ON_ERROR_STOP=1", "-qAtc", "CREATE DATABASE \(name)"])
        return TestBackend.replacingDatabase(in: adminURL, with: name)
    }

    /// SIGKILL of the postmaster; returns its pid once it and its backends are gone.
    func killPostmaster() throws -> String {
        try Self.run([Self.script, "kill", dir]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func restart() throws { _ = try Self.run([Self.script, "restart", dir]) }

    func stop() {
        _ = try? Self.run([Self.script, "stop", dir])
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Runs a command to its end, its output in files rather than pipes and
    /// its exit taken with `waitpid`: `pg_ctl start` leaves a daemon behind,
    /// and Foundation's `Process.waitUntilExit` was seen to wait forever for
    /// a child that had exited (its zombie never reaped).
    @discardableResult
    static func run(_ argv: [String]) throws -> String {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("whp-cmd-\(UUID().uuidString)").path
        let outPath = tmp + ".out", errPath = tmp + ".err"
        defer { unlink(outPath); unlink(errPath) }
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&fa, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let full = ["/usr/bin/env"] + argv
        let cargv: [UnsafeMutablePointer<CChar>?] = full.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cargv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/usr/bin/env", &fa, nil, cargv, envp)
        guard rc == 0 else { throw TestSetupError("posix_spawn \(argv.joined(separator: " ")): \(rc)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0, code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            throw TestSetupError("\(argv.joined(separator: " ")) exited \(exited ? code : 128 + (status & 0x7f)): \(err)")
        }
        return out
    }
}
