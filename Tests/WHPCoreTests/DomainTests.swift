import Foundation
import Testing
@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

// MARK: - Claimant ids (PROTOCOL.md §3, ALLOCATION.md §5)

@Suite("Claimant ids")
struct ClaimantIDTests {
    @Test(
        "valid NINOs are normalised: spaces removed, upper case",
        arguments: [
            ("AB 12 34 56 C", "AB123456C"), ("AB123456C", "AB123456C"), ("ab123456c", "AB123456C"),
            ("aB 123456 c", "AB123456C"), ("  JZ 99 00 11 D  ", "JZ990011D"), ("OA000000A", "OA000000A"),
            ("ZY123456B", "ZY123456B"), ("TA123456A", "TA123456A"), ("GA123456D", "GA123456D"),
        ])
    func validNINO(_ raw: String, _ normal: String) throws {
        let id = try #require(ClaimantID.nino(parsing: raw))
        #expect(id == .nino(normal))
        #expect(id.normalised == "NINO:" + normal)
    }

    @Test("forbidden prefixes are refused", arguments: ["BG", "GB", "KN", "NK", "NT", "TN", "ZZ"])
    func forbiddenPrefix(_ prefix: String) {
        #expect(ClaimantID.nino(parsing: prefix + "123456A") == nil)
        #expect(ClaimantID.nino(parsing: prefix.lowercased() + " 12 34 56 A") == nil)
    }

    @Test("D, F, I, Q, U, V never start a NINO", arguments: ["D", "F", "I", "Q", "U", "V"])
    func forbiddenFirstLetter(_ letter: String) {
        #expect(ClaimantID.nino(parsing: letter + "A123456A") == nil)
    }

    @Test("D, F, I, O, Q, U, V are never second", arguments: ["D", "F", "I", "O", "Q", "U", "V"])
    func forbiddenSecondLetter(_ letter: String) {
        #expect(ClaimantID.nino(parsing: "A" + letter + "123456A") == nil)
    }

    @Test("the suffix is A–D", arguments: ["A", "B", "C", "D", "E", "F", "Z", "1", " "])
    func suffix(_ s: String) {
        let ok = ["A", "B", "C", "D"].contains(s)
        #expect((ClaimantID.nino(parsing: "AB123456" + s) != nil) == ok)
    }

    @Test(
        "wrong length or shape is refused",
        arguments: [
            "", "AB12345C", "AB1234567C", "AB123456", "AB123456CC", "A123456C", "ABC23456C",
            "AB12345XC", "AB 12 34 56", "AB\t123456C", "AB-12-34-56-C", "ÅB123456C", "AB１２３456C",
        ])
    func malformed(_ raw: String) {
        #expect(ClaimantID.nino(parsing: raw) == nil)
    }

    @Test("a reference number is exactly 12 ASCII digits")
    func reference() throws {
        let id = try #require(ClaimantID.reference(parsing: "123456789012"))
        #expect(id.normalised == "REF:123456789012")
        #expect(id != ClaimantID.nino(parsing: "AB123456C"))
        #expect(ClaimantID.reference(parsing: "000000000000")?.normalised == "REF:000000000000")
    }

    @Test(
        "other reference numbers are refused",
        arguments: [
            "", "12345678901", "1234567890123", "12345678901a", "1234 5678 9012", " 123456789012",
            "+12345678901", "١٢٣٤٥٦٧٨٩٠١٢", "12345678901２",
        ])
    func badReference(_ raw: String) {
        #expect(ClaimantID.reference(parsing: raw) == nil)
    }
}

// MARK: - Calendar (ALLOCATION.md §8) and instants

@Suite("CivilDate")
struct CivilDateTests {
    @Test(
        "existence",
        arguments: [
            ("2016-02-29", true), ("2017-02-29", false), ("1900-02-29", false), ("2000-02-29", true),
            ("2017-02-28", true), ("2017-04-31", false), ("2017-04-30", true), ("2017-12-31", true),
            ("2017-13-01", false), ("2017-00-10", false), ("2017-01-00", false), ("2017-01-32", false),
        ])
    func existence(_ text: String, _ exists: Bool) throws {
        #expect((CivilDate(text) != nil) == exists)
        let parts = text.split(separator: "-").compactMap { Int($0) }
        try #require(parts.count == 3)
        #expect((CivilDate(year: parts[0], month: parts[1], day: parts[2]) != nil) == exists)
    }

