import Foundation
import Testing
import WHPDomain
import WHPEvaluation
import WHPTestSupport

/// A linear program, maximise c·x subject to A·x = b, x ≥ 0, solved by the
/// two-phase simplex method with Bland's rule (no cycling). Written for this
/// test alone: it shares nothing with the code under test.
struct SimplexLP {
    var rows: [[Double]] = []
    var rhs: [Double] = []
    let columns: Int

    init(columns: Int) { self.columns = columns }

    /// Adds Σ coef·x = b.
    mutating func equal(_ coefficients: [Int: Double], _ b: Double) {
        var r = [Double](repeating: 0, count: columns)
        for (j, v) in coefficients { r[j] += v }
        if b < 0 {
            rows.append(r.map { -$0 }); rhs.append(-b)
        } else {
            rows.append(r); rhs.append(b)
        }
    }

    /// A tableau in canonical form with a feasible basis, or nil if infeasible.
    struct Tableau {
        var m: Int, n: Int
        var t: [Double]  // m × (n + 1), the last column the right-hand side
        var basis: [Int]
        static let eps = 1e-9

        @inline(__always) func at(_ i: Int, _ j: Int) -> Double { t[i * (n + 1) + j] }

        mutating func pivot(_ r: Int, _ c: Int, _ z: inout [Double]) {
            let w = n + 1
            t.withUnsafeMutableBufferPointer { p in
                let inv = 1 / p[r * w + c]
                for j in 0..<w { p[r * w + j] *= inv }
                for i in 0..<m where i != r {
                    let f = p[i * w + c]
                    if f != 0 { for j in 0..<w { p[i * w + j] -= f * p[r * w + j] } }
                }
                let f = z[c]
                if f != 0 { for j in 0..<w { z[j] -= f * p[r * w + j] } }
            }
            basis[r] = c
        }

        /// Maximises the objective whose reduced costs are `z`; false when unbounded.
        mutating func run(_ z: inout [Double], allowed: Int) -> Bool {
            while true {
                guard let c = (0..<allowed).first(where: { z[$0] > Self.eps }) else { return true }
                var best: Int?
                for i in 0..<m where at(i, c) > Self.eps {
                    guard let b = best else { best = i; continue }
                    let ri = at(i, n) / at(i, c), rb = at(b, n) / at(b, c)
                    if ri < rb - Self.eps || (abs(ri - rb) <= Self.eps && basis[i] < basis[b]) { best = i }
                }
                guard let r = best else { return false }
                pivot(r, c, &z)
            }
        }
    }

    /// Phase 1: a feasible basis over the original columns (artificial ones driven out).
    func feasible() -> Tableau? {
        let m = rows.count, n = columns + m
        var t = [Double](repeating: 0, count: m * (n + 1))
        for i in 0..<m {
            for j in 0..<columns { t[i * (n + 1) + j] = rows[i][j] }
            t[i * (n + 1) + columns + i] = 1
            t[i * (n + 1) + n] = rhs[i]
        }
        var tab = Tableau(m: m, n: n, t: t, basis: (0..<m).map { columns + $0 })
        var z = [Double](repeating: 0, count: n + 1)
        for j in 0..<columns { z[j] = (0..<m).reduce(0) { $0 + rows[$1][j] } }
        z[n] = rhs.reduce(0, +)
        _ = tab.run(&z, allowed: n)
        guard abs(z[n]) < 1e-7 else { return nil }
        // Drive artificial variables out of the basis; drop redundant rows.
        var keep: [Int] = []
        for i in 0..<m {
            if tab.basis[i] >= columns {
                if let j = (0..<columns).first(where: { abs(tab.at(i, $0)) > 1e-9 }) {
                    tab.pivot(i, j, &z)
                    keep.append(i)
                }
            } else {
                keep.append(i)
            }
        }
        // Rebuild without the artificial columns and the dropped rows.
        var t2 = [Double](repeating: 0, count: keep.count * (columns + 1))
        for (k, i) in keep.enumerated() {
            for j in 0..<columns { t2[k * (columns + 1) + j] = tab.at(i, j) }
            t2[k * (columns + 1) + columns] = tab.at(i, n)
        }
        return Tableau(m: keep.count, n: columns, t: t2, basis: keep.map { tab.basis[$0] })
    }

