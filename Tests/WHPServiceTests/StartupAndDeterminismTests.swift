import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPApp
import WHPTestSupport

/// ALLOCATION.md §6, computed here from the spec: every regular file of the
/// folder (hidden ones too), relative `/`-paths sorted by UTF-8 bytes.
func independentConfigHash(_ dir: URL) throws -> String {
    var files: [(path: String, bytes: [UInt8])] = []
    let base = dir.standardizedFileURL.path
    let e = try #require(FileManager.default.enumerator(atPath: base))
    while let rel = e.nextObject() as? String {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: base + "/" + rel, isDirectory: &isDir)
        if !isDir.boolValue { files.append((rel, Array(try Data(contentsOf: URL(fileURLWithPath: base + "/" + rel))))) }
    }
    files.sort { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
    var msg = Independent.enc("whp/config/v1") + Independent.u32(files.count)
    for f in files { msg += Independent.enc(f.path) + Independent.u32(f.bytes.count) + f.bytes }
    return Crypto.sha256(msg).hex
}

/// The session both trials of the determinism test play.
private func determinismSession() -> [String] {
    var s = Script()
    for k in 0..<60 {
        let district = DistrictModel.shipped[k % 6].id
        s.add(
            Q.refer(
                s.nextID(), "dt-\(k)", claimant: k % 5 == 0 ? Q.ref(k) : Q.nino(k), district: district,
                group: k % 2 == 0 ? "disability" : "early_access", date: "2017-11-\(10 + k % 15)"))
    }
    s.add(Q.cancel(s.nextID(), "dt-7"))
    for (k, d) in DistrictModel.shipped.enumerated() where k != 2 {
        s.add(Q.capacity(s.nextID(), run: "dr-\(k)", district: d.id, date: "2017-11-30", 5))
    }
    s.add(
        Q.decide(
            s.nextID(), run: "dr-m", district: DistrictModel.shipped[2].id, date: "2017-11-30",
            [("dt-2", true), ("dt-8", false), ("dt-14", true), ("dt-20", true)]))
    s.add(Q.disclose(s.nextID(), "dt-2"))
    s.add(Q.optOut(s.nextID(), claimant: Q.nino(3), date: "2017-12-01"))
    s.add(Q.flag(s.nextID(), "dt-8", reason: "wrong_group"))
    // dt-8 was not selected in a run recorded on 2017-11-30 (the session's
    // clock moves with its dates): its lock ended on 2018-01-11 (RULES2 R1).
    s.add(Q.refer(s.nextID(), "dt-again", claimant: Q.nino(8), district: "example-north", date: "2018-01-11"))
    s.add(Q.status("end"))
    return s.lines
}

@Suite("Determinism and start-up guards")
struct StartupAndDeterminismTests {
    static let now = "2018-02-01T10:00:00Z"

