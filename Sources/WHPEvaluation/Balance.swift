#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation
import WHPCrypto
import WHPDomain
import WHPJSON

/// A statistical check of the allocation: it fails loudly when arms depend on
/// what they must not (referral order, weekday) or drift from the weights.
public struct BalanceCheck: Sendable, Equatable {
    public var name: String
    public var statistic: Double
    public var df: Int
    public var pValue: Double
    /// False when there were too few allocations for the test to mean anything.
    public var tested: Bool
    public var passed: Bool
    /// The district the check is about.
    public var district: String = ""
    /// False when the report is for publication and a count of the district is
    /// suppressed (RULES2 R12): the statistic would give it back.
    public var published: Bool = true
}

/// The share of a district's "not allocated" referrals (not selected or RCG)
/// that are RCG: how often a work coach who guesses "RCG" is right (RULES2 R3).
public struct RCGShare: Sendable, Equatable {
    public var district: String
    public var rcg: Int?
    public var notSelected: Int?
    /// nil when a count is suppressed or there is no not-allocated referral.
    public var share: Double? {
        guard let rcg, let notSelected, rcg + notSelected > 0 else { return nil }
        return Double(rcg) / Double(rcg + notSelected)
    }
}

public struct BalanceReport: Sendable {
    public var alpha: Double
    public var checks: [BalanceCheck]
    /// (dimension, value) → counts per arm.
    public var counts: [(dimension: String, value: String, arms: [Arm: Int])]
    /// The tables as printed: allocations by district, group and referral
    /// month, and not-selected referrals by district; with `publish`, after
    /// suppression.
    public var tables: [PublishedTable] = []
    public var rcgShares: [RCGShare] = []
    public var publish = false
    public var ok: Bool { checks.allSatisfy(\.passed) }
}

/// Balance and independence checks (chi-square), all per district because
/// each district has its own weights and arms.
public enum Balance {
    /// Fewer allocations than this in a district: its tests are reported as not run.
    public static let minimumPerTest = 30
    /// Counts below this are suppressed in output marked for publication.
    public static let smallCell = Suppression.threshold

