import Foundation
import Testing
import WHPApp
import WHPDomain
import WHPTestSupport

/// RULES2 R14: what happens after an allocation — follow-up steps, their
/// order and dates, corrections, `allocated_once` — and the overdue report.
@Suite("After allocation", .serialized)
struct FollowUpTests {
    static func followUp(_ id: String, _ rid: String, _ step: String, _ date: String, reason: String? = nil) -> String {
        var f: [String: Any] = ["referral_id": rid, "step": step, "date": date]
        if let reason { f["reason"] = reason }
        return Req.line(Req.envelope(id, "follow_up", role: "work_coach", f))
    }

    /// A trial with every true status on 2017-11-10: its referrals and the truth.
    static func trial(policy: String = "hidden", trialTOML: String? = nil) throws -> (TrialFolder, [String: String]) {
        let t = try TrialFolder(trialTOML: trialTOML, frontlineRCG: policy)
        try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: Seeds.a).status == 0)
        var s = Script()
        let ids = (0..<12).map { "F-\($0)" }
        for (k, rid) in ids.enumerated() { s.add(Q.refer(s.nextID(), rid, claimant: Q.nino(100 + k), district: "devon-cornwall", date: "2017-11-06")) }
        s.add(Q.refer(s.nextID(), "F-wait", claimant: Q.nino(200), district: "example-north", date: "2017-11-06"))
        s.add(Q.decide(s.nextID(), run: "run-1", district: "devon-cornwall", date: "2017-11-10", ids.enumerated().map { ($0.element, $0.offset < 9) }))
        var truth: [String: Int] = [:]
        for rid in ids + ["F-wait"] { truth[rid] = s.add(Q.disclose(s.nextID(), rid)) }
        let r = try t.run(s, now: nil)
        return (t, truth.mapValues { r[$0].str("status") ?? "?" })
    }

    @Test("every step order, reason list, repeat and wrong_state case; RCG and not selected answer alike")
    func stepsAndTheirOrder() throws {
        let (t, truth) = try Self.trial()
        let whp = try #require(truth.first { $0.value == "allocated_whp" }?.key)
        let psc = try #require(truth.first { $0.value == "allocated_psc" }?.key)
        let rcg = try #require(truth.first { $0.value == "allocated_rcg" }?.key)
        let notSelected = try #require(truth.first { $0.value == "not_selected" }?.key)
        let door = try InProcessService(t, now: "2017-11-30T09:00:00Z")
        func send(_ line: String) -> Resp { Resp(door.send(line)) }

        // Out of order before any step; a date before the decision's recorded day.
        expectError(send(Self.followUp("a", whp, "started", "2017-11-14")), "wrong_state", field: "step", "started first:")
        expectError(send(Self.followUp("b", whp, "left", "2017-11-14", reason: "found_work")), "wrong_state", field: "step", "left first:")
        expectError(send(Self.followUp("c", whp, "provider_referral", "2017-11-09")), "wrong_state", field: "date", "before the decision:")
        // The steps in order, each repeat its first answer, each change a conflict.
        let sent = send(Self.followUp("d", whp, "provider_referral", "2017-11-13"))
        #expect(sent.ok && sent.str("step") == "provider_referral" && sent.str("date") == "2017-11-13", "\(sent)")
        #expect(send(Self.followUp("d2", whp, "provider_referral", "2017-11-13")).withoutID == sent.withoutID)
        expectError(send(Self.followUp("d3", whp, "provider_referral", "2017-11-14")), "conflict", field: "step", "")
        expectError(send(Self.followUp("e", whp, "started", "2017-11-12")), "wrong_state", field: "date", "before the previous step:")
        expectError(send(Self.followUp("f", whp, "left", "2017-11-20", reason: "completed")), "wrong_state", field: "step", "left before started:")
        #expect(send(Self.followUp("g", whp, "started", "2017-11-20")).ok)
        expectError(send(Self.followUp("g2", whp, "did_not_start", "2017-11-20", reason: "declined")), "wrong_state", field: "step", "after started:")
        #expect(send(Self.followUp("h", whp, "left", "2017-11-27", reason: "found_work")).ok)
        expectError(send(Self.followUp("h2", whp, "left", "2017-11-28", reason: "found_work")), "conflict", field: "step", "")
        // did_not_start ends the steps: nothing follows it.
        #expect(send(Self.followUp("i", psc, "provider_referral", "2017-11-13")).ok)
        #expect(send(Self.followUp("j", psc, "did_not_start", "2017-11-15", reason: "did_not_attend")).ok)
        expectError(send(Self.followUp("k", psc, "left", "2017-11-16", reason: "moved_away")), "wrong_state", field: "step", "left after did_not_start:")
        // Reasons: required for did_not_start and left, from their lists; absent otherwise.
        for (step, reason, field) in [
            ("did_not_start", nil, "reason"), ("did_not_start", "found_work", "reason"), ("left", nil, "reason"), ("left", "declined", "reason"),
            ("started", "declined", "reason"), ("provider_referral", "other", "reason"), ("finished", nil, "step"),
        ] as [(String, String?, String)] {
            expectError(send(Self.followUp("r", whp, step, "2017-11-28", reason: reason)), "invalid_field", field: field, "\(step) \(reason ?? "-"):")
        }
        expectError(send(Self.followUp("t", whp, "provider_referral", "2017-12-01")), "invalid_field", field: "date", "after today:")
        expectError(send(Self.followUp("u", "F-none", "provider_referral", "2017-11-13")), "not_found", field: "referral_id", "")
        // Not a WHP or PSC place: one answer, whatever the referral is.
        let answers = [rcg, notSelected, "F-wait"].map { rid in
            send(Self.followUp("v", rid, "provider_referral", "2017-11-13")).withoutID.replacingOccurrences(of: rid, with: "<RID>")
        }
        #expect(Set(answers).count == 1 && answers[0].contains("\"wrong_state\""), "\(answers)")
        // Progress shows on the place's outcome; nothing shows on a referral without one.
        let view = send(Q.outcome("o", rid: whp))
        let progress = try #require(view.result["progress"] as? [[String: String]])
        #expect(
            progress == [
                ["step": "provider_referral", "date": "2017-11-13"], ["step": "started", "date": "2017-11-20"],
                ["step": "left", "date": "2017-11-27", "reason": "found_work"],
            ])
        #expect(send(Q.outcome("o2", rid: rcg)).result["progress"] == nil)
        #expect(try t.verify(["--seed", t.seedFile.path]).status == 0)
    }

    @Test("flag_error's corrected_group: only with wrong_group, a known group; the arm, stratum and lock stay")
    func correctedGroup() throws {
        let (t, truth) = try Self.trial()
        let rid = try #require(truth.first { $0.value.hasPrefix("allocated_") }?.key)
        let door = try InProcessService(t, now: "2017-11-30T09:00:00Z")
        func flag(_ id: String, _ reason: String, _ group: String?) -> Resp {
            var f: [String: Any] = ["referral_id": rid, "reason": reason]
            if let group { f["corrected_group"] = group }
            return Resp(door.send(Req.line(Req.envelope(id, "flag_error", role: "gatekeeper", f))))
        }
        expectError(flag("a", "duplicate", "early_access"), "invalid_field", field: "corrected_group", "")
        expectError(flag("b", "wrong_group", "no-such-group"), "unknown_group", field: "corrected_group", "")
        let ok = flag("c", "wrong_group", "early_access")
        #expect(ok.ok && ok.str("flagged") == "wrong_group", "\(ok)")
        #expect(flag("d", "wrong_group", "early_access").withoutID == ok.withoutID, "repeat")
        expectError(flag("e", "wrong_group", "disability"), "conflict", field: "reason", "another corrected group:")
        #expect(Resp(door.send(Q.disclose("x", rid))).str("status") == truth[rid], "the arm stays")
        let log = try readLog(t)
        #expect(log.contains { $0.type == "flagged_in_error" && $0.payload["corrected_group"] == "early_access" })
        #expect(try t.verify(["--seed", t.seedFile.path]).status == 0)
    }

    @Test("allocated_once: a person with any allocation, RCG included, is never eligible again and gets no eligible_from")
    func allocatedOnce() throws {
        let shipped = try String(contentsOf: WHPBinary.repoRoot.appendingPathComponent("district-config/trial.toml"), encoding: .utf8)
        let toml = TrialFolder.testTrialTOML(shipped.replacingOccurrences(of: "allocated_months = 24", with: "allocated_months = 24\nallocated_once = true"))
        for policy in ["hidden", "dcams"] {
            let (t, truth) = try Self.trial(policy: policy, trialTOML: toml)
            let door = try InProcessService(t, now: "2021-01-04T09:00:00Z")
            for (rid, status) in truth where rid != "F-wait" {
                let k = Int(rid.dropFirst(2))!
                let e = Resp(door.send(Q.eligibility("e\(k)", claimant: Q.nino(100 + k), date: "2021-01-04")))
                let allocated = status.hasPrefix("allocated_")
                #expect(e.result["eligible"] as? Bool == !allocated && e.result["eligible_from"] == nil, "\(policy) \(status): \(e)")
                let refer = Resp(door.send(Q.refer("r\(k)", "again-\(k)", claimant: Q.nino(100 + k), district: "devon-cornwall", date: "2021-01-04")))
                if allocated { expectError(refer, "not_eligible", field: "claimant", "\(policy) \(status):") } else { #expect(refer.ok) }
            }
            #expect(try t.verify(["--seed", t.seedFile.path]).status == 0)
        }
    }

    // MARK: working days and the overdue report

    /// England and Wales bank holidays from their rules (fixed dates with
    /// weekend substitutes, Easter by the Gregorian computus, first and last
    /// Mondays), plus the one-off changes the government announced for 2020,
    /// 2022 and 2023: an independent derivation to check calendar.toml against.
    static func englandAndWales(_ y: Int) -> Set<String> {
        func d(_ m: Int, _ day: Int) -> Day { Day(String(format: "%04d-%02d-%02d", y, m, day)) }
        func weekday(_ x: Day) -> Int { ((x.n % 7) + 10) % 7 + 1 }  // 1 = Monday (1970-01-01 was a Thursday)
        func firstMonday(_ m: Int) -> Day { var x = d(m, 1); while weekday(x) != 1 { x = x.plus(1) }; return x }
        func lastMonday(_ m: Int) -> Day { var x = d(m, m == 5 || m == 8 ? 31 : 30); while weekday(x) != 1 { x = x.plus(-1) }; return x }
        // Anonymous Gregorian algorithm for Easter Sunday.
        let a = y % 19, b = y / 100, c = y % 100, dd = b / 4, e = b % 4, f = (b + 8) / 25, g = (b - f + 1) / 3
        let h = (19 * a + b - dd - g + 15) % 30, i = c / 4, k = c % 4, l = (32 + 2 * e + 2 * i - h - k) % 7
        let m = (a + 11 * h + 22 * l) / 451, month = (h + l - 7 * m + 114) / 31, day = (h + l - 7 * m + 114) % 31 + 1
        let easter = d(month, day)
        var out: [Day] = []
        var newYear = d(1, 1)
        while weekday(newYear) >= 6 { newYear = newYear.plus(1) }
        out.append(newYear)
        out += [easter.plus(-2), easter.plus(1)]
        out.append(y == 2020 ? d(5, 8) : firstMonday(5))
        out += y == 2022 ? [d(6, 2), d(6, 3)] : [lastMonday(5)]
        out.append(lastMonday(8))
        if y == 2022 { out.append(d(9, 19)) }
        if y == 2023 { out.append(d(5, 8)) }
        let christmas = d(12, 25), boxing = d(12, 26)
        switch weekday(christmas) {
        case 5: out += [christmas, boxing.plus(2)]  // Friday: Boxing Day on Saturday moves to Monday
        case 6: out += [christmas.plus(2), boxing.plus(2)]  // Saturday
        case 7: out += [boxing, christmas.plus(2)]  // Sunday
        default: out += [christmas, boxing]
        }
        return Set(out.map(\.iso))
    }

    @Test("the shipped calendar.toml holds exactly the England and Wales bank holidays 2016–2027")
    func shippedCalendar() throws {
        let text = try String(contentsOf: WHPBinary.repoRoot.appendingPathComponent("district-config/calendar.toml"), encoding: .utf8)
        let listed = Set(text.split(separator: "\"").map(String.init).filter { CivilDate($0) != nil })
        let expected = (2016...2027).reduce(into: Set<String>()) { $0.formUnion(Self.englandAndWales($1)) }
        #expect(listed == expected, "missing \(expected.subtracting(listed).sorted()), extra \(listed.subtracting(expected).sorted())")
    }

    @Test("working days: n-th working day after, and the count in (a, b], over weekends and bank holidays")
    func workingDays() {
        let holidays: Set<CivilDate> = [CivilDate("2017-12-25")!, CivilDate("2017-12-26")!, CivilDate("2018-01-01")!]
        let w = WorkingDays(bankHolidays: holidays)
        #expect(w.adding(1, to: CivilDate("2017-12-22")!) == CivilDate("2017-12-27")!, "Friday + 1 over a weekend and two holidays")
        // 21, 22, 27, 28, 29 Dec, 2, 3, 4, 5, 8 Jan.
        #expect(w.adding(10, to: CivilDate("2017-12-20")!) == CivilDate("2018-01-08")!)
        #expect(w.adding(0, to: CivilDate("2017-12-23")!) == CivilDate("2017-12-23")!)
        #expect(w.count(after: CivilDate("2017-12-22")!, through: CivilDate("2018-01-02")!) == 4)
        #expect(w.count(after: CivilDate("2018-01-02")!, through: CivilDate("2018-01-02")!) == 0)
        // The count agrees with walking day by day over a year.
        var day = CivilDate("2017-01-01")!, n = 0
        for _ in 0..<400 {
            day = day.adding(days: 1)
            if day.isoWeekday <= 5 && !holidays.contains(day) { n += 1 }
            #expect(w.count(after: CivilDate("2017-01-01")!, through: day) == n)
        }
    }

    @Test("report overdue lists exactly what a hand computation over the calendar says, in text and JSON")
    func overdueReport() throws {
        // The shipped calendar (2017-12-25, 2017-12-26, 2018-01-01 are bank holidays) with the shipped deadlines.
        let t = try TrialFolder()
        try FileManager.default.copyItem(
            at: WHPBinary.repoRoot.appendingPathComponent("district-config/calendar.toml"), to: t.config.appendingPathComponent("calendar.toml"))
        try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: Seeds.a).status == 0)
        var s = Script()
        let ids = (0..<9).map { "V-\($0)" }
        for (k, rid) in ids.enumerated() { s.add(Q.refer(s.nextID(), rid, claimant: Q.nino(300 + k), district: "devon-cornwall", date: "2017-12-11")) }
        s.add(Q.decide(s.nextID(), run: "run-1", district: "devon-cornwall", date: "2017-12-15", ids.map { ($0, true) }))
        s.add(Q.refer(s.nextID(), "V-wait", claimant: Q.nino(400), district: "example-north", date: "2017-12-01"))
        var truth: [String: Int] = [:]
        for rid in ids { truth[rid] = s.add(Q.disclose(s.nextID(), rid)) }
        let r = try t.run(s, now: nil)
        let places = ids.filter { ["allocated_whp", "allocated_psc"].contains(r[truth[$0]!].str("status")) }
        try #require(places.count >= 3, "\(places)")
        // One place referred to the provider on 2017-12-20; one referred and started; the rest not referred.
        let door = try InProcessService(t, now: "2017-12-20T09:00:00Z")
        #expect(door.send(Self.followUp("a", places[0], "provider_referral", "2017-12-20")).contains("\"ok\":true"))
        #expect(door.send(Self.followUp("b", places[1], "provider_referral", "2017-12-18")).contains("\"ok\":true"))
        #expect(door.send(Self.followUp("c", places[1], "started", "2017-12-19")).contains("\"ok\":true"))
        // By hand, decided (recorded) on Friday 2017-12-15:
        // - provider referral due 10 working days later: 18–22 Dec (5), 27–29 Dec (3), 2–3 Jan (2) → 2018-01-03;
        // - places[0]'s start due 15 working days after 2017-12-20: 21–22, 27–29 Dec, 2–5, 8–12, 15 Jan → 2018-01-15;
        // - V-wait awaits the gatekeeper: due 2017-12-01 + 28 days = 2017-12-29.
        // On 2018-01-16: V-wait 11 working days late (2, 3, 4, 5, 8, 9, 10, 11, 12, 15, 16 Jan: Jan 1 is a holiday),
        // each unreferred place 9 (4, 5, 8–12, 15, 16 Jan), places[0]'s start 1 (16 Jan).
        let out = try runWHP(["report", "overdue"] + t.common + ["--date", "2018-01-16", "--json"])
        #expect(out.status == 0, "\(out.stderr)")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]])
        var expected: [[String: String]] = [["V-wait", "gatekeeper", "2017-12-29", "11"]].map { ["id": $0[0], "due": $0[1], "date": $0[2], "n": $0[3]] }
        for rid in places.dropFirst(2).sorted() { expected.append(["id": rid, "due": "provider_referral", "date": "2018-01-03", "n": "9"]) }
        expected.append(["id": places[0], "due": "start", "date": "2018-01-15", "n": "1"])
        let got = items.map {
            [
                "id": $0["referral_id"] as? String ?? "", "due": $0["due"] as? String ?? "", "date": $0["due_date"] as? String ?? "",
                "n": String($0["working_days_overdue"] as? Int ?? -1),
            ]
        }
        #expect(got == expected, "got \(got)")
        // On the due date itself nothing is late yet.
        let onTheDay = try runWHP(["report", "overdue"] + t.common + ["--date", "2017-12-29", "--json"])
        #expect(onTheDay.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[]", "\(onTheDay.stdout)")
        let text = try runWHP(["report", "overdue"] + t.common + ["--date", "2018-01-16"])
        #expect(text.stdout.contains("V-wait") && text.stdout.contains("2017-12-29") && text.stdout.contains("\(items.count) items"), "\(text.stdout)")
    }
}
