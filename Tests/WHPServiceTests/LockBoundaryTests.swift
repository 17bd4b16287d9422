import Foundation
import Testing
import WHPTestSupport

/// PROTOCOL.md §5 at its boundaries, over the wire, under both front-line policies.
@Suite("Re-referral locks at their boundaries")
struct LockBoundaryTests {
    static let now = "2018-06-01T12:00:00Z"

    @Test(arguments: ["hidden", "dcams"])
    func lockBoundaries(policy: String) throws {
        let dcams = policy == "dcams"
        let trial = try TrialFolder(frontlineRCG: policy)
        try #require(try trial.initialise(now: "2016-01-04T09:00:00Z", seedHex: Seeds.a).status == 0)

        // Session 1: nine claimants selected by a manual run on 2016-02-29 in a PSC
        // district (so at least one full block: some RCG, some WHP/PSC); three
        // claimants not selected on 2017-11-13 in a non-PSC district.
        var s = Script()
        let leap = (1...9).map { "leap-\($0)" }
        for (k, rid) in leap.enumerated() {
            s.add(
                Q.refer(
                    s.nextID(), rid, claimant: Q.nino(1000 + k), district: "devon-cornwall",
                    date: k % 2 == 0 ? "2016-02-29" : "2016-02-15"))
        }
        s.add(Q.decide(s.nextID(), run: "leap-run", district: "devon-cornwall", date: "2016-02-29", leap.map { ($0, true) }), tag: "leap-run")
        for rid in leap { s.add(Q.disclose(s.nextID(), rid), tag: "disclose-" + rid) }
        for k in 1...3 {
            s.add(Q.refer(s.nextID(), "ns-\(k)", claimant: Q.nino(2000 + k), district: "example-north", date: "2017-11-0\(k)"))
        }
        s.add(Q.capacity(s.nextID(), run: "ns-run", district: "example-north", date: "2017-11-13", 0), tag: "ns-run")
        // Under the session's moving clock, each run is recorded on its gk_date, so
        // the locks below run from those dates (RULES2 R1).
        let r1 = try trial.run(s, now: nil)
        #expect(r1.allSatisfy { $0.ok }, "setup: \(r1.filter { !$0.ok })")
        #expect(r1[s.index("leap-run")].strings("selected") == leap)
        #expect(r1[s.index("ns-run")].strings("not_selected") == ["ns-1", "ns-2", "ns-3"])

        var status: [String: String] = [:]
        for rid in leap { status[rid] = r1[s.index("disclose-" + rid)].str("status") }
        let rcgK = try #require(leap.indices.first { status[leap[$0]] == "allocated_rcg" }, "an RCG allocation among \(status)")
        let allocK = try #require(leap.indices.first { ["allocated_whp", "allocated_psc"].contains(status[leap[$0]]) })
        let x = Q.nino(1000 + rcgK)  // RCG on 2016-02-29: locked until add_months(…, 24) = 2018-02-28
        let y = Q.nino(1000 + allocK)  // WHP/PSC on 2016-02-29: the same from-date, always shown
        let n1 = Q.nino(2001), n2 = Q.nino(2002), n3 = Q.nino(2003)  // not selected on 2017-11-13: from 2017-12-25

        var t = Script()
        // Not selected on d = 2017-11-13: d+41 = 2017-12-24 refused, d+42 = 2017-12-25 accepted.
        t.add(Q.refer(t.nextID(), "n1-d41", claimant: n1, district: "example-north", date: "2017-12-24"), tag: "n1-d41")
        t.add(Q.eligibility(t.nextID(), claimant: n1, date: "2017-12-24"), tag: "n1-elig-d41")
        t.add(Q.eligibility(t.nextID(), claimant: n1, date: "2017-12-25"), tag: "n1-elig-d42")
        t.add(Q.refer(t.nextID(), "n1-d42", claimant: n1, district: "example-north", date: "2017-12-25"), tag: "n1-d42")
        // Opting out lifts no lock.
        t.add(Q.optOut(t.nextID(), claimant: n3, date: "2017-11-20"), tag: "n3-optout")
        t.add(Q.optOut(t.nextID(), claimant: n3, date: "2017-11-21"), tag: "n3-optout-again")
        t.add(Q.refer(t.nextID(), "n3-d41", claimant: n3, district: "devon-cornwall", date: "2017-12-24"), tag: "n3-d41")
        t.add(Q.eligibility(t.nextID(), claimant: n3, date: "2017-12-24"), tag: "n3-elig-d41")
        t.add(Q.refer(t.nextID(), "n3-d42", claimant: n3, district: "devon-cornwall", date: "2017-12-25"), tag: "n3-d42")
        // Back-dated referrals cannot slip under a lock.
        t.add(Q.refer(t.nextID(), "n2-back", claimant: n2, district: "example-north", date: "2017-11-10"), tag: "n2-back")
        t.add(Q.refer(t.nextID(), "n2-back2", claimant: n2, district: "example-south", date: "2017-01-02"), tag: "n2-back2")
        t.add(Q.refer(t.nextID(), "n2-jan", claimant: n2, district: "example-north", date: "2018-01-10"), tag: "n2-jan")
        // Second gatekeeper date 2018-01-15 (decides n1-d42 and n2-jan): from 2018-02-26.
        t.add(Q.capacity(t.nextID(), run: "ns-run-2", district: "example-north", date: "2018-01-15", 0), tag: "ns-run-2")
        t.add(Q.refer(t.nextID(), "n2-gap", claimant: n2, district: "example-north", date: "2017-12-30"), tag: "n2-gap")
        t.add(Q.refer(t.nextID(), "n2-0225", claimant: n2, district: "example-north", date: "2018-02-25"), tag: "n2-0225")
        t.add(Q.eligibility(t.nextID(), claimant: n2, date: "2017-12-30"), tag: "n2-elig-gap")
        t.add(Q.refer(t.nextID(), "n2-0226", claimant: n2, district: "example-north", date: "2018-02-26"), tag: "n2-0226")
        // A cancelled referral was never decided: it locks nothing.
        let c = Q.ref(77)
        t.add(Q.refer(t.nextID(), "c-1", claimant: c, district: "dorset-wiltshire-hampshire-iow", date: "2017-12-01"), tag: "c-1")
        t.add(Q.cancel(t.nextID(), "c-1"), tag: "c-cancel")
        t.add(Q.eligibility(t.nextID(), claimant: c, date: "2017-12-01"), tag: "c-elig")
        t.add(Q.refer(t.nextID(), "c-2", claimant: c, district: "dorset-wiltshire-hampshire-iow", date: "2017-12-01"), tag: "c-2")
        // Last, so the session's clock (which moves with its dates) records the
        // run of 2018-01-15 on that day: its lock runs from then (RULES2 R1).
        // RCG lock across the leap day.
        t.add(Q.refer(t.nextID(), "x-0227", claimant: x, district: "devon-cornwall", date: "2018-02-27"), tag: "x-0227")
        t.add(Q.eligibility(t.nextID(), claimant: x, date: "2018-02-27"), tag: "x-elig-0227")
        t.add(Q.eligibility(t.nextID(), claimant: x, date: "2016-03-01"), tag: "x-elig-early")
        t.add(Q.eligibility(t.nextID(), claimant: y, date: "2018-02-27"), tag: "y-elig-0227")
        t.add(Q.outcome(t.nextID(), rid: leap[rcgK], name: "Ann"), tag: "x-outcome")
        // A flag and an opt-out lift nothing.
        t.add(Q.flag(t.nextID(), leap[rcgK], reason: "ineligible"), tag: "x-flag")
        t.add(Q.optOut(t.nextID(), claimant: x, date: "2018-01-10"), tag: "x-optout")
        t.add(Q.refer(t.nextID(), "x-0227b", claimant: x, district: "example-south", date: "2018-02-27"), tag: "x-0227b")
        t.add(Q.eligibility(t.nextID(), claimant: x, date: "2018-02-27"), tag: "x-elig-0227b")
        t.add(Q.eligibility(t.nextID(), claimant: x, date: "2018-02-28"), tag: "x-elig-0228")
        t.add(Q.refer(t.nextID(), "x-0228", claimant: x, district: "devon-cornwall", date: "2018-02-28"), tag: "x-0228")
        // A pending referral blocks a second one, and hides any eligible_from.
        t.add(Q.refer(t.nextID(), "x-0301", claimant: x, district: "example-north", date: "2018-03-01"), tag: "x-dup")
        t.add(Q.eligibility(t.nextID(), claimant: x, date: "2018-03-05"), tag: "x-elig-pending")
        t.add(Q.refer(t.nextID(), "y-0228", claimant: y, district: "devon-cornwall", date: "2018-02-28"), tag: "y-0228")

        let before = try trial.logHead(now: Self.now)
        let r = try trial.run(t, now: nil)
        func at(_ tag: String) -> Resp { r[t.index(tag)] }

        expectError(at("x-0227"), "not_eligible", field: "claimant", "RCG on 2016-02-29, referred 2018-02-27:")
        expectEligibility(at("x-elig-0227"), eligible: false, from: dcams ? "2018-02-28" : nil, "RCG on 2018-02-27:")
        expectEligibility(at("x-elig-early"), eligible: false, from: dcams ? "2018-02-28" : nil, "RCG on 2016-03-01:")
        expectEligibility(at("y-elig-0227"), eligible: false, from: "2018-02-28", "WHP/PSC on 2018-02-27:")
        if dcams {
            #expect(
                at("x-outcome").str("next_steps")
                    == "Please continue to provide Work Coach support for Ann. A new referral can be made for Ann from 28 February 2018")
        } else {
            #expect(at("x-outcome").str("status") == "not_allocated")
        }
        #expect(at("x-flag").str("flagged") == "ineligible")
        #expect(at("x-optout").result["already"] as? Bool == false)
        expectError(at("x-0227b"), "not_eligible", field: "claimant", "after flag and opt-out:")
        expectEligibility(at("x-elig-0227b"), eligible: false, from: dcams ? "2018-02-28" : nil, "after flag and opt-out:")
        expectEligibility(at("x-elig-0228"), eligible: true, from: nil, "RCG on 2018-02-28:")
        #expect(at("x-0228").str("status") == "awaiting_gatekeeper", "RCG referred 2018-02-28: \(at("x-0228"))")
        expectError(at("x-dup"), "duplicate_referral", field: "claimant")
        expectEligibility(at("x-elig-pending"), eligible: false, from: nil, "while pending:")
        #expect(at("y-0228").str("status") == "awaiting_gatekeeper", "WHP/PSC referred 2018-02-28: \(at("y-0228"))")

