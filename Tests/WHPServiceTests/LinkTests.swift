import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPTestSupport

/// RULES2 R6: a NINO and a DCAMS reference number are one person. Every rule
/// about "the claimant" is about the person, whichever identifier a request
/// uses; nothing recorded is undone by a link found later.
@Suite("One person, two identifiers", .serialized)
struct LinkTests {
    static func trial(policy: String? = nil) throws -> TrialFolder {
        let t = try TrialFolder(frontlineRCG: policy)
        try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: Seeds.a).status == 0)
        return t
    }

    static func link(_ id: String, nino: [String: String], ref: [String: String]) -> String {
        Req.line(Req.envelope(id, "link_claimant", role: "work_coach", ["nino": nino["nino"]!, "ref": ref["ref"]!]))
    }

    @Test("refer by ref, link, refer by NINO: refused as the person's lock says; and the other way round")
    func locksFollowThePerson() throws {
        for order in ["ref first", "nino first"] {
            let t = try Self.trial()
            let nino = Q.nino(10), ref = Q.ref(10)
            let (first, second) = order == "ref first" ? (ref, nino) : (nino, ref)
            var s = Script()
            s.add(Q.refer(s.nextID(), "L-1", claimant: first, district: "devon-cornwall", date: "2017-11-06"))
            s.add(Q.capacity(s.nextID(), run: "run-1", district: "devon-cornwall", date: "2017-11-10", 0), tag: "run")
            s.add(Self.link(s.nextID(), nino: nino, ref: ref), tag: "link")
            // Not selected on 2017-11-10 (recorded that day): the person is locked until 2017-12-22.
            s.add(Q.refer(s.nextID(), "L-2", claimant: second, district: "devon-cornwall", date: "2017-11-20"), tag: "inside")
            s.add(Q.eligibility(s.nextID(), claimant: second, date: "2017-12-21"), tag: "elig-inside")
            s.add(Q.eligibility(s.nextID(), claimant: second, date: "2017-12-22"), tag: "elig-after")
            s.add(Q.outcome(s.nextID(), claimant: second), tag: "outcome")
            s.add(Q.refer(s.nextID(), "L-3", claimant: second, district: "devon-cornwall", date: "2017-12-22"), tag: "after")
            // Now L-3 awaits the gatekeeper: the person cannot be referred under the other identifier either.
            s.add(Q.refer(s.nextID(), "L-4", claimant: first, district: "devon-cornwall", date: "2017-12-22"), tag: "duplicate")
            let r = try t.run(s, now: nil)
            #expect(r[s.index("link")].result["linked"] as? Bool == true && r[s.index("link")].result["already"] as? Bool == false)
            expectError(r[s.index("inside")], "not_eligible", field: "claimant", "\(order):")
            #expect(r[s.index("elig-inside")].result["eligible"] as? Bool == false, "\(order): \(r[s.index("elig-inside")])")
            #expect(r[s.index("elig-after")].result["eligible"] as? Bool == true, "\(order): \(r[s.index("elig-after")])")
            #expect(r[s.index("outcome")].str("referral_id") == "L-1", "outcome by either identifier is the person's latest")
            #expect(r[s.index("after")].ok, "\(order): \(r[s.index("after")])")
            expectError(r[s.index("duplicate")], "duplicate_referral", field: "claimant", "\(order):")
            #expect(try t.verify(["--seed", t.seedFile.path]).status == 0)
        }
    }

    @Test("a repeat appends nothing; a ref linked to a second NINO is conflict; a link that would give two pending referrals is refused")
    func linkRules() throws {
        let t = try Self.trial()
        var s = Script()
        s.add(Self.link(s.nextID(), nino: Q.nino(20), ref: Q.ref(20)), tag: "first")
        s.add(Q.status(s.nextID()), tag: "after-first")
        s.add(Self.link(s.nextID(), nino: Q.nino(20), ref: Q.ref(20)), tag: "repeat")
        s.add(Q.status(s.nextID()), tag: "after-repeat")
        s.add(Self.link(s.nextID(), nino: Q.nino(21), ref: Q.ref(20)), tag: "second-nino")
        s.add(Self.link(s.nextID(), nino: Q.nino(20), ref: Q.ref(22)), tag: "second-ref")
        s.add(Q.refer(s.nextID(), "P-1", claimant: Q.nino(30), district: "devon-cornwall", date: "2017-11-06"))
        s.add(Q.refer(s.nextID(), "P-2", claimant: Q.ref(30), district: "example-north", date: "2017-11-06"))
        s.add(Self.link(s.nextID(), nino: Q.nino(30), ref: Q.ref(30)), tag: "two-pending")
        s.add(Q.cancel(s.nextID(), "P-2"))
        s.add(Self.link(s.nextID(), nino: Q.nino(30), ref: Q.ref(30)), tag: "after-cancel")
        s.add(Req.line(Req.envelope(s.nextID(), "link_claimant", role: "work_coach", ["nino": "QQ123456Q", "ref": Q.ref(40)["ref"]!])), tag: "bad-nino")
        s.add(Req.line(Req.envelope(s.nextID(), "link_claimant", role: "work_coach", ["nino": Q.nino(40)["nino"]!, "ref": "12345"])), tag: "bad-ref")
        s.add(Req.line(Req.envelope(s.nextID(), "link_claimant", role: "gatekeeper", ["nino": Q.nino(40)["nino"]!, "ref": Q.ref(40)["ref"]!])), tag: "role")
        let r = try t.run(s, now: nil)
        #expect(r[s.index("repeat")].result["already"] as? Bool == true)
        #expect(LogHead(r[s.index("after-first")]) == LogHead(r[s.index("after-repeat")]), "a repeat appends nothing")
        expectError(r[s.index("second-nino")], "conflict", field: "ref", "a reference number links to one NINO:")
        #expect(r[s.index("second-ref")].ok, "a NINO may have several reference numbers: \(r[s.index("second-ref")])")
        expectError(r[s.index("two-pending")], "duplicate_referral", field: "ref", "two referrals awaiting:")
        #expect(r[s.index("after-cancel")].ok)
        expectError(r[s.index("bad-nino")], "invalid_field", field: "nino", "")
        expectError(r[s.index("bad-ref")], "invalid_field", field: "ref", "")
        expectError(r[s.index("role")], "forbidden", field: "actor.role", "")
    }

    @Test("randomised under both identifiers before the link: both allocations stand, verify passes, one research id numbered 1 and 2")
    func bothAllocationsStand() throws {
        let t = try Self.trial()
        var s = Script()
        s.add(Q.refer(s.nextID(), "B-1", claimant: Q.ref(50), district: "devon-cornwall", date: "2017-11-06"))
        s.add(Q.refer(s.nextID(), "B-2", claimant: Q.nino(50), district: "devon-cornwall", date: "2017-11-07"))
        s.add(Q.refer(s.nextID(), "B-3", claimant: Q.nino(51), district: "devon-cornwall", date: "2017-11-07"))
        s.add(Q.capacity(s.nextID(), run: "run-1", district: "devon-cornwall", date: "2017-11-10", 3))
        s.add(Self.link(s.nextID(), nino: Q.nino(50), ref: Q.ref(50)), tag: "link")
        s.add(Q.disclose(s.nextID(), "B-1"), tag: "d1")
        s.add(Q.disclose(s.nextID(), "B-2"), tag: "d2")
        let r = try t.run(s, now: nil)
        #expect(r[s.index("link")].ok)
        #expect(r[s.index("d1")].str("status")?.hasPrefix("allocated_") == true && r[s.index("d2")].str("status")?.hasPrefix("allocated_") == true)
        #expect(try t.verify(["--seed", t.seedFile.path]).status == 0, "a link found after the fact undoes nothing")
        let out = t.root.appendingPathComponent("export")
        let e = try runWHP(["export"] + t.common + ["--out", out.path, "--format", "jsonl"], env: ["WHP_NOW": "2017-11-20T09:00:00Z"])
        #expect(e.status == 0, "\(e.stderr)")
        let rows = try String(contentsOf: out.appendingPathComponent("allocations.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let byID = Dictionary(grouping: rows) { $0["research_id"] as? String ?? "" }
        #expect(byID.count == 2, "two people: \(byID.keys)")
        let person = try #require(byID.values.first { $0.count == 2 })
        #expect(person.map { $0["referral_number"] as? Int ?? 0 } == [1, 2])
    }

    @Test("opting out by either identifier removes every row of the person; a repeat by the other is already")
    func optOutByEither() throws {
        for by in ["ref", "nino"] {
            let t = try Self.trial()
            var s = Script()
            s.add(Q.refer(s.nextID(), "O-1", claimant: Q.ref(60), district: "devon-cornwall", date: "2017-11-06"))
            // Not selected on 2017-11-10: locked until 2017-12-22, so the second referral stands.
            s.add(Q.decide(s.nextID(), run: "run-1", district: "devon-cornwall", date: "2017-11-10", [("O-1", false)]))
            s.add(Q.refer(s.nextID(), "O-2", claimant: Q.nino(61), district: "devon-cornwall", date: "2017-11-11"))
            s.add(Self.link(s.nextID(), nino: Q.nino(60), ref: Q.ref(60)))
            s.add(Q.refer(s.nextID(), "O-3", claimant: Q.nino(60), district: "example-north", date: "2017-12-30"), tag: "second")
            s.add(Q.optOut(s.nextID(), claimant: by == "ref" ? Q.ref(60) : Q.nino(60), date: "2017-12-30"), tag: "opt")
            s.add(Q.optOut(s.nextID(), claimant: by == "ref" ? Q.nino(60) : Q.ref(60), date: "2017-12-30"), tag: "again")
            let r = try t.run(s, now: nil)
            #expect(r.allSatisfy { $0.ok }, "\(r.filter { !$0.ok })")
            #expect(r[s.index("opt")].result["already"] as? Bool == false && r[s.index("again")].result["already"] as? Bool == true, "\(by)")
            let out = t.root.appendingPathComponent("export")
            let e = try runWHP(["export"] + t.common + ["--out", out.path], env: ["WHP_NOW": "2018-01-02T09:00:00Z"])
            #expect(e.status == 0)
            let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("manifest.json"))) as? [String: Any])
            #expect(manifest["rows"] as? Int == 1 && manifest["removed_opted_out"] as? Int == 2, "by \(by): \(manifest)")
        }
    }

    @Test("idempotency compares the identifier as sent: a repeat of refer by the linked NINO instead of the ref is conflict")
    func idempotencyAsSent() throws {
        let t = try Self.trial()
        var s = Script()
        let refer = Q.refer(s.nextID(), "I-1", claimant: Q.ref(70), district: "devon-cornwall", date: "2017-11-06")
        s.add(refer, tag: "first")
        s.add(Self.link(s.nextID(), nino: Q.nino(70), ref: Q.ref(70)))
        s.add(refer, tag: "repeat")
        s.add(Q.refer(s.nextID(), "I-1", claimant: Q.nino(70), district: "devon-cornwall", date: "2017-11-06"), tag: "by-nino")
        let r = try t.run(s, now: nil)
        #expect(r[s.index("repeat")].withoutID == r[s.index("first")].withoutID)
        expectError(r[s.index("by-nino")], "conflict", field: "referral_id", "")
    }

    /// Two `whp serve` processes race, just after a link, to refer the same
    /// person under its two identifiers: the chain lock (or SQLite's) puts one
    /// after the other, and the second sees the first's referral.
    @Test("two serve processes racing to refer one person under both identifiers: one referral, never two")
    func raceAfterLink() throws {
        let t = try Self.trial()
        var s = Script()
        for k in 0..<10 { s.add(Self.link(s.nextID(), nino: Q.nino(1000 + k), ref: Q.ref(1000 + k))) }
        _ = try t.run(s, now: "2017-11-06T09:00:00Z")
        let a = try ServeProcess(t, now: "2017-11-06T10:00:00Z"), b = try ServeProcess(t, now: "2017-11-06T10:00:00Z")
        let linesA = (0..<10).map { Q.refer("a\($0)", "RA-\($0)", claimant: Q.nino(1000 + $0), district: "devon-cornwall", date: "2017-11-06") }
        let linesB = (0..<10).map { Q.refer("b\($0)", "RB-\($0)", claimant: Q.ref(1000 + $0), district: "example-north", date: "2017-11-06") }
        nonisolated(unsafe) var outA: [String] = [], outB: [String] = []
        DispatchQueue.concurrentPerform(iterations: 2) { k in
            let (p, lines) = k == 0 ? (a, linesA) : (b, linesB)
            var out: [String] = []
            for line in lines {
                try? p.send(line)
                if let answer = p.readLine() { out.append(answer) }
            }
            if k == 0 { outA = out } else { outB = out }
        }
        try a.closeInput(); try b.closeInput()
        #expect(a.wait() == 0 && b.wait() == 0)
        try #require(outA.count == 10 && outB.count == 10, "\(outA.count) and \(outB.count) answers")
        for k in 0..<10 {
            let oks = [outA[k], outB[k]].filter { $0.contains("\"ok\":true") }.count
            let dups = [outA[k], outB[k]].filter { $0.contains("\"duplicate_referral\"") }.count
            #expect(oks == 1 && dups == 1, "person \(k): \(outA[k]) / \(outB[k])")
        }
        #expect(try t.verify(["--seed", t.seedFile.path]).status == 0)
    }

    @Test("a link is seen at once: in the group that made it, and by a door whose last group read no link")
    func linkSeenAtOnce() throws {
        let t = try TrialFolder(sqliteOnly: true)
        try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: Seeds.a).status == 0)
        let door = try InProcessService(t, now: "2017-11-06T09:00:00Z")
        // One group, one transaction: a refer (which reads that the trial has
        // no link), the link, then the person under the reference, the
        // identifier whose person only the link says.
        let one = door.send([
            Q.refer("a", "G-1", claimant: Q.nino(20), district: "devon-cornwall", date: "2017-11-06"),
            Self.link("b", nino: Q.nino(20), ref: Q.ref(20)),
            Q.refer("c", "G-2", claimant: Q.ref(20), district: "devon-cornwall", date: "2017-11-06"),
        ]).map(Resp.init)
        #expect(one[0].ok && one[1].ok, "\(one)")
        expectError(one[2], "duplicate_referral", field: "claimant", "in the linking group:")

        // A second door on the same store links another person while the first
        // door's last group found no link (a group of refers only, after it).
        _ = door.send([Q.refer("d", "G-3", claimant: Q.nino(21), district: "devon-cornwall", date: "2017-11-06")])
        let other = try InProcessService(t, now: "2017-11-06T09:00:00Z")
        #expect(Resp(other.send(Self.link("e", nino: Q.nino(21), ref: Q.ref(21)))).ok)
        let after = Resp(door.send(Q.refer("f", "G-4", claimant: Q.ref(21), district: "devon-cornwall", date: "2017-11-06")))
        expectError(after, "duplicate_referral", field: "claimant", "after another door's link:")
        #expect(try t.verify(["--seed", t.seedFile.path]).status == 0)
    }
}
