import Foundation
import Testing
import WHPTestSupport

/// PROTOCOL.md §4: what work coaches and claimants see.
@Suite("Views: the hidden-RCG invariant and the exact DCAMS texts")
struct HiddenPolicyTests {
    static let now: String? = nil  // the session's own moving clock

    /// The texts of PROTOCOL.md §4, written out from the spec's tables.
    static func workCoachView(trueStatus: String, policy: String, gk: Day?, name: String?) -> [String: String] {
        let n = name ?? "{name}"
        let date = gk?.long ?? ""
        let refer = "Please refer \(n) to the provider through the appropriate referral system (LMS / WSP / DPT)"
        var v: [String: String]
        switch (trueStatus, policy) {
        case ("awaiting_gatekeeper", _):
            v = [
                "status": "awaiting_gatekeeper", "summary": "Awaiting gatekeeper",
                "outcome_text": "\(n) is awaiting the district gatekeeper", "next_steps": "Check again after the gatekeeper has acted",
            ]
        case ("cancelled", _):
            v = [
                "status": "cancelled", "summary": "Referral cancelled",
                "outcome_text": "The referral for \(n) was cancelled", "next_steps": "A new referral can be made for \(n)",
            ]
        case ("not_selected", "hidden"), ("allocated_rcg", "hidden"):
            v = [
                "status": "not_allocated", "summary": "Not allocated a place (on \(date))",
                "outcome_text": "\(n) was not allocated a place on the Work and Health Programme",
                "next_steps": "Please continue to provide Work Coach support for \(n)",
            ]
        case ("not_selected", _):
            v = [
                "status": "not_selected", "summary": "Not selected (on \(date))",
                "outcome_text": "\(n) was not selected by the district gatekeeper for allocation to the Work and Health Programme",
                "next_steps": "A new referral can be made for \(n) from \(gk!.plus(42).long)",
            ]
        case ("allocated_whp", _):
            v = [
                "status": "allocated_whp", "summary": "Allocated to the WHP on \(date)",
                "outcome_text": "\(n) was allocated to the Work and Health Programme", "next_steps": refer,
            ]
        case ("allocated_psc", _):
            v = [
                "status": "allocated_psc", "summary": "Allocated to the PSC on \(date)",
                "outcome_text": "\(n) was allocated a place with the Public Sector Comparator", "next_steps": refer,
            ]
        case ("allocated_rcg", _):
            v = [
                "status": "allocated_rcg", "summary": "Allocated to the RCG on \(date)",
                "outcome_text": "\(n) was allocated a place in the Random Control Group",
                "next_steps": "Please continue to provide Work Coach support for \(n). A new referral can be made for \(n) from \(gk!.addingMonths(24).long)",
            ]
        default:
            fatalError("no view for \(trueStatus)")
        }
        if let gk, !["awaiting_gatekeeper", "cancelled"].contains(trueStatus) { v["date"] = gk.iso }
        return v
    }

    static func claimantView(trueStatus: String) -> [String: String] {
        switch trueStatus {
        case "awaiting_gatekeeper": ["status": "pending", "message": "We will tell you the outcome of your referral to the Work and Health Programme soon."]
        case "allocated_whp": ["status": "offered_place", "message": "You have been allocated a place on the Work and Health Programme."]
        case "allocated_psc": ["status": "offered_place", "message": "You have been allocated a place with the Public Sector Comparator."]
        case "not_selected", "allocated_rcg":
            ["status": "not_successful", "message": "You were not successful in getting a place on the Work and Health Programme."]
        case "cancelled": ["status": "cancelled", "message": "Your referral to the Work and Health Programme was cancelled."]
        default: fatalError()
        }
    }

    // MARK: - The invariant, over many generated pairs

    /// One decided referral as the probes need it.
    struct Member {
        var rid: String
        var claimant: [String: String]
        var district: String
        var group: String
        var date: String
        /// The person's other identifier (a NINO for a ref, a ref for a NINO),
        /// linked during the probes (RULES2 R6).
        var other: [String: String]

        func link(_ id: String) -> String {
            let (nino, ref) = claimant["nino"] != nil ? (claimant, other) : (other, claimant)
            return Req.line(Req.envelope(id, "link_claimant", role: "work_coach", ["nino": nino["nino"]!, "ref": ref["ref"]!]))
        }
    }

