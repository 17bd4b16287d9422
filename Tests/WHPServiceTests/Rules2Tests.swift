import Foundation
import Testing
import WHPApp
import WHPDomain
import WHPTestSupport

/// RULES2 R1–R3, R7–R9 through the wire: what one request allows, and what
/// requests combined must not. The clock is the in-process door's where the
/// day matters, a real `whp serve` where the process matters.
@Suite("Rules 2: locks, the window, replays, dates, control characters", .serialized)
struct Rules2Tests {
    static func trial(_ trialTOML: String? = nil, policy: String? = nil) throws -> TrialFolder {
        let t = try TrialFolder(trialTOML: trialTOML, frontlineRCG: policy)
        try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: Seeds.a).status == 0)
        return t
    }

    /// The shipped trial.toml with a recruitment table of the test's own.
    static func window(_ table: String) throws -> String {
        let shipped = try String(contentsOf: WHPBinary.repoRoot.appendingPathComponent("district-config/trial.toml"), encoding: .utf8)
        let cut = shipped.range(of: "\n[recruitment]")!.lowerBound
        let rest = shipped[cut...].dropFirst()
        let next = rest.range(of: "\n[")!.lowerBound
        return String(shipped[..<cut]) + "\n[recruitment]\n" + table + "\n" + String(rest[next...])
    }

    // MARK: R1

    @Test("R1: a back-dated run ends no lock early: the lock runs from the day the decision was recorded")
    func backDatedRunEndsNoLockEarly() throws {
        let t = try Self.trial()
        let door = try InProcessService(t, now: "2018-03-01T09:00:00Z")
        var lines = (0..<4).map { Q.refer("r\($0)", "B-\($0)", claimant: Q.nino(10 + $0), district: "example-north", date: "2018-02-10") }
        // Dated 14 days back, the most the window allows: not selected "on 2018-02-15", recorded on 2018-03-01.
        lines.append(Q.capacity("g", run: "run-back", district: "example-north", date: "2018-02-15", 0))
        let answers = door.send(lines)
        #expect(answers.allSatisfy { $0.contains("\"ok\":true") }, "\(answers)")
        door.clock.set("2018-05-01T09:00:00Z")
        let n = Q.nino(10)
        let early = door.send(Q.eligibility("e1", claimant: n, date: "2018-03-29"))  // gk_date + 42
        let onTime = door.send(Q.eligibility("e2", claimant: n, date: "2018-04-12"))  // recorded + 42
        #expect(early.contains("\"eligible\":false"), "gk_date + 42 is inside the lock: \(early)")
        #expect(onTime.contains("\"eligible\":true"), "recorded date + 42 ends it: \(onTime)")
        let refer = door.send(Q.refer("r9", "B-9", claimant: n, district: "example-north", date: "2018-04-11"))
        #expect(refer.contains("\"not_eligible\""), "\(refer)")
        // The view still shows the gatekeeper's date, and under dcams the lock's own from-date.
        let dcams = try Self.trial(policy: "dcams")
        let d = try InProcessService(dcams, now: "2018-03-01T09:00:00Z")
        _ = d.send(lines)
        let view = d.send(Q.outcome("o", rid: "B-0"))
        #expect(view.contains("\"date\":\"2018-02-15\"") && view.contains("from 12 April 2018"), "\(view)")
    }

    // MARK: R2

    @Test("R2: referral and gatekeeper dates outside the window are invalid_field, naming the bound; pending as gatekeep")
    func recruitmentWindow() throws {
        let t = try Self.trial(try Self.window("opens = \"2017-11-06\"\ncloses = \"2017-12-15\"\nmax_backdate_days = 7"))
        let door = try InProcessService(t, now: "2017-12-20T09:00:00Z")
        func check(_ line: String, field: String, bound: String?, _ label: String) {
            let a = door.send(line)
            if let bound {
                #expect(a.contains("\"invalid_field\"") && a.contains("\"field\":\"\(field)\"") && a.contains(bound), "\(label): \(a)")
                #expect(a.contains("\"message\":\"A field is missing or not valid.\""), "the fixed message: \(a)")
            } else {
                #expect(a.contains("\"ok\":true"), "\(label): \(a)")
            }
        }
        let n = { Q.nino(100 + $0) }
        check(Q.refer("a", "W-1", claimant: n(1), district: "example-north", date: "2017-11-05"), field: "referral_date", bound: "opens", "before opens")
        check(Q.refer("b", "W-2", claimant: n(2), district: "example-north", date: "2017-12-16"), field: "referral_date", bound: "closes", "after closes")
        check(
            Q.refer("c", "W-3", claimant: n(3), district: "example-north", date: "2017-12-12"), field: "referral_date", bound: "max_backdate_days",
            "8 days back")
        check(Q.refer("d", "W-4", claimant: n(4), district: "example-north", date: "2017-12-13"), field: "referral_date", bound: nil, "7 days back")
        check(Q.refer("e", "W-5", claimant: n(5), district: "example-north", date: "2017-12-21"), field: "referral_date", bound: "after today", "tomorrow")
        check(Q.pending("p", district: "example-north", date: "2017-12-12"), field: "gk_date", bound: "max_backdate_days", "pending 8 days back")
        check(Q.capacity("g1", run: "g1", district: "example-north", date: "2017-12-12", 1), field: "gk_date", bound: "max_backdate_days", "run 8 days back")
        // closes never bounds gk_date: referrals made before the trial closes are still decided.
        door.clock.set("2017-12-22T09:00:00Z")
        check(Q.capacity("g2", run: "g2", district: "example-north", date: "2017-12-22", 1), field: "gk_date", bound: nil, "run after closes")
        // The window comes before later fields' format errors and before unknown_district.
        let early = door.send(Q.refer("f", "W-6", claimant: n(6), district: "no-such-district", date: "2017-11-05"))
        #expect(early.contains("\"field\":\"referral_date\""), "\(early)")
    }

    @Test("R2: verify fails `dates` on a log whose referral dates break the window, even re-chained")
    func verifyFlagsDatesOutsideTheWindow() throws {
        let t = try Self.trial(try Self.window("opens = \"2017-11-01\"\nmax_backdate_days = 14"))
        let door = try InProcessService(t, now: "2017-11-20T09:00:00Z")
        let answers = door.send((0..<3).map { Q.refer("r\($0)", "D-\($0)", claimant: Q.nino(300 + $0), district: "devon-cornwall", date: "2017-11-15") })
        #expect(answers.allSatisfy { $0.contains("\"ok\":true") })
        let ok = try t.verify(["--json"])
        #expect(ok.status == 0 && ok.stdout.contains("\"name\":\"dates\""), "\(ok.stdout)")
        // An insider moves a referral back before the window and re-computes every hash.
        try t.openStore().unsafeExecute(
            "UPDATE events SET payload = replace(payload, '\"referral_date\":\"2017-11-15\"', '\"referral_date\":\"2017-10-02\"') WHERE seq = 3;")
        try rehash(try t.openStore(), from: 3)
        let bad = try t.verify(["--json"])
        #expect(bad.status == 1)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(bad.stdout.utf8)) as? [String: Any])
        let checks = (report["checks"] as? [[String: Any]]) ?? []
        let dates = checks.first { $0["name"] as? String == "dates" }
        #expect(dates?["ok"] as? Bool == false && dates?["first_bad_seq"] as? Int == 3, "\(dates ?? [:])")
        #expect(checks.first { $0["name"] as? String == "chain" }?["ok"] as? Bool == true, "the chain was re-computed")
    }

    // MARK: R3

    @Test("R3: under hidden, status shows the log to evaluation_admin only; gatekeeper answers carry no arm")
    func statusUnderHidden() throws {
        let t = try Self.trial()
        let (_, out) = try t.serve(["work_coach", "gatekeeper", "evaluation_admin", "contract_manager"].map { Q.status($0, role: $0) })
        let r = out.map(Resp.init)
        for x in r[0..<2] + [r[3]] { #expect(Set(x.result.keys) == ["protocol", "trial_id", "frontline_rcg"], "\(x)") }
        #expect(Set(r[2].result.keys) == ["protocol", "trial_id", "frontline_rcg", "events", "head", "config_hash"], "\(r[2])")
    }

    /// Manual runs draw no lottery, so two trials with different seeds decide
    /// alike and draw different arms: every gatekeeper answer must be the same.
    @Test("R3: no gatekeeper answer depends on the arms drawn")
    func gatekeeperAnswersDoNotDependOnArms() throws {
        var transcripts: [[String]] = []
        var arms: [[String]] = []
        for seed in [Seeds.a, Seeds.b] {
            let t = try TrialFolder()
            try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: seed).status == 0)
            var lines: [String] = []
            var gk: [Int] = []
            for k in 0..<24 { lines.append(Q.refer("r\(k)", "M-\(k)", claimant: Q.nino(400 + k), district: "devon-cornwall", date: "2017-11-06")) }
            gk.append(lines.count)
            lines.append(Q.pending("p", district: "devon-cornwall", date: "2017-11-10"))
            gk.append(lines.count)
            lines.append(Q.decide("g", run: "m-run", district: "devon-cornwall", date: "2017-11-10", (0..<24).map { ("M-\($0)", $0 % 4 != 0) }))
            for k in [1, 2, 3] {
                gk.append(lines.count)
                lines.append(Q.flag("f\(k)", "M-\(k)", reason: "other"))
            }
            gk.append(lines.count)
            lines.append(Q.status("s", role: "gatekeeper"))
            let disclose = (0..<24).map { Q.disclose("d\($0)", "M-\($0)") }
            let (_, out) = try t.serve(lines + disclose)
            transcripts.append(gk.map { out[$0] })
            arms.append(Array(out.suffix(24)))
        }
        #expect(arms[0] != arms[1], "the two seeds drew different arms")
        #expect(transcripts[0] == transcripts[1], "gatekeeper answers differ with the arms")
    }

    // MARK: R7

    @Test("R7: control characters in an op's string field are invalid_field, and nothing is stored")
    func controlCharacters() throws {
        let t = try Self.trial()
        let door = try InProcessService(t, now: "2017-11-20T09:00:00Z")
        _ = door.send(Q.refer("r", "C-1", claimant: Q.nino(500), district: "devon-cornwall", date: "2017-11-15"))
        let before = door.send(Q.status("s0"))
        for (k, c) in ["\u{0}", "\u{1}", "\u{1f}", "\u{7f}", "\n"].enumerated() {
            let cancel = door.send(Q.cancel("c\(k)", "C-1", reason: "moved\(c)away"))
            #expect(cancel.contains("\"invalid_field\"") && cancel.contains("\"field\":\"reason\""), "\(cancel)")
            let named = door.send(Q.outcome("o\(k)", rid: "C-1", name: "Jo\(c)"))
            #expect(named.contains("\"field\":\"name\""), "\(named)")
        }
        #expect(door.send(Q.status("s1")).replacingOccurrences(of: "s1", with: "s0") == before, "nothing was appended")
        // Other characters are fine: an accent is not a control character.
        #expect(door.send(Q.cancel("c9", "C-1", reason: "Zoë moved away")).contains("\"ok\":true"))
    }

    @Test("R7: one line that fails its commit no longer fails the rest of its group")
    func oneLineCannotFailAGroup() throws {
        let t = try Self.trial()
        let store = try t.openStore()
        if t.backend == .sqlite {
            try store.unsafeExecute(
                "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.payload LIKE '%BOOM%' BEGIN SELECT RAISE(ABORT, 'boom'); END;")
        } else {
            try store.unsafeExecute(
                """
                CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN IF NEW.payload LIKE '%BOOM%' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql;
                CREATE TRIGGER boom BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION boom();
                """)
        }
        let lines = [
            Q.refer("a", "G-1", claimant: Q.nino(600), district: "devon-cornwall", date: "2017-11-15"),
            Q.refer("b", "G-BOOM", claimant: Q.nino(601), district: "devon-cornwall", date: "2017-11-15"),
            Q.refer("c", "G-3", claimant: Q.nino(602), district: "devon-cornwall", date: "2017-11-15"),
        ]
        let (r, out) = try t.serve(lines, now: "2017-11-20T09:00:00Z")
        #expect(r.status == 0)
        #expect(out[0].contains("\"ok\":true") && out[2].contains("\"ok\":true"), "\(out)")
        #expect(out[1].contains("\"code\":\"internal\""), "\(out[1])")
        #expect(try t.verify().status == 0)
    }

    // MARK: R8

    @Test("R8: a repeat gets its first answer whatever the day; a used run_id with a back-dated gk_date is invalid_field")
    func replaysFirstThenChecksInOrder() throws {
        let t = try Self.trial(try Self.window("opens = \"2017-11-01\"\nmax_backdate_days = 14"))
        let door = try InProcessService(t, now: "2017-11-20T09:00:00Z")
        let refer = Q.refer("r", "P-1", claimant: Q.nino(700), district: "devon-cornwall", date: "2017-11-15")
        let first = door.send(refer)
        let run = Q.capacity("g", run: "run-1", district: "devon-cornwall", date: "2017-11-20", 0)
        let firstRun = door.send(run)
        // A month later the dates are outside the window, but a repeat is a repeat.
        door.clock.set("2017-12-20T09:00:00Z")
        #expect(door.send(refer) == first, "refer replay")
        #expect(door.send(run) == firstRun, "run replay")
        // Not a repeat: the checks in their order.
        let backDated = door.send(Q.capacity("g2", run: "run-1", district: "devon-cornwall", date: "2017-12-19", 1))
        #expect(backDated.contains("\"conflict\""), "a used run_id, later date, different fields: \(backDated)")
        _ = door.send(Q.refer("r2", "P-2", claimant: Q.nino(701), district: "devon-cornwall", date: "2017-12-19"))
        _ = door.send(Q.capacity("g3", run: "run-2", district: "devon-cornwall", date: "2017-12-19", 0))
        let used = door.send(Q.capacity("g4", run: "run-1", district: "devon-cornwall", date: "2017-12-10", 1))
        #expect(used.contains("\"invalid_field\"") && used.contains("\"field\":\"gk_date\""), "\(used)")
        let stale = door.send(Q.refer("r3", "P-1", claimant: Q.nino(700), district: "devon-cornwall", date: "2017-11-16"))
        #expect(stale.contains("\"invalid_field\"") && stale.contains("\"field\":\"referral_date\""), "not a repeat, outside the window: \(stale)")
    }

    // MARK: R9

    @Test("R9: dates before 1900 or after 2999 are invalid_field; WHP_NOW outside them exits 2; none crashes")
    func datesStayInRange() throws {
        let t = try Self.trial()
        let door = try InProcessService(t, now: "2017-11-20T09:00:00Z")
        for date in ["1899-12-31", "0001-01-01", "3000-01-01", "9999-12-31"] {
            let a = door.send(Q.eligibility("e", claimant: Q.nino(800), date: date))
            #expect(a.contains("\"invalid_field\"") && a.contains("\"field\":\"date\""), "\(date): \(a)")
        }
        #expect(door.send(Q.eligibility("e", claimant: Q.nino(800), date: "1900-01-01")).contains("\"ok\":true"))
        for now in ["3000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1899-12-31T23:59:59Z"] {
            let (r, out) = try t.serve([Q.status("s")], now: now)
            #expect(r.status == 2 && out.isEmpty && r.stderr.contains("WHP_NOW"), "\(now): \(r.status) \(r.stderr)")
        }
        #expect(
            try runWHP(["verify"] + t.common + ["--seeds", t.seeds.path], env: ["WHP_NOW": "9999-12-31T23:00:00Z"]).status == 0,
            "verify reads no clock")
    }

    // MARK: R4, R5

    @Test("R4: another valid pseudonym key stops serve, another evaluation key stops export; neither is printed")
    func keysAreBoundToTheTrial() throws {
        let t = try Self.trial()
        let pk = t.data.appendingPathComponent("keys/pseudonym.key")
        let original = try String(contentsOf: pk, encoding: .utf8)
        let other = String(repeating: "7c", count: 32)
        try (other + "\n").write(to: pk, atomically: false, encoding: .utf8)
        let (r, out) = try t.serve([Q.status("s")], now: "2017-11-20T09:00:00Z")
        #expect(r.status == 1 && out.isEmpty, "\(r.stderr)")
        #expect(r.stderr.contains(pk.path) && !r.stderr.contains(other) && !r.stderr.contains(original.trimmingCharacters(in: .newlines)))
        try original.write(to: pk, atomically: false, encoding: .utf8)
        #expect(try t.serve([Q.status("s")], now: "2017-11-20T09:00:00Z").0.status == 0)

        let ek = t.data.appendingPathComponent("keys/evaluation.key")
        try (other + "\n").write(to: ek, atomically: false, encoding: .utf8)
        let export = t.root.appendingPathComponent("export")
        let e = try runWHP(["export"] + t.common + ["--out", export.path], env: ["WHP_NOW": "2017-11-21T09:00:00Z"])
        #expect(e.status == 1 && e.stderr.contains(ek.path) && !e.stderr.contains(other), "\(e.stderr)")
        #expect(!FileManager.default.fileExists(atPath: export.appendingPathComponent("allocations.csv").path), "nothing exported")
    }

    @Test("R5: the published demo seed starts only the demo trial; nothing is created otherwise")
    func demoSeedStaysADemo() throws {
        let shipped = try String(contentsOf: WHPBinary.repoRoot.appendingPathComponent("district-config/trial.toml"), encoding: .utf8)
        let t = try TrialFolder(
            trialTOML: TrialFolder.testTrialTOML(shipped.replacingOccurrences(of: "trial_id = \"whp-demo\"", with: "trial_id = \"real-trial\"")))
        let demoSeed = try String(contentsOf: WHPBinary.repoRoot.appendingPathComponent("seeds/whp-demo.seed.hex"), encoding: .utf8)
        let r = try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: demoSeed.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(r.status == 1 && r.stderr.contains("demo seed") && r.stderr.contains("real-trial"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: t.store.path) && !FileManager.default.fileExists(atPath: t.seedFile.path))
        #expect(!FileManager.default.fileExists(atPath: t.seeds.appendingPathComponent("real-trial.commitment.json").path))
    }
}
