import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore
import WHPTestSupport
#if canImport(Glibc)
    import Glibc
#endif

// Helpers of the reliability suites: child processes on close-on-exec pipes
// (so a killed `serve` gives EOF even while other tests spawn processes), the
// `whp` binary (WHP_BIN overrides it, e.g. a release build for the soak), a
// seeded generator, `verify --json` parsed, and the log read from the store.

// MARK: - Environment

enum Env {
    static let vars = ProcessInfo.processInfo.environment

    static func int(_ name: String) -> Int? { vars[name].flatMap { Int($0) } }

    /// The `whp` executable: `WHP_BIN` when set, else the one built beside the tests.
    static let whp: String = {
        if let p = vars["WHP_BIN"], !p.isEmpty { return URL(fileURLWithPath: p).standardizedFileURL.path }
        return WHPBinary.url.path
    }()

    /// Writes into a dead child's stdin must fail with EPIPE, not kill the test process.
    static let ignoreSIGPIPE: Void = {
        signal(SIGPIPE, SIG_IGN); return ()
    }()

    /// Progress for the long runs, on stderr (never stdout: it stays the test report's).
    static func progress(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }
}

// (The seeded generator, SplitMix, is in WHPTestSupport; tests print its seed on failure.)

/// A seed for a run: `WHP_TEST_SEED` to replay one, else fresh.
func runSeed() -> UInt64 {
    if let s = Env.vars["WHP_TEST_SEED"], let v = UInt64(s, radix: 16) ?? UInt64(s) { return v }
    return UInt64.random(in: 1...UInt64.max)
}

// MARK: - Child processes

/// A `whp` child with stdin/stdout on pipes created close-on-exec, so no other
/// child (spawned by a test running in parallel) can inherit them: EOF and
/// EPIPE arrive exactly when this child dies. Stderr goes to a file.
final class Child: @unchecked Sendable {
    let pid: pid_t
    private(set) var stdinFD: Int32
    let stdoutFD: Int32
    let stderrPath: String
    private var buffer: [UInt8] = []
    private var eof = false
    private var reaped: Int32?
    private let lock = NSLock()