    /// The probes of one member whose gatekeeper date is `d`, each tagged
    /// `mustMatch` (before d+42, or never lock-dependent) or not.
    static func probes(_ m: Member, tag: String, d: Day) -> [(line: String, mustMatch: Bool, label: String)] {
        var p: [(String, Bool, String)] = []
        var j = 0
        func add(_ line: String, _ label: String, must: Bool = true) { j += 1; p.append((line, must, label)) }
        let id = { (k: Int) in "P-\(tag)-\(k)" }
        func tryID(_ k: Int) -> String { "try-\(tag)-\(k)" }
        let views = { (round: String) in
            add(Q.outcome(id(j), rid: m.rid), "\(round) outcome by referral")
            add(Q.outcome(id(j), rid: m.rid, audience: "work_coach", name: "Jo Bloggs"), "\(round) outcome named")
            add(Q.outcome(id(j), rid: m.rid, audience: "claimant"), "\(round) claimant view")
            add(Q.outcome(id(j), rid: m.rid, audience: "claimant", name: "Jo"), "\(round) claimant view named")
            add(Q.outcome(id(j), claimant: m.claimant), "\(round) outcome by claimant")
            add(Q.outcome(id(j), claimant: m.claimant, name: "{name} O'Brien-Łukasz"), "\(round) outcome by claimant, odd name")
            add(Q.outcome(id(j), claimant: m.claimant, audience: "claimant"), "\(round) claimant view by claimant")
            add(Q.status(id(j), role: "work_coach"), "\(round) status")
        }
        views("before")
        for k in [-400, -1, 0, 1, 20, 41] {
            add(Q.eligibility(id(j), claimant: m.claimant, date: d.plus(k).iso), "eligibility d\(k >= 0 ? "+" : "")\(k)")
        }
        // RULES2 R6, R14: link the person's other identifier and ask through
        // it; follow a step up on the referral. None of it may tell them apart.
        add(m.link(id(j)), "link")
        add(m.link(id(j)), "link repeat")
        add(Q.outcome(id(j), claimant: m.other), "outcome by the linked identifier")
        add(Q.outcome(id(j), claimant: m.other, audience: "claimant"), "claimant view by the linked identifier")
        for k in [1, 41] {
            add(Q.eligibility(id(j), claimant: m.other, date: d.plus(k).iso), "eligibility by the linked identifier d+\(k)")
            add(Q.refer(id(j), tryID(200 + k), claimant: m.other, district: m.district, date: d.plus(k).iso), "refer by the linked identifier d+\(k)")
        }
        add(FollowUpTests.followUp(id(j), m.rid, "provider_referral", d.plus(1).iso), "follow-up")
        add(FollowUpTests.followUp(id(j), m.rid, "started", d.plus(2).iso), "follow-up started")
        for k in [0, 1, 41] {
            add(Q.refer(id(j), tryID(k), claimant: m.claimant, district: m.district, date: d.plus(k).iso), "refer d+\(k)")
            add(
                Q.refer(
                    id(j), tryID(100 + k), claimant: m.claimant, district: "example-south", group: "early_access",
                    date: d.plus(k).iso), "refer elsewhere d+\(k)")
        }
        add(Q.refer(id(j), m.rid, claimant: m.claimant, district: m.district, group: m.group, date: m.date), "refer replay")
        add(Q.refer(id(j), m.rid, claimant: m.claimant, district: m.district, group: m.group, date: d.plus(1).iso), "refer conflict")
        add(Q.cancel(id(j), m.rid), "cancel")
        add(Q.cancel(id(j), m.rid, reason: "duplicate"), "cancel again")
        add(Q.flag(id(j), m.rid, reason: "other"), "flag")
        add(Q.flag(id(j), m.rid, reason: "other"), "flag replay")
        add(Q.flag(id(j), m.rid, reason: "duplicate"), "flag conflict")
        views("after flag")
        // From d+42 the shorter lock has ended: only eligibility and refer may differ.
        for k in [42, 43, 300] {
            add(Q.eligibility(id(j), claimant: m.claimant, date: d.plus(k).iso), "eligibility d+\(k)", must: false)
        }
        views("after d+42")
        add(Q.eligibility(id(j), claimant: m.other, date: d.plus(42).iso), "eligibility by the linked identifier d+42", must: false)
        add(Q.refer(id(j), tryID(42), claimant: m.claimant, district: m.district, date: d.plus(42).iso), "refer d+42", must: false)
        return p.map { (line: $0.0, mustMatch: $0.1, label: $0.2) }
    }

