import Foundation
import Logging
import WHPApp
import WHPDomain
import WHPPostgres
import WHPStore

/// Test doubles and doors for the suites that drive `whp` as users do: the
/// real executable, a temporary trial folder, a live `whp serve` on pipes.
public enum WHPBinary {
    /// The `whp` executable built beside the test bundle.
    public static var url: URL {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // The xctest bundle may be a directory (macOS) or a file (Linux).
        while !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("whp").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("whp")
    }

    /// The repository root (for the shipped config, seeds and examples).
    public static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

public struct RunResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs `whp ARGS` to completion. stdin is fed from a background thread while
/// stdout and stderr are read, so sessions larger than the pipe buffers cannot
/// deadlock; it is sent byte for byte (raw lines, CRLF, invalid UTF-8).
@discardableResult
/// With `umask`, `whp` starts under that umask (through `sh -c`), as a
/// careless operator's shell would start it.
public func runWHP(_ args: [String], cwd: URL? = nil, env: [String: String] = [:], stdin: Data? = nil, umask: String? = nil) throws -> RunResult {
    ignoreSIGPIPE()
    let p = Process()
    if let umask {
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "umask \(umask); exec \"$0\" \"$@\"", WHPBinary.url.path] + args
    } else {
        p.executableURL = WHPBinary.url
        p.arguments = args
    }
    if let cwd { p.currentDirectoryURL = cwd }
    var environment = ProcessInfo.processInfo.environment
    environment["WHP_LOG"] = "warning"
    for (k, v) in env { environment[k] = v }
    p.environment = environment
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    let group = DispatchGroup()
    let writer = inp.fileHandleForWriting
    group.enter()
    DispatchQueue.global().async {
        // The child may exit before reading everything (a start-up guard): ignore EPIPE.
        if let stdin { try? writer.write(contentsOf: stdin) }
        try? writer.close()
        group.leave()
    }
    nonisolated(unsafe) var errData = Data()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return RunResult(
        status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}

/// Writing to a child that has exited (a start-up guard refused to run) must
/// fail with EPIPE, not kill the test process.
public func ignoreSIGPIPE() {
    _ = sigpipeIgnored
}
private let sigpipeIgnored: Bool = {
    signal(SIGPIPE, SIG_IGN)
    return true
}()

/// Which engine the end-to-end suites run on. `WHP_TEST_BACKEND=postgres`
/// runs them against the PostgreSQL server at `WHP_TEST_POSTGRES_URL` (which
/// `scripts/test` starts), each trial in a database of its own.
public enum TestBackend: String, Sendable {
    case sqlite
    case postgres

    public static var current: TestBackend {
        ProcessInfo.processInfo.environment["WHP_TEST_BACKEND"].flatMap(TestBackend.init(rawValue:)) ?? .sqlite
    }

    /// The admin URL of the test server. Missing is an error, never a skip.
    public static func postgresURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["WHP_TEST_POSTGRES_URL"], !url.isEmpty else {
            throw TestSetupError("the PostgreSQL tests need WHP_TEST_POSTGRES_URL: run the suite through scripts/test, which starts a server")
        }
        return url
    }

    /// A new, empty database on the test server; returns its URL.
    public static func createDatabase() throws -> String {
        let admin = try postgresURL()
        let name = "whp_t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try psql(admin, "CREATE DATABASE \(name)")
        return replacingDatabase(in: admin, with: name)
    }

