import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore
import WHPTestSupport

/// `whp audit-bundle --out DIR` and `whp verify --bundle DIR`.
@Suite struct AuditBundleTests {
    static func lines(_ url: URL) throws -> [String] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    @Test func bundleHoldsTheLogConfigAndCommitmentAndVerifies() throws {
        let t = try SmallTrial.build()
        let log = try readLog(t)
        let dir = t.root.appendingPathComponent("bundle")
        let r = try runWHP(["audit-bundle"] + t.common + ["--seeds", t.seeds.path, "--out", dir.path])
        #expect(r.status == 0, "\(r.stderr)")

        // events.jsonl: one {seq, type, payload, hash} per event, in order, as stored.
        var lines = try Self.lines(dir.appendingPathComponent("events.jsonl"))
        #expect(lines.last == "", "every line ends with a newline")
        lines.removeLast()
        #expect(lines.count == log.count)
        for (line, e) in zip(lines, log) {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(Set(obj.keys) == ["seq", "type", "payload", "hash"])
            #expect(obj["seq"] as? Int == e.seq)
            #expect(obj["type"] as? String == e.type)
            #expect(obj["hash"] as? String == e.hash)
            #expect(obj["payload"] as? [String: String] == e.payload)
        }

        // district-config/: a byte-for-byte copy.
        let copied = try filesUnder(dir.appendingPathComponent("district-config"))
        let original = try filesUnder(t.config)
        #expect(copied.map(\.0) == original.map(\.0))
        #expect(copied.map(\.1) == original.map(\.1))

        // <trial_id>.commitment.json: the published commitment.
        let bundled = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("whp-demo.commitment.json"))) as? [String: String])
        let published = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: t.seeds.appendingPathComponent("whp-demo.commitment.json"))) as? [String: String])
        #expect(bundled == published)

        // Nothing else: no store, no keys.
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)) == ["events.jsonl", "district-config", "whp-demo.commitment.json"])

        // verify --bundle --seed passes, with the same head as the store.
        let (v, report) = try verifyBundleJSON(dir, ["--seed", t.seedFile.path])
        #expect(v.status == 0, "\(v.stdout)\(v.stderr)")
        #expect(report.ok && report.failedNames.isEmpty, "\(report.failedNames)")
        #expect(report.events == log.count)
        #expect(report.head == log.last?.hash)
        let expected: Set<String> = ["chain", "config_hash", "draws", "locks", "psc", "recorded_at", "commitment", "derived_seeds", "lottery"]
        #expect(expected.isSubset(of: report.checkNames), "\(expected.subtracting(report.checkNames))")

        // And with a checkpoint taken from the store.
        let cp = t.root.appendingPathComponent("cp.json")
        try runWHP(["checkpoint"] + t.common).stdout.write(to: cp, atomically: true, encoding: .utf8)
        let (vc, withCheckpoint) = try verifyBundleJSON(dir, ["--checkpoint", cp.path])
        #expect(vc.status == 0)
        withCheckpoint.expectPasses("checkpoint")
    }

    @Test func onePayloadByteChangedInTheBundleBreaksTheChainThere() throws {
        let t = try SmallTrial.build()
        let dir = t.root.appendingPathComponent("bundle")
        #expect(try runWHP(["audit-bundle"] + t.common + ["--seeds", t.seeds.path, "--out", dir.path]).status == 0)
        let events = dir.appendingPathComponent("events.jsonl")
        var lines = try Self.lines(events)
        let idx = try #require(lines.indices.dropFirst(lines.count / 2).first { lines[$0].contains(":S001\"") })
        let seq = try #require((try JSONSerialization.jsonObject(with: Data(lines[idx].utf8)) as? [String: Any])?["seq"] as? Int)
        lines[idx] = try #require(replacingFirst(lines[idx], ":S001\"", with: ":S00X\""))
        try lines.joined(separator: "\n").write(to: events, atomically: true, encoding: .utf8)

        let (r, report) = try verifyBundleJSON(dir, ["--seed", t.seedFile.path])
        #expect(r.status == 1)
        report.expectFails("chain", at: seq)
    }

    @Test func armChangedInTheBundleFailsChainAndDraws() throws {
        let t = try SmallTrial.build()
        let target = try #require(SmallTrial.allocations(try readLog(t)).first { $0.payload["district"] == SmallTrial.north })
        let dir = t.root.appendingPathComponent("bundle")
        #expect(try runWHP(["audit-bundle"] + t.common + ["--seeds", t.seeds.path, "--out", dir.path]).status == 0)
        let events = dir.appendingPathComponent("events.jsonl")
        var lines = try Self.lines(events)
        let arm = try #require(target.payload["arm"])
        let newArm = arm == "WHP" ? "RCG" : "WHP"
        lines[target.seq - 1] = try #require(replacingFirst(lines[target.seq - 1], "\"arm\":\"\(arm)\"", with: "\"arm\":\"\(newArm)\""))
        try lines.joined(separator: "\n").write(to: events, atomically: true, encoding: .utf8)

        let (r, report) = try verifyBundleJSON(dir)
        #expect(r.status == 1)
        report.expectFails("chain", at: target.seq)
        report.expectFails("draws", at: target.seq)
    }

    @Test func refusesANonEmptyOutputFolder() throws {
        let t = try TrialFolder()
        #expect(try t.initialise().status == 0)
        let dir = t.root.appendingPathComponent("bundle")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let stray = dir.appendingPathComponent("notes.txt")
        try "keep me\n".write(to: stray, atomically: false, encoding: .utf8)

        let r = try runWHP(["audit-bundle"] + t.common + ["--seeds", t.seeds.path, "--out", dir.path])
        #expect(r.status != 0, "a non-empty --out is refused")
        #expect(r.stderr.contains("empty"), "and the message says why: \(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["notes.txt"], "nothing written into it")
        #expect(try String(contentsOf: stray, encoding: .utf8) == "keep me\n")

        // An existing empty folder is fine.
        let empty = t.root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        #expect(try runWHP(["audit-bundle"] + t.common + ["--seeds", t.seeds.path, "--out", empty.path]).status == 0)
        // A second bundle into the now-filled folder is refused.
        #expect(try runWHP(["audit-bundle"] + t.common + ["--seeds", t.seeds.path, "--out", empty.path]).status != 0)
    }
}