    @Test(
        "parsing is strict YYYY-MM-DD",
        arguments: [
            "2017-1-01", "2017-01-1", "2017-01-01x", " 2017-01-01", "2017-01-01 ", "2017/01/01",
            "20170101", "17-01-01", "+017-01-01", "2017-0a-01", "2017-01-01T00:00:00Z", "", "２017-01-01",
        ])
    func strictParse(_ text: String) {
        #expect(CivilDate(text) == nil)
    }

    @Test("iso round-trips", arguments: ["2016-02-29", "2017-11-03", "2000-01-01", "1999-12-31", "0001-01-01", "9999-12-31"])
    func roundTrip(_ text: String) throws {
        #expect(try date(text).iso == text)
    }

    @Test(
        "adding days",
        arguments: [
            ("2017-12-31", 1, "2018-01-01"), ("2018-01-01", -1, "2017-12-31"), ("2016-02-28", 1, "2016-02-29"),
            ("2017-02-28", 1, "2017-03-01"), ("2017-11-02", 42, "2017-12-14"), ("2017-12-20", 42, "2018-01-31"),
            ("2016-12-31", 365, "2017-12-31"), ("2015-12-31", 366, "2016-12-31"), ("1999-12-31", 1, "2000-01-01"),
            ("2017-06-15", 0, "2017-06-15"),
        ])
    func addingDays(_ from: String, _ k: Int, _ to: String) throws {
        #expect(try date(from).adding(days: k).iso == to)
    }

    @Test(
        "adding months clamps to the month's end",
        arguments: [
            ("2018-01-31", 1, "2018-02-28"), ("2016-01-31", 1, "2016-02-29"), ("2016-02-29", 24, "2018-02-28"),
            ("2016-02-29", 48, "2020-02-29"), ("2017-03-31", 1, "2017-04-30"), ("2017-12-31", 2, "2018-02-28"),
            ("2017-11-30", 3, "2018-02-28"), ("2017-12-15", 1, "2018-01-15"), ("2017-01-15", 12, "2018-01-15"),
            ("2017-06-15", 0, "2017-06-15"), ("2017-08-31", 13, "2018-09-30"), ("2017-11-30", 24, "2019-11-30"),
        ])
    func addingMonths(_ from: String, _ k: Int, _ to: String) throws {
        #expect(try date(from).adding(months: k).iso == to)
    }

    @Test(
        "ISO weeks",
        arguments: [
            ("2017-11-03", 2017, 44), ("2021-01-03", 2020, 53), ("2018-12-31", 2019, 1), ("2017-01-01", 2016, 52),
            ("2015-12-31", 2015, 53), ("2016-01-01", 2015, 53), ("2010-01-03", 2009, 53), ("2020-12-31", 2020, 53),
            ("2018-01-01", 2018, 1),
        ])
    func isoWeek(_ text: String, _ year: Int, _ week: Int) throws {
        let w = try date(text).isoWeek
        #expect(w.year == year)
        #expect(w.week == week)
    }

    @Test(
        "long text is D Month YYYY",
        arguments: [
            ("2018-01-06", "6 January 2018"), ("2017-11-02", "2 November 2017"), ("2019-12-31", "31 December 2019"),
            ("2016-02-29", "29 February 2016"), ("2020-05-10", "10 May 2020"),
        ])
    func longText(_ text: String, _ long: String) throws {
        #expect(try date(text).longText == long)
    }

    @Test("ordering")
    func ordering() throws {
        #expect(try date("2017-12-31") < date("2018-01-01"))
        #expect(try date("2017-02-28") < date("2017-03-01"))
        #expect(try !(date("2017-03-01") < date("2017-03-01")))
    }

    /// Foundation's Gregorian and ISO 8601 calendars as an independent oracle
    /// for day arithmetic, weekdays and ISO weeks over 1999–2031.
    @Test("day numbers, weekdays and ISO weeks agree with Foundation")
    func agreesWithFoundation() throws {
        var gregorian = Calendar(identifier: .gregorian)
        gregorian.timeZone = try #require(TimeZone(identifier: "UTC"))
        var iso = Calendar(identifier: .iso8601)
        iso.timeZone = gregorian.timeZone
        let first = try date("1999-01-01").dayNumber, last = try date("2031-12-31").dayNumber
        var mismatches = 0
        for n in first...last {
            let d = try #require(CivilDate(dayNumber: n))
            let fd = Date(timeIntervalSince1970: TimeInterval(n) * 86400)
            let c = gregorian.dateComponents([.year, .month, .day, .weekday], from: fd)
            let ic = iso.dateComponents([.yearForWeekOfYear, .weekOfYear], from: fd)
            let isoWeekday = ((c.weekday! + 5) % 7) + 1  // Foundation: Sunday = 1
            let w = d.isoWeek
            if d.year != c.year || d.month != c.month || d.day != c.day || d.isoWeekday != isoWeekday
                || w.year != ic.yearForWeekOfYear || w.week != ic.weekOfYear || d.dayNumber != n
                || d.adding(days: 1).dayNumber != n + 1
            {
                mismatches += 1
                if mismatches <= 5 { Issue.record("mismatch at \(d.iso) (day \(n))") }
            }
        }
        #expect(mismatches == 0)
    }