    /// max c·x from the feasible tableau; +∞ when unbounded.
    static func maximise(_ start: Tableau, _ c: [Int: Double]) -> Double {
        var tab = start
        let n = tab.n
        var z = [Double](repeating: 0, count: n + 1)
        for (j, v) in c { z[j] += v }
        for i in 0..<tab.m {
            let cb = c[tab.basis[i]] ?? 0
            if cb != 0 { for j in 0...n { z[j] -= cb * tab.at(i, j) } }
        }
        guard tab.run(&z, allowed: n) else { return .infinity }
        return -z[n]
    }
}

/// The attacker: given the report's JSON, every figure becomes a sum of
/// unknown counts of a hidden table — allocations by district × group ×
/// referral month × arm, and not-selected referrals by district — and every
/// suppressed figure an unknown of at least 1. For each suppressed figure it
/// solves min and max over every published figure of every table.
enum Attacker {
    struct Range { var name: String; var low: Double; var high: Double }

    static func ranges(_ report: [String: Any]) throws -> [Range] {
        let tables = try #require(report["tables"] as? [[String: Any]])
        func table(_ id: String) throws -> [String: Any] { try #require(tables.first { $0["id"] as? String == id }) }
        let byDistrict = try table("allocations_by_district"), byGroup = try table("allocations_by_group")
        let byMonth = try table("allocations_by_referral_month"), ns = try table("not_selected_by_district")
        func rowNames(_ t: [String: Any]) -> [String] { (t["rows"] as? [[String: Any]] ?? []).map { $0["value"] as? String ?? "" } }
        let districts = rowNames(byDistrict), groups = rowNames(byGroup), months = rowNames(byMonth)
        let arms = byDistrict["columns"] as? [String] ?? []
        let nsRows = rowNames(ns)
        let allocationCount = districts.count * groups.count * months.count * arms.count
        func v(_ d: Int, _ g: Int, _ m: Int, _ a: Int) -> Int { ((d * groups.count + g) * months.count + m) * arms.count + a }
        let columns = allocationCount + nsRows.count
        var figures: [(name: String, vars: [Int], value: Int?)] = []
        func number(_ any: Any?) -> Int? { any as? Int }
        // The three allocation tables: which hidden cells each row sums.
        for (t, dim) in [(byDistrict, 0), (byGroup, 1), (byMonth, 2)] {
            let id = t["id"] as? String ?? ""
            for (i, row) in (t["rows"] as? [[String: Any]] ?? []).enumerated() {
                func cells(_ arm: Int?) -> [Int] {
                    var out: [Int] = []
                    for d in districts.indices where dim != 0 || d == i {
                        for g in groups.indices where dim != 1 || g == i {
                            for m in months.indices where dim != 2 || m == i {
                                for a in arms.indices where arm == nil || arm == a { out.append(v(d, g, m, a)) }
                            }
                        }
                    }
                    return out
                }
                let counts = row["counts"] as? [String: Any] ?? [:]
                for (a, arm) in arms.enumerated() { figures.append(("\(id)[\(row["value"]!)][\(arm)]", cells(a), number(counts[arm]))) }
                figures.append(("\(id)[\(row["value"]!)][total]", cells(nil), number(row["total"])))
            }
            let totals = t["totals"] as? [String: Any] ?? [:]
            for (a, arm) in arms.enumerated() {
                figures.append(("\(id)[total][\(arm)]", (0..<allocationCount).filter { $0 % arms.count == a }, number(totals[arm])))
            }
            figures.append(("\(id)[total][total]", Array(0..<allocationCount), number(totals["total"])))
        }
        for (i, row) in (ns["rows"] as? [[String: Any]] ?? []).enumerated() {
            figures.append(("not_selected[\(row["value"]!)]", [allocationCount + i], number((row["counts"] as? [String: Any])?["not_selected"])))
        }
        figures.append(("not_selected[total]", Array(allocationCount..<columns), number((ns["totals"] as? [String: Any])?["not_selected"])))

        // Published figures are equalities; a suppressed one is Σ − slack = 1.
        let suppressed = figures.indices.filter { figures[$0].value == nil }
        var lp = SimplexLP(columns: columns + suppressed.count)
        for f in figures where f.value != nil {
            lp.equal(Dictionary(f.vars.map { ($0, 1.0) }, uniquingKeysWith: +), Double(f.value!))
        }
        for (k, i) in suppressed.enumerated() {
            var c = Dictionary(figures[i].vars.map { ($0, 1.0) }, uniquingKeysWith: +)
            c[columns + k] = -1
            lp.equal(c, 1)
        }
        let start = try #require(lp.feasible(), "the published figures are consistent")
        return suppressed.map { i in
            let c = Dictionary(figures[i].vars.map { ($0, 1.0) }, uniquingKeysWith: +)
            let high = SimplexLP.maximise(start, c)
            let low = -SimplexLP.maximise(start, c.mapValues { -$0 })
            return Range(name: figures[i].name, low: low, high: high)
        }
    }

    /// The figures that can take only one integer value.
    static func pinned(_ report: [String: Any]) throws -> [Range] {
        try ranges(report).filter { r in r.high.isFinite && floor(r.high + 1e-6) <= ceil(r.low - 1e-6) }
    }
}

@Suite(.serialized)
struct SuppressionAuditTests {
    static func config(districts: Int, groups: Int, psc: Bool) -> TrialConfig {
        TrialConfig(
            trialID: "t", groups: (0..<groups).map { "g\($0)" },
            districts: (0..<districts).map { k in
                District(
                    id: "d\(k)", name: "D\(k)", psc: psc && k == 0, gatekeeperRule: .lottery,
                    weights: psc && k == 0 ? Weights(whp: 1, psc: 1, rcg: 1) : Weights(whp: 1 + k % 2, rcg: 1))
            })
    }

