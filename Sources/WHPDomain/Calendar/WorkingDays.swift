/// Working days (RULES2 R14): Monday to Friday, except the bank holidays of
/// `calendar.toml`. The guidance counts follow-up deadlines in them ("within
/// 10 working days of being selected").
public struct WorkingDays: Sendable, Equatable {
    public let bankHolidays: Set<CivilDate>

    public init(bankHolidays: Set<CivilDate>) { self.bankHolidays = bankHolidays }

    public func isWorkingDay(_ d: CivilDate) -> Bool {
        d.isoWeekday <= 5 && !bankHolidays.contains(d)
    }

    /// `d + n working days`: the n-th working day strictly after `d` (n ≥ 0;
    /// `d + 0` is `d`). Stops at the calendar's end rather than run past it.
    public func adding(_ n: Int, to d: CivilDate) -> CivilDate {
        var day = d
        var left = max(n, 0)
        while left > 0 && day < CivilDate.latest {
            day = day.adding(days: 1)
            if isWorkingDay(day) { left -= 1 }
        }
        return day
    }

    /// The working days in the interval (from, to]: 0 when `to` is not after `from`.
    public func count(after from: CivilDate, through to: CivilDate) -> Int {
        guard to > from else { return 0 }
        var n = 0
        var day = from.adding(days: 1)
        // Whole weeks at once: five weekdays each, less the holidays among them.
        let span = to.dayNumber - day.dayNumber + 1
        let weeks = span / 7
        if weeks > 0 {
            let end = day.adding(days: weeks * 7 - 1)
            n += weeks * 5 - bankHolidays.filter { $0 >= day && $0 <= end && $0.isoWeekday <= 5 }.count
            day = end.adding(days: 1)
        }
        while day <= to {
            if isWorkingDay(day) { n += 1 }
            day = day.adding(days: 1)
        }
        return n
    }
}
