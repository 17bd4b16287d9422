import WHPDomain
import WHPJSON

/// RULES2 R11: how identifiable the exported rows are. Rows that share every
/// quasi-identifier (at the export's date precision) form a class; `k_min` is
/// the size of the smallest class, and `rows_in_classes_below_10` counts the
/// rows whose class has fewer than 10 rows.
public struct KAnonymity: Sendable, Equatable {
    /// The quasi-identifiers of R11, in its order (the export has every column R14 and R15 add).
    public static let quasiIdentifiers = [
        "district", "group", "referral_date", "gk_date", "provider", "provider_referral_date", "start_date", "left_date",
    ]
    /// The class size under which rows are counted as at risk.
    public static let threshold = 10

    /// nil when the export has no rows.
    public var kMin: Int?
    public var rowsInClassesBelow10: Int
    public var classes: Int

    public init(kMin: Int?, rowsInClassesBelow10: Int, classes: Int) {
        self.kMin = kMin; self.rowsInClassesBelow10 = rowsInClassesBelow10; self.classes = classes
    }

    /// The manifest's `k_anonymity` object.
    public var json: JSONValue {
        .object([
            "quasi_identifiers": .array(KAnonymity.quasiIdentifiers.map { .string($0) }),
            "k_min": kMin.map { .int($0) } ?? .null,
            "rows_in_classes_below_10": .int(rowsInClassesBelow10),
        ])
    }
}

/// Counts the classes of the exported rows in bounded, flat memory: each row
/// becomes a 24-byte key (its district, group and provider interned together
/// as one number, and each date as its number at the chosen precision), and
/// the keys are sorted once at the end. Exact: two rows get one key exactly
/// when their quasi-identifiers are equal at that precision.
public final class KAnonymityCounter {
    private struct Key: Comparable {
        var a: UInt64, b: UInt64, c: UInt64
        static func < (x: Key, y: Key) -> Bool { (x.a, x.b, x.c) < (y.a, y.b, y.c) }
    }
    private struct Triple: Hashable { var district: UInt32, group: UInt32, provider: UInt32 }

    public let precision: DatePrecision
    private var keys: [Key] = []
    private var districts: [String: UInt32] = [:]
    private var groups: [String: UInt32] = [:]
    private var providers: [String: UInt32] = [:]
    private var triples: [Triple: UInt32] = [:]
    // The last strings seen and their numbers: neighbouring rows often repeat them.
    private var lastDistrict = "", lastDistrictID: UInt32 = .max
    private var lastGroup = "", lastGroupID: UInt32 = .max

    public init(precision: DatePrecision) { self.precision = precision }

    /// Adds one exported row.
    public func add(_ f: ReferralFacts) {
        let d: UInt32
        if f.district == lastDistrict && lastDistrictID != .max {
            d = lastDistrictID
        } else {
            d = Self.intern(f.district, &districts); lastDistrict = f.district; lastDistrictID = d
        }
        let g: UInt32
        if f.group == lastGroup && lastGroupID != .max {
            g = lastGroupID
        } else {
            g = Self.intern(f.group, &groups); lastGroup = f.group; lastGroupID = g
        }
        let p = f.provider.map { Self.intern($0, &providers) + 1 } ?? 0
        let t = Triple(district: d, group: g, provider: p)
        let tid: UInt32
        if let known = triples[t] {
            tid = known
        } else {
            tid = UInt32(truncatingIfNeeded: triples.count); triples[t] = tid
        }
        let u = f.followUp
        keys.append(
            Key(
                a: UInt64(tid) << 32 | UInt64(ordinal(f.referralDate)),
                b: UInt64(ordinal(f.gkDate)) << 32 | UInt64(ordinal(u.providerReferralDate)),
                c: UInt64(ordinal(u.startDate)) << 32 | UInt64(ordinal(u.leftDate))))
    }

    /// The classes of every row added so far.
    public func finish() -> KAnonymity {
        guard !keys.isEmpty else { return KAnonymity(kMin: nil, rowsInClassesBelow10: 0, classes: 0) }
        keys.sort()
        var kMin = Int.max, below = 0, classes = 0
        var i = 0
        while i < keys.count {
            var j = i + 1
            while j < keys.count && keys[j] == keys[i] { j += 1 }
            let size = j - i
            classes += 1
            kMin = min(kMin, size)
            if size < KAnonymity.threshold { below += size }
            i = j
        }
        keys = []
        return KAnonymity(kMin: kMin, rowsInClassesBelow10: below, classes: classes)
    }

    private static func intern(_ s: String, _ table: inout [String: UInt32]) -> UInt32 {
        if let n = table[s] { return n }
        let n = UInt32(truncatingIfNeeded: table.count)
        table[s] = n
        return n
    }

    /// A date's number at the precision, 0 for no date: the day number, the
    /// ISO week's Monday or the month's first day. Distinct periods get
    /// distinct numbers, and every day of one period the same.
    private func ordinal(_ d: CivilDate?) -> UInt32 {
        guard let d else { return 0 }
        let n: Int
        switch precision {
        case .day: n = d.dayNumber
        case .week:
            let w = d.isoWeek
            n = w.year * 64 + w.week
        case .month: n = d.year * 16 + d.month
        }
        // Offset so every representable date maps above 0 (CivilDate years are 1–9999).
        return UInt32(truncatingIfNeeded: n + (1 << 30))
    }
}
