/// The dates a request or a log may hold (RULES2 R9).
public enum CalendarRange {
    public static let first = CivilDate(year: 1900, month: 1, day: 1)!
    public static let last = CivilDate(year: 2999, month: 12, day: 31)!
    public static func contains(_ d: CivilDate) -> Bool { d >= first && d <= last }
}
