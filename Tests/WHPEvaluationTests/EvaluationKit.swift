import Foundation
import Testing
import WHPCrypto
import WHPTestSupport

/// A trial with everything the evaluation reads: three districts (one with
/// providers), lottery and manual runs, a cancel, follow-ups of every step
/// and reason, a disclosure, a wrong-group flag with its corrected group, a
/// linked reference number and opt-outs. Built through `whp serve` under the
/// session's moving clock.
struct RichTrial: Sendable {
    let t: TrialFolder
    /// referral id → the NINO it was referred under.
    var ninoOf: [String: String] = [:]
    /// referral id → arm, read back from the log (`allocated` events).
    var armOf: [String: String] = [:]
    var providerOf: [String: String] = [:]
    /// The referral made under a reference number that was later linked to R-3's NINO.
    let linkedReferral = "REF-1"
    let linkedRef = "123456789012"

    static let districts = ["devon-cornwall", "example-north", "example-south"]

    init(referrals: Int = 120, sqliteOnly: Bool = false) throws {
        t = try TrialFolder(sqliteOnly: sqliteOnly)
        try #require(t.initialise().status == 0)
        var reqs: [[String: Any]] = []
        for i in 0..<referrals {
            let rid = "R-\(i)", nino = Req.nino(2000 + i)
            ninoOf[rid] = nino
            reqs.append(
                Req.refer(
                    "r\(i)", referral: rid, nino: nino, district: Self.districts[i % 3], group: i % 2 == 0 ? "disability" : "early_access",
                    date: "2017-11-0\(1 + i % 9)"))
        }
        // A reference number, referred on its own, then linked to R-3's NINO (one person, RULES2 R6).
        reqs.append(
            Req.envelope(
                "rref", "refer", role: "work_coach",
                [
                    "referral_id": linkedReferral, "claimant": ["ref": linkedRef], "district": "example-south", "group": "disability",
                    "referral_date": "2017-11-09",
                ]))
        reqs.append(Req.envelope("c1", "cancel", role: "work_coach", ["referral_id": "R-0", "reason": "moved away"]))
        reqs.append(Req.gatekeep("g1", run: "run-devon", district: "devon-cornwall", date: "2017-11-20", capacity: referrals / 4))
        reqs.append(Req.gatekeep("g2", run: "run-north", district: "example-north", date: "2017-11-20", capacity: referrals / 4))
        reqs.append(
            Req.decide(
                "g3", run: "run-south", district: "example-south", date: "2017-11-20",
                [("R-2", true), ("R-5", false), ("R-8", true), ("R-11", true), (linkedReferral, true)]))
        let first = try t.serveJSON(reqs)
        #expect(first.allSatisfy { ($0["ok"] as? Bool) == true }, "\(first.filter { ($0["ok"] as? Bool) != true })")

        for e in try readLog(t) where e.type == "allocated" {
            armOf[e.payload["referral_id"] ?? ""] = e.payload["arm"]
            if let p = e.payload["provider"] { providerOf[e.payload["referral_id"] ?? ""] = p }
        }
        let programme = armOf.filter { $0.value != "RCG" }.keys.sorted { Int($0.dropFirst(2)) ?? 0 < Int($1.dropFirst(2)) ?? 0 }
        var more: [[String: Any]] = []
        let notStarted = ["declined", "did_not_attend", "not_suitable", "moved_away", "deceased", "other"]
        let leftReasons = ["completed", "found_work", "moved_away", "deceased", "health", "other"]
        for (k, rid) in programme.enumerated() where k % 5 != 4 {
            more.append(Req.envelope("p\(k)", "follow_up", role: "work_coach", ["referral_id": rid, "step": "provider_referral", "date": "2017-11-27"]))
        }
        for (k, rid) in programme.enumerated() where k % 5 != 4 {
            if k % 5 == 3 {
                more.append(
                    Req.envelope(
                        "n\(k)", "follow_up", role: "work_coach",
                        ["referral_id": rid, "step": "did_not_start", "date": "2017-12-04", "reason": notStarted[k % notStarted.count]]))
            } else {
                more.append(Req.envelope("s\(k)", "follow_up", role: "work_coach", ["referral_id": rid, "step": "started", "date": "2017-12-0\(4 + k % 3)"]))
            }
        }
        for (k, rid) in programme.enumerated() where k % 5 == 0 {
            more.append(
                Req.envelope(
                    "l\(k)", "follow_up", role: "work_coach",
                    ["referral_id": rid, "step": "left", "date": "2018-01-15", "reason": leftReasons[k % leftReasons.count]]))
        }
        more.append(Req.envelope("d1", "disclose", role: "work_coach", ["referral_id": "R-1", "reason": "audit test"]))
        more.append(
            Req.envelope("f1", "flag_error", role: "gatekeeper", ["referral_id": "R-2", "reason": "wrong_group", "corrected_group": "early_access"]))
        more.append(Req.envelope("lk", "link_claimant", role: "work_coach", ["nino": ninoOf["R-3"]!, "ref": linkedRef]))
        more.append(Req.envelope("o1", "opt_out", role: "evaluation_admin", ["claimant": ["nino": ninoOf["R-4"]!], "date": "2018-01-20"]))
        more.append(Req.envelope("o2", "opt_out", role: "evaluation_admin", ["claimant": ["nino": ninoOf["R-7"]!], "date": "2018-01-20"]))
        let second = try t.serveJSON(more)
        #expect(second.allSatisfy { ($0["ok"] as? Bool) == true }, "\(second.filter { ($0["ok"] as? Bool) != true })")
    }