    @Test("adding months agrees with Foundation's month arithmetic (end-of-month clamping)")
    func monthsAgreeWithFoundation() throws {
        var gregorian = Calendar(identifier: .gregorian)
        gregorian.timeZone = try #require(TimeZone(identifier: "UTC"))
        let first = try date("2015-01-01").dayNumber, last = try date("2020-12-31").dayNumber
        var mismatches = 0
        for n in first...last {
            let d = try #require(CivilDate(dayNumber: n))
            let fd = Date(timeIntervalSince1970: TimeInterval(n) * 86400)
            for k in [1, 6, 24] {
                let fr = try #require(gregorian.date(byAdding: .month, value: k, to: fd))
                let expected = Int((fr.timeIntervalSince1970 / 86400).rounded(.down))
                if d.adding(months: k).dayNumber != expected {
                    mismatches += 1
                    if mismatches <= 5 { Issue.record("\(d.iso) + \(k) months: got \(d.adding(months: k).iso)") }
                }
            }
        }
        #expect(mismatches == 0)
    }
}

@Suite("Instant")
struct InstantTests {
    @Test(
        "parse and format round-trip",
        arguments: [
            ("2017-11-01T09:00:00Z", 1_509_526_800), ("2016-02-29T23:59:59Z", 1_456_790_399),
            ("2000-01-01T00:00:00Z", 946_684_800), ("1970-01-01T00:00:00Z", 0), ("9999-12-31T23:59:59Z", 253_402_300_799),
        ])
    func roundTrip(_ text: String, _ seconds: Int) throws {
        let i = try #require(Instant(text))
        #expect(i.seconds == seconds)
        #expect(i.iso == text)
        #expect(Instant(seconds: seconds).iso == text)
        #expect(i.date.iso == String(text.prefix(10)))
    }

    @Test("format then parse over many instants")
    func formatParse() {
        var s = 1_400_000_000
        while s < 1_700_000_000 {
            let i = Instant(seconds: s)
            #expect(Instant(i.iso) == i)
            s += 86_399 * 7 + 13
        }
    }

    @Test(
        "only YYYY-MM-DDTHH:MM:SSZ is accepted",
        arguments: [
            "2017-11-01T09:00:00+00:00", "2017-11-01T09:00:00", "2017-11-01 09:00:00Z", "2017-11-01T09:00:00z",
            "2017-11-01t09:00:00Z", "2017-11-01T09:00Z", "2017-11-01T09:00:00.000Z", "2017-11-01T9:00:00Z",
            "2017-11-01T24:00:00Z", "2017-11-01T09:60:00Z", "2017-11-01T09:00:60Z", "2017-02-29T09:00:00Z",
            "2017-11-01", "2017-11-01T09:00:00Z ", " 2017-11-01T09:00:00Z", "2017-11-01T09:00:00-01:00",
        ])
    func rejects(_ text: String) {
        #expect(Instant(text) == nil)
    }

    @Test("the date of an instant before 1970")
    func negative() {
        #expect(Instant(seconds: -1).iso == "1969-12-31T23:59:59Z")
        #expect(Instant(seconds: -1).date.iso == "1969-12-31")
    }
}

// MARK: - Locks (PROTOCOL.md §5)

@Suite("Locks")
struct LocksTests {
    let defaults = LockLengths()

    @Test("the default lengths are 42 days, 24 months, 24 months")
    func defaultLengths() {
        #expect(defaults == LockLengths(notSelectedDays: 42, rcgMonths: 24, allocatedMonths: 24))
    }

