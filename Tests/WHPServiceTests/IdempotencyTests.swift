import Foundation
import Testing
import WHPTestSupport

/// PROTOCOL.md §3 "Idempotency": an identical repeat returns the first answer and
/// appends nothing; changed content under a used key is `conflict`; both survive restarts.
@Suite("Idempotent repeats and conflicts")
struct IdempotencyTests {
    static let now = "2018-03-01T12:00:00Z"

    /// A request whose repeat must give `first`'s answer (modulo `id`) and leave the log alone.
    struct Repeat {
        var label: String
        var first: String
        var repeats: [String]
        var conflicts: [(String, String)]  // (label, line), each must answer `conflict`
    }

    static func cases() -> [Repeat] {
        let north = "example-north", devon = "devon-cornwall"
        var out: [Repeat] = []
        // refer: the claimant is normalised (spaces, lower case) before comparing; v/id/actor are not compared.
        let refer = Req.envelope(
            "a", "refer", role: "work_coach", actor: "WC1",
            [
                "referral_id": "ref-1", "claimant": ["nino": "AB123456C"],
                "district": north, "group": "disability", "referral_date": "2017-11-01",
            ])
        var referRepeat = refer
        referRepeat["id"] = "a-again"; referRepeat["actor"] = ["role": "work_coach", "id": "WC-other"]
        referRepeat["claimant"] = ["nino": "ab 12 34 56 c"]; referRepeat["note"] = "unknown fields are ignored"
        out.append(
            Repeat(
                label: "refer", first: Req.line(refer), repeats: [Req.line(refer), Req.line(referRepeat)],
                conflicts: [
                    ("refer: other date", Q.refer("c1", "ref-1", claimant: ["nino": "AB123456C"], district: north, date: "2017-11-02")),
                    ("refer: other district", Q.refer("c2", "ref-1", claimant: ["nino": "AB123456C"], district: devon, date: "2017-11-01")),
                    ("refer: other group", Q.refer("c3", "ref-1", claimant: ["nino": "AB123456C"], district: north, group: "early_access", date: "2017-11-01")),
                    ("refer: other claimant", Q.refer("c4", "ref-1", claimant: ["nino": "AB123456D"], district: north, date: "2017-11-01")),
                    ("refer: ref instead of nino", Q.refer("c5", "ref-1", claimant: ["ref": "123456789012"], district: north, date: "2017-11-01")),
                ]))
        // cancel (of a referral made for it just before).
        out.append(
            Repeat(
                label: "cancel", first: Q.cancel("b", "ref-2", reason: "moved away"),
                repeats: [Q.cancel("b2", "ref-2", reason: "moved away")],
                conflicts: [("cancel: other reason", Q.cancel("c6", "ref-2", reason: "changed mind"))]))
        // gatekeep with capacity.
        out.append(
            Repeat(
                label: "gatekeep capacity", first: Q.capacity("g", run: "run-cap", district: devon, date: "2017-11-10", 2),
                repeats: [Q.capacity("g2", run: "run-cap", district: devon, date: "2017-11-10", 2)],
                conflicts: [
                    ("run: other capacity", Q.capacity("c7", run: "run-cap", district: devon, date: "2017-11-10", 3)),
                    ("run: other date", Q.capacity("c8", run: "run-cap", district: devon, date: "2017-11-11", 2)),
                    ("run: other district", Q.capacity("c9", run: "run-cap", district: north, date: "2017-11-10", 2)),
                    ("run: decisions instead", Q.decide("c10", run: "run-cap", district: devon, date: "2017-11-10", [("dv-1", true)])),
                ]))
        // gatekeep with decisions: the repeat lists them in another order.
        let decisions = [("nd-1", true), ("nd-2", false), ("nd-3", true)]
        out.append(
            Repeat(
                label: "gatekeep decisions", first: Q.decide("h", run: "run-man", district: north, date: "2017-11-12", decisions),
                repeats: [
                    Q.decide("h2", run: "run-man", district: north, date: "2017-11-12", decisions.reversed()),
                    Q.decide("h3", run: "run-man", district: north, date: "2017-11-12", [decisions[1], decisions[2], decisions[0]]),
                ],
                conflicts: [
                    (
                        "run: one decision changed",
                        Q.decide("c11", run: "run-man", district: north, date: "2017-11-12", [("nd-1", true), ("nd-2", true), ("nd-3", true)])
                    ),
                    ("run: a subset", Q.decide("c12", run: "run-man", district: north, date: "2017-11-12", [("nd-1", true), ("nd-3", true)])),
                    ("run: capacity instead", Q.capacity("c13", run: "run-man", district: north, date: "2017-11-12", 2)),
                ]))
        // flag_error, and a second flag with another reason.
        out.append(
            Repeat(
                label: "flag_error", first: Q.flag("f", "nd-2", reason: "duplicate"),
                repeats: [Q.flag("f2", "nd-2", reason: "duplicate")],
                conflicts: [("flag: other reason", Q.flag("c14", "nd-2", reason: "wrong_group"))]))
        return out
    }

