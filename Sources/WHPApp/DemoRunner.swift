import Foundation
import WHPCrypto
import WHPDomain
import WHPService
import WHPStore

/// `whp demo`: the embedded default end to end in a fresh folder.
public struct DemoRunner {
    public var dir: String?
    public var config: String
    public var seeds: String
    public var session: String
    public init(dir: String?, config: String, seeds: String, session: String) {
        self.dir = dir; self.config = config; self.seeds = seeds; self.session = session
    }

    public func run() throws {
        let fm = FileManager.default
        let root = dir ?? (NSTemporaryDirectory() + "whp-demo-" + String(UInt32.random(in: 0...UInt32.max), radix: 36))
        if let existing = try? fm.contentsOfDirectory(atPath: root), !existing.isEmpty {
            throw AppFailure.io("\(root) is not empty; the demo runs in a fresh folder")
        }
        for path in [config, seeds + "/whp-demo.seed.hex", seeds + "/whp-demo.commitment.json", session] where !fm.fileExists(atPath: path) {
            throw AppFailure.io("\(path) not found: run `whp demo` from the repository root (or see `whp demo --help`)")
        }
        let common = TrialPaths(config: root + "/district-config", data: root + "/.whp")
        do {
            try makeDirectory(common.keysDir)
            try fm.copyItem(atPath: config, toPath: common.config)
        } catch { throw AppFailure.io("cannot prepare \(root): \(error.localizedDescription)") }

        // The demo seed is public, so its file may have any mode in a clone; the copy is private as every seed file must be.
        let seedText =
            (try? String(contentsOfFile: seeds + "/whp-demo.seed.hex", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        guard let seed = Bytes32(hex: seedText) else { throw AppFailure.io("\(seeds)/whp-demo.seed.hex is not 64 hex digits") }
        try TrialSetup.createKey(common.seedPath, seed)

        // The session is replayed under a clock that moves with its own dates
        // (SessionSchedule), so it passes the recruitment window as it would
        // have when it was lived. The trial starts an hour before its first line.
        guard let text = try? String(contentsOfFile: session, encoding: .utf8) else { throw AppFailure.io("\(session): cannot read") }
        let schedule = SessionSchedule.steps(text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init))
        guard let first = schedule.first, let last = schedule.last else { throw AppFailure.io("\(session) holds no request") }
        say("whp demo in \(root)\n")
        say("1. whp init (demo seed, shipped district-config), at \(Instant(seconds: first.at.seconds - 3_600).iso)")
        say(try TrialSetup.initialise(paths: common, seedsDir: root + "/seeds", importSeed: nil, now: Instant(seconds: first.at.seconds - 3_600)))
        let published = try CommitmentFile.read(seeds + "/whp-demo.commitment.json")
        let ours = try CommitmentFile.read(root + "/seeds/whp-demo.commitment.json")
        guard published.commitment == ours.commitment, published.configHash == ours.configHash else {
            throw AppFailure.failed("the demo trial does not match the published commitment \(seeds)/whp-demo.commitment.json (was district-config changed?)")
        }
        say("   matches the published commitment \(seeds)/whp-demo.commitment.json\n")

        say("2. whp serve < \(session), a day at a time (\(schedule.count) runs of whp serve, WHP_NOW from \(first.at.iso) to \(last.at.iso))")
        let responsesPath = root + "/responses.jsonl"
        var responses: [Substring] = []
        for (k, step) in schedule.enumerated() {
            let input = root + "/session-\(k).jsonl", output = root + "/responses-\(k).jsonl"
            do { try writeDurably(input, Array((step.lines.joined(separator: "\n") + "\n").utf8)) } catch { throw AppFailure.io(error.description) }
            let status = try runServe(common: common, input: input, output: output, now: step.at)
            guard status == 0 else { throw AppFailure.failed("whp serve exited \(status) at \(step.at.iso)") }
            responses += (try? String(contentsOfFile: output, encoding: .utf8))?.split(separator: "\n") ?? []
            unlink(input); unlink(output)
        }
        do { try writeDurably(responsesPath, Array((responses.joined(separator: "\n") + "\n").utf8)) } catch { throw AppFailure.io(error.description) }
        let failed = responses.filter { $0.contains("\"ok\":false") }.count
        say("   \(responses.count) responses (\(responses.count - failed) ok, \(failed) errors, as the session intends) in \(responsesPath)")
        let store = try openStore(common, readonly: false)
        let counts = try store.read { try $0.allocationCounts() }
        for (district, arms) in counts.sorted(by: { $0.key < $1.key }) {
            let text = Arm.allCases.compactMap { a in arms[a.rawValue].map { "\(a.rawValue) \($0)" } }.joined(separator: ", ")
            say("   \(district.padding(toLength: 38, withPad: " ", startingAt: 0)) \(text)")
        }
        say("")

        say("3. whp verify --seed \(common.seedPath)")
        let report = try Auditor.verifyStore(paths: common, seedsDir: root + "/seeds", seed: seed, checkpoint: nil)
        say(Auditor.text(report))
        guard report.ok else { throw AppFailure.failed("verification failed") }
        say("")

        say("4. whp export --out \(root)/export (de-identified evaluation dataset)")
        let key = try readKey(common.evaluationKeyPath)
        let loaded = try loadConfig(common.config)
        say(
            "   "
                + (try EvaluationExport(
                    config: loaded.config, configHash: loaded.hash, key: key, format: .csv, precision: .month,
                    out: root + "/export", progress: false, clock: FixedClock(Instant(seconds: last.at.seconds + 3_600))
                ).run(store)))
        say("")
        say("5. whp report consort")
        say(try Reports.consortFlow(store).table(config: loaded.config))
        say("\nDone. Try: whp verify --data \(common.data) --config \(common.config) --seeds \(root)/seeds")
    }

    func say(_ s: String) { print(s) }

    /// Plays the session through a real `whp serve` process: the same door a DCAMS client uses.
    func runServe(common: TrialPaths, input: String, output: String, now: Instant) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = ["serve", "--config", common.config, "--data", common.data]
        guard let inHandle = FileHandle(forReadingAtPath: input), let outHandle = openForWriting(output) else {
            throw AppFailure.io("cannot open \(input) or \(output)")
        }
        var env = ProcessInfo.processInfo.environment
        if env["WHP_LOG"] == nil { env["WHP_LOG"] = "warning" }
        env["WHP_NOW"] = now.iso
        p.environment = env
        p.standardInput = inHandle
        p.standardOutput = outHandle
        do { try p.run() } catch { throw AppFailure.io("cannot start whp serve: \(error.localizedDescription)") }
        p.waitUntilExit()
        return p.terminationStatus
    }
}