    @Test("from-dates")
    func fromDates() throws {
        let gk = try date("2017-11-02")
        func from(_ s: ReferralStatus, _ d: CivilDate?, _ l: LockLengths = LockLengths()) -> String? {
            Locks.fromDate(of: ReferralOutcome(status: s, gkDate: d), lengths: l)?.iso
        }
        #expect(from(.notSelected, gk) == "2017-12-14")
        #expect(from(.allocated(.rcg), try date("2016-02-29")) == "2018-02-28")
        #expect(from(.allocated(.whp), try date("2017-11-30")) == "2019-11-30")
        #expect(from(.allocated(.psc), try date("2018-01-31")) == "2020-01-31")
        #expect(from(.awaitingGatekeeper, nil) == nil)
        #expect(from(.cancelled, nil) == nil)
        // Each status reads its own length.
        let custom = LockLengths(notSelectedDays: 10, rcgMonths: 6, allocatedMonths: 18)
        #expect(from(.notSelected, gk, custom) == "2017-11-12")
        #expect(from(.allocated(.rcg), try date("2017-11-30"), custom) == "2018-05-30")
        #expect(from(.allocated(.whp), try date("2017-11-30"), custom) == "2019-05-30")
        #expect(from(.allocated(.psc), try date("2017-08-31"), custom) == "2019-02-28")
    }

    func eligibility(
        _ history: [ReferralOutcome], _ on: String, _ policy: FrontlineRCG,
        lengths: LockLengths = LockLengths()
    ) throws -> Eligibility {
        Locks.eligibility(history: history, on: try date(on), lengths: lengths, policy: policy)
    }

    @Test("not selected: day 41 refused, day 42 eligible", arguments: [FrontlineRCG.hidden, .dcams])
    func notSelected(_ policy: FrontlineRCG) throws {
        let h = [ReferralOutcome(status: .notSelected, gkDate: try date("2017-11-02"))]
        let day41 = try eligibility(h, "2017-12-13", policy)
        #expect(!day41.eligible)
        #expect(!day41.pending)
        #expect(day41.eligibleFrom == (policy == .dcams ? try date("2017-12-14") : nil))
        let day42 = try eligibility(h, "2017-12-14", policy)
        #expect(day42.eligible)
        #expect(day42.eligibleFrom == nil)
        #expect(try eligibility(h, "2017-11-02", policy).eligible == false)
        #expect(try eligibility(h, "2018-06-01", policy).eligible)
    }

    @Test("RCG on 2016-02-29 with 24 months: eligible from 2018-02-28", arguments: [FrontlineRCG.hidden, .dcams])
    func rcgLeapDay(_ policy: FrontlineRCG) throws {
        let h = [ReferralOutcome(status: .allocated(.rcg), gkDate: try date("2016-02-29"))]
        let before = try eligibility(h, "2018-02-27", policy)
        #expect(!before.eligible)
        #expect(before.eligibleFrom == (policy == .dcams ? try date("2018-02-28") : nil))
        #expect(try eligibility(h, "2018-02-28", policy).eligible)
        #expect(try eligibility(h, "2018-03-01", policy).eligible)
    }

    @Test(
        "WHP and PSC locks show their from-date under both policies",
        arguments: [Arm.whp, .psc], [FrontlineRCG.hidden, .dcams])
    func allocatedShown(_ arm: Arm, _ policy: FrontlineRCG) throws {
        let h = [ReferralOutcome(status: .allocated(arm), gkDate: try date("2017-11-30"))]
        let e = try eligibility(h, "2019-11-29", policy)
        #expect(!e.eligible)
        #expect(e.eligibleFrom == (try date("2019-11-30")))
        #expect(try eligibility(h, "2019-11-30", policy).eligible)
    }

    @Test("a pending referral blocks, with no from-date", arguments: [FrontlineRCG.hidden, .dcams])
    func pending(_ policy: FrontlineRCG) throws {
        let pendingOnly = [ReferralOutcome(status: .awaitingGatekeeper, gkDate: nil)]
        let e = try eligibility(pendingOnly, "2030-01-01", policy)
        #expect(e == Eligibility(eligible: false, eligibleFrom: nil, pending: true))
        let withLock = pendingOnly + [ReferralOutcome(status: .allocated(.whp), gkDate: try date("2017-11-30"))]
        let e2 = try eligibility(withLock, "2018-01-01", policy)
        #expect(e2 == Eligibility(eligible: false, eligibleFrom: nil, pending: true))
    }

    @Test("no history, or only cancelled referrals: eligible", arguments: [FrontlineRCG.hidden, .dcams])
    func free(_ policy: FrontlineRCG) throws {
        #expect(try eligibility([], "2017-11-02", policy) == Eligibility(eligible: true, eligibleFrom: nil, pending: false))
        let cancelled = [ReferralOutcome(status: .cancelled, gkDate: nil)]
        #expect(try eligibility(cancelled, "2017-11-02", policy) == Eligibility(eligible: true, eligibleFrom: nil, pending: false))
    }

