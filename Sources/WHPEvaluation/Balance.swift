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
}

public struct BalanceReport: Sendable {
    public var alpha: Double
    public var checks: [BalanceCheck]
    /// (dimension, value) → counts per arm.
    public var counts: [(dimension: String, value: String, arms: [Arm: Int])]
    public var ok: Bool { checks.allSatisfy(\.passed) }
}

/// Balance and independence checks (chi-square), all per district because
/// each district has its own weights and arms.
public enum Balance {
    /// Fewer allocations than this in a district: its tests are reported as not run.
    public static let minimumPerTest = 30
    /// Counts below this are suppressed in output marked for publication.
    public static let smallCell = 10

    public static func report(_ allocations: [AllocatedReferral], config: TrialConfig, alpha: Double = 0.001) -> BalanceReport {
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
        }
        return BalanceReport(alpha: alpha, checks: checks, counts: counts.map { (dimension: $0.0, value: $0.1, arms: $0.2) })
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

    /// The report as text; with `publish`, counts from 1 to 9 are shown as `<10`.
    public static func text(_ r: BalanceReport, config: TrialConfig, publish: Bool) -> String {
        var lines: [String] = []
        lines.append(
            publish
                ? "Balance report — trial \(config.trialID) — FOR PUBLICATION: counts below \(smallCell) suppressed (<\(smallCell))"
                : "Balance report — trial \(config.trialID) — NOT FOR PUBLICATION (small cells shown)")
        let arms = Arm.allCases
        lines.append("")
        lines.append(
            "dimension".padding(toLength: 16, withPad: " ", startingAt: 0) + "value".padding(toLength: 40, withPad: " ", startingAt: 0)
                + arms.map { $0.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0) }.joined())
        for c in r.counts {
            let cells = arms.map { arm -> String in
                let n = c.arms[arm, default: 0]
                let s = publish && n > 0 && n < smallCell ? "<\(smallCell)" : String(n)
                return s.padding(toLength: 8, withPad: " ", startingAt: 0)
            }
            lines.append(
                c.dimension.padding(toLength: 16, withPad: " ", startingAt: 0) + c.value.padding(toLength: 40, withPad: " ", startingAt: 0) + cells.joined())
        }
        lines.append("")
        lines.append("Checks (Pearson chi-square; a check fails when p < \(r.alpha); districts with fewer than \(minimumPerTest) allocations are not tested):")
        for c in r.checks {
            let verdict = !c.tested ? "not tested" : (c.passed ? "ok" : "FAIL")
            lines.append(
                "  \(verdict.padding(toLength: 10, withPad: " ", startingAt: 0)) \(c.name): chi2 = \(format(c.statistic)), df = \(c.df), p = \(format(c.pValue))"
            )
        }
        lines.append(r.ok ? "All balance checks pass." : "BALANCE CHECKS FAILED: the allocation depends on something it must not, or drifts from the weights.")
        return lines.joined(separator: "\n")
    }

    static func format(_ x: Double) -> String {
        let scaled = (x * 10_000).rounded() / 10_000
        return x != 0 && abs(x) < 0.0001 ? "<0.0001" : String(scaled)
    }
}