    static func json(_ r: BalanceReport, _ config: TrialConfig) throws -> [String: Any] {
        let text = Balance.json(r, config: config).description
        return try jsonObject(Data(text.utf8))
    }

    /// The attacker is not blind: on the primary suppression alone (1–9 hidden,
    /// nothing more) it pins a cell exactly, as the issue's attacker did.
    @Test func theAttackerSolvesAPrimaryOnlyTable() throws {
        let report: [String: Any] = [
            "tables": [
                [
                    "id": "allocations_by_district", "columns": ["WHP", "RCG"],
                    "rows": [
                        ["value": "a", "counts": ["WHP": 40, "RCG": NSNull()], "total": 45],
                        ["value": "b", "counts": ["WHP": 30, "RCG": 31], "total": 61],
                    ],
                    "totals": ["WHP": 70, "RCG": 36, "total": 106],
                ],
                [
                    "id": "allocations_by_group", "columns": ["WHP", "RCG"],
                    "rows": [["value": "g", "counts": ["WHP": 70, "RCG": 36], "total": 106]],
                    "totals": ["WHP": 70, "RCG": 36, "total": 106],
                ],
                [
                    "id": "allocations_by_referral_month", "columns": ["WHP", "RCG"],
                    "rows": [["value": "2017-11", "counts": ["WHP": 70, "RCG": 36], "total": 106]],
                    "totals": ["WHP": 70, "RCG": 36, "total": 106],
                ],
                ["id": "not_selected_by_district", "columns": ["not_selected"], "rows": [] as [Any], "totals": ["not_selected": 0]],
            ]
        ]
        let pinned = try Attacker.pinned(report)
        #expect(pinned.map(\.name) == ["allocations_by_district[a][RCG]"])
        #expect(pinned.first.map { abs($0.low - 5) < 1e-6 } == true)
    }