    @Test("every from-date must have passed; eligible_from is the latest")
    func latestOfSeveral() throws {
        // A WHP lock (from 2019-11-30) and a later-ending RCG lock (from 2020-01-10).
        let h = [
            ReferralOutcome(status: .allocated(.whp), gkDate: try date("2017-11-30")),
            ReferralOutcome(status: .allocated(.rcg), gkDate: try date("2018-01-10")),
        ]
        let dcams = try eligibility(h, "2019-12-01", .dcams)
        #expect(!dcams.eligible)
        #expect(dcams.eligibleFrom == (try date("2020-01-10")))
        // RULES2 R6: under hidden, the latest WHP/PSC from-date after the date is
        // shown whatever the person's other locks (here a later RCG one), so an
        // RCG lock neither shows nor hides anything.
        let hidden = try eligibility(h, "2018-06-01", .hidden)
        #expect(!hidden.eligible)
        #expect(hidden.eligibleFrom == (try date("2019-11-30")))
        // Once the WHP lock has ended, nothing is shown, though the RCG lock still holds.
        let later = try eligibility(h, "2019-12-01", .hidden)
        #expect(!later.eligible && later.eligibleFrom == nil)
        #expect(try eligibility(h, "2020-01-10", .hidden).eligible)

        // The other way round: the WHP lock ends last, so hidden shows it.
        let h2 = [
            ReferralOutcome(status: .notSelected, gkDate: try date("2017-10-01")),
            ReferralOutcome(status: .allocated(.whp), gkDate: try date("2017-11-30")),
        ]
        #expect(try eligibility(h2, "2017-11-01", .hidden).eligibleFrom == (try date("2019-11-30")))
        #expect(try eligibility(h2, "2017-11-01", .dcams).eligibleFrom == (try date("2019-11-30")))
    }

    /// PROTOCOL.md §4: under hidden, on one date, a not-selected and an RCG
    /// claimant look the same except whether they are eligible once the
    /// shorter lock has ended.
    @Test("hidden: not selected and RCG on the same date answer alike while both locked")
    func hiddenIndistinguishable() throws {
        let gk = try date("2017-11-02")
        let ns = [ReferralOutcome(status: .notSelected, gkDate: gk)]
        let rcg = [ReferralOutcome(status: .allocated(.rcg), gkDate: gk)]
        for offset in [0, 1, 20, 41] {
            let x = gk.adding(days: offset).iso
            #expect(try eligibility(ns, x, .hidden) == eligibility(rcg, x, .hidden), "day \(offset)")
        }
        // Under dcams they differ (the guidance as written shows the lock).
        #expect(try eligibility(ns, "2017-11-20", .dcams) != eligibility(rcg, "2017-11-20", .dcams))
    }
}

// MARK: - Views (PROTOCOL.md §4)

@Suite("Views")
struct ViewsTests {
    static let statuses: [ReferralStatus] = [
        .awaitingGatekeeper, .cancelled, .notSelected,
        .allocated(.whp), .allocated(.psc), .allocated(.rcg),
    ]

    /// PROTOCOL.md §4's tables, as written there (`<date>`, `<from>` to fill).
    static func table(_ status: ReferralStatus, _ policy: FrontlineRCG) -> (status: String, summary: String, text: String, next: String) {
        let refer = "Please refer {name} to the provider through the appropriate referral system (LMS / WSP / DPT)"
        switch (status, policy) {
        case (.awaitingGatekeeper, _):
            return (
                "awaiting_gatekeeper", "Awaiting gatekeeper", "{name} is awaiting the district gatekeeper",
                "Check again after the gatekeeper has acted"
            )
        case (.cancelled, _):
            return (
                "cancelled", "Referral cancelled", "The referral for {name} was cancelled",
                "A new referral can be made for {name}"
            )
        case (.notSelected, .dcams):
            return (
                "not_selected", "Not selected (on <date>)",
                "{name} was not selected by the district gatekeeper for allocation to the Work and Health Programme",
                "A new referral can be made for {name} from <from>"
            )
        case (.allocated(.whp), _):
            return ("allocated_whp", "Allocated to the WHP on <date>", "{name} was allocated to the Work and Health Programme", refer)
        case (.allocated(.psc), _):
            return (
                "allocated_psc", "Allocated to the PSC on <date>",
                "{name} was allocated a place with the Public Sector Comparator", refer
            )
        case (.allocated(.rcg), .dcams):
            return (
                "allocated_rcg", "Allocated to the RCG on <date>", "{name} was allocated a place in the Random Control Group",
                "Please continue to provide Work Coach support for {name}. A new referral can be made for {name} from <from>"
            )
        case (.notSelected, .hidden), (.allocated(.rcg), .hidden):
            return (
                "not_allocated", "Not allocated a place (on <date>)",
                "{name} was not allocated a place on the Work and Health Programme",
                "Please continue to provide Work Coach support for {name}"
            )
        }
    }