    @Test("hidden: a not-selected and an RCG claimant decided on the same date look the same to work coaches and claimants")
    func hiddenInvariant() throws {
        let trial = try TrialFolder(frontlineRCG: "hidden")
        try #require(try trial.initialise(now: "2017-06-01T09:00:00Z", seedHex: Seeds.b).status == 0)
        var rng = SplitMix(0x4ED_0001)
        let districts = DistrictModel.shipped
        var s = Script()
        struct Case { var d: Day; var members: [Member] }
        var cases: [Case] = []
        var claimantNo = 1
        // Runs in date order across districts: under rules 2 a lock runs from the
        // day its decision was recorded (RULES2 R1), and the session's clock
        // moves with its dates, so each run is recorded on its own gk_date.
        var lastDate = Day("2017-07-03")
        for k in 0..<36 {
            let district = districts[k % districts.count]
            let d = lastDate.plus(rng.int(1...6))
            lastDate = d
            var members: [Member] = []
            for q in 0..<rng.int(6...10) {
                let byRef = rng.chance(0.3)
                let c = byRef ? Q.ref(claimantNo) : Q.nino(claimantNo)
                let m = Member(
                    rid: "c\(k)-\(q)", claimant: c, district: district.id, group: rng.chance(0.5) ? "disability" : "early_access",
                    date: d.plus(-rng.int(0...20)).iso, other: byRef ? Q.nino(claimantNo) : Q.ref(claimantNo))
                claimantNo += 1
                members.append(m)
                s.add(Q.refer(s.nextID(), m.rid, claimant: m.claimant, district: m.district, group: m.group, date: m.date))
            }
            if rng.chance(0.5) {
                s.add(Q.capacity(s.nextID(), run: "run-\(k)", district: district.id, date: d.iso, members.count / 2 + 1))
            } else {
                s.add(
                    Q.decide(
                        s.nextID(), run: "run-\(k)", district: district.id, date: d.iso,
                        members.map { ($0.rid, rng.chance(0.6)) }))
            }
            cases.append(Case(d: d, members: members))
        }
        var truth: [String: Int] = [:]
        for c in cases { for m in c.members { truth[m.rid] = s.add(Q.disclose(s.nextID(), m.rid)) } }
        let r1 = try trial.run(s, now: Self.now)
        #expect(r1.allSatisfy { $0.ok }, "setup: \(r1.filter { !$0.ok }.prefix(3))")

        // Pairs: a not-selected and an RCG member of the same run (same gatekeeper date).
        var pairs: [(Member, Member, Day)] = []
        for c in cases {
            let status = { (m: Member) in r1[truth[m.rid]!].str("status") }
            if let a = c.members.first(where: { status($0) == "not_selected" }),
                let b = c.members.first(where: { status($0) == "allocated_rcg" })
            {
                pairs.append((a, b, c.d))
            }
        }
        try #require(pairs.count >= 15, "only \(pairs.count) pairs")

        var t = Script()
        var index: [(a: [Int], b: [Int], probes: [(line: String, mustMatch: Bool, label: String)], pair: Int)] = []
        for (n, (a, b, d)) in pairs.enumerated() {
            let pa = Self.probes(a, tag: "\(n)A", d: d), pb = Self.probes(b, tag: "\(n)B", d: d)
            let ia = pa.map { t.add($0.line) }, ib = pb.map { t.add($0.line) }
            index.append((ia, ib, pa, n))
        }
        var disclosed: [(Int, Int)] = []
        for (a, b, _) in pairs { disclosed.append((t.add(Q.disclose(t.nextID(), a.rid)), t.add(Q.disclose(t.nextID(), b.rid)))) }
        let r = try trial.run(t, now: Self.now)

        var leaks: [String] = []
        var allowedDiffer = 0
        for (ia, ib, probes, n) in index {
            let (a, b, d) = pairs[n]
            func norm(_ resp: Resp, _ m: Member, _ tag: String) -> String {
                resp.withoutID.replacingOccurrences(of: m.rid, with: "<RID>").replacingOccurrences(of: "try-\(tag)-", with: "try-X-")
            }
            for (k, p) in probes.enumerated() {
                let x = norm(r[ia[k]], a, "\(n)A"), y = norm(r[ib[k]], b, "\(n)B")
                if p.mustMatch {
                    if x != y { leaks.append("pair \(n) (\(a.district), \(d)): \(p.label): not selected \(x) vs RCG \(y)") }
                } else if x != y {
                    allowedDiffer += 1
                }
            }
            // The expected answers themselves, not only their equality.
            let firstView = r[ia[0]]
            #expect(firstView.str("status") == "not_allocated" && firstView.str("date") == d.iso, "\(firstView)")
            let named = r[ia[1]].result as? [String: String] ?? [:]
            var expected = Self.workCoachView(trueStatus: "not_selected", policy: "hidden", gk: d, name: "Jo Bloggs")
            expected["referral_id"] = a.rid
            #expect(named == expected, "hidden not-selected view: \(named)")
            // Flags do not change views.
            for (before, after) in [
                ("before outcome by referral", "after flag outcome by referral"), ("before claimant view", "after flag claimant view"),
                ("before outcome named", "after d+42 outcome named"),
            ] {
                let i = probes.firstIndex { $0.label == before }!, j = probes.firstIndex { $0.label == after }!
                #expect(norm(r[ia[i]], a, "\(n)A") == norm(r[ia[j]], a, "\(n)A"), "\(before) vs \(after)")
            }
            let eligD42 = probes.firstIndex { $0.label == "eligibility d+42" }!
            expectEligibility(r[ia[eligD42]], eligible: true, from: nil, "not selected on d+42:")
            expectEligibility(r[ib[eligD42]], eligible: false, from: nil, "RCG on d+42 (hidden: no eligible_from):")
            let referD42 = probes.count - 1
            #expect(r[ia[referD42]].ok, "not selected, refer on d+42: \(r[ia[referD42]])")
            expectError(r[ib[referD42]], "not_eligible", field: "claimant", "RCG, refer on d+42:")
            let linked = probes.firstIndex { $0.label == "link" }!
            #expect(r[ia[linked]].result["linked"] as? Bool == true, "\(r[ia[linked]])")
            let byOther = probes.firstIndex { $0.label == "outcome by the linked identifier" }!
            #expect(r[ia[byOther]].str("referral_id") == a.rid, "the linked identifier finds the person's referral: \(r[ia[byOther]])")
            let eligOtherD42 = probes.firstIndex { $0.label == "eligibility by the linked identifier d+42" }!
            expectEligibility(r[ia[eligOtherD42]], eligible: true, from: nil, "not selected, linked identifier, d+42:")
            expectEligibility(r[ib[eligOtherD42]], eligible: false, from: nil, "RCG, linked identifier, d+42:")
            for label in [
                "refer d+0", "refer d+41", "cancel", "refer conflict", "flag conflict", "refer by the linked identifier d+1",
                "refer by the linked identifier d+41", "follow-up",
            ] {
                let k = probes.firstIndex { $0.label == label }!
                #expect(!r[ia[k]].ok, "\(label) must fail: \(r[ia[k]])")
            }
        }
        expectNone(leaks, "work-coach/claimant responses tell a not-selected claimant from an RCG one")
        #expect(allowedDiffer >= pairs.count * 4, "after d+42 eligibility and refer do differ")
        for (n, (x, y)) in disclosed.enumerated() {
            #expect(r[x].str("status") == "not_selected" && r[y].str("status") == "allocated_rcg", "disclose, pair \(n): \(r[x]) \(r[y])")
        }
    }

