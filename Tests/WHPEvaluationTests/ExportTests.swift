import Foundation
#if canImport(FoundationXML)
    import FoundationXML
#endif
import Testing
import WHPCrypto
import WHPDomain
import WHPEvaluation
import WHPJSON
import WHPTestSupport

/// The evaluation export and CONSORT report, driven through the CLI on a
/// trial built through `whp serve`.
@Suite(.serialized)
struct ExportTests {
    /// A small generated trial: referrals in three districts, capacity and
    /// manual runs, one cancel, one flag, two opt-outs (one before any referral).
    static func makeTrial() throws -> (TrialFolder, [String: String]) {
        let t = try TrialFolder()
        try #require(t.initialise().status == 0)
        var reqs: [[String: Any]] = []
        var ninoOf: [String: String] = [:]
        let districts = ["devon-cornwall", "example-north", "example-south"]
        for i in 0..<90 {
            let rid = "R-\(i)"
            let nino = Req.nino(1000 + i)
            ninoOf[rid] = nino
            reqs.append(
                Req.refer(
                    "r\(i)", referral: rid, nino: nino, district: districts[i % 3],
                    group: i % 2 == 0 ? "disability" : "early_access", date: "2017-11-0\(1 + i % 9)"))
        }
        reqs.append(Req.envelope("c1", "cancel", role: "work_coach", ["referral_id": "R-0", "reason": "moved away"]))
        reqs.append(Req.gatekeep("g1", run: "run-devon", district: "devon-cornwall", date: "2017-11-20", capacity: 20))
        reqs.append(Req.gatekeep("g2", run: "run-north", district: "example-north", date: "2017-11-20", capacity: 10))
        reqs.append(
            Req.decide(
                "g3", run: "run-south", district: "example-south", date: "2017-11-20",
                [("R-2", true), ("R-5", false), ("R-8", true), ("R-11", true)]))
        reqs.append(Req.envelope("f1", "flag_error", role: "gatekeeper", ["referral_id": "R-2", "reason": "duplicate"]))
        reqs.append(Req.envelope("o1", "opt_out", role: "evaluation_admin", ["claimant": ["nino": ninoOf["R-4"]!], "date": "2017-12-01"]))
        reqs.append(Req.envelope("o2", "opt_out", role: "evaluation_admin", ["claimant": ["nino": ninoOf["R-7"]!], "date": "2017-12-01"]))
        let answers = try t.serveJSON(reqs)
        #expect(
            answers.allSatisfy { ($0["ok"] as? Bool) == true },
            "every request of the generated trial succeeds: \(answers.filter { ($0["ok"] as? Bool) != true })")
        return (t, ninoOf)
    }

    static func key(_ url: URL) throws -> Bytes32 {
        let text = try String(contentsOf: url, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try #require(Bytes32(hex: text))
    }

    /// enc(s) of ALLOCATION.md, written out again here so the research id is re-derived independently.
    static func enc(_ s: String) -> [UInt8] {
        let b = Array(s.utf8)
        let n = UInt32(b.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + b
    }

    static func csvRows(_ text: String) -> [[String]] {
        text.components(separatedBy: "\r\n").filter { !$0.isEmpty }.map { $0.components(separatedBy: ",") }
    }

    @Test func exportReDerivesExactly() throws {
        let (t, ninoOf) = try Self.makeTrial()
        let out = t.root.appendingPathComponent("export")
        let r = try runWHP(["export"] + t.common + ["--out", out.path, "--date-precision", "day"], env: ["WHP_NOW": "2019-06-01T12:00:00Z"])
        #expect(r.status == 0, "\(r.stderr)")

        let kp = try Self.key(t.data.appendingPathComponent("keys/pseudonym.key"))
        let ke = try Self.key(t.data.appendingPathComponent("keys/evaluation.key"))
        func pseudonym(_ nino: String) -> String { Crypto.hmac(key: kp, Self.enc("whp/claimant/v1") + Self.enc("NINO:" + nino)).hex }
        func researchID(_ nino: String) -> String { Crypto.hmac(key: ke, Self.enc("whp/research-id/v1") + Self.enc(pseudonym(nino))).hex }

        let csvData = try Data(contentsOf: out.appendingPathComponent("allocations.csv"))
        let csv = String(decoding: csvData, as: UTF8.self)
        #expect(csv.hasSuffix("\r\n") && !csv.replacingOccurrences(of: "\r\n", with: "").contains("\n"), "CRLF line ends only")
        let rows = Self.csvRows(csv)
        #expect(rows[0] == EvaluationRow.columns)
        let body = Array(rows.dropFirst())
        // 90 referred − 1 cancelled − R-4 and R-7 opted out = 87 rows, in
        // research id order (RULES2 R11), never in referral order.
        let referralOf = Dictionary(
            uniqueKeysWithValues: (0..<90).map { "R-\($0)" }.filter { !["R-0", "R-4", "R-7"].contains($0) }
                .map { (researchID(ninoOf[$0]!), $0) })
        let expectedIDs = body.compactMap { referralOf[$0[0]] }
        #expect(body.count == referralOf.count && expectedIDs.count == body.count, "research ids per ALLOCATION.md §5")
        #expect(body.map { $0[0] } == referralOf.keys.sorted(), "rows sorted by research id")
        for (row, rid) in zip(body, expectedIDs) {
            let i = Int(rid.dropFirst(2))!
            #expect(row[1] == ["devon-cornwall", "example-north", "example-south"][i % 3])
            #expect(row[4] == "1")
            #expect(row[5] == "2017-11-0\(1 + i % 9)")
            switch row[7] {
            case "selected": #expect(["WHP", "PSC", "RCG"].contains(row[9]) && row[6] == "2017-11-20")
            case "not_selected": #expect(row[9] == "" && row[6] == "2017-11-20")
            case "pending": #expect(row[9] == "" && row[6] == "" && row[8] == "")
            default: Issue.record("unexpected gk_outcome \(row[7])")
            }
            if i % 3 == 1 { #expect(row[9] != "PSC", "no PSC outside a PSC district") }
        }
        let byID = Dictionary(uniqueKeysWithValues: zip(expectedIDs, body))
        #expect(byID["R-2"]?[10] == "duplicate", "the flag reason is in in_error")
        #expect(byID["R-2"]?[8] == "manual" && byID["R-5"]?[7] == "not_selected")
        #expect(byID["R-1"]?[8] == "lottery" && byID["R-3"]?[8] == "lottery", "every shipped district selects by lottery (RULES2 R3)")

        let manifestData = try Data(contentsOf: out.appendingPathComponent("manifest.json"))
        let manifest = try #require(try JSONSerialization.jsonObject(with: manifestData) as? [String: Any])
        #expect(manifest["rows"] as? Int == 87)
        #expect(manifest["removed_opted_out"] as? Int == 2)
        #expect(manifest["date_precision"] as? String == "day")
        let files = try #require(manifest["files"] as? [String: String])
        #expect(files["allocations.csv"] == Crypto.sha256([UInt8](csvData)).hex)
        let codebook = try Data(contentsOf: out.appendingPathComponent("codebook.md"))
        #expect(files["codebook.md"] == Crypto.sha256([UInt8](codebook)).hex)
        for column in EvaluationRow.columns { #expect(String(decoding: codebook, as: UTF8.self).contains("`\(column)`")) }

        // The export is logged, and its manifest's head is the event before export_made.
        let v = try t.verify(["--json"])
        #expect(v.status == 0, "\(v.stdout)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(v.stdout.utf8)) as? [String: Any])
        #expect(report["events"] as? Int == (manifest["head_seq"] as? Int).map { $0 + 1 })

        // Nothing that identifies a person anywhere in the folder.
        let forbidden =
            ninoOf.values.flatMap { [$0, pseudonym($0)] } + ninoOf.keys.map { "\"\($0)\"" } + ninoOf.keys.map { ",\($0)," }
            + ["S001", "moved away", "NINO:"]
        for name in try FileManager.default.contentsOfDirectory(atPath: out.path) {
            let text = try String(contentsOf: out.appendingPathComponent(name), encoding: .utf8)
            for f in forbidden { #expect(!text.contains(f), "\(name) must not contain \(f)") }
        }
    }

    @Test(arguments: [("day", "2017-11-03"), ("week", "2017-W44"), ("month", "2017-11")])
    func datePrecision(_ precision: String, _ expected: String) throws {
        let t = try TrialFolder()
        try #require(t.initialise().status == 0)
        _ = try t.serveJSON([Req.refer("r", referral: "R-1", nino: Req.nino(5), district: "example-north", date: "2017-11-03")])
        let out = t.root.appendingPathComponent("export-\(precision)")
        let r = try runWHP(["export"] + t.common + ["--out", out.path, "--date-precision", precision, "--format", "jsonl"])
        #expect(r.status == 0, "\(r.stderr)")
        let line = try String(contentsOf: out.appendingPathComponent("allocations.jsonl"), encoding: .utf8)
        let row = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(row["referral_date"] as? String == expected)
        #expect(row["gk_outcome"] as? String == "pending")
        #expect(row["gk_date"] is NSNull)
        #expect(row["referral_number"] as? Int == 1)
    }

    /// RULES2 R6: `referral_number` numbers the person's exported rows 1, 2, …
    /// in referral order; cancelled referrals are not rows and are not counted.
    /// A derived row the log does not explain fails `verify`.
    @Test func referralNumbersCountThePersonsRows() throws {
        let t = try TrialFolder(sqliteOnly: true)
        try #require(t.initialise().status == 0)
        let a = Req.nino(31), b = Req.nino(32)
        let answers = try t.serveJSON([
            Req.refer("1", referral: "A-1", nino: a, district: "example-north", date: "2017-11-01"),
            Req.refer("2", referral: "B-1", nino: b, district: "example-north", date: "2017-11-01"),
            Req.envelope("3", "cancel", role: "work_coach", ["referral_id": "A-1", "reason": "moved away"]),
            Req.refer("4", referral: "A-2", nino: a, district: "example-north", date: "2017-11-02"),
            Req.gatekeep("5", run: "run-1", district: "example-north", date: "2017-11-02", capacity: 0),
            Req.refer("6", referral: "A-3", nino: a, district: "example-north", date: "2017-12-20"),
        ])
        #expect(answers.allSatisfy { ($0["ok"] as? Bool) == true }, "\(answers)")
        let out = t.root.appendingPathComponent("export")
        let r = try runWHP(["export"] + t.common + ["--out", out.path, "--format", "jsonl"])
        #expect(r.status == 0, "\(r.stderr)")
        let text = try String(contentsOf: out.appendingPathComponent("allocations.jsonl"), encoding: .utf8)
        let rows = try text.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
        let kp = try Self.key(t.data.appendingPathComponent("keys/pseudonym.key"))
        let ke = try Self.key(t.data.appendingPathComponent("keys/evaluation.key"))
        func researchID(_ nino: String) -> String {
            let pseudonym = Crypto.hmac(key: kp, Self.enc("whp/claimant/v1") + Self.enc("NINO:" + nino)).hex
            return Crypto.hmac(key: ke, Self.enc("whp/research-id/v1") + Self.enc(pseudonym)).hex
        }
        let ridA = researchID(a), ridB = researchID(b)
        let numbers = rows.map { ($0["research_id"] as? String ?? "", $0["referral_number"] as? Int ?? 0, $0["gk_outcome"] as? String ?? "") }
        let expected = [(ridA, 1, "not_selected"), (ridA, 2, "pending"), (ridB, 1, "not_selected")].sorted { ($0.0, $0.1) < ($1.0, $1.1) }
        #expect(
            numbers.map { "\($0.0.prefix(8)) \($0.1) \($0.2)" } == expected.map { "\($0.0.prefix(8)) \($0.1) \($0.2)" },
            "rows sorted by research id, then the person's referral number")

        try t.openStore().unsafeExecute("UPDATE referrals SET person = claimant || 'x' WHERE referral_id = 'A-3'")
        let tampered = try t.verify()
        #expect(tampered.status == 1 && tampered.stdout.contains("FAIL derived_tables"), "\(tampered.stdout)")
    }

    @Test func datePrecisionFormats() {
        let d = CivilDate("2021-01-03")!
        #expect(DatePrecision.week.format(d) == "2020-W53", "ISO week-year, not the calendar year")
        #expect(DatePrecision.month.format(d) == "2021-01")
        #expect(DatePrecision.day.format(d) == "2021-01-03")
    }

    @Test func csvQuotesOnlyWhenNeeded() {
        var out: [UInt8] = []
        CSV.field("plain", into: &out); out.append(0x7c)
        CSV.field("a,b", into: &out); out.append(0x7c)
        CSV.field("say \"hi\"", into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "plain|\"a,b\"|\"say \"\"hi\"\"\"")
    }

    @Test func exportRefusesBadOptionsAndNonEmptyFolder() throws {
        let t = try TrialFolder()
        try #require(t.initialise().status == 0)
        #expect(try runWHP(["export"] + t.common + ["--out", t.root.appendingPathComponent("e").path, "--format", "xml"]).status == 2)
        #expect(try runWHP(["export"] + t.common + ["--out", t.root.appendingPathComponent("e").path, "--date-precision", "year"]).status == 2)
        #expect(try runWHP(["export"] + t.common + ["--out", t.config.path]).status == 2, "a non-empty folder is refused")
    }
}