    @Test("work-coach texts per the tables, with and without a name", arguments: statuses, [FrontlineRCG.hidden, .dcams])
    func workCoach(_ status: ReferralStatus, _ policy: FrontlineRCG) throws {
        let decided = status != .awaitingGatekeeper && status != .cancelled
        let gk = try date("2017-11-02")
        let outcome = ReferralOutcome(status: status, gkDate: decided ? gk : nil)
        // 2017-11-02 + 42 days; 2017-11-02 + 24 months.
        let from: String
        switch status {
        case .notSelected: from = "14 December 2017"
        case .allocated: from = "2 November 2019"
        default: from = ""
        }
        let row = Self.table(status, policy)
        func filled(_ s: String, _ name: String?) -> String {
            let dated = s.replacingOccurrences(of: "<date>", with: "2 November 2017").replacingOccurrences(of: "<from>", with: from)
            return name.map { dated.replacingOccurrences(of: "{name}", with: $0) } ?? dated
        }
        for name in [nil, "Alex Smith", "Zoë O'Brien-Nuñez", "$1 \\0 & <b>"] as [String?] {
            let v = Views.workCoach(outcome, lengths: LockLengths(), policy: policy, name: name)
            #expect(v.status == row.status)
            #expect(v.date == (decided ? gk : nil))
            #expect(v.summary == filled(row.summary, name))
            #expect(v.outcomeText == filled(row.text, name))
            #expect(v.nextSteps == filled(row.next, name))
            if name == nil { #expect(v.outcomeText.contains("{name}")) }
        }
    }

    @Test("<from> follows the trial's lock lengths (dcams)")
    func fromUsesLengths() throws {
        let l = LockLengths(notSelectedDays: 10, rcgMonths: 6, allocatedMonths: 18)
        let gk = try date("2017-11-02")
        let ns = Views.workCoach(ReferralOutcome(status: .notSelected, gkDate: gk), lengths: l, policy: .dcams, name: "Sam")
        #expect(ns.nextSteps == "A new referral can be made for Sam from 12 November 2017")
        let rcg = Views.workCoach(ReferralOutcome(status: .allocated(.rcg), gkDate: gk), lengths: l, policy: .dcams, name: "Sam")
        #expect(rcg.nextSteps == "Please continue to provide Work Coach support for Sam. A new referral can be made for Sam from 2 May 2018")
    }

    @Test("dates in texts are D Month YYYY")
    func dateFormatting() throws {
        let v = Views.workCoach(
            ReferralOutcome(status: .allocated(.whp), gkDate: try date("2018-01-06")),
            lengths: LockLengths(), policy: .hidden, name: nil)
        #expect(v.summary == "Allocated to the WHP on 6 January 2018")
        let p = Views.workCoach(
            ReferralOutcome(status: .notSelected, gkDate: try date("2016-02-29")),
            lengths: LockLengths(), policy: .hidden, name: nil)
        #expect(p.summary == "Not allocated a place (on 29 February 2016)")
    }

    @Test("{name} is replaced once and literally")
    func nameLiteral() throws {
        let gk = try date("2017-11-02")
        let pending = Views.workCoach(
            ReferralOutcome(status: .awaitingGatekeeper, gkDate: nil), lengths: LockLengths(),
            policy: .hidden, name: "X{name}Y")
        #expect(pending.outcomeText == "X{name}Y is awaiting the district gatekeeper")
        let rcg = Views.workCoach(
            ReferralOutcome(status: .allocated(.rcg), gkDate: gk), lengths: LockLengths(),
            policy: .dcams, name: "{name}")
        #expect(rcg.nextSteps == "Please continue to provide Work Coach support for {name}. A new referral can be made for {name} from 2 November 2019")
        let cancelled = Views.workCoach(
            ReferralOutcome(status: .cancelled, gkDate: nil), lengths: LockLengths(),
            policy: .dcams, name: "{name}{name}")
        #expect(cancelled.nextSteps == "A new referral can be made for {name}{name}")
        #expect(Views.fill("a {name} b {name}", name: "{name}!") == "a {name}! b {name}!")
        #expect(Views.fill("{name}", name: "") == "")
        #expect(Views.fill("no placeholder", name: "Sam") == "no placeholder")
    }

    @Test(
        "hidden: not selected and RCG on one gatekeeper date render identically",
        arguments: ["2017-11-02", "2016-02-29", "2017-12-31"])
    func hiddenIdentical(_ gkText: String) throws {
        let gk = try date(gkText)
        for lengths in [LockLengths(), LockLengths(notSelectedDays: 10, rcgMonths: 6, allocatedMonths: 18)] {
            for name in [nil, "Alex"] as [String?] {
                let ns = Views.workCoach(ReferralOutcome(status: .notSelected, gkDate: gk), lengths: lengths, policy: .hidden, name: name)
                let rcg = Views.workCoach(ReferralOutcome(status: .allocated(.rcg), gkDate: gk), lengths: lengths, policy: .hidden, name: name)
                #expect(ns == rcg)
                #expect(ns.status == "not_allocated")
            }
        }
        #expect(Views.claimant(.notSelected) == Views.claimant(.allocated(.rcg)))
    }

    @Test("hidden never names RCG or a lock date in a work-coach view", arguments: statuses)
    func hiddenNoLeak(_ status: ReferralStatus) throws {
        let v = Views.workCoach(
            ReferralOutcome(status: status, gkDate: try date("2017-11-02")), lengths: LockLengths(),
            policy: .hidden, name: "Sam")
        for text in [v.status, v.summary, v.outcomeText, v.nextSteps] {
            #expect(!text.contains("RCG"))
            #expect(!text.lowercased().contains("control"))
            #expect(!text.contains("December 2017"))  // not-selected from-date
            #expect(!text.contains("2019"))  // 24-month from-date
        }
    }

    @Test("claimant view per the table")
    func claimant() {
        let expected: [(ReferralStatus, String, String)] = [
            (.awaitingGatekeeper, "pending", "We will tell you the outcome of your referral to the Work and Health Programme soon."),
            (.allocated(.whp), "offered_place", "You have been allocated a place on the Work and Health Programme."),
            (.allocated(.psc), "offered_place", "You have been allocated a place with the Public Sector Comparator."),
            (.notSelected, "not_successful", "You were not successful in getting a place on the Work and Health Programme."),
            (.allocated(.rcg), "not_successful", "You were not successful in getting a place on the Work and Health Programme."),
            (.cancelled, "cancelled", "Your referral to the Work and Health Programme was cancelled."),
        ]
        for (status, wire, message) in expected {
            let v = Views.claimant(status)
            #expect(v.status == wire, "\(status)")
            #expect(v.message == message, "\(status)")
        }
    }

    @Test("true status wire names (disclose)")
    func wireNames() {
        #expect(
            Self.statuses.map(\.wireName) == [
                "awaiting_gatekeeper", "cancelled", "not_selected",
                "allocated_whp", "allocated_psc", "allocated_rcg",
            ])
    }
}