    // MARK: - The exact texts

    @Test("the exact texts of PROTOCOL.md §4 for every status, both audiences", arguments: ["dcams", "hidden"])
    func exactTexts(policy: String) throws {
        let trial = try TrialFolder(frontlineRCG: policy)
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        var s = Script()
        let selected = (1...6).map { "sel-\($0)" }
        for (k, rid) in selected.enumerated() {
            s.add(Q.refer(s.nextID(), rid, claimant: Q.nino(100 + k), district: "devon-cornwall", date: "2017-11-0\(k + 1)"))
        }
        s.add(Q.refer(s.nextID(), "ns-1", claimant: Q.nino(200), district: "devon-cornwall", date: "2017-11-08"))
        s.add(
            Q.decide(
                s.nextID(), run: "r", district: "devon-cornwall", date: "2017-11-13",
                selected.map { ($0, true) } + [("ns-1", false)]))
        s.add(Q.refer(s.nextID(), "wait-1", claimant: Q.nino(300), district: "devon-cornwall", date: "2017-11-14"))
        s.add(Q.refer(s.nextID(), "gone-1", claimant: Q.ref(400), district: "example-north", date: "2017-11-14"))
        s.add(Q.cancel(s.nextID(), "gone-1"))
        let all = selected + ["ns-1", "wait-1", "gone-1"]
        var truthAt: [String: Int] = [:]
        for rid in all { truthAt[rid] = s.add(Q.disclose(s.nextID(), rid)) }
        let r1 = try trial.run(s, now: Self.now)
        #expect(r1.allSatisfy { $0.ok }, "setup: \(r1.filter { !$0.ok })")
        let truth = Dictionary(uniqueKeysWithValues: all.map { ($0, r1[truthAt[$0]!].str("status") ?? "?") })
        #expect(Set(selected.map { truth[$0]! }) == ["allocated_whp", "allocated_psc", "allocated_rcg"], "\(truth)")
        #expect(truth["ns-1"] == "not_selected" && truth["wait-1"] == "awaiting_gatekeeper" && truth["gone-1"] == "cancelled")

        var t = Script()
        var probes: [(Int, String, String?, String)] = []  // (line, rid, name, audience)
        for rid in all {
            for name in [nil, "Sam Jones", "{name}"] as [String?] {
                for audience in ["work_coach", "claimant"] {
                    probes.append(
                        (
                            t.add(Q.outcome(t.nextID(), rid: rid, audience: audience == "work_coach" && name == nil ? nil : audience, name: name)),
                            rid, name, audience
                        ))
                }
            }
        }
        let r = try trial.run(t, now: Self.now)
        let gk = Day("2017-11-13")
        var wrong: [String] = []
        for (i, rid, name, audience) in probes {
            let st = truth[rid]!
            var expected =
                audience == "claimant"
                ? Self.claimantView(trueStatus: st)
                : Self.workCoachView(trueStatus: st, policy: policy, gk: gk, name: name)
            expected["referral_id"] = rid
            // RULES2 R14: a WHP or PSC place always shows its progress ([] before any step), nothing else does.
            let place = audience == "work_coach" && ["allocated_whp", "allocated_psc"].contains(st)
            let progress = r[i].result["progress"] as? [Any]
            let got = r[i].result.filter { $0.key != "progress" } as? [String: String] ?? [:]
            if !r[i].ok || got != expected || (place ? progress?.isEmpty != true : r[i].result["progress"] != nil) {
                wrong.append("\(st) \(audience) name=\(name ?? "nil"): got \(r[i].line), expected \(expected)")
            }
        }
        expectNone(wrong, "views differ from PROTOCOL.md §4")
        // Spot checks written out in full, so a shared mistake in the table above cannot hide.
        if policy == "dcams" {
            let rcg = selected.first { truth[$0] == "allocated_rcg" }!
            let v = r[probes.first { $0.1 == rcg && $0.2 == "Sam Jones" && $0.3 == "work_coach" }!.0].result
            #expect(v["summary"] as? String == "Allocated to the RCG on 13 November 2017")
            #expect(
                v["next_steps"] as? String
                    == "Please continue to provide Work Coach support for Sam Jones. A new referral can be made for Sam Jones from 13 November 2019")
            let ns = r[probes.first { $0.1 == "ns-1" && $0.2 == "Sam Jones" && $0.3 == "work_coach" }!.0].result
            #expect(ns["summary"] as? String == "Not selected (on 13 November 2017)")
            #expect(ns["next_steps"] as? String == "A new referral can be made for Sam Jones from 25 December 2017")
        }
    }
}