    /// `shellPrefix`: a /bin/sh command run before `exec whp ARGS` in the same
    /// process (e.g. `ulimit -f 300`).
    init(_ args: [String], env extra: [String: String] = [:], stderrPath: String = "/dev/null", shellPrefix: String? = nil) throws {
        _ = Env.ignoreSIGPIPE
        var inp: [Int32] = [0, 0], out: [Int32] = [0, 0]
        guard Child.pipe2(&inp, O_CLOEXEC) == 0, Child.pipe2(&out, O_CLOEXEC) == 0 else { throw ChildError("pipe2: \(errno)") }
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_adddup2(&fa, inp[0], 0)
        posix_spawn_file_actions_adddup2(&fa, out[1], 1)
        posix_spawn_file_actions_addopen(&fa, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var environment = Env.vars
        environment["WHP_LOG"] = "warning"
        for (k, v) in extra { environment[k] = v }
        let exe = shellPrefix == nil ? Env.whp : "/bin/sh"
        let full = shellPrefix.map { ["/bin/sh", "-c", $0 + "; exec \"$0\" \"$@\"", Env.whp] + args } ?? ([Env.whp] + args)
        let argv: [UnsafeMutablePointer<CChar>?] = full.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var p: pid_t = 0
        let rc = posix_spawn(&p, exe, &fa, nil, argv, envp)
        close(inp[0]); close(out[1])
        guard rc == 0 else { close(inp[1]); close(out[0]); throw ChildError("posix_spawn \(Env.whp): \(rc)") }
        pid = p
        stdinFD = inp[1]
        stdoutFD = out[0]
        self.stderrPath = stderrPath
    }

    /// glibc's pipe2 (not exported by the Glibc module without _GNU_SOURCE):
    /// both ends are created close-on-exec atomically.
    static let pipe2: @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32 = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pipe2") else { fatalError("no pipe2 in libc") }
        return unsafeBitCast(sym, to: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
    }()

    deinit {
        if reaped == nil { kill(pid, SIGKILL); _ = wait() }
        if stdinFD >= 0 { close(stdinFD) }
        close(stdoutFD)
    }

    /// Writes all bytes (blocking); false once the child is gone (EPIPE) or stdin closed.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let fd = lock.withLock { stdinFD }
            guard fd >= 0 else { return false }
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            off += n
        }
        return true
    }

    @discardableResult
    func write(_ line: String) -> Bool { write(Array((line + "\n").utf8)) }

    func closeStdin() {
        lock.withLock {
            if stdinFD >= 0 { close(stdinFD); stdinFD = -1 }
        }
    }

    /// Reads what is available within `timeout` seconds (0: only what is already
    /// there). Returns false at EOF.
    @discardableResult
    func pump(timeout: Double) -> Bool {
        if eof { return false }
        var pfd = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
        let r = poll(&pfd, 1, Int32(max(0, timeout * 1000)))
        if r <= 0 { return true }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let n = chunk.withUnsafeMutableBytes { read(stdoutFD, $0.baseAddress, $0.count) }
        if n > 0 { buffer.append(contentsOf: chunk[0..<n]); return true }
        if n < 0 && errno == EINTR { return true }
        eof = true
        return false
    }

    /// Complete response lines read so far (a partial last line stays buffered:
    /// it was never acknowledged).
    func takeLines() -> [String] {
        var lines: [String] = []
        var start = 0
        while let nl = buffer[start...].firstIndex(of: 0x0a) {
            lines.append(String(decoding: buffer[start..<nl], as: UTF8.self))
            start = nl + 1
        }
        buffer.removeSubrange(0..<start)
        return lines
    }

    /// Bytes of an unterminated last line, if any.
    var partialBytes: Int { buffer.count }

    /// Reads until EOF (or `timeout`), returning every complete line.
    func readAll(timeout: Double = 300) -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var lines: [String] = []
        while pump(timeout: 0.2) {
            lines += takeLines()
            if Date() > deadline { break }
        }
        return lines + takeLines()
    }

    func kill9() {
        kill(pid, SIGKILL)
        _ = wait()
    }

    /// Waits for the child; its exit status, or 128+signal.
    @discardableResult
    func wait() -> Int32 {
        if let r = reaped { return r }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        reaped = code
        return code
    }

    /// After the child died: everything it wrote is in the pipe; take it.
    func drainAfterDeath() -> [String] {
        while pump(timeout: 0.05) {}
        return takeLines()
    }
}

struct ChildError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs `body` on a thread of its own and returns a semaphore signalled when it
/// ends. Blocking pipe I/O must not run on GCD's global queue: its pool is as
/// wide as the CPU count (2 here), so blocked writers and readers of several
/// children would run one after another instead of at once.
@discardableResult
func onThread(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    let t = Thread {
        body(); done.signal()
    }
    t.stackSize = 1 << 20
    t.start()
    return done
}

