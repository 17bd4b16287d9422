import WHPCrypto
/// A Gregorian calendar date with no time zone: referral dates, gatekeeper
/// dates and lock from-dates are all whole days (ALLOCATION.md §8).
public struct CivilDate: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    /// nil unless the date exists (so 2017-02-29 is refused, 2016-02-29 is not).
    public init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month),
            day >= 1, day <= CivilDate.daysIn(month: month, year: year)
        else { return nil }
        self.year = year; self.month = month; self.day = day
    }

    /// Parses exactly `YYYY-MM-DD`.
    public init?(_ text: String) {
        var t = text
        guard let d = t.withUTF8({ CivilDate(utf8: $0) }) else { return nil }
        self = d
    }

    /// Parses exactly `YYYY-MM-DD` from UTF-8 bytes.
    public init?(utf8 u: UnsafeBufferPointer<UInt8>) {
        guard u.count == 10, u[4] == 0x2d, u[7] == 0x2d,
            let y = CivilDate.digits(u, 0, 4), let m = CivilDate.digits(u, 5, 7),
            let d = CivilDate.digits(u, 8, 10)
        else { return nil }
        self.init(year: y, month: m, day: d)
    }

    @inline(__always)
    static func digits(_ u: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> Int? {
        var n = 0
        for i in from..<to {
            let c = u[i]
            guard c >= 0x30, c <= 0x39 else { return nil }
            n = n * 10 + Int(c - 0x30)
        }
        return n
    }

    /// The 10 bytes of `iso` (years 1…9999 always take 4 digits).
    @inline(__always)
    func writeISO(_ d: UnsafeMutablePointer<UInt8>) {
        var y = year
        for k in stride(from: 3, through: 0, by: -1) { d[k] = 0x30 &+ UInt8(truncatingIfNeeded: y % 10); y /= 10 }
        d[4] = 0x2d
        d[5] = 0x30 &+ UInt8(truncatingIfNeeded: month / 10); d[6] = 0x30 &+ UInt8(truncatingIfNeeded: month % 10)
        d[7] = 0x2d
        d[8] = 0x30 &+ UInt8(truncatingIfNeeded: day / 10); d[9] = 0x30 &+ UInt8(truncatingIfNeeded: day % 10)
    }

    /// Whether `bytes` are exactly this date's `iso` text.
    public func isISO(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard bytes.count == 10 else { return false }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 10) { d in
            writeISO(d.baseAddress!)
            return (0..<10).allSatisfy { d[$0] == bytes[$0] }
        }
    }

    public static func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    public static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    public var description: String { iso }

    /// `YYYY-MM-DD`.
    public var iso: String {
        // Written into the string's own bytes: `refer` formats several dates per request.
        guard (1...9999).contains(year) else { return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) }
        return String(unsafeUninitializedCapacity: 10) { b in
            writeISO(b.baseAddress!); return 10
        }
    }

    /// Days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's civil algorithm).
    public var dayNumber: Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    public init?(dayNumber z0: Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        self.init(year: yoe + era * 400 + (m <= 2 ? 1 : 0), month: m, day: d)
    }

    /// The first and last dates the type holds.
    public static let earliest = CivilDate(year: 1, month: 1, day: 1)!
    public static let latest = CivilDate(year: 9999, month: 12, day: 31)!

    /// `d + k days` (k may be negative). Total: a result past 9999-12-31 (or
    /// before year 1) stops there, so a lock that would end later ends then,
    /// and no date read from a log can trap the arithmetic.
    public func adding(days k: Int) -> CivilDate {
        let n = dayNumber
        guard k < CivilDate.latest.dayNumber - n else { return CivilDate.latest }
        guard k > CivilDate.earliest.dayNumber - n else { return CivilDate.earliest }
        return CivilDate(dayNumber: n + k)!
    }

    /// `add_months(d, k)`: same day of month, clamped to the target month's end
    /// (2016-02-29 + 24 months = 2018-02-28). Total like `adding(days:)`;
    /// a negative `k` counts as 0.
    public func adding(months k: Int) -> CivilDate {
        let total = (year * 12 + (month - 1)) + min(max(k, 0), 12 * 10_000)
        let y = total / 12, m = total % 12 + 1
        guard y <= 9999 else { return CivilDate.latest }
        return CivilDate(year: y, month: m, day: min(day, CivilDate.daysIn(month: m, year: y)))!
    }

    /// ISO weekday, Monday = 1 … Sunday = 7.
    public var isoWeekday: Int {
        // 1970-01-01 was a Thursday (4).
        let r = (dayNumber + 3) % 7
        return (r < 0 ? r + 7 : r) + 1
    }

    /// ISO 8601 week-year and week number (`2017-W44`).
    public var isoWeek: (year: Int, week: Int) {
        let thursday = adding(days: 4 - isoWeekday)
        let jan1 = CivilDate(year: thursday.year, month: 1, day: 1)!
        return (thursday.year, (thursday.dayNumber - jan1.dayNumber) / 7 + 1)
    }

    private static let monthNames = [
        "January", "February", "March", "April", "May", "June", "July",
        "August", "September", "October", "November", "December",
    ]

    /// `D Month YYYY` (`6 January 2018`), the form dates take in view texts.
    public var longText: String { "\(day) \(CivilDate.monthNames[month - 1]) \(year)" }

    public static func < (a: CivilDate, b: CivilDate) -> Bool {
        (a.year, a.month, a.day) < (b.year, b.month, b.day)
    }
}