    func key(_ name: String) throws -> Bytes32 {
        let text = try String(contentsOf: t.data.appendingPathComponent("keys/" + name), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try #require(Bytes32(hex: text))
    }

    /// The research id of a NINO, derived here from ALLOCATION.md §5 (not through whp's code).
    func researchID(nino: String) throws -> String {
        let pseudonym = Crypto.hmac(key: try key("pseudonym.key"), ExportTests.enc("whp/claimant/v1") + ExportTests.enc("NINO:" + nino)).hex
        return Crypto.hmac(key: try key("evaluation.key"), ExportTests.enc("whp/research-id/v1") + ExportTests.enc(pseudonym)).hex
    }

    /// `whp export` into a fresh folder; returns the folder.
    @discardableResult
    func export(_ name: String, _ extra: [String] = [], status: Int32 = 0) throws -> URL {
        let out = t.root.appendingPathComponent(name)
        let r = try runWHP(["export"] + t.common + ["--out", out.path, "--no-progress"] + extra, env: ["WHP_NOW": "2018-06-01T12:00:00Z"])
        #expect(r.status == status, "export \(extra): \(r.stdout) \(r.stderr)")
        return out
    }
}

/// An RFC 4180 reader (quotes, doubled quotes, CRLF), written here so the
/// tests do not read the export with the code that wrote it.
func parseCSV(_ text: String) -> [[String]] {
    var rows: [[String]] = []
    var row: [String] = []
    var field = ""
    var quoted = false
    var chars = Array(text.unicodeScalars)[...]
    while let c = chars.first {
        chars = chars.dropFirst()
        if quoted {
            if c == "\"" {
                if chars.first == "\"" { field.unicodeScalars.append("\""); chars = chars.dropFirst() } else { quoted = false }
            } else {
                field.unicodeScalars.append(c)
            }
        } else if c == "\"" {
            quoted = true
        } else if c == "," {
            row.append(field); field = ""
        } else if c == "\r" && chars.first == "\n" {
            chars = chars.dropFirst()
            row.append(field); field = ""
            rows.append(row); row = []
        } else {
            field.unicodeScalars.append(c)
        }
    }
    if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
    return rows
}

func jsonObject(_ data: Data) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}