/// Runs `whp ARGS` to completion, feeding stdin from a thread. A child still
/// running after `timeout` seconds is killed, so the feeding thread (blocked
/// on a full pipe once nobody reads the answers) ends too; the caller sees
/// the answers it got and a status of 137. The restart soak's replay of some
/// 100,000 requests on a debug whp outlasted the old fixed 300 s read, and
/// the test then waited for ever on its own writer.
func execWHP(
    _ args: [String], env: [String: String] = [:], stdin: [UInt8] = [], timeout: Double = 300
) throws -> (status: Int32, stdout: [String], stderr: String) {
    let errFile = FileManager.default.temporaryDirectory.appendingPathComponent("whp-rel-err-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: errFile) }
    let c = try Child(args, env: env, stderrPath: errFile)
    let done = onThread {
        c.write(stdin); c.closeStdin()
    }
    let out = c.readAll(timeout: timeout)
    if c.pump(timeout: 0) { c.kill9() }
    done.wait()
    let status = c.wait()
    let err = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
    return (status, out, err)
}

extension TrialFolder {
    /// A `whp serve` child on this trial.
    func serveChild(now: String = RelTrial.now, stderrPath: String = "/dev/null") throws -> Child {
        try Child(["serve"] + common, env: ["WHP_NOW": now], stderrPath: stderrPath)
    }

    /// A whole session through `serve` (the `whp` of `Env.whp`).
    func session(_ lines: [String], now: String = RelTrial.now) throws -> (status: Int32, responses: [String], stderr: String) {
        let r = try execWHP(["serve"] + common, env: ["WHP_NOW": now], stdin: Array((lines.joined(separator: "\n") + "\n").utf8))
        return (r.status, r.stdout, r.stderr)
    }

    /// `whp verify --json` (with the trial's seeds folder) parsed.
    func verifyReport(_ extra: [String] = []) throws -> Report {
        let r = try execWHP(["verify", "--json"] + common + ["--seeds", seeds.path] + extra)
        return try Report(status: r.status, text: r.stdout.joined(separator: "\n"), stderr: r.stderr)
    }

    var walPath: String { store.path + "-wal" }
}

enum RelTrial {
    static let now = "2019-06-01T12:00:00Z"
    static let initNow = "2018-12-01T09:00:00Z"
    static let seedHex = "5eed0123456789abcdef0123456789abcdef0123456789abcdeffedcba987654"
    static let districts = [
        "lincolnshire-nottinghamshire-rutland", "leicestershire-northants",
        "dorset-wiltshire-hampshire-iow", "devon-cornwall", "example-north", "example-south",
    ]
    static let groups = ["disability", "early_access"]

    /// A fresh, initialised trial with a known seed. Under `dcams`, with one
    /// fifo district, so the suites cover every gatekeeper rule (rules 2
    /// refuses fifo under `hidden`, R3).
    static func make(sqliteOnly: Bool = false) throws -> TrialFolder {
        let t = try TrialFolder.withFifo(
            ["lincolnshire-nottinghamshire-rutland", "dorset-wiltshire-hampshire-iow", "example-north"], sqliteOnly: sqliteOnly)
        let r = try t.initialise(now: initNow, seedHex: seedHex)
        guard r.status == 0 else { throw ChildError("init failed: \(r.stderr)") }
        return t
    }
}

// MARK: - verify --json

struct Report: CustomStringConvertible {
    struct Check { var ok: Bool; var detail: String; var seq: Int? }
    var status: Int32
    var ok: Bool
    var events: Int
    var checks: [String: Check]
    var raw: String
    var failed: Set<String> { Set(checks.filter { !$0.value.ok }.map(\.key)) }

    init(status: Int32, text: String, stderr: String) throws {
        self.status = status
        raw = text + (stderr.isEmpty ? "" : " / stderr: " + stderr)
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
            let ok = obj["ok"] as? Bool, let events = obj["events"] as? Int, let list = obj["checks"] as? [[String: Any]]
        else {
            throw ChildError("verify --json printed no report (exit \(status)): \(text) \(stderr)")
        }
        self.ok = ok
        self.events = events
        var checks: [String: Check] = [:]
        for c in list {
            if let name = c["name"] as? String {
                checks[name] = Check(ok: c["ok"] as? Bool ?? false, detail: c["detail"] as? String ?? "", seq: c["first_bad_seq"] as? Int)
            }
        }
        self.checks = checks
    }

    var description: String {
        checks.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.ok ? "ok" : "FAIL@\($0.value.seq.map(String.init) ?? "-") \($0.value.detail)")" }
            .joined(separator: "; ")
    }
}

// MARK: - The log, read straight from the store

func sqlQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }

// MARK: - Requests and responses

enum R {
    static func refer(_ id: String, _ rid: String, claimant: [String: String], district: String, group: String = "disability", date: String) -> String {
        Req.line(
            Req.envelope(
                id, "refer", role: "work_coach", actor: "WC0001",
                [
                    "referral_id": rid, "claimant": claimant,
                    "district": district, "group": group, "referral_date": date,
                ]))
    }
    static func cancel(_ id: String, _ rid: String) -> String {
        Req.line(Req.envelope(id, "cancel", role: "work_coach", actor: "WC0001", ["referral_id": rid, "reason": "withdrawn by the claimant"]))
    }
    static func capacity(_ id: String, run: String, district: String, date: String, _ c: Int) -> String {
        Req.line(Req.gatekeep(id, run: run, district: district, date: date, capacity: c))
    }
    static func decide(_ id: String, run: String, district: String, date: String, _ d: [(String, Bool)]) -> String {
        Req.line(Req.decide(id, run: run, district: district, date: date, d))
    }
    static func flag(_ id: String, _ rid: String, reason: String = "other") -> String {
        Req.line(Req.envelope(id, "flag_error", role: "gatekeeper", ["referral_id": rid, "reason": reason]))
    }
    static func optOut(_ id: String, claimant: [String: String], date: String) -> String {
        Req.line(Req.envelope(id, "opt_out", role: "evaluation_admin", ["claimant": claimant, "date": date]))
    }
    static func disclose(_ id: String, _ rid: String) -> String {
        Req.line(Req.envelope(id, "disclose", role: "work_coach", ["referral_id": rid, "reason": "evaluation audit"]))
    }
    static func pending(_ id: String, district: String, date: String) -> String {
        Req.line(Req.envelope(id, "pending", role: "gatekeeper", ["district": district, "gk_date": date]))
    }
    static func status(_ id: String) -> String { Req.line(Req.envelope(id, "status", role: "evaluation_admin")) }
    static func nino(_ n: Int) -> [String: String] { ["nino": Req.nino(n)] }
}

