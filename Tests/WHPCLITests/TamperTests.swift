import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore
import WHPTestSupport

/// A small trial built through `whp serve`, then tampered with as an insider
/// would: `whp verify` must exit 1 and name the right check and first bad event.
@Suite struct TamperTests {
    @Test func untouchedTrialVerifiesWithEveryCheck() throws {
        let t = try SmallTrial.build()
        let log = try readLog(t)
        let allocated = SmallTrial.allocations(log)
        #expect(allocated.count == 14, "6 + 2 devon, 4 north, 2 south allocations")
        #expect(Set(allocated.compactMap { $0.payload["district"] }) == [SmallTrial.devon, SmallTrial.north, SmallTrial.south])
        #expect(log.contains { $0.type == "gatekeeper_decision" && $0.payload["rule"] == "lottery" && $0.payload["lottery_key"] != nil })
        #expect(log.contains { $0.type == "gatekeeper_decision" && $0.payload["rule"] == "fifo" })
        #expect(log.contains { $0.type == "gatekeeper_decision" && $0.payload["rule"] == "manual" })
        // The stored chain is the one ALLOCATION.md §7 defines, re-computed here independently.
        #expect(try SpecChain.hashes(log) == log.map(\.hash))

        let (r, report) = try verifyJSON(t, ["--seed", t.seedFile.path])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(report.ok && report.failedNames.isEmpty, "\(report.failedNames)")
        #expect(report.events == log.count)
        #expect(report.head == log.last?.hash)
        for name in ["chain", "config_hash", "draws", "locks", "psc", "recorded_at", "derived_tables", "commitment", "derived_seeds", "lottery"] {
            report.expectPasses(name)
        }
    }

    /// (a) An arm changed in the derived table `referrals`: the log is intact,
    /// only `derived_tables` fails, at that row's last_seq (its allocated event).
    @Test func armChangedInDerivedTable() throws {
        let t = try SmallTrial.build()
        let target = try #require(SmallTrial.allocations(try readLog(t)).first { $0.payload["district"] == SmallTrial.devon && $0.payload["index"] == "3" })
        let rid = try #require(target.payload["referral_id"])
        let newArm = target.payload["arm"] == "WHP" ? "RCG" : "WHP"
        try tamper(
            t, "UPDATE referrals SET arm = \(sqlQuote(newArm)), status = \(sqlQuote("allocated_" + newArm.lowercased())) WHERE referral_id = \(sqlQuote(rid))")

        let (r, report) = try verifyJSON(t, ["--seed", t.seedFile.path])
        #expect(r.status == 1)
        #expect(!report.ok)
        report.expectFails("derived_tables", at: target.seq)
        #expect(report.failedNames == ["derived_tables"], "the log itself still verifies: \(report.failedNames)")
        // The text report names the check and the event too.
        let text = try t.verify()
        #expect(text.status == 1)
        #expect(text.stdout.contains("derived_tables") && text.stdout.contains("first bad event: \(target.seq)"), "\(text.stdout)")
    }

