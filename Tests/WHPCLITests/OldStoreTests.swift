import Foundation
import Testing
import WHPTestSupport

/// RULES2 R0: a trial the previous release made is still judged by revision
/// 1, verifies and serves, whatever release reads it.
@Suite(.serialized)
struct OldStoreTests {
    static let fixture = WHPBinary.repoRoot.appendingPathComponent("Tests/Fixtures/rules1-demo")

    @Test("the previous release's store verifies with its seed and checkpoint, and keeps its head")
    func verifies() throws {
        let t = try TrialFolder.rules1Fixture()
        let r = try t.verify(["--seed", t.seedFile.path, "--checkpoint", Self.fixture.appendingPathComponent("checkpoint.json").path, "--json"])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(report["events"] as? Int == 197)
        let names = Set(((report["checks"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String })
        #expect(!names.contains("dates") && !names.contains("config_rules"), "rules 2 checks are left out of a rules 1 trial: \(names)")
        #expect(names.isSuperset(of: ["chain", "draws", "locks", "lottery", "derived_seeds", "checkpoint", "derived_tables"]))
    }

    @Test("it serves under rules 1: the session's answers are those the previous release gave, and locks run from gk_date")
    func serves() throws {
        let t = try TrialFolder.rules1Fixture()
        // Every outcome and eligibility request of the session again: the same bytes as then.
        let session = try String(contentsOf: Self.fixture.appendingPathComponent("session.jsonl"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let then = try String(contentsOf: Self.fixture.appendingPathComponent("responses.jsonl"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let reads = zip(session, then).filter { line, _ in
            ["\"op\":\"outcome\"", "\"op\":\"eligibility\""].contains { line.contains($0) }
        }
        try #require(reads.count >= 19)
        let (r, now) = try t.serve(reads.map(\.0), now: "2017-12-27T11:00:00Z")
        #expect(r.status == 0, "\(r.stderr)")
        // The same bytes, but for RULES2 R14's `progress`, which every WHP/PSC outcome now carries (`[]`: no follow-up yet).
        for (answer, (line, old)) in zip(now, reads) { #expect(answer.replacingOccurrences(of: ",\"progress\":[]", with: "") == old, "\(line)") }

        // R-001 was not selected on 2017-11-13, decided on 2017-12-27: under
        // rules 1 its lock ends 42 days after the gatekeeper date (2017-12-25).
        let (_, eligibility) = try t.serve(
            [
                Req.line(Req.envelope("e1", "eligibility", role: "work_coach", ["claimant": ["nino": "JT 43 41 65 B"], "date": "2017-12-25"])),
                Req.line(Req.refer("n1", referral: "R-NEW-1", nino: "JT434165B", district: "devon-cornwall", date: "2017-12-27")),
            ], now: "2017-12-28T09:00:00Z")
        #expect(eligibility[0].contains("\"eligible\":true"), "\(eligibility)")
        #expect(eligibility[1].contains("\"ok\":true"), "\(eligibility)")
        #expect(try t.verify(["--seed", t.seedFile.path]).status == 0)
    }
}