/// One response line, parsed.
struct Reply: CustomStringConvertible {
    let line: String
    let obj: [String: Any]
    init(_ line: String) {
        self.line = line
        obj = ((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]) ?? [:]
    }
    var isObject: Bool { !obj.isEmpty }
    var id: String? { obj["id"] as? String }
    var ok: Bool { obj["ok"] as? Bool == true }
    var result: [String: Any] { obj["result"] as? [String: Any] ?? [:] }
    var code: String? { (obj["error"] as? [String: Any])?["code"] as? String }
    func strings(_ k: String) -> [String] { result[k] as? [String] ?? [] }
    var events: Int? { result["events"] as? Int }
    /// The answer without its `id`, keys sorted: what an identical repeat reproduces.
    var withoutID: String {
        var o = obj
        o.removeValue(forKey: "id")
        return String(decoding: (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
    }
    var description: String { line }
}

let protocolCodes: Set<String> = [
    "too_large", "bad_json", "bad_request", "unknown_op", "forbidden", "invalid_field",
    "unknown_district", "unknown_group", "conflict", "not_found", "wrong_state",
    "duplicate_referral", "not_eligible", "internal",
]

/// The kinds of request whose success is remembered (PROTOCOL.md §3 idempotency)
/// or, for opt_out, answered `already` on a repeat.
enum Kind: Equatable {
    case refer, cancel, gatekeep, flag, optOut, readOnly
    /// Appends an event on every call, so it is never replayed.
    case disclose
}

/// Events a successful answer reports as appended.
func appendedEvents(_ kind: Kind, _ a: Reply) -> Int {
    guard a.ok else { return 0 }
    switch kind {
    case .refer, .cancel, .flag, .disclose: return 1
    case .gatekeep: return 2 * a.strings("selected").count + a.strings("not_selected").count
    case .optOut: return a.result["already"] as? Bool == false ? 1 : 0
    case .readOnly: return 0
    }
}

/// Replays acknowledged successes in a new `serve` between two `status` calls:
/// each identical repeat must give its first answer (opt_out: `already: true`)
/// and append nothing. Returns the problems and the head's event count.
func replayAcknowledged(_ t: TrialFolder, _ acked: [(kind: Kind, line: String, answer: Reply)], label: String) throws -> (problems: [String], events: Int) {
    let toReplay = acked.filter { $0.answer.ok && $0.kind != .readOnly && $0.kind != .disclose }
    let lines = [R.status("replay-before")] + toReplay.map(\.line) + [R.status("replay-after")]
    let s = try t.session(lines)
    var problems: [String] = []
    guard s.status == 0, s.responses.count == lines.count else {
        return (["\(label): replay serve exited \(s.status) with \(s.responses.count)/\(lines.count) answers: \(s.stderr)"], 0)
    }
    let before = Reply(s.responses.first!).events ?? -1
    let after = Reply(s.responses.last!).events ?? -2
    for (k, a) in toReplay.enumerated() {
        let replay = s.responses[k + 1]
        if a.kind == .optOut {
            let r = Reply(replay)
            if !(r.ok && r.result["already"] as? Bool == true) { problems.append("\(label): opt_out replay \(replay) (first \(a.answer.line))") }
        } else if replay != a.answer.line {
            problems.append("\(label): replay of \(a.line)\n   gave  \(replay)\n   first \(a.answer.line)")
        }
    }
    if before != after { problems.append("\(label): replaying acknowledged requests appended \(after - before) events: one was missing") }
    return (problems, after)
}