    @Test("identical repeats return the first answer and append nothing; changes are conflict; both survive a restart")
    func repeatsAndConflicts() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        var s = Script()
        // What the cases act on.
        s.add(Q.refer(s.nextID(), "ref-2", claimant: Q.nino(2), district: "example-north", date: "2017-11-01"))
        for k in 1...4 { s.add(Q.refer(s.nextID(), "dv-\(k)", claimant: Q.nino(10 + k), district: "devon-cornwall", date: "2017-11-0\(k)")) }
        for k in 1...3 { s.add(Q.refer(s.nextID(), "nd-\(k)", claimant: Q.nino(20 + k), district: "example-north", date: "2017-11-0\(k + 1)")) }
        let setup = s.lines.count
        let cases = Self.cases()
        var at: [(first: Int, before: Int, repeats: [(Int, Int)], conflicts: [(Int, Int)])] = []
        for c in cases {
            let first = s.add(c.first)
            let before = s.add(Q.status(s.nextID()))
            let reps = c.repeats.map { (s.add($0), s.add(Q.status(s.nextID()))) }
            let cons = c.conflicts.map { (s.add($0.1), s.add(Q.status(s.nextID()))) }
            at.append((first, before, reps, cons))
        }
        // Only successes are remembered: a refused refer's referral_id and a refused run's run_id stay free.
        s.add(Q.refer(s.nextID(), "free-1", claimant: Q.nino(11), district: "example-south", date: "2017-11-11"), tag: "free-refused")
        s.add(Q.refer(s.nextID(), "free-1", claimant: Q.nino(31), district: "example-south", date: "2017-11-11"), tag: "free-ok")
        s.add(Q.capacity(s.nextID(), run: "free-run", district: "leicestershire-northants", date: "2017-11-11", 1), tag: "free-run-refused")
        s.add(Q.refer(s.nextID(), "free-2", claimant: Q.nino(32), district: "leicestershire-northants", date: "2017-11-11"))
        s.add(Q.capacity(s.nextID(), run: "free-run", district: "leicestershire-northants", date: "2017-11-11", 1), tag: "free-run-ok")
        // A later run in the same district: replaying the earlier, now back-dated, run is still a repeat.
        s.add(Q.refer(s.nextID(), "dv-5", claimant: Q.nino(15), district: "devon-cornwall", date: "2017-11-15"), tag: "dv-5")
        s.add(Q.capacity(s.nextID(), run: "run-later", district: "devon-cornwall", date: "2017-11-20", 1), tag: "later")
        let r = try trial.run(s, now: Self.now)
        #expect(r[0..<setup].allSatisfy { $0.ok }, "setup: \(r[0..<setup].filter { !$0.ok })")

        var firstAnswers: [String] = []
        for (c, a) in zip(cases, at) {
            let first = r[a.first]
            #expect(first.ok, "\(c.label): first answer \(first)")
            firstAnswers.append(first.withoutID)
            let head = try #require(LogHead(r[a.before]))
            for (rep, st) in a.repeats {
                #expect(r[rep].withoutID == first.withoutID, "\(c.label): repeat answered \(r[rep]), first \(first)")
                #expect(LogHead(r[st]) == head, "\(c.label): a repeat appended: \(r[st])")
            }
            for ((label, _), (con, st)) in zip(c.conflicts, a.conflicts) {
                expectError(r[con], "conflict", label)
                #expect(LogHead(r[st]) == head, "\(label): a conflict appended: \(r[st])")
            }
        }
        expectError(r[s.index("free-refused")], "not_eligible", "dv-1's claimant was decided on 2017-11-10:")
        #expect(r[s.index("free-ok")].ok, "a refused referral_id is not remembered: \(r[s.index("free-ok")])")
        expectError(r[s.index("free-run-refused")], "wrong_state", "nothing pending:")
        #expect(r[s.index("free-run-ok")].strings("selected") == ["free-2"], "a refused run_id is not remembered: \(r[s.index("free-run-ok")])")
        #expect(r[s.index("dv-5")].ok && r[s.index("later")].strings("selected") == ["dv-5"], "\(r[s.index("later")])")
        // The capacity run selected 2 of 4 and the manual run decided exactly its list.
        #expect(r[at[2].first].strings("selected")?.count == 2 && r[at[2].first].strings("not_selected")?.count == 2)
        #expect(r[at[3].first].strings("selected") == ["nd-1", "nd-3"] && r[at[3].first].strings("not_selected") == ["nd-2"])

        // A new process: every repeat still gets the first answer, every change is still conflict.
        let head = try trial.logHead(now: Self.now)
        var t = Script()
        var again: [(Int, Int)] = []  // (case, line)
        var conflictsAgain: [(Int, String)] = []  // (line, label)
        for (k, c) in cases.enumerated() {
            again.append((k, t.add(c.first)))
            for rep in c.repeats { again.append((k, t.add(rep))) }
            for con in c.conflicts { conflictsAgain.append((t.add(con.1), con.0)) }
        }
        t.add(Q.status("end"), tag: "end")
        let r2 = try trial.run(t, now: "2018-04-01T08:00:00Z")
        for (k, i) in again {
            #expect(r2[i].withoutID == firstAnswers[k], "after restart, \(cases[k].label): \(r2[i]) vs first \(firstAnswers[k])")
        }
        // By now each district has a later run (run-later in devon-cornwall on
        // 2017-11-20; run-man in example-north on 2017-11-12), so a changed run
        // dated before it is back-dated: RULES2 R8 runs the checks in their
        // order, and invalid_field comes before conflict.
        let backDated: Set<String> = ["run: other capacity", "run: other date", "run: other district", "run: decisions instead"]
        for (i, label) in conflictsAgain {
            expectError(r2[i], backDated.contains(label) ? "invalid_field" : "conflict", "after restart, \(label):")
        }
        #expect(LogHead(r2[t.index("end")]) == head, "replays after a restart appended events")
        // disclose is not idempotent: every call is recorded.
        var u = Script()
        u.add(Q.disclose("d1", "dv-1"))
        u.add(Q.disclose("d2", "dv-1"))
        u.add(Q.status("after-disclose"), tag: "end")
        let r3 = try trial.run(u, now: "2018-04-01T08:00:00Z")
        #expect(r3[0].withoutID == r3[1].withoutID && r3[0].ok)
        #expect(LogHead(r3[u.index("end")])?.events == head.events + 2, "each disclose appends a disclosed event")
        #expect(try trial.verify().status == 0)
    }
}
