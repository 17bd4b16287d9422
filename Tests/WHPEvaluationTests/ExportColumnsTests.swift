import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPEvaluation
import WHPTestSupport

/// RULES2 R11, R14, R15 through the CLI: the follow-up, disclosure, corrected
/// group and provider columns; `k_anonymity` against a recomputation from the
/// file; `--min-k`; the Data Package beside every export.
@Suite(.serialized)
struct ExportColumnsTests {
    static let trial = Result { try RichTrial() }

    static func rows(_ out: URL) throws -> (header: [String], rows: [[String: String]]) {
        let text = try String(contentsOf: out.appendingPathComponent("allocations.csv"), encoding: .utf8)
        let all = parseCSV(text)
        let header = try #require(all.first)
        return (header, all.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(header, $0)) })
    }

    @Test func followUpDisclosureCorrectionAndProviderColumns() throws {
        let rich = try Self.trial.get()
        let out = try rich.export("columns-day", ["--date-precision", "day"])
        let (header, rows) = try Self.rows(out)
        #expect(header == EvaluationRow.columns)
        #expect(
            Array(header.suffix(8)) == [
                "provider_referral_date", "start_date", "not_started_reason", "left_date", "left_reason", "disclosed", "corrected_group", "provider",
            ])
        var byReferral: [String: [String: String]] = [:]
        let log = try readLog(rich.t)
        // Each referral's row, found by its person's research id and its number among the person's rows.
        var steps: [String: [String: (date: String, reason: String?)]] = [:]
        for e in log where e.type == "followed_up" {
            steps[e.payload["referral_id"]!, default: [:]][e.payload["step"]!] = (e.payload["date"]!, e.payload["reason"])
        }
        for (rid, nino) in rich.ninoOf where !["R-0", "R-4", "R-7", "R-3"].contains(rid) {
            let id = try rich.researchID(nino: nino)
            let mine = rows.filter { $0["research_id"] == id }
            #expect(mine.count == 1, "\(rid): one row")
            byReferral[rid] = mine.first
        }
        for (rid, row) in byReferral {
            let s = steps[rid] ?? [:]
            #expect(row["provider_referral_date"] == (s["provider_referral"]?.date ?? ""), "\(rid) provider_referral_date")
            #expect(row["start_date"] == (s["started"]?.date ?? ""), "\(rid) start_date")
            #expect(row["not_started_reason"] == (s["did_not_start"]?.reason ?? ""), "\(rid) not_started_reason")
            #expect(row["left_date"] == (s["left"]?.date ?? ""), "\(rid) left_date")
            #expect(row["left_reason"] == (s["left"]?.reason ?? ""), "\(rid) left_reason")
            #expect(row["provider"] == (rich.providerOf[rid] ?? ""), "\(rid) provider")
            #expect(row["disclosed"] == (rid == "R-1" ? "true" : "false"), "\(rid) disclosed")
            #expect(row["corrected_group"] == (rid == "R-2" ? "early_access" : ""), "\(rid) corrected_group")
            if row["arm"] == "RCG" || row["arm"] == "" { #expect(row["provider"] == "" && row["start_date"] == "") }
        }
        #expect(steps.values.contains { $0["left"] != nil } && steps.values.contains { $0["did_not_start"] != nil }, "the trial has every step")
        #expect(rich.providerOf.values.contains("prov-a") || rich.providerOf.values.contains("prov-b"), "example-north draws providers")

        // RULES2 R6: the linked reference number's referral carries the NINO's research id, numbered after R-3.
        let r3 = try rich.researchID(nino: rich.ninoOf["R-3"]!)
        let person = rows.filter { $0["research_id"] == r3 }
        #expect(person.map { $0["referral_number"] } == ["1", "2"], "R-3 and REF-1 are one person's two rows")
        #expect(person.map { $0["district"] } == ["devon-cornwall", "example-south"])
    }

    @Test(arguments: DatePrecision.allCases)
    func kAnonymityIsExactlyTheFilesClasses(_ precision: DatePrecision) throws {
        let rich = try Self.trial.get()
        let out = try rich.export("k-\(precision.rawValue)", ["--date-precision", precision.rawValue])
        let (_, rows) = try Self.rows(out)
        let manifest = try jsonObject(try Data(contentsOf: out.appendingPathComponent("manifest.json")))
        let k = try #require(manifest["k_anonymity"] as? [String: Any])
        let qi = [
            "district", "group", "referral_date", "gk_date", "provider", "provider_referral_date", "start_date", "left_date",
        ]
        #expect(k["quasi_identifiers"] as? [String] == qi)
        var classes: [[String]: Int] = [:]
        for r in rows { classes[qi.map { r[$0] ?? "?" }, default: 0] += 1 }
        #expect(k["k_min"] as? Int == classes.values.min())
        #expect(k["rows_in_classes_below_10"] as? Int == classes.values.filter { $0 < 10 }.reduce(0, +))
        #expect(manifest["rows"] as? Int == rows.count)
    }

    @Test func kMinIsNullWithoutRows() throws {
        let t = try TrialFolder()
        try #require(t.initialise().status == 0)
        let out = t.root.appendingPathComponent("empty")
        #expect(try runWHP(["export"] + t.common + ["--out", out.path]).status == 0)
        let manifest = try jsonObject(try Data(contentsOf: out.appendingPathComponent("manifest.json")))
        let k = try #require(manifest["k_anonymity"] as? [String: Any])
        #expect(k["k_min"] is NSNull && k["rows_in_classes_below_10"] as? Int == 0)
    }

    @Test func minKRefusesWithoutWritingOrLogging() throws {
        let rich = try Self.trial.get()
        let before = try readLog(rich.t).count
        let day = try rich.export("k-probe", ["--date-precision", "day"])
        let manifest = try jsonObject(try Data(contentsOf: day.appendingPathComponent("manifest.json")))
        let kMin = try #require((manifest["k_anonymity"] as? [String: Any])?["k_min"] as? Int)
        #expect(try readLog(rich.t).count == before + 1, "a written export is logged")

        // Refused: exit 1, no export_made, --out not created; an existing empty --out stays empty.
        let missing = rich.t.root.appendingPathComponent("refused/nested")
        let r = try runWHP(
            ["export"] + rich.t.common + ["--out", missing.path, "--date-precision", "day", "--min-k", String(kMin + 1)],
            env: ["WHP_NOW": "2018-06-01T12:00:00Z"])
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.contains("k_min is \(kMin)") && r.stderr.contains("--min-k \(kMin + 1)"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: missing.path) && !FileManager.default.fileExists(atPath: missing.deletingLastPathComponent().path))
        let empty = rich.t.root.appendingPathComponent("empty-out")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let r2 = try runWHP(["export"] + rich.t.common + ["--out", empty.path, "--date-precision", "day", "--min-k", String(kMin + 1)])
        #expect(r2.status == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: empty.path).isEmpty, "nothing written in --out")
        #expect(try readLog(rich.t).count == before + 1, "no export_made appended by a refused export")

        // At the bound it exports.
        _ = try rich.export("k-ok", ["--date-precision", "day", "--min-k", String(kMin)])
        #expect(try readLog(rich.t).count == before + 2)
        #expect(try runWHP(["export"] + rich.t.common + ["--out", rich.t.root.appendingPathComponent("k0").path, "--min-k", "0"]).status == 2)
    }

    @Test(arguments: [("csv", "day"), ("csv", "week"), ("csv", "month"), ("jsonl", "week")])
    func dataPackageDescribesTheFile(_ format: String, _ precision: String) throws {
        let rich = try Self.trial.get()
        let out = try rich.export("pkg-\(format)-\(precision)", ["--format", format, "--date-precision", precision])
        let dataName = "allocations." + format
        let data = try Data(contentsOf: out.appendingPathComponent(dataName))
        let packageData = try Data(contentsOf: out.appendingPathComponent("datapackage.json"))
        let package = try jsonObject(packageData)
        let manifest = try jsonObject(try Data(contentsOf: out.appendingPathComponent("manifest.json")))
        let files = try #require(manifest["files"] as? [String: String])
        #expect(files["datapackage.json"] == Crypto.sha256([UInt8](packageData)).hex, "the manifest lists the Data Package")
        #expect(Set(files.keys) == [dataName, "codebook.md", "datapackage.json"])
        let resource = try #require((package["resources"] as? [[String: Any]])?.first)
        #expect(resource["path"] as? String == dataName)
        #expect(resource["hash"] as? String == "sha256:" + Crypto.sha256([UInt8](data)).hex)
        #expect(resource["bytes"] as? Int == data.count)
        let schema = try #require(resource["schema"] as? [String: Any])
        let fields = try #require(schema["fields"] as? [[String: Any]])
        #expect(fields.map { $0["name"] as? String ?? "" } == EvaluationRow.columns)
        #expect(schema["missingValues"] as? [String] == [""])
        #expect(schema["primaryKey"] as? [String] == ["research_id", "referral_number"])
        func field(_ n: String) -> [String: Any] { fields.first { $0["name"] as? String == n } ?? [:] }
        func enumOf(_ n: String) -> [String]? { (field(n)["constraints"] as? [String: Any])?["enum"] as? [String] }
        #expect(enumOf("arm") == ["WHP", "PSC", "RCG"])
        #expect(enumOf("gk_outcome") == ["selected", "not_selected", "pending"])
        #expect(enumOf("gk_rule") == ["fifo", "lottery", "manual"])
        #expect(enumOf("in_error") == ["ineligible", "duplicate", "wrong_group", "other"])
        #expect(Set(enumOf("not_started_reason") ?? []) == FollowUpStep.didNotStart.reasons)
        #expect(Set(enumOf("left_reason") ?? []) == FollowUpStep.left.reasons)
        #expect(enumOf("provider") == ["prov-a", "prov-b"])
        #expect(field("referral_number")["type"] as? String == "integer")
        #expect(field("disclosed")["type"] as? String == "boolean")
        for c in ["referral_date", "gk_date", "provider_referral_date", "start_date", "left_date"] {
            let f = field(c)
            switch precision {
            case "day": #expect(f["type"] as? String == "date")
            case "month": #expect(f["type"] as? String == "yearmonth")
            default:
                #expect(f["type"] as? String == "string")
                #expect((f["constraints"] as? [String: Any])?["pattern"] as? String == "[0-9]{4}-W(0[1-9]|[1-4][0-9]|5[0-3])")
            }
        }
        if format == "csv" {
            #expect((resource["dialect"] as? [String: Any])?["lineTerminator"] as? String == "\r\n")
        }
    }

    @Test func codebookCoversTheNewColumnsAndTheCaveats() throws {
        let rich = try Self.trial.get()
        let out = try rich.export("codebook", ["--date-precision", "week"])
        let text = try String(contentsOf: out.appendingPathComponent("codebook.md"), encoding: .utf8)
        for c in EvaluationRow.columns { #expect(text.contains("`\(c)`"), "\(c) described") }
        #expect(text.contains("recorded") && text.contains("max_backdate_days") && text.contains("365 in this"), "R1: locks from the recorded date")
        #expect(text.contains("changes") && text.contains("once") && text.contains("linked"), "R6: a linked reference number's research id changes once")
        #expect(text.contains("sorted by `research_id`"))
        for recipe in ["pandas", "pandas-take-up", "r", "stata"] { #expect(text.contains("<!-- recipe: \(recipe) -->"), "\(recipe) recipe") }
        #expect(text.contains("%G-W%V-%u") && text.contains("iso_week_monday"), "the week recipes parse ISO weeks")
    }

    /// The fast row writer and the row model agree byte for byte on facts with every follow-up field.
    @Test(arguments: DatePrecision.allCases)
    func writerMatchesTheRowModelWithFollowUps(_ precision: DatePrecision) {
        let config = TrialConfig(
            trialID: "t", groups: ["disability", "x,y"],
            districts: [District(id: "d", name: "D", psc: true, gatekeeperRule: .lottery, weights: Weights(whp: 1, psc: 1, rcg: 1))])
        let key = Bytes32(hex: String(repeating: "ab", count: 32))!
        let dates = ["2017-11-03", "2021-01-03", "2020-12-31", "1900-01-01", "2999-12-31"].map { CivilDate($0)! }
        var n = 0
        for format in ExportFormat.allCases {
            let writer = EvaluationRowWriter(config: config, evaluationKey: key, precision: precision, format: format)
            for i in 0..<200 {
                let d = { (k: Int) -> CivilDate? in (i + k) % 3 == 0 ? nil : dates[(i * 7 + k) % dates.count] }
                let f = ReferralFacts(
                    claimant: Pseudonym(hex: String(repeating: "0\(i % 10)", count: 32)), district: "d", group: i % 2 == 0 ? "disability" : "x,y",
                    referralDate: dates[i % dates.count], status: i % 4 == 0 ? .notSelected : .allocated(i % 3 == 0 ? .whp : .psc),
                    gkDate: dates[(i + 1) % dates.count], rule: "lottery", flag: i % 5 == 0 ? "wrong_group" : nil, claimantReferralNumber: 1 + i % 3,
                    optedOut: false, correctedGroup: i % 5 == 0 ? "x,y" : nil, disclosed: i % 2 == 1, provider: i % 3 == 0 ? "prov-\"q\"" : nil,
                    followUp: FollowUpFacts(
                        providerReferralDate: d(1), startDate: d(2), notStartedDate: nil, notStartedReason: i % 7 == 0 ? "declined" : nil,
                        leftDate: d(4), leftReason: i % 6 == 0 ? "found_work" : ""))
                var fast: [UInt8] = [], slow: [UInt8] = []
                writer.append(f, to: &fast)
                let row = Evaluation.row(f, config: config, evaluationKey: key, precision: precision)!
                if format == .csv { row.csv(into: &slow) } else { row.jsonl(into: &slow) }
                #expect(fast == slow, "\(format) \(precision) \(i): \(String(decoding: fast, as: UTF8.self)) vs \(String(decoding: slow, as: UTF8.self))")
                n += 1
            }
        }
        #expect(n == 400)
    }
}