/// A UTC instant to the second: the service clock, `recorded_at`, `WHP_NOW`.
public struct Instant: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Seconds since 1970-01-01T00:00:00Z.
    public let seconds: Int

    public init(seconds: Int) { self.seconds = seconds }

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`.
    public init?(_ text: String) {
        var t = text
        guard let i = t.withUTF8({ Instant(utf8: $0) }) else { return nil }
        self = i
    }

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` from UTF-8 bytes.
    public init?(utf8 u: UnsafeBufferPointer<UInt8>) {
        guard u.count == 20, u[10] == 0x54, u[13] == 0x3a, u[16] == 0x3a, u[19] == 0x5a,
            let date = CivilDate(utf8: UnsafeBufferPointer(rebasing: u[0..<10])),
            let h = CivilDate.digits(u, 11, 13), let m = CivilDate.digits(u, 14, 16),
            let s = CivilDate.digits(u, 17, 19), h < 24, m < 60, s < 60
        else { return nil }
        seconds = date.dayNumber * 86400 + h * 3600 + m * 60 + s
    }

    public var date: CivilDate {
        let d = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        return CivilDate(dayNumber: d)!
    }

    public var iso: String {
        let date = self.date
        let secOfDay = seconds - date.dayNumber * 86400
        guard (1...9999).contains(date.year) else {
            return date.iso + "T" + pad(secOfDay / 3600, 2) + ":" + pad(secOfDay / 60 % 60, 2) + ":" + pad(secOfDay % 60, 2) + "Z"
        }
        return String(unsafeUninitializedCapacity: 20) { b in
            let d = b.baseAddress!
            date.writeISO(d)
            func two(_ n: Int, at i: Int) {
                d[i] = 0x30 &+ UInt8(truncatingIfNeeded: n / 10); d[i + 1] = 0x30 &+ UInt8(truncatingIfNeeded: n % 10)
            }
            d[10] = 0x54; two(secOfDay / 3600, at: 11); d[13] = 0x3a; two(secOfDay / 60 % 60, at: 14)
            d[16] = 0x3a; two(secOfDay % 60, at: 17); d[19] = 0x5a
            return 20
        }
    }

    public var description: String { iso }

    public static func < (a: Instant, b: Instant) -> Bool { a.seconds < b.seconds }
}

/// `n` in decimal, zero-padded on the left to `width` digits.
@inline(__always)
public func pad(_ n: Int, _ width: Int) -> String {
    let s = String(n)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}