    public static func dropDatabase(_ url: String) {
        guard let admin = try? postgresURL(), let name = url.split(separator: "/").last?.split(separator: "?").first else { return }
        try? psql(admin, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// A PostgreSQL trial's store, opened directly.
    public static func openStore(_ url: String) throws -> Store {
        var logger = Logger(label: "whp.test.postgres")
        logger.logLevel = .warning
        return try Store.open(backend: PostgresBackend.connect(url: url, logger: logger))
    }

    /// `url` with its database swapped for `name` (options kept).
    public static func replacingDatabase(in url: String, with name: String) -> String {
        let query = url.firstIndex(of: "?").map { String(url[$0...]) } ?? ""
        let base = url.firstIndex(of: "?").map { String(url[..<$0]) } ?? url
        let prefix = base[..<base.lastIndex(of: "/")!]
        return prefix + "/" + name + query
    }

    /// Runs one SQL command with psql (the server's own client, not the code under test).
    public static func psql(_ url: String, _ sql: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let plain = url.firstIndex(of: "?").map { String(url[..<$0]) } ?? url
        p.arguments = ["psql", plain, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestSetupError("psql failed: \(String(decoding: e, as: UTF8.self))") }
    }
}

public struct TestSetupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// A trial in a fresh temporary folder: `config/`, `data/`, `seeds/`; on
/// PostgreSQL (see `TestBackend`) its events go to a fresh database.
public final class TrialFolder: @unchecked Sendable {
    public let root: URL
    public let backend: TestBackend
    /// The PostgreSQL trial's URL, when `backend` is `.postgres`.
    public let postgresURL: String?
    public var config: URL { root.appendingPathComponent("district-config") }
    public var data: URL { root.appendingPathComponent("data") }
    public var seeds: URL { root.appendingPathComponent("seeds") }
    public var store: URL { data.appendingPathComponent("whp.sqlite") }
    public var seedFile: URL { data.appendingPathComponent("keys/seed.hex") }

    /// Copies the shipped district-config, then applies `edit` to each file's text
    /// (name → new text; nil removes nothing), or writes the given files instead.
    /// `sqliteOnly`: the embedded store whatever `WHP_TEST_BACKEND` says.
    public init(trialTOML: String? = nil, districtsTOML: String? = nil, frontlineRCG: String? = nil, sqliteOnly: Bool = false) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("whp-test-" + UUID().uuidString)
        backend = sqliteOnly ? .sqlite : TestBackend.current
        postgresURL = backend == .postgres ? try TestBackend.createDatabase() : nil
        try FileManager.default.createDirectory(at: config, withIntermediateDirectories: true)
        let shipped = WHPBinary.repoRoot.appendingPathComponent("district-config")
        var trial = try trialTOML ?? TrialFolder.testTrialTOML(String(contentsOf: shipped.appendingPathComponent("trial.toml"), encoding: .utf8))
        if let frontlineRCG { trial = trial.replacingOccurrences(of: "frontline_rcg = \"hidden\"", with: "frontline_rcg = \"\(frontlineRCG)\"") }
        let districts = try districtsTOML ?? String(contentsOf: shipped.appendingPathComponent("districts.toml"), encoding: .utf8)
        try trial.write(to: config.appendingPathComponent("trial.toml"), atomically: true, encoding: .utf8)
        try districts.write(to: config.appendingPathComponent("districts.toml"), atomically: true, encoding: .utf8)
    }

    /// The shipped trial.toml with the test suites' recruitment window: open
    /// from 2016, and a year of back-dating (RULES2 R2), so sessions written
    /// for a fixed clock still reach the rules they test. The window itself
    /// is tested with configs of its own.
    public static func testTrialTOML(_ shipped: String) -> String {
        var text = shipped
        if let r = text.range(of: "\n[recruitment]") {
            let rest = text[r.upperBound...]
            let end = rest.range(of: "\n[")?.lowerBound ?? text.endIndex
            text.removeSubrange(r.lowerBound..<end)
        }
        return text + "\n[recruitment]\nopens = \"2016-01-01\"\nmax_backdate_days = 365\n"
    }

    deinit {
        try? FileManager.default.removeItem(at: root)
        if let postgresURL { TestBackend.dropDatabase(postgresURL) }
    }

    public var common: [String] { ["--config", config.path, "--data", data.path] + (postgresURL.map { ["--store", $0] } ?? []) }

    /// The trial's store, opened directly (to read the log, or to tamper as an insider would).
    public func openStore(readonly: Bool = false) throws -> Store {
        if let postgresURL { return try TestBackend.openStore(postgresURL) }
        return try Store.open(path: store.path, readonly: readonly)
    }

    /// `whp init` with a fixed clock; `seedHex` imports a known seed (for re-derivation in tests).
    @discardableResult
    public func initialise(now: String = "2017-10-31T09:00:00Z", seedHex: String? = nil) throws -> RunResult {
        var args = ["init"] + common + ["--seeds", seeds.path]
        if let seedHex {
            let f = root.appendingPathComponent("imported-seed.hex")
            try (seedHex + "\n").write(to: f, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: f.path)
            args += ["--import-seed", f.path]
        }
        return try runWHP(args, env: ["WHP_NOW": now])
    }

    public func verify(_ extra: [String] = []) throws -> RunResult {
        try runWHP(["verify"] + common + ["--seeds", seeds.path] + extra)
    }

    /// Runs a whole session through `whp serve` and returns one response line per request.
    /// Without `now`, the session is played under its own moving clock
    /// (`SessionSchedule`, as `whp demo` plays its session): one `whp serve`
    /// per day the session names, each line read on that day. With `now`, one
    /// `whp serve` under that fixed clock.
    public func serve(_ lines: [String], now: String? = nil) throws -> (RunResult, [String]) {
        let steps =
            now.map { [(at: $0, lines: lines)] }
            ?? SessionSchedule.steps(lines, undated: Instant("2018-06-01T12:00:00Z")!).map { (at: $0.at.iso, lines: $0.lines) }
        var out: [String] = []
        var last = RunResult(status: 0, stdout: "", stderr: "")
        for step in steps {
            let input = step.lines.joined(separator: "\n") + "\n"
            let r = try runWHP(["serve"] + common, env: ["WHP_NOW": step.at], stdin: Data(input.utf8))
            out += r.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
            last = RunResult(status: r.status == 0 ? last.status : r.status, stdout: last.stdout + r.stdout, stderr: last.stderr + r.stderr)
        }
        return (last, out)
    }

    public func serveJSON(_ requests: [[String: Any]], now: String? = nil) throws -> [[String: Any]] {
        let lines = try requests.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
        let (_, out) = try serve(lines, now: now)
        return out.map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? ["unparsable": $0] }
    }
}