        expectError(at("n1-d41"), "not_eligible", field: "claimant", "not selected, d+41:")
        expectEligibility(at("n1-elig-d41"), eligible: false, from: dcams ? "2017-12-25" : nil, "not selected, d+41:")
        expectEligibility(at("n1-elig-d42"), eligible: true, from: nil, "not selected, d+42:")
        #expect(at("n1-d42").str("status") == "awaiting_gatekeeper", "not selected, d+42: \(at("n1-d42"))")
        #expect(at("n3-optout").result["already"] as? Bool == false)
        #expect(at("n3-optout-again").result["already"] as? Bool == true)
        expectError(at("n3-d41"), "not_eligible", field: "claimant", "opted out, d+41:")
        expectEligibility(at("n3-elig-d41"), eligible: false, from: dcams ? "2017-12-25" : nil, "opted out, d+41:")
        #expect(at("n3-d42").ok, "opted out, d+42: \(at("n3-d42"))")
        expectError(at("n2-back"), "not_eligible", field: "claimant", "dated before the lock's gk date:")
        expectError(at("n2-back2"), "not_eligible", field: "claimant", "dated long before the lock's gk date:")
        #expect(at("n2-jan").ok)
        #expect(at("ns-run-2").strings("not_selected") == ["n1-d42", "n2-jan"], "\(at("ns-run-2"))")
        expectError(at("n2-gap"), "not_eligible", field: "claimant", "after the first lock, before the second:")
        expectError(at("n2-0225"), "not_eligible", field: "claimant", "second lock, d+41:")
        expectEligibility(at("n2-elig-gap"), eligible: false, from: dcams ? "2018-02-26" : nil, "latest from-date:")
        #expect(at("n2-0226").ok, "second lock, d+42: \(at("n2-0226"))")

        #expect(at("c-1").ok && at("c-cancel").ok && at("c-2").ok, "\(at("c-2"))")
        expectEligibility(at("c-elig"), eligible: true, from: nil, "after a cancelled referral:")

        // Exactly the successful state changes were logged: refers (x-0228, y-0228, n1-d42,
        // n3-d42, n2-jan, n2-0226, c-1, c-2), the run's two decisions, one flag, two opt-outs
        // (the repeated opt-out appends nothing), one cancel.
        let after = try trial.logHead(now: Self.now)
        #expect(after.events == before.events + 8 + 2 + 1 + 2 + 1, "events \(before) → \(after)")
        let v = try trial.verify(["--seed", trial.seedFile.path])
        #expect(v.status == 0, "verify: \(v.stdout)")
    }
}