    /// (b) An arm changed inside an allocated event's payload: the chain breaks
    /// at that event and the arm no longer follows from its alloc_seed.
    @Test func armChangedInEventPayload() throws {
        let t = try SmallTrial.build()
        let target = try #require(SmallTrial.allocations(try readLog(t)).first { $0.payload["district"] == SmallTrial.devon && $0.payload["index"] == "4" })
        let arm = try #require(target.payload["arm"])
        let newArm = arm == "WHP" ? "RCG" : "WHP"
        try tamper(
            t, "UPDATE events SET payload = REPLACE(payload, \(sqlQuote("\"arm\":\"\(arm)\"")), \(sqlQuote("\"arm\":\"\(newArm)\""))) WHERE seq = \(target.seq)"
        )
        let after = try #require(try readLog(t).first { $0.seq == target.seq })
        try #require(after.payload["arm"] == newArm, "the tamper changed the stored arm")

        let (r, report) = try verifyJSON(t)
        #expect(r.status == 1)
        report.expectFails("chain", at: target.seq)
        report.expectFails("draws", at: target.seq)
    }

    /// (c) One payload byte changed in a middle event: the chain breaks exactly there.
    @Test func onePayloadByteChangedInAMiddleEvent() throws {
        let t = try SmallTrial.build()
        let log = try readLog(t)
        // A middle event that carries an actor: change one byte of the staff id.
        let target = try #require(log[(log.count / 2)...].first { $0.payloadText.contains(":S001\"") })
        let changed = try #require(replacingFirst(target.payloadText, ":S001\"", with: ":S00X\""))
        #expect(changed.utf8.count == target.payloadText.utf8.count)
        try tamper(t, "UPDATE events SET payload = \(sqlQuote(changed)) WHERE seq = \(target.seq)")

        let (r, report) = try verifyJSON(t, ["--seed", t.seedFile.path])
        #expect(r.status == 1)
        report.expectFails("chain", at: target.seq)
        #expect(report.failedNames == ["chain"], "an actor id feeds only the chain: \(report.failedNames)")
    }

    /// (d) An event deleted from the middle: the chain names the missing seq.
    @Test func eventDeletedFromTheMiddle() throws {
        let t = try SmallTrial.build()
        let log = try readLog(t)
        let gone = log[log.count / 2].seq
        try tamper(t, "DELETE FROM events WHERE seq = \(gone)")

        let (r, report) = try verifyJSON(t)
        #expect(r.status == 1)
        #expect(report.events == log.count - 1)
        report.expectFails("chain", at: gone)
    }

    /// (e) The tail cut after a checkpoint was taken: `checkpoint` fails at the
    /// checkpoint's seq (and passed before the cut).
    @Test func tailCutIsCaughtByACheckpoint() throws {
        let t = try SmallTrial.build()
        let cp = try runWHP(["checkpoint"] + t.common)
        #expect(cp.status == 0, "\(cp.stderr)")
        let file = t.root.appendingPathComponent("checkpoint.json")
        try cp.stdout.write(to: file, atomically: true, encoding: .utf8)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(cp.stdout.utf8)) as? [String: Any])
        let seq = try #require(obj["seq"] as? Int)
        let log = try readLog(t)
        #expect(seq == log.count)

        let (r0, before) = try verifyJSON(t, ["--checkpoint", file.path])
        #expect(r0.status == 0, "\(r0.stdout)")
        before.expectPasses("checkpoint")

        try tamper(t, "DELETE FROM events WHERE seq > \(seq - 3)")
        #expect(try readLog(t).count == seq - 3)
        let (r, report) = try verifyJSON(t, ["--checkpoint", file.path])
        #expect(r.status == 1)
        report.expectFails("checkpoint", at: seq)
    }

    /// A rewritten log (same length, other head) also fails the checkpoint.
    @Test func rewrittenHeadIsCaughtByACheckpoint() throws {
        let t = try SmallTrial.build()
        let cp = try runWHP(["checkpoint"] + t.common)
        let file = t.root.appendingPathComponent("checkpoint.json")
        try cp.stdout.write(to: file, atomically: true, encoding: .utf8)
        let last = try #require(try readLog(t).last)
        let forged = String(last.hash.reversed())
        try tamper(t, "UPDATE events SET hash = \(sqlQuote(forged)) WHERE seq = \(last.seq)")
        let (r, report) = try verifyJSON(t, ["--checkpoint", file.path])
        #expect(r.status == 1)
        report.expectFails("checkpoint", at: last.seq)
        report.expectFails("chain", at: last.seq)
    }

    /// (f) A seed that does not match the commitment.
    @Test func wrongSeedFailsTheCommitment() throws {
        let t = try SmallTrial.build()
        let wrong = t.root.appendingPathComponent("wrong-seed.hex")
        var hex = try keyHex(t.seedFile)
        hex = (hex.first == "0" ? "1" : "0") + hex.dropFirst()
        try (hex + "\n").write(to: wrong, atomically: false, encoding: .utf8)
        try setMode(wrong, 0o600)

        let (r, report) = try verifyJSON(t, ["--seed", wrong.path])
        #expect(r.status == 1)
        report.expectFails("commitment", at: nil)
        report.expectFails("derived_seeds", at: nil)
        report.expectPasses("chain")
        report.expectPasses("draws")
    }

    /// (g) RULES2 R10: a revealed seed is public, so `verify --seed` takes a
    /// seed file of any mode; `serve` still refuses its own seed file when
    /// group or others can read it, and a missing seed file is exit 2.
    @Test func revealedSeedFileOfAnyModeVerifies() throws {
        let t = try SmallTrial.build()
        let open = t.root.appendingPathComponent("open-seed.hex")
        try FileManager.default.copyItem(at: t.seedFile, to: open)
        try setMode(open, 0o644)
        let r = try t.verify(["--seed", open.path])
        #expect(r.status == 0, "verify takes a 0644 revealed seed: \(r.stderr)")
        #expect(r.stdout.contains("OK:"))
        let missing = try t.verify(["--seed", t.root.appendingPathComponent("no-such-seed.hex").path])
        #expect(missing.status == 2, "a missing seed file is a usage error: \(missing.stderr)")
        #expect(missing.stderr.contains("no-such-seed.hex"))
        try setMode(t.seedFile, 0o644)
        let served = try t.serve([], now: "2018-01-31T12:00:00Z").0
        #expect(served.status == 1, "serve refuses its own 0644 seed file")
        #expect(served.stderr.contains("chmod"), "\(served.stderr)")
    }

    /// (h) The config changed after init (one comment byte): `config_hash` fails.
    @Test func configChangedAfterInit() throws {
        let t = try SmallTrial.build()
        let url = t.config.appendingPathComponent("trial.toml")
        let text = try String(contentsOf: url, encoding: .utf8)
        let edited = try #require(replacingFirst(text, "# The trial's policy", with: "# the trial's policy"))
        try edited.write(to: url, atomically: true, encoding: .utf8)

        let (r, report) = try verifyJSON(t)
        #expect(r.status == 1)
        report.expectFails("config_hash", at: 1)
        report.expectPasses("chain")

        // And serve refuses to run on the changed config, writing nothing to stdout.
        let s = try runWHP(["serve"] + t.common, stdin: Data((Req.line(Req.envelope("s", "status", role: "evaluation_admin")) + "\n").utf8))
        #expect(s.status == 1)
        #expect(s.stdout.isEmpty)
    }

    /// (i) The published commitment file edited: `commitment_file` fails.
    @Test func commitmentFileEdited() throws {
        let t = try SmallTrial.build()
        let url = t.seeds.appendingPathComponent("whp-demo.commitment.json")
        var obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: String])
        let c = try #require(obj["commitment"])
        obj["commitment"] = (c.first == "0" ? "1" : "0") + c.dropFirst()
        try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]).write(to: url)

        let (r, report) = try verifyJSON(t, ["--seed", t.seedFile.path])
        #expect(r.status == 1)
        report.expectFails("commitment_file", at: nil)
        report.expectPasses("commitment")
        report.expectPasses("chain")
    }

    /// RULES2 R10: with no published commitment file to compare, the check
    /// is left out of the report (not failed), and stderr says where verify looked.
    @Test func commitmentFileMissing() throws {
        let t = try SmallTrial.build()
        let path = t.seeds.appendingPathComponent("whp-demo.commitment.json")
        try FileManager.default.removeItem(at: path)
        let (r, report) = try verifyJSON(t)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!report.checkNames.contains("commitment_file"))
        #expect(r.stderr.contains(path.path), "stderr names where it looked: \(r.stderr)")
    }

    /// An insider who changes an arm and re-computes every hash after it (the
    /// chain holds no secret) passes `chain`, but not `draws`, `derived_tables`
    /// or a checkpoint taken before.
    @Test func rehashedForgeryIsCaughtByDrawsAndCheckpoint() throws {
        let t = try SmallTrial.build()
        let cpFile = t.root.appendingPathComponent("checkpoint.json")
        let cp = try runWHP(["checkpoint"] + t.common)
        try cp.stdout.write(to: cpFile, atomically: true, encoding: .utf8)
        var log = try readLog(t)
        let target = try #require(SmallTrial.allocations(log).first { $0.payload["district"] == SmallTrial.north && $0.payload["index"] == "1" })
        let arm = try #require(target.payload["arm"])
        let newArm = arm == "WHP" ? "RCG" : "WHP"
        log[target.seq - 1].payload["arm"] = newArm
        var h = try hexBytes(log[target.seq - 2].hash)
        for i in (target.seq - 1)..<log.count {
            h = SpecChain.next(h, log[i])
            log[i].hash = Hex.encode(h)
        }
        let payloadText = try #require(replacingFirst(target.payloadText, "\"arm\":\"\(arm)\"", with: "\"arm\":\"\(newArm)\""))
        var sql = "UPDATE events SET payload = \(sqlQuote(payloadText)) WHERE seq = \(target.seq);"
        for e in log[(target.seq - 1)...] { sql += "UPDATE events SET hash = \(sqlQuote(e.hash)) WHERE seq = \(e.seq);" }
        try tamper(t, sql)
        try #require(try readLog(t).map(\.hash) == log.map(\.hash))

        let (r, report) = try verifyJSON(t, ["--checkpoint", cpFile.path])
        #expect(r.status == 1)
        report.expectPasses("chain")
        report.expectFails("draws", at: target.seq)
        report.expectFails("derived_tables", at: target.seq)
        report.expectFails("checkpoint", at: log.count)
    }

    /// A referral row deleted from the derived table: `derived_tables` at its last_seq.
    @Test func derivedRowDeleted() throws {
        let t = try SmallTrial.build()
        let target = try #require(SmallTrial.allocations(try readLog(t)).first { $0.payload["district"] == SmallTrial.south })
        let rid = try #require(target.payload["referral_id"])
        try tamper(t, "DELETE FROM referrals WHERE referral_id = \(sqlQuote(rid))")
        let (r, report) = try verifyJSON(t)
        #expect(r.status == 1)
        report.expectFails("derived_tables", at: target.seq)
        #expect(report.failedNames == ["derived_tables"])
    }

    /// The newest event's stored hash made malformed (not hex): still a failed
    /// check — `chain` at that event, exit 1 — not an I/O error without a report.
    @Test func malformedHashOfTheNewestEvent() throws {
        let t = try SmallTrial.build()
        let last = try #require(try readLog(t).last)
        try tamper(t, "UPDATE events SET hash = 'not-a-hash' WHERE seq = \(last.seq)")
        let r = try t.verify(["--json"])
        #expect(r.status == 1, "verify exits 1 (a check failed), got \(r.status): \(r.stderr)")
        if let report = try? VerifyReport(r.stdout) {
            report.expectFails("chain", at: last.seq)
        } else {
            Issue.record("verify --json printed no report: stdout \(r.stdout.debugDescription), stderr \(r.stderr)")
        }
    }

    /// The same tamper one event earlier is reported properly (for contrast with the newest event).
    @Test func malformedHashOfAMiddleEvent() throws {
        let t = try SmallTrial.build()
        let log = try readLog(t)
        let target = log[log.count / 2]
        try tamper(t, "UPDATE events SET hash = 'not-a-hash' WHERE seq = \(target.seq)")
        let (r, report) = try verifyJSON(t)
        #expect(r.status == 1)
        report.expectFails("chain", at: target.seq)
    }

    /// A checkpoint of another trial, or a malformed one, never passes.
    @Test func checkpointOfAnotherTrialOrMalformed() throws {
        let t = try TrialFolder()
        #expect(try t.initialise().status == 0)
        let cp = try runWHP(["checkpoint"] + t.common)
        let file = t.root.appendingPathComponent("cp.json")
        try cp.stdout.replacingOccurrences(of: "\"whp-demo\"", with: "\"whp-other\"").write(to: file, atomically: true, encoding: .utf8)
        let (r, report) = try verifyJSON(t, ["--checkpoint", file.path])
        #expect(r.status == 1)
        report.expectFails("checkpoint", at: 1)

        try "{\"seq\": 1}\n".write(to: file, atomically: true, encoding: .utf8)
        let bad = try t.verify(["--checkpoint", file.path])
        #expect(bad.status == 2, "a file that is not a checkpoint is a usage/I-O error: \(bad.stderr)")
        #expect(!bad.stdout.contains("OK:"))
    }
}