    /// Copies `from`'s pseudonym and evaluation keys (mode 0600) into `to` before its init, which keeps existing keys.
    static func shareKeys(from: TrialFolder, to: TrialFolder) throws {
        let keys = to.data.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for name in ["pseudonym.key", "evaluation.key"] {
            let dst = keys.appendingPathComponent(name)
            try FileManager.default.copyItem(at: from.data.appendingPathComponent("keys/" + name), to: dst)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dst.path)
        }
    }

    @Test("same keys, same WHP_NOW, same requests: the same responses and the same chain head")
    func sameKeysSameHead() throws {
        let a = try TrialFolder(), b = try TrialFolder(), c = try TrialFolder()
        try #require(try a.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        // b shares a's pseudonym and evaluation keys (init keeps existing keys); c has its own.
        try Self.shareKeys(from: a, to: b)
        try #require(try b.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        try #require(try c.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        #expect(
            try Data(contentsOf: b.data.appendingPathComponent("keys/pseudonym.key"))
                == Data(contentsOf: a.data.appendingPathComponent("keys/pseudonym.key")), "init kept the copied key")
        let heads0 = try [a, b, c].map { try $0.logHead(now: Self.now) }
        // RULES2 R4: trial_started binds the pseudonym and evaluation keys (their key checks), so c, with keys of its own, starts elsewhere.
        #expect(heads0[0] == heads0[1] && heads0[0] != heads0[2], "trial_started depends on the seed, the config and the keys: \(heads0)")

        let session = determinismSession()
        // Each under the session's own moving clock.
        let outA = try a.serveStreaming(session).1
        let outB = try b.serveStreaming(session).1
        let outC = try c.serveStreaming(session).1
        try #require(outA.count == session.count && outB.count == session.count && outC.count == session.count)
        #expect(outA.map(Resp.init).filter { !$0.ok }.isEmpty, "\(outA.filter { !Resp($0).ok })")
        #expect(outA == outB, "same keys and clock: byte-identical responses")
        let headA = try #require(LogHead(Resp(outA.last!))), headB = try #require(LogHead(Resp(outB.last!)))
        let headC = try #require(LogHead(Resp(outC.last!)))
        #expect(headA == headB)
        #expect(headA.events == headC.events && headA.head != headC.head, "another pseudonym key gives other claimant pseudonyms, so another head")
        #expect(Array(outA.dropLast()) == Array(outC.dropLast()), "the pseudonym key never shows in a response")
        // The same keys and requests under another clock: the same answers, another head (recorded_at).
        let d = try TrialFolder()
        try Self.shareKeys(from: a, to: d)
        try #require(try d.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        // An hour later on every day of the session, through the in-process door.
        let door = try InProcessService(d, now: "2017-10-02T10:00:00Z")
        var outD: [String] = []
        for step in SessionSchedule.steps(session) {
            door.clock.set(Instant(seconds: step.at.seconds + 3_600))
            outD += door.send(step.lines)
        }
        #expect(Array(outA.dropLast()) == Array(outD.dropLast()))
        #expect(outD.last.map(Resp.init).flatMap(LogHead.init)?.head != headA.head, "recorded_at is in the chain")
        #expect(try a.verify(["--seed", a.seedFile.path]).status == 0 && b.verify(["--seed", b.seedFile.path]).status == 0)
    }

    enum ConfigEdit: String, CaseIterable, Sendable {
        case oneByteOfTrialTOML, commentInDistricts, hiddenFile, subfolderFile
    }

    @Test("a config that no longer hashes to the trial's: nothing on stdout, exit 1, both hashes on stderr", arguments: ConfigEdit.allCases)
    func configHashGuard(edit: ConfigEdit) throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z").status == 0)
        let (_, st) = try trial.serve([Q.status("s", role: "evaluation_admin")], now: Self.now)
        let statusLine = try #require(st.first)
        let original = try #require(Resp(statusLine).str("config_hash"))
        #expect(original == (try independentConfigHash(trial.config)), "status reports the ALLOCATION.md §6 hash")

        let trialTOML = trial.config.appendingPathComponent("trial.toml")
        let saved = try Data(contentsOf: trialTOML)
        switch edit {
        case .oneByteOfTrialTOML:
            var bytes = [UInt8](saved)
            let k = try #require(bytes.firstIndex(of: UInt8(ascii: "p")))  // in the leading comment
            bytes[k] = UInt8(ascii: "P")
            try Data(bytes).write(to: trialTOML)
        case .commentInDistricts:
            let f = trial.config.appendingPathComponent("districts.toml")
            try (String(contentsOf: f, encoding: .utf8) + "# an added comment\n").write(to: f, atomically: true, encoding: .utf8)
        case .hiddenFile:
            try "notes\n".write(to: trial.config.appendingPathComponent(".notes"), atomically: true, encoding: .utf8)
        case .subfolderFile:
            try FileManager.default.createDirectory(at: trial.config.appendingPathComponent("extra"), withIntermediateDirectories: true)
            try "x\n".write(to: trial.config.appendingPathComponent("extra/readme.txt"), atomically: true, encoding: .utf8)
        }
        let changed = try independentConfigHash(trial.config)
        #expect(changed != original)
        let (r, out) = try trial.serve(
            [Q.status("s1"), Q.refer("s2", "g-1", claimant: Q.nino(1), district: "example-north", date: "2017-11-01")], now: Self.now)
        #expect(r.status == 1, "exit \(r.status)")
        #expect(r.stdout.isEmpty && out.isEmpty, "nothing on stdout: \(r.stdout)")
        #expect(r.stderr.contains(original) && r.stderr.contains(changed), "stderr names both hashes: \(r.stderr)")

        // Put back, the trial serves again and nothing was stored meanwhile.
        switch edit {
        case .oneByteOfTrialTOML: try saved.write(to: trialTOML)
        case .commentInDistricts:
            let f = trial.config.appendingPathComponent("districts.toml")
            let text = try String(contentsOf: f, encoding: .utf8)
            try String(text.dropLast("# an added comment\n".count)).write(to: f, atomically: true, encoding: .utf8)
        case .hiddenFile: try FileManager.default.removeItem(at: trial.config.appendingPathComponent(".notes"))
        case .subfolderFile: try FileManager.default.removeItem(at: trial.config.appendingPathComponent("extra"))
        }
        #expect(try independentConfigHash(trial.config) == original)
        let head = try trial.logHead(now: Self.now)
        #expect(head.events == 1, "only trial_started: \(head)")
    }

    struct KeyMode: Sendable, CustomTestStringConvertible {
        var file: String
        var mode: Int
        var testDescription: String { "\(file) mode \(String(mode, radix: 8))" }
    }

    @Test(
        "a key file group or others may read: nothing on stdout, exit 1",
        arguments: [
            KeyMode(file: "seed.hex", mode: 0o644), KeyMode(file: "pseudonym.key", mode: 0o644),
            KeyMode(file: "seed.hex", mode: 0o640), KeyMode(file: "pseudonym.key", mode: 0o604),
            KeyMode(file: "pseudonym.key", mode: 0o620),
        ])
    func keyModeGuard(_ k: KeyMode) throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z").status == 0)
        let path = trial.data.appendingPathComponent("keys/" + k.file).path
        try FileManager.default.setAttributes([.posixPermissions: k.mode], ofItemAtPath: path)
        let (r, out) = try trial.serve(
            [Q.status("s1"), Q.refer("s2", "g-1", claimant: Q.nino(1), district: "example-north", date: "2017-11-01")], now: Self.now)
        #expect(r.status == 1, "exit \(r.status)")
        #expect(r.stdout.isEmpty && out.isEmpty, "nothing on stdout: \(r.stdout)")
        #expect(r.stderr.contains(k.file), "stderr explains which key: \(r.stderr)")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        let head = try trial.logHead(now: Self.now)
        #expect(head.events == 1, "nothing was stored while refusing: \(head)")
    }

    /// PROTOCOL.md §1 says serve checks "its key files' modes"; CLI.md lists three key files for a
    /// trial and says serve checks "that the key files are private (mode 0600)". Serve never reads
    /// evaluation.key, but a readable one still leaks the research-id mapping.
    @Test("a group/other-readable evaluation.key also stops serve (exit 1, nothing on stdout)")
    func evaluationKeyModeGuard() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z").status == 0)
        let path = trial.data.appendingPathComponent("keys/evaluation.key").path
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let (r, out) = try trial.serve([Q.status("s1")], now: Self.now)
        #expect(r.status == 1, "exit \(r.status), stdout \(r.stdout)")
        #expect(out.isEmpty, "nothing on stdout: \(r.stdout)")
    }

    @Test("status: what each role sees")
    func statusShapes() throws {
        let trial = try TrialFolder(frontlineRCG: "dcams")
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z").status == 0)
        let (_, out) = try trial.serve(["work_coach", "gatekeeper", "evaluation_admin"].map { Q.status($0, role: $0) }, now: Self.now)
        let r = out.map(Resp.init)
        try #require(r.count == 3)
        #expect(Set(r[0].result.keys) == ["protocol", "trial_id", "frontline_rcg"], "\(r[0])")
        #expect(r[0].result["protocol"] as? Int == 1 && r[0].str("trial_id") == "whp-demo" && r[0].str("frontline_rcg") == "dcams")
        let hash = try independentConfigHash(trial.config)
        for x in r[1...] {
            #expect(Set(x.result.keys) == ["protocol", "trial_id", "frontline_rcg", "events", "head", "config_hash"], "\(x)")
            #expect(x.result["events"] as? Int == 1 && x.str("config_hash") == hash && x.str("head")?.count == 64)
        }
    }
}