    /// The report over `allocations` (in referral order) and the not-selected
    /// referrals per district. With `publish` the tables are suppressed as
    /// RULES2 R12 says and the checks of a district with a suppressed count
    /// are withheld; the caller leaves out opted-out people's referrals.
    public static func report(
        _ allocations: [AllocatedReferral], notSelected: [String: Int] = [:], config: TrialConfig, alpha: Double = 0.001,
        publish: Bool = false
    ) -> BalanceReport {
        var checks: [BalanceCheck] = []
        var counts: [(String, String, [Arm: Int])] = []
        func tally(_ dimension: String, _ key: (AllocatedReferral) -> String) {
            var t: [String: [Arm: Int]] = [:]
            for a in allocations { t[key(a), default: [:]][a.arm, default: 0] += 1 }
            for k in t.keys.sorted() { counts.append((dimension, k, t[k]!)) }
        }
        tally("district") { $0.district }
        tally("group") { $0.group }
        tally("referral month") { DatePrecision.month.format($0.referralDate) }

        let byDistrict = Dictionary(grouping: allocations, by: \.district)
        for d in config.districts {
            guard let list = byDistrict[d.id] else { continue }
            let arms = Arm.allCases.filter { d.weights[$0] > 0 }
            let enough = list.count >= minimumPerTest && arms.count > 1
            // Arm shares against the configured weights.
            let observed = arms.map { arm in list.filter { $0.arm == arm }.count }
            let shares = arms.map { Double(d.weights[$0]) / Double(d.weights.total) }
            let gof = goodnessOfFit(observed: observed, expectedShares: shares)
            checks.append(check("\(d.id): arm shares vs weights \(arms.map { "\($0.rawValue) \(d.weights[$0])" }.joined(separator: ":"))", gof, enough, alpha))
            // Arm against referral order, in deciles of the district's allocations.
            let deciles = list.indices.map { $0 * 10 / list.count }
            checks.append(check("\(d.id): arm vs referral order (deciles)", independence(rows: deciles, arms: list.map(\.arm), armSet: arms), enough, alpha))
            // Arm against the weekday of referral.
            let weekdays = list.map { $0.referralDate.isoWeekday }
            checks.append(check("\(d.id): arm vs referral weekday", independence(rows: weekdays, arms: list.map(\.arm), armSet: arms), enough, alpha))
            for k in checks.count - 3..<checks.count { checks[k].district = d.id }
        }

        // The printed tables, and their publication.
        let armColumns = ExportVocabulary.arms(config).compactMap(Arm.init(rawValue:))
        func table(_ id: String, _ title: String, _ dimension: String, _ rows: [String], _ key: (AllocatedReferral) -> String) -> CountTable {
            let index = Dictionary(uniqueKeysWithValues: rows.enumerated().map { ($1, $0) })
            let col = Dictionary(uniqueKeysWithValues: armColumns.enumerated().map { ($1, $0) })
            var cells = [[Int]](repeating: [Int](repeating: 0, count: armColumns.count), count: rows.count)
            for a in allocations { if let i = index[key(a)], let j = col[a.arm] { cells[i][j] += 1 } }
            return CountTable(id: id, title: title, dimension: dimension, rows: rows, columns: armColumns.map(\.rawValue), cells: cells, rowTotals: true)
        }
        let districtIDs = config.districts.map(\.id) + Set(allocations.map(\.district)).subtracting(config.districts.map(\.id)).sorted()
        let groups = config.groups + Set(allocations.map(\.group)).subtracting(config.groups).sorted()
        let months = Set(allocations.map { DatePrecision.month.format($0.referralDate) }).sorted()
        let linked = [
            table("allocations_by_district", "Allocations by district", "district", districtIDs) { $0.district },
            table("allocations_by_group", "Allocations by group", "group", groups) { $0.group },
            table("allocations_by_referral_month", "Allocations by referral month", "referral_month", months) {
                DatePrecision.month.format($0.referralDate)
            },
        ]
        let nsDistricts = districtIDs + Set(notSelected.keys).subtracting(districtIDs).sorted()
        let ns = CountTable(
            id: "not_selected_by_district", title: "Not selected by district", dimension: "district", rows: nsDistricts,
            columns: ["not_selected"], cells: nsDistricts.map { [notSelected[$0, default: 0]] }, rowTotals: false)
        let published = publish ? Suppression.protect(linked: linked, single: [ns]) : (linked + [ns]).map(PublishedTable.init(unsuppressed:))

        // RULES2 R3: the RCG share of the not-allocated referrals, from the published figures.
        let byDistrictTable = published[0], nsTable = published[3]
        var shares: [RCGShare] = []
        if let rcg = byDistrictTable.table.columns.firstIndex(of: Arm.rcg.rawValue) {
            for (i, d) in districtIDs.enumerated() {
                shares.append(RCGShare(district: d, rcg: byDistrictTable.cell(i, rcg), notSelected: nsTable.cell(i, 0)))
            }
        }

        // RULES2 R12: a statistic only for a district none of whose counts is suppressed.
        if publish {
            for k in checks.indices {
                let d = checks[k].district
                let i = districtIDs.firstIndex(of: d)
                let clean = i.map { byDistrictTable.rowFullyPublished($0) && nsTable.rowFullyPublished($0) } ?? false
                checks[k].published = clean
            }
        }
        var r = BalanceReport(alpha: alpha, checks: checks, counts: counts.map { (dimension: $0.0, value: $0.1, arms: $0.2) })
        r.tables = published
        r.rcgShares = shares
        r.publish = publish
        return r
    }

    private static func check(_ name: String, _ r: (Double, Int), _ enough: Bool, _ alpha: Double) -> BalanceCheck {
        let p = r.1 > 0 ? chiSquareUpperTail(r.0, df: r.1) : 1
        let tested = enough && r.1 > 0
        return BalanceCheck(name: name, statistic: r.0, df: r.1, pValue: p, tested: tested, passed: !tested || p >= alpha)
    }

    /// Pearson's chi-square of observed counts against expected shares.
    public static func goodnessOfFit(observed: [Int], expectedShares: [Double]) -> (Double, Int) {
        let n = Double(observed.reduce(0, +))
        guard n > 0 else { return (0, 0) }
        var stat = 0.0
        for (o, s) in zip(observed, expectedShares) where s > 0 {
            let e = n * s
            stat += (Double(o) - e) * (Double(o) - e) / e
        }
        return (stat, max(observed.count - 1, 0))
    }