// MARK: - Errors (PROTOCOL.md §2)

@Suite("Protocol errors")
struct ProtocolErrorTests {
    static let specOrder = [
        "too_large", "bad_json", "bad_request", "unknown_op", "forbidden", "invalid_field",
        "unknown_district", "unknown_group", "conflict", "not_found", "wrong_state",
        "duplicate_referral", "not_eligible", "internal",
    ]

    @Test("the 14 codes in the order PROTOCOL.md checks them")
    func order() {
        #expect(ProtocolError.Code.all.map(\.wireName) == Self.specOrder)
        #expect(ProtocolError.Code.all.map(\.description) == Self.specOrder)
        #expect(Set(ProtocolError.Code.all).count == 14)
        #expect(ProtocolError.Code.notEligible.wireName == "not_eligible")
        #expect(ProtocolError.Code.internal.wireName == "internal")
    }

    @Test(
        "no message names an arm, a status, a lock, a date or a lock length",
        arguments: ProtocolError.Code.all)
    func messagesDoNotLeak(_ code: ProtocolError.Code) {
        let m = code.message
        #expect(!m.isEmpty)
        let lower = m.lowercased()
        for word in [
            "whp", "psc", "rcg", "control", "lock", "selected", "allocated", "month", "week", "day",
            "january", "february", "march", "april", "june", "july", "august", "september", "october",
            "november", "december",
        ] {
            #expect(!lower.contains(word), "\(code): \"\(m)\" contains \"\(word)\"")
        }
        // The only number any message may state is the line limit of PROTOCOL.md §1.
        let digits = m.replacingOccurrences(of: "65,536", with: "").filter(\.isNumber)
        #expect(digits.isEmpty, "\(code): \"\(m)\"")
        #expect(ProtocolError(code).message == m)
    }

