import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore
import WHPTestSupport

/// `checkpoint`, `--help` and usage errors, `demo`, and secrets kept off every output.
@Suite struct CommandTests {
    @Test func checkpointIsOneJSONObjectMatchingVerify() throws {
        let t = try TrialFolder()
        #expect(try t.initialise().status == 0)
        let reqs = (0..<3).map { Req.refer("r\($0)", referral: "R-\($0)", nino: Req.nino(50 + $0), district: "example-north", date: "2017-11-0\($0 + 1)") }
        #expect(try t.serveJSON(reqs).allSatisfy { $0["ok"] as? Bool == true })

        let r = try runWHP(["checkpoint"] + t.common)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasSuffix("\n"))
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 1, "exactly one line: \(r.stdout)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(Set(obj.keys) == ["trial_id", "seq", "head"])
        #expect(obj["trial_id"] as? String == "whp-demo")

        let (_, report) = try verifyJSON(t)
        #expect(obj["seq"] as? Int == report.events)
        #expect(obj["seq"] as? Int == 4)
        #expect(obj["head"] as? String == report.head)
        let head = try #require(obj["head"] as? String)
        #expect(head.count == 64 && head.allSatisfy { "0123456789abcdef".contains($0) })
    }

    @Test func checkpointWithoutAStoreFails() throws {
        let t = try TrialFolder()
        let r = try runWHP(["checkpoint"] + t.common)
        #expect(r.status != 0)
        #expect(r.stdout.isEmpty)
        #expect(!r.stderr.isEmpty)
    }

    static let subcommands: [[String]] = [
        [], ["init"], ["serve"], ["verify"], ["checkpoint"], ["audit-bundle"], ["export"], ["report"], ["report", "consort"], ["report", "balance"], ["demo"],
    ]

    @Test(arguments: subcommands)
    func everySubcommandPrintsHelp(_ cmd: [String]) throws {
        let r = try runWHP(cmd + ["--help"])
        #expect(r.status == 0, "whp \(cmd.joined(separator: " ")) --help exits 0: \(r.stderr)")
        let text = r.stdout + r.stderr
        #expect(text.contains("USAGE") || text.contains("Usage") || text.contains("usage"), "\(text)")
        #expect(text.contains("whp" + (cmd.isEmpty ? "" : " " + cmd.joined(separator: " "))), "the help names the command: \(text)")
        #expect(text.contains("--help"))
    }

    @Test func rootHelpListsTheSubcommands() throws {
        let r = try runWHP(["--help"])
        for sub in ["init", "serve", "verify", "checkpoint", "audit-bundle", "demo"] {
            #expect(r.stdout.contains(sub), "root help lists \(sub)")
        }
    }

    @Test(arguments: [[String](), ["init"], ["serve"], ["verify"], ["checkpoint"], ["audit-bundle", "--out", "/nonexistent-whp"], ["demo"]])
    func unknownFlagIsAUsageError(_ cmd: [String]) throws {
        let r = try runWHP(cmd + ["--no-such-flag"])
        #expect(r.status == 2, "whp \(cmd.joined(separator: " ")) --no-such-flag exits 2 (got \(r.status))")
        #expect(r.stderr.contains("no-such-flag"), "and names the flag: \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test func missingRequiredOptionIsAUsageError() throws {
        let r = try runWHP(["audit-bundle"])
        #expect(r.status == 2, "audit-bundle without --out is a usage error: \(r.stderr)")
    }

    @Test func demoRunsEndToEndFromTheRepoRoot() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("whp-demo-test-" + UUID().uuidString)
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try runWHP(["demo", "--dir", dir.path], cwd: WHPBinary.repoRoot)
        #expect(r.status == 0, "demo: \(r.stderr)")
        let out = r.stdout
        let headings = ["1. whp init", "2. whp serve", "3. whp verify"]
        var cursor = out.startIndex
        for h in headings {
            guard let range = out.range(of: h, range: cursor..<out.endIndex) else {
                Issue.record("demo output lacks heading \"\(h)\" (in order): \(out)")
                return
            }
            cursor = range.upperBound
        }
        #expect(out[cursor...].contains("OK:"), "the verify after heading 3 says OK: \(out)")
        #expect(!out.contains("FAILED"))
        #expect(out.contains("matches the published commitment"))
        // The demo's own store verifies again from outside, with the published seed.
        let again = try runWHP([
            "verify", "--config", dir.appendingPathComponent("district-config").path,
            "--data", dir.appendingPathComponent(".whp").path, "--seeds", dir.appendingPathComponent("seeds").path,
            "--seed", dir.appendingPathComponent(".whp/keys/seed.hex").path,
        ])
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
    }

    @Test func demoRefusesANonEmptyDir() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("whp-demo-test-" + UUID().uuidString)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "x\n".write(to: dir.appendingPathComponent("busy.txt"), atomically: false, encoding: .utf8)
        let r = try runWHP(["demo", "--dir", dir.path], cwd: WHPBinary.repoRoot)
        #expect(r.status == 2, "demo refuses a non-empty --dir with exit 2 (got \(r.status)): \(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["busy.txt"], "and writes nothing there")
    }

    /// The master seed and the pseudonym and evaluation keys appear on no
    /// stdout or stderr and in no file of the audit bundle.
    @Test func secretsNeverLeaveTheKeyFiles() throws {
        let t = try TrialFolder()
        var outputs: [(String, RunResult)] = []
        let i = try t.initialise()
        #expect(i.status == 0)
        outputs.append(("init", i))
        let lines =
            SmallTrial.requests().map(Req.line)
            + [
                Req.line(Req.envelope("st", "status", role: "evaluation_admin")),
                Req.line(Req.envelope("oc", "outcome", role: "work_coach", ["referral_id": "D-0"])),
                Req.line(Req.envelope("ds", "disclose", role: "work_coach", ["referral_id": "D-1", "reason": "audit test"])),
                Req.line(Req.envelope("op", "opt_out", role: "evaluation_admin", ["claimant": ["nino": Req.nino(100)], "date": "2017-12-20"])),
                "not json at all",
            ]
        // Serve with debug logging: a key must not leak into the logs either.
        let s = try runWHP(
            ["serve"] + t.common, env: ["WHP_NOW": "2018-06-01T12:00:00Z", "WHP_LOG": "debug"],
            stdin: Data((lines.joined(separator: "\n") + "\n").utf8))
        #expect(s.status == 0)
        #expect(s.stdout.split(separator: "\n").count == lines.count)
        #expect(s.stdout.split(separator: "\n").filter { $0.contains("\"ok\":true") }.count == lines.count - 1, "every request but the junk line succeeds")
        outputs.append(("serve", s))
        outputs.append(("verify", try t.verify()))
        outputs.append(("verify --seed --json", try t.verify(["--seed", t.seedFile.path, "--json"])))
        outputs.append(("checkpoint", try runWHP(["checkpoint"] + t.common)))
        let dir = t.root.appendingPathComponent("bundle")
        outputs.append(("audit-bundle", try runWHP(["audit-bundle"] + t.common + ["--seeds", t.seeds.path, "--out", dir.path])))
        outputs.append(("verify --bundle --seed", try runWHP(["verify", "--bundle", dir.path, "--seed", t.seedFile.path])))
        let export = t.root.appendingPathComponent("export")
        outputs.append(("export", try runWHP(["export"] + t.common + ["--out", export.path], env: ["WHP_NOW": "2018-06-02T12:00:00Z"])))
        for (name, r) in outputs.dropFirst(2) { #expect(r.status == 0, "\(name): \(r.stderr)") }

        let keys = t.data.appendingPathComponent("keys")
        let secrets = [
            ("seed", try keyHex(t.seedFile)),
            ("pseudonym key", try keyHex(keys.appendingPathComponent("pseudonym.key"))),
            ("evaluation key", try keyHex(keys.appendingPathComponent("evaluation.key"))),
        ]
        for (what, hex) in secrets {
            try #require(hex.count == 64)
            for (name, r) in outputs {
                #expect(!r.stdout.lowercased().contains(hex), "the \(what) is on the stdout of \(name)")
                #expect(!r.stderr.lowercased().contains(hex), "the \(what) is on the stderr of \(name)")
            }
            let files = try filesUnder(dir).map { ("bundle/" + $0.0, $0.1) } + (try filesUnder(export)).map { ("export/" + $0.0, $0.1) }
            #expect(files.count >= 7)
            for (path, data) in files {
                #expect(!String(decoding: data, as: UTF8.self).lowercased().contains(hex), "the \(what) is in output file \(path)")
            }
            // Nor in the store file itself.
            let store = try Data(contentsOf: t.store)
            #expect(!String(decoding: store, as: UTF8.self).lowercased().contains(hex), "the \(what) is in the store")
        }
    }
}