    /// Pearson's chi-square test of independence of a row category and the arm.
    public static func independence(rows: [Int], arms: [Arm], armSet: [Arm]) -> (Double, Int) {
        let rowKeys = Array(Set(rows)).sorted()
        var table = [[Double]](repeating: [Double](repeating: 0, count: armSet.count), count: rowKeys.count)
        let rowIndex = Dictionary(uniqueKeysWithValues: rowKeys.enumerated().map { ($1, $0) })
        let armIndex = Dictionary(uniqueKeysWithValues: armSet.enumerated().map { ($1, $0) })
        for (r, a) in zip(rows, arms) { if let c = armIndex[a] { table[rowIndex[r]!][c] += 1 } }
        let rowTotals = table.map { $0.reduce(0, +) }
        let colTotals = armSet.indices.map { c in table.reduce(0) { $0 + $1[c] } }
        let n = rowTotals.reduce(0, +)
        let liveRows = rowTotals.filter { $0 > 0 }.count, liveCols = colTotals.filter { $0 > 0 }.count
        guard n > 0, liveRows > 1, liveCols > 1 else { return (0, 0) }
        var stat = 0.0
        for i in table.indices where rowTotals[i] > 0 {
            for j in armSet.indices where colTotals[j] > 0 {
                let e = rowTotals[i] * colTotals[j] / n
                stat += (table[i][j] - e) * (table[i][j] - e) / e
            }
        }
        return (stat, (liveRows - 1) * (liveCols - 1))
    }

    /// P(X ≥ x) for X ~ chi-square with `df` degrees of freedom: Q(df/2, x/2),
    /// the regularised upper incomplete gamma function.
    public static func chiSquareUpperTail(_ x: Double, df: Int) -> Double {
        guard x > 0 else { return 1 }
        return upperGamma(Double(df) / 2, x / 2)
    }

