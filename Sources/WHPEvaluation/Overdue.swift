import WHPDomain

/// Monday to Friday, except the config's bank holidays (RULES2 R14).
public struct WorkingCalendar: Sendable {
    public var bankHolidays: Set<CivilDate>
    public init(bankHolidays: Set<CivilDate>) { self.bankHolidays = bankHolidays }

    public func isWorkingDay(_ d: CivilDate) -> Bool { d.isoWeekday <= 5 && !bankHolidays.contains(d) }

    /// `d + n working days`: the n-th working day strictly after `d`.
    public func adding(workingDays n: Int, to d: CivilDate) -> CivilDate {
        var day = d, left = n
        while left > 0 {
            day = day.adding(days: 1)
            if isWorkingDay(day) { left -= 1 }
        }
        return day
    }

    /// The working days in (a, b].
    public func workingDays(after a: CivilDate, through b: CivilDate) -> Int {
        guard b > a else { return 0 }
        var n = 0, day = a
        // Whole weeks at once, then day by day.
        let span = b.dayNumber - a.dayNumber
        let weeks = span / 7
        if weeks > 0 {
            n += weeks * 5
            let end = a.adding(days: weeks * 7)
            n -= bankHolidays.filter { $0 > a && $0 <= end && $0.isoWeekday <= 5 }.count
            day = end
        }
        while day < b {
            day = day.adding(days: 1)
            if isWorkingDay(day) { n += 1 }
        }
        return n
    }
}

/// One referral and the follow-up recorded for it, as the overdue counts read it.
public struct FollowUpProgress: Sendable {
    public var referral: Referral
    public var providerReferralDate: CivilDate?
    public var startRecorded: Bool
    public init(referral: Referral, providerReferralDate: CivilDate?, startRecorded: Bool) {
        self.referral = referral; self.providerReferralDate = providerReferralDate; self.startRecorded = startRecorded
    }
}

/// An item waiting past its due date (RULES2 R14, `report overdue`).
public struct OverdueItem: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case gatekeeper, providerReferral = "provider_referral", start }
    public var referralID: String
    public var district: String
    public var kind: Kind
    public var dueDate: CivilDate
    public var workingDaysOverdue: Int
}

public enum Overdue {
    /// Every item overdue on `date`: listed while the event it waits for is
    /// missing and `date` is after its due date; sorted by due date, then referral id.
    public static func items(_ progress: [FollowUpProgress], config: TrialConfig, rules: RulesVersion, on date: CivilDate) -> [OverdueItem] {
        let calendar = WorkingCalendar(bankHolidays: config.bankHolidays)
        let deadlines = config.deadlines
        var out: [OverdueItem] = []
        func add(_ p: FollowUpProgress, _ kind: OverdueItem.Kind, _ due: CivilDate) {
            guard date > due else { return }
            out.append(
                OverdueItem(
                    referralID: p.referral.referralID, district: p.referral.district, kind: kind, dueDate: due,
                    workingDaysOverdue: calendar.workingDays(after: due, through: date)))
        }
        for p in progress {
            switch p.referral.status {
            case .awaitingGatekeeper:
                add(p, .gatekeeper, p.referral.referralDate.adding(days: deadlines.pendingDays))
            case .allocated(.whp), .allocated(.psc):
                if let started = p.providerReferralDate {
                    if !p.startRecorded { add(p, .start, calendar.adding(workingDays: deadlines.startWorkingDays, to: started)) }
                } else if let base = p.referral.lockBase(rules) {
                    add(p, .providerReferral, calendar.adding(workingDays: deadlines.providerReferralWorkingDays, to: base))
                }
            default: break
            }
        }
        return out.sorted { a, b in a.dueDate != b.dueDate ? a.dueDate < b.dueDate : a.referralID.utf8.lexicographicallyPrecedes(b.referralID.utf8) }
    }
}