    @Test(
        "codes answered after claimant state is read never carry a detail",
        arguments: [ProtocolError.Code.conflict, .notFound, .wrongState, .duplicateReferral, .notEligible, .internal])
    func noDetailAfterState(_ code: ProtocolError.Code) {
        #expect(ProtocolError(code, field: "claimant", detail: "locked until 2019-11-30").detail == nil)
    }

    @Test("input codes keep their detail and field")
    func detailForInput() {
        let e = ProtocolError(.invalidField, field: "claimant", detail: "not a valid NINO")
        #expect(e.detail == "not a valid NINO")
        #expect(e.field == "claimant")
        #expect(e.code == .invalidField)
    }
}

// MARK: - Gatekeeper selection (ALLOCATION.md §4)

@Suite("Gatekeeper selection")
struct GatekeeperSelectionTests {
    @Test("fifo takes the oldest by (referral_date, referred seq)")
    func fifo() throws {
        let pending = [
            PendingReferral(referralID: "A", referralDate: try date("2017-11-02"), referredSeq: 5),
            PendingReferral(referralID: "B", referralDate: try date("2017-11-01"), referredSeq: 9),
            PendingReferral(referralID: "C", referralDate: try date("2017-11-01"), referredSeq: 3),
            PendingReferral(referralID: "D", referralDate: try date("2017-11-03"), referredSeq: 1),
        ]
        func pick(_ c: Int) -> Set<String> {
            GatekeeperSelection.select(pending, capacity: c, rule: .fifo) { _ in
                Issue.record("no key for fifo"); return Bytes32([UInt8](repeating: 0, count: 32))!
            }.selected
        }
        #expect(pick(0) == [])
        #expect(pick(1) == ["C"])
        #expect(pick(2) == ["C", "B"])
        #expect(pick(3) == ["C", "B", "A"])
        #expect(pick(10) == ["A", "B", "C", "D"])
    }

    @Test("lottery takes the smallest keys (vector keys: R-2 < R-3 < R-1)")
    func lottery() throws {
        let f = try Fixture.vectors()
        let seed = try Fixture.seed()
        let runID = try #require(f.lottery_key.first?.run_id)
        let pending = try f.lottery_key.enumerated().map { n, v in
            PendingReferral(referralID: v.referral_id, referralDate: try date("2017-11-01"), referredSeq: n + 1)
        }
        let expectedKeys = Dictionary(uniqueKeysWithValues: f.lottery_key.map { ($0.referral_id, $0.hex) })
        // Order the vector keys as bytes, independently of Bytes32's <.
        let byKey = f.lottery_key.sorted { Array($0.hex.utf8).lexicographicallyPrecedes(Array($1.hex.utf8)) }.map(\.referral_id)
        for c in 0...pending.count {
            let (selected, keys) = GatekeeperSelection.select(pending, capacity: c, rule: .lottery) {
                Derivation.lotteryKey(seed: seed, trialID: f.trial_id, runID: runID, referralID: $0)
            }
            #expect(selected == Set(byKey.prefix(c)))
            #expect(keys.mapValues(\.hex) == expectedKeys)
        }
        #expect(byKey == ["R-2", "R-3", "R-1"])
    }

    @Test("Bytes32 orders as unsigned bytes")
    func bytesOrder() throws {
        let a = try #require(Bytes32([0x7f] + [UInt8](repeating: 0xff, count: 31)))
        let b = try #require(Bytes32([0x80] + [UInt8](repeating: 0x00, count: 31)))
        #expect(a < b)
        #expect(!(b < a))
        #expect(Bytes32([UInt8](repeating: 0, count: 31)) == nil)
        #expect(Bytes32(hex: String(repeating: "0", count: 63)) == nil)
        #expect(Bytes32(hex: String(repeating: "g", count: 64)) == nil)
        #expect(Bytes32(hex: String(repeating: "A", count: 64))?.hex == String(repeating: "a", count: 64))
    }
}

@Suite("Strata")
struct StratumTests {
    @Test("σ is the district, or district|group when stratifying by group")
    func stratum() {
        var c = TrialConfig(trialID: "whp-demo", groups: ["disability"], districts: [])
        #expect(c.stratum(district: "devon-cornwall", group: "disability") == "devon-cornwall")
        c.stratifyByGroup = true
        #expect(c.stratum(district: "example-north", group: "early_access") == "example-north|early_access")
    }
}