@Suite("The service clock")
struct ClockTests {
    @Test("a later session whose clock is behind: recorded_at never goes backwards, today follows WHP_NOW")
    func clockBehind() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z").status == 0)
        let first = try trial.run(
            {
                var s = Script(); s.add(Q.refer("a", "late-1", claimant: Q.nino(1), district: "example-north", date: "2018-03-01")); return s
            }(),
            now: "2018-03-01T12:00:00Z")
        #expect(first[0].ok)
        var s = Script()
        s.add(Q.refer("b", "early-1", claimant: Q.nino(2), district: "example-north", date: "2018-01-01"), tag: "ok")
        s.add(Q.refer("c", "early-2", claimant: Q.nino(3), district: "example-north", date: "2018-01-02"), tag: "tomorrow")
        let r = try trial.run(s, now: "2018-01-01T08:00:00Z")
        #expect(r[s.index("ok")].ok)
        expectError(r[s.index("tomorrow")], "invalid_field", field: "referral_date", "after today under WHP_NOW:")
        let v = try trial.verify(["--json"])
        #expect(v.status == 0, "verify (recorded_at check) after a clock going back: \(v.stdout)")
        let bundle = trial.root.appendingPathComponent("bundle-clock")
        try #require(try runWHP(["audit-bundle"] + trial.common + ["--seeds", trial.seeds.path, "--out", bundle.path]).status == 0)
        let stamps = try jsonLines(bundle.appendingPathComponent("events.jsonl")).compactMap { ($0["payload"] as? [String: String])?["recorded_at"] }
        #expect(stamps == stamps.sorted() && stamps.last == "2018-03-01T12:00:00Z", "\(stamps)")
    }
}