/// A live `whp serve` with pipes, for pipelining and crash tests.
public final class ServeProcess: @unchecked Sendable {
    public let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var pending: [UInt8] = []

    public init(_ trial: TrialFolder, now: String? = "2018-06-01T12:00:00Z") throws {
        ignoreSIGPIPE()
        process.executableURL = WHPBinary.url
        process.arguments = ["serve"] + trial.common
        var env = ProcessInfo.processInfo.environment
        env["WHP_LOG"] = "warning"
        if let now { env["WHP_NOW"] = now }
        process.environment = env
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    public func send(_ line: String) throws {
        try input.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Reads one response line; nil at EOF (the process ended).
    public func readLine() -> String? {
        while true {
            if let nl = pending.firstIndex(of: 0x0a) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                return line
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            pending.append(contentsOf: chunk)
        }
    }

    public func closeInput() throws { try input.fileHandleForWriting.close() }

    public func kill9() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    public func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// Builds request lines.
public enum Req {
    public static func line(_ obj: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self)
    }

    public static func envelope(_ id: String, _ op: String, role: String, actor: String = "S001", _ fields: [String: Any] = [:]) -> [String: Any] {
        var o: [String: Any] = ["v": 1, "id": id, "op": op, "actor": ["role": role, "id": actor]]
        for (k, v) in fields { o[k] = v }
        return o
    }

    public static func refer(_ id: String, referral: String, nino: String, district: String, group: String = "disability", date: String) -> [String: Any] {
        envelope(
            id, "refer", role: "work_coach", ["referral_id": referral, "claimant": ["nino": nino], "district": district, "group": group, "referral_date": date])
    }

    public static func gatekeep(_ id: String, run: String, district: String, date: String, capacity: Int) -> [String: Any] {
        envelope(id, "gatekeep", role: "gatekeeper", ["run_id": run, "district": district, "gk_date": date, "capacity": capacity])
    }

    public static func decide(_ id: String, run: String, district: String, date: String, _ decisions: [(String, Bool)]) -> [String: Any] {
        envelope(
            id, "gatekeep", role: "gatekeeper",
            [
                "run_id": run, "district": district, "gk_date": date,
                "decisions": decisions.map { ["referral_id": $0.0, "decision": $0.1 ? "selected" : "not_selected"] },
            ])
    }

    /// A valid NINO for a number (distinct numbers give distinct claimants).
    public static func nino(_ n: Int) -> String {
        let prefixes = ["AB", "CE", "HJ", "KL", "MP", "RS", "TW", "XY"]
        return prefixes[(n / 1_000_000) % prefixes.count] + String(format: "%06d", n % 1_000_000) + ["A", "B", "C", "D"][n % 4]
    }
}

// MARK: - Streaming sessions (appended for the service suites)

/// The same as `runWHP` (kept for the suites that name it).
@discardableResult
public func runWHPStreaming(_ args: [String], env: [String: String] = [:], stdin: Data) throws -> RunResult {
    try runWHP(args, env: env, stdin: stdin)
}

extension TrialFolder {
    /// `whp serve` over raw input bytes (fed concurrently); returns the response lines.
    public func serveBytes(_ input: Data, now: String = "2018-06-01T12:00:00Z") throws -> (RunResult, [String]) {
        let r = try runWHPStreaming(["serve"] + common, env: ["WHP_NOW": now], stdin: input)
        var lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return (r, lines)
    }

    /// `serve` for sessions of any size: lines joined with `\n`, fed concurrently.
    /// Without `now`, under the session's moving clock, as `serve`.
    public func serveStreaming(_ lines: [String], now: String? = nil) throws -> (RunResult, [String]) {
        guard let now else { return try serve(lines) }
        return try serveBytes(Data((lines.joined(separator: "\n") + "\n").utf8), now: now)
    }
}

// MARK: - Shared by the suites

/// A seeded generator (SplitMix64), so a failing generated case can be replayed from its seed.
public struct SplitMix: RandomNumberGenerator {
    public var state: UInt64
    public init(_ seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &self) }
    public mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    public mutating func double(_ r: Range<Double>) -> Double { Double.random(in: r, using: &self) }
    public mutating func pick<T>(_ a: [T]) -> T { a[int(0...a.count - 1)] }
}

/// One event as the store holds it, its payload parsed with Foundation (not the code under test).
public struct LogEvent: Sendable {
    public var seq: Int
    public var type: String
    public var payloadText: String
    public var payload: [String: String]
    public var hash: String
}

/// The whole log, read from the trial's store file.
public func readLog(_ t: TrialFolder) throws -> [LogEvent] {
    let store = try t.openStore(readonly: true)
    var out: [LogEvent] = []
    try store.forEachEvent { e in
        let obj = (try? JSONSerialization.jsonObject(with: Data(e.payloadText.utf8))) as? [String: String] ?? [:]
        out.append(LogEvent(seq: e.seq, type: e.type, payloadText: e.payloadText, payload: obj, hash: e.hash))
    }
    return out
}

extension TrialFolder {
    /// The public keys of the rules 1 fixture (`Tests/Fixtures/rules1-demo/README.md`).
    public static let fixtureKeys = (
        seed: "0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186",
        pseudonym: String(repeating: "a0", count: 32),
        evaluation: String(repeating: "e0", count: 32)
    )