    /// Random small trials, many small cells: after suppression no suppressed
    /// figure is pinned, every count from 1 to 9 is suppressed, zeros and the
    /// published figures are the true ones, and a district's statistics are
    /// printed only when none of its counts is suppressed.
    @Test(arguments: 0..<24)
    func noSuppressedFigureCanBeWorkedOut(_ seed: Int) throws {
        var rng = SplitMix(UInt64(seed) &* 0x9E37_79B9 &+ 17)
        let config = Self.config(districts: rng.int(1...4), groups: rng.int(1...2), psc: rng.chance(0.5))
        let months = rng.int(1...4)
        var allocations: [AllocatedReferral] = []
        let n = rng.int(0...140)
        for _ in 0..<n {
            // Skewed: most allocations in the first district and month, so the rest are small.
            let d = rng.chance(0.6) ? config.districts[0] : rng.pick(config.districts)
            let arms = Arm.allCases.filter { d.weights[$0] > 0 }
            allocations.append(
                AllocatedReferral(
                    district: d.id, group: rng.pick(config.groups),
                    referralDate: CivilDate(year: 2018, month: rng.chance(0.5) ? 1 : rng.int(1...months), day: rng.int(1...28))!,
                    arm: rng.pick(arms)))
        }
        var notSelected: [String: Int] = [:]
        for d in config.districts where rng.chance(0.7) { notSelected[d.id] = rng.chance(0.5) ? rng.int(1...9) : rng.int(0...40) }
        let report = Balance.report(allocations, notSelected: notSelected, config: config, publish: true)
        let truth = Balance.report(allocations, notSelected: notSelected, config: config, publish: false)
        let published = try Self.json(report, config), all = try Self.json(truth, config)

        let pinned = try Attacker.pinned(published)
        #expect(pinned.isEmpty, "seed \(seed): pinned \(pinned.map { "\($0.name) ∈ [\($0.low), \($0.high)]" })")

        // Figure by figure against the truth.
        let pTables = published["tables"] as? [[String: Any]] ?? [], tTables = all["tables"] as? [[String: Any]] ?? []
        for (p, t) in zip(pTables, tTables) {
            func figures(_ x: [String: Any]) -> [Any?] {
                (x["rows"] as? [[String: Any]] ?? []).flatMap { r in
                    (x["columns"] as? [String] ?? []).map { (r["counts"] as? [String: Any])?[$0] } + [r["total"]]
                }
                    + (x["columns"] as? [String] ?? []).map { (x["totals"] as? [String: Any])?[$0] } + [(x["totals"] as? [String: Any])?["total"]]
            }
            for (pv, tv) in zip(figures(p), figures(t)) {
                guard let truth = tv as? Int else { continue }
                if let shown = pv as? Int {
                    #expect(shown == truth && !(1...9).contains(truth), "seed \(seed): a published figure is the true one and not small")
                } else if pv is NSNull {
                    #expect(truth >= 1, "seed \(seed): only non-zero figures are suppressed")
                }
            }
        }
        // Statistics only for districts with no suppressed count.
        let byDistrict = (published["tables"] as? [[String: Any]])?.first { $0["id"] as? String == "allocations_by_district" }
        let nsTable = (published["tables"] as? [[String: Any]])?.first { $0["id"] as? String == "not_selected_by_district" }
        for check in published["checks"] as? [[String: Any]] ?? [] {
            let d = check["district"] as? String ?? ""
            let row = (byDistrict?["rows"] as? [[String: Any]])?.first { $0["value"] as? String == d }
            let nsRow = (nsTable?["rows"] as? [[String: Any]])?.first { $0["value"] as? String == d }
            let hidden =
                (row?["counts"] as? [String: Any])?.values.contains { $0 is NSNull } == true || row?["total"] is NSNull
                || (nsRow?["counts"] as? [String: Any])?.values.contains { $0 is NSNull } == true
            #expect((check["published"] as? Bool) == !hidden, "seed \(seed): \(check["name"] ?? "")")
            if hidden { #expect(check["statistic"] is NSNull && check["p_value"] is NSNull) }
        }
        // RULES2 R3: a share only from published figures.
        for s in published["rcg_share_of_not_allocated"] as? [[String: Any]] ?? [] where s["rcg"] is NSNull || s["not_selected"] is NSNull {
            #expect(s["share"] is NSNull)
        }
    }

    /// Through the CLI on a trial with opted-out people: `report balance
    /// --publish --json` leaves them out and survives the attack; the text
    /// prints the same figures.
    @Test func theCLIReportSurvivesTheAttack() throws {
        let rich = try ExportColumnsTests.trial.get()
        let t = rich.t
        let r = try runWHP(["report", "balance", "--publish", "--json"] + t.common)
        #expect(r.status == 0 || r.status == 1, "\(r.stderr)")
        let report = try jsonObject(Data(r.stdout.utf8))
        #expect(report["publish"] as? Bool == true && report["opted_out_left_out"] as? Bool == true)
        let pinned = try Attacker.pinned(report)
        #expect(pinned.isEmpty, "pinned: \(pinned.map(\.name))")

        // Opted-out people left out: the internal report counts R-4's and R-7's allocations, the published one does not.
        let internalReport = try jsonObject(Data(try runWHP(["report", "balance", "--json"] + t.common).stdout.utf8))
        let log = try readLog(t)
        let optedArms = log.filter { $0.type == "allocated" && ["R-4", "R-7"].contains($0.payload["referral_id"] ?? "") }.count
        let optedNotSelected = log.filter {
            $0.type == "gatekeeper_decision" && ["R-4", "R-7"].contains($0.payload["referral_id"] ?? "") && $0.payload["decision"] == "not_selected"
        }.count
        func total(_ rep: [String: Any], _ id: String, _ key: String) -> Int? {
            ((rep["tables"] as? [[String: Any]])?.first { $0["id"] as? String == id }?["totals"] as? [String: Any])?[key] as? Int
        }
        let allAllocations = try #require(total(internalReport, "allocations_by_district", "total"))
        if let shown = total(report, "allocations_by_district", "total") { #expect(shown == allAllocations - optedArms) }
        let allNS = try #require(total(internalReport, "not_selected_by_district", "not_selected"))
        if let shown = total(report, "not_selected_by_district", "not_selected") { #expect(shown == allNS - optedNotSelected) }

        let text = try runWHP(["report", "balance", "--publish"] + t.common)
        #expect(text.stdout.contains("FOR PUBLICATION") && text.stdout.contains("RCG share of not-allocated referrals"))
        #expect(!text.stdout.contains("<10"), "a suppressed figure does not say it is small")
    }

    /// The published report's exit status still follows every check, and the
    /// internal report shows everything.
    @Test func internalReportShowsEverything() throws {
        let rich = try ExportColumnsTests.trial.get()
        let r = try runWHP(["report", "balance", "--json"] + rich.t.common)
        let report = try jsonObject(Data(r.stdout.utf8))
        let tables = report["tables"] as? [[String: Any]] ?? []
        let anyNull = tables.contains { t in
            (t["rows"] as? [[String: Any]] ?? []).contains { ($0["counts"] as? [String: Any])?.values.contains { $0 is NSNull } == true }
        }
        #expect(!anyNull)
        let shares = report["rcg_share_of_not_allocated"] as? [[String: Any]] ?? []
        let devon = try #require(shares.first { $0["district"] as? String == "devon-cornwall" })
        let rcg = try #require(devon["rcg"] as? Int), ns = try #require(devon["not_selected"] as? Int)
        #expect(abs((devon["share"] as? Double ?? -1) - Double(rcg) / Double(rcg + ns)) < 1e-12)
    }
}