    static func upperGamma(_ a: Double, _ x: Double) -> Double {
        let lnFront = -x + a * log(x) - lgamma(a)
        if x < a + 1 {
            // Series for the lower function P, then Q = 1 − P.
            var term = 1 / a, sum = term, ap = a
            for _ in 0..<10_000 {
                ap += 1
                term *= x / ap
                sum += term
                if abs(term) < abs(sum) * 1e-15 { break }
            }
            return max(0, min(1, 1 - sum * exp(lnFront)))
        }
        // Continued fraction for Q (modified Lentz).
        let tiny = 1e-300
        var b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d
        for i in 1...10_000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b; if abs(d) < tiny { d = tiny }
            c = b + an / c; if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-15 { break }
        }
        return max(0, min(1, exp(lnFront) * h))
    }

    /// The report as text; with `publish`, every suppressed figure is `*`.
    public static func text(_ r: BalanceReport, config: TrialConfig, publish: Bool) -> String {
        var lines: [String] = []
        lines.append(
            publish
                ? "Balance report — trial \(config.trialID) — FOR PUBLICATION: referrals of people who opted out left out; counts from 1 to \(smallCell - 1), and the figures that would give them back, suppressed (*)"
                : "Balance report — trial \(config.trialID) — NOT FOR PUBLICATION (small cells shown)")
        func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count + 1), withPad: " ", startingAt: 0) }
        func show(_ v: Int?) -> String { v.map(String.init) ?? "*" }
        for t in r.tables {
            lines.append("")
            lines.append(t.table.title)
            let first = max(16, (t.table.rows + ["total"]).map(\.count).max() ?? 0 + 2)
            let headers = t.table.columns + (t.table.rowTotals ? ["total"] : [])
            lines.append(pad(t.table.dimension.replacingOccurrences(of: "_", with: " "), first + 2) + headers.map { pad($0, 10) }.joined())
            for i in t.table.rows.indices {
                var cells = t.table.columns.indices.map { pad(show(t.cell(i, $0)), 10) }
                if t.table.rowTotals { cells.append(pad(show(t.rowTotal(i)), 10)) }
                lines.append(pad(t.table.rows[i], first + 2) + cells.joined())
            }
            var totals = t.table.columns.indices.map { pad(show(t.columnTotal($0)), 10) }
            if t.table.rowTotals { totals.append(pad(show(t.grandTotal), 10)) }
            lines.append(pad("total", first + 2) + totals.joined())
        }
        if !r.rcgShares.isEmpty {
            lines.append("")
            lines.append("RCG share of not-allocated referrals (not selected or RCG) by district: how often a guess of \"RCG\" is right (RULES2 R3)")
            for s in r.rcgShares {
                let share = s.share.map { String(format: "%.1f%%", $0 * 100) } ?? (s.rcg == nil || s.notSelected == nil ? "suppressed" : "none not allocated")
                lines.append("  " + pad(s.district, 40) + share)
            }
        }
        lines.append("")
        lines.append("Checks (Pearson chi-square; a check fails when p < \(r.alpha); districts with fewer than \(minimumPerTest) allocations are not tested):")
        for c in r.checks {
            if publish && !c.published {
                lines.append("  \("withheld".padding(toLength: 10, withPad: " ", startingAt: 0)) \(c.name): a count of this district is suppressed")
                continue
            }
            let verdict = !c.tested ? "not tested" : (c.passed ? "ok" : "FAIL")
            lines.append(
                "  \(verdict.padding(toLength: 10, withPad: " ", startingAt: 0)) \(c.name): chi2 = \(format(c.statistic)), df = \(c.df), p = \(format(c.pValue))"
            )
        }
        lines.append(r.ok ? "All balance checks pass." : "BALANCE CHECKS FAILED: the allocation depends on something it must not, or drifts from the weights.")
        return lines.joined(separator: "\n")
    }

    /// The report as data (`report balance --json`): the same figures as the
    /// text, a suppressed one as null.
    public static func json(_ r: BalanceReport, config: TrialConfig) -> JSONValue {
        func n(_ v: Int?) -> JSONValue { v.map { .int($0) } ?? .null }
        let tables: [JSONValue] = r.tables.map { t in
            let rows: [JSONValue] = t.table.rows.indices.map { i in
                var o: JSONObject = [
                    "value": .string(t.table.rows[i]),
                    "counts": .object(JSONObject(t.table.columns.indices.map { (t.table.columns[$0], n(t.cell(i, $0))) })),
                ]
                if t.table.rowTotals { o["total"] = n(t.rowTotal(i)) }
                return .object(o)
            }
            var totals = JSONObject(t.table.columns.indices.map { (t.table.columns[$0], n(t.columnTotal($0))) })
            if t.table.rowTotals { totals["total"] = n(t.grandTotal) }
            return .object([
                "id": .string(t.table.id), "title": .string(t.table.title), "dimension": .string(t.table.dimension),
                "columns": .array(t.table.columns.map { .string($0) }), "row_totals": .bool(t.table.rowTotals),
                "rows": .array(rows), "totals": .object(totals),
            ])
        }
        let shares: [JSONValue] = r.rcgShares.map { s in
            .object([
                "district": .string(s.district), "rcg": n(s.rcg), "not_selected": n(s.notSelected),
                "share": s.share.map { .number(JSONNumber(text: number($0))!) } ?? .null,
            ])
        }
        let checks: [JSONValue] = r.checks.map { c in
            let shown = !r.publish || c.published
            return .object([
                "name": .string(c.name), "district": .string(c.district), "published": .bool(shown), "tested": .bool(c.tested),
                "statistic": shown ? .number(JSONNumber(text: number(c.statistic))!) : .null, "df": shown ? .int(c.df) : .null,
                "p_value": shown ? .number(JSONNumber(text: number(c.pValue))!) : .null, "passed": shown ? .bool(c.passed) : .null,
            ])
        }
        return .object([
            "trial_id": .string(config.trialID), "publish": .bool(r.publish), "alpha": .number(JSONNumber(text: number(r.alpha))!),
            "opted_out_left_out": .bool(r.publish), "smallest_published_count": .int(r.publish ? smallCell : 1),
            "tables": .array(tables), "rcg_share_of_not_allocated": .array(shares), "checks": .array(checks), "ok": .bool(r.ok),
        ])
    }

    /// A finite double as a JSON number.
    static func number(_ x: Double) -> String {
        guard x.isFinite else { return "0" }
        if x == x.rounded() && abs(x) < 1e15 { return String(Int(x)) }
        return String(x)  // Swift's shortest form is a JSON number: 0.25, 1e-05, 1e+20
    }

    static func format(_ x: Double) -> String {
        let scaled = (x * 10_000).rounded() / 10_000
        return x != 0 && abs(x) < 0.0001 ? "<0.0001" : String(scaled)
    }
}