    /// A copy of the trial the previous release made (`Tests/Fixtures/rules1-demo`):
    /// its config, commitment file and store, with its public keys written
    /// into `data/keys` (mode 0600). On PostgreSQL the store is migrated there.
    public static func rules1Fixture() throws -> TrialFolder {
        let fixture = WHPBinary.repoRoot.appendingPathComponent("Tests/Fixtures/rules1-demo")
        let t = try TrialFolder(
            trialTOML: try String(contentsOf: fixture.appendingPathComponent("district-config/trial.toml"), encoding: .utf8),
            districtsTOML: try String(contentsOf: fixture.appendingPathComponent("district-config/districts.toml"), encoding: .utf8))
        let fm = FileManager.default
        try fm.createDirectory(
            at: t.data.appendingPathComponent("keys"), withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
        for (name, hex) in [("seed.hex", fixtureKeys.seed), ("pseudonym.key", fixtureKeys.pseudonym), ("evaluation.key", fixtureKeys.evaluation)] {
            let url = t.data.appendingPathComponent("keys/" + name)
            try (hex + "\n").write(to: url, atomically: false, encoding: .utf8)
            try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        }
        try fm.copyItem(at: fixture.appendingPathComponent("seeds"), to: t.seeds)
        if let pg = t.postgresURL {
            let sqlite = t.root.appendingPathComponent("fixture.sqlite")
            try fm.copyItem(at: fixture.appendingPathComponent("whp.sqlite"), to: sqlite)
            let r = try runWHP(["migrate-store", "--from", sqlite.path, "--to", pg])
            guard r.status == 0 else { throw TestSetupError("cannot migrate the rules 1 fixture to PostgreSQL: \(r.stderr)") }
        } else {
            try fm.copyItem(at: fixture.appendingPathComponent("whp.sqlite"), to: t.store)
        }
        return t
    }
}

extension TrialFolder {
    /// The shipped config under `frontline_rcg = "dcams"` with `district`
    /// selecting by fifo: rules 2 allows fifo only where work coaches may see
    /// RCG (R3), and the suites that cover every gatekeeper rule need one.
    public static func withFifo(_ districts: [String] = ["example-north"], sqliteOnly: Bool = false) throws -> TrialFolder {
        let shipped = WHPBinary.repoRoot.appendingPathComponent("district-config/districts.toml")
        var text = try String(contentsOf: shipped, encoding: .utf8)
        for district in districts {
            guard let start = text.range(of: "id = \"\(district)\"") else { throw TestSetupError("no district \(district) in the shipped config") }
            guard let rule = text.range(of: "gatekeeper_rule = \"lottery\"", range: start.upperBound..<text.endIndex) else {
                throw TestSetupError("district \(district) has no gatekeeper_rule")
            }
            text.replaceSubrange(rule, with: "gatekeeper_rule = \"fifo\"")
        }
        return try TrialFolder(districtsTOML: text, frontlineRCG: "dcams", sqliteOnly: sqliteOnly)
    }
}
