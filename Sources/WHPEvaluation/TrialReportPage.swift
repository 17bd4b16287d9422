import WHPDomain
import WHPJSON

/// Referrals and randomisations by referral month: recruitment over time.
public struct RecruitmentSeries: Sendable, Equatable {
    public struct Month: Sendable, Equatable {
        public var month: String
        public var referred = 0
        public var randomised: [Arm: Int] = [:]
    }
    public private(set) var months: [String: Month] = [:]
    public init() {}

    public mutating func add(_ f: ReferralFacts) {
        let m = DatePrecision.month.format(f.referralDate)
        months[m, default: Month(month: m)].referred += 1
        if case .allocated(let a) = f.status { months[m, default: Month(month: m)].randomised[a, default: 0] += 1 }
    }

    public var ordered: [Month] { months.keys.sorted().map { months[$0]! } }
}

/// The result of verifying the store, as the page shows it.
public struct VerifySummary: Sendable {
    public var ok: Bool
    public var events: Int
    public var head: String
    public var checks: [(name: String, ok: Bool, detail: String)]
    public var checkpoint: String
    public init(ok: Bool, events: Int, head: String, checks: [(name: String, ok: Bool, detail: String)], checkpoint: String) {
        self.ok = ok; self.events = events; self.head = head; self.checks = checks; self.checkpoint = checkpoint
    }
}

/// `whp report html`: one page, self-contained (inline CSS and SVG; no
/// script, font, image or link is fetched), for trial managers.
public struct TrialReportPage {
    public var config: TrialConfig
    public var publish: Bool
    public var generatedAt: Instant
    public var balance: BalanceReport
    public var verify: VerifySummary
    /// Internal pages only (nil with `publish`).
    public var consort: ConsortFlow?
    public var recruitment: RecruitmentSeries?
    public var overdue: [Overdue.Item]?
    public var overdueDate: CivilDate

    public init(
        config: TrialConfig, publish: Bool, generatedAt: Instant, balance: BalanceReport, verify: VerifySummary, consort: ConsortFlow?,
        recruitment: RecruitmentSeries?, overdue: [Overdue.Item]?, overdueDate: CivilDate
    ) {
        self.config = config; self.publish = publish; self.generatedAt = generatedAt; self.balance = balance; self.verify = verify
        self.consort = consort; self.recruitment = recruitment; self.overdue = overdue; self.overdueDate = overdueDate
    }

    public func html() -> String {
        var s = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
            <title>Trial report — \(escapeXML(config.trialID))</title>
            <style>
            body { font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1100px; color: #111; line-height: 1.4; }
            h1 { font-size: 24px; margin-bottom: 4px; }
            h2 { font-size: 19px; border-bottom: 2px solid #2b4c7e; padding-bottom: 3px; margin-top: 32px; }
            table { border-collapse: collapse; margin: 8px 0 16px; }
            th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
            th:first-child, td:first-child { text-align: left; }
            thead th { background: #e3ecf7; }
            .ok { color: #1d6b2a; font-weight: bold; }
            .fail { color: #a31515; font-weight: bold; }
            .note { color: #444; font-size: 13px; }
            .banner { padding: 8px 12px; border-radius: 6px; background: #fdf3e3; border: 1px solid #d9a441; }
            .figure { overflow-x: auto; }
            code { font-size: 13px; }
            svg { max-width: 100%; height: auto; }
            @page { size: A4 landscape; margin: 12mm; }
            @media print { body { max-width: none; margin: 0; } h2 { break-after: avoid; } .figure { overflow: visible; } }
            </style>
            </head>
            <body>
            <h1>Trial report — \(escapeXML(config.trialID))</h1>
            <p class="note">Generated \(generatedAt.iso) from the trial's store. \(publish ? "" : "Not for publication: it shows small counts and operational detail.")</p>

            """
        if publish {
            s += """
                <p class="banner">For publication (RULES2 R12): referrals of people who opted out are left out; counts from 1 to 9, and every figure that would give one back, are suppressed (*); a district's statistics are withheld when any of its counts is suppressed. The flow diagram, recruitment by month of all referrals and the overdue counts are not published.</p>

                """
        }
        s += verifySection()
        if let consort {
            s += "<h2 id=\"consort\">CONSORT 2025 flow</h2>\n<div class=\"figure\">\n"
            s += inlineSVG(consort.svg(config: config))
            s += "</div>\n"
        }
        s += allocationSection()
        s += recruitmentSection()
        s += balanceSection()
        if let overdue { s += overdueSection(overdue) }
        s += "</body>\n</html>\n"
        return s
    }

    /// An SVG document as an inline element of the page (no XML prolog or namespace needed in HTML).
    func inlineSVG(_ svg: String) -> String {
        svg.replacingOccurrences(of: " xmlns=\"http://www.w3.org/2000/svg\"", with: "")
    }

    func verifySection() -> String {
        var s = "<h2 id=\"verify\">Verification</h2>\n"
        s +=
            "<p id=\"verify-result\">Verify result: <span class=\"\(verify.ok ? "ok" : "fail")\">\(verify.ok ? "OK" : "FAILED")</span> — events verified: \(verify.events); head: <code>\(escapeXML(verify.head))</code></p>\n"
        s += "<p>Checkpoint for the auditor: <code id=\"checkpoint\">\(escapeXML(verify.checkpoint))</code></p>\n"
        s += "<table><thead><tr><th>check</th><th>result</th><th>detail</th></tr></thead><tbody>\n"
        for c in verify.checks {
            s +=
                "<tr><td>\(escapeXML(c.name))</td><td class=\"\(c.ok ? "ok" : "fail")\">\(c.ok ? "ok" : "FAIL")</td><td style=\"text-align:left\">\(escapeXML(c.detail))</td></tr>\n"
        }
        s += "</tbody></table>\n"
        return s
    }

    func show(_ v: Int?) -> String { v.map(String.init) ?? "*" }

    func percent(_ x: Double) -> String {
        let v = (x * 1000).rounded() / 10
        return String(v) + "%"
    }

    func allocationSection() -> String {
        guard let t = balance.tables.first(where: { $0.table.id == "allocations_by_district" }) else { return "" }
        var s = "<h2 id=\"allocation\">Allocation by district against the configured weights</h2>\n"
        let armNames = t.table.columns.joined(separator: ":")
        s += "<table id=\"allocation-table\"><thead><tr><th>district</th><th>configured (\(escapeXML(armNames)))</th>"
        for c in t.table.columns { s += "<th>\(escapeXML(c))</th>" }
        s += "<th>total</th></tr></thead><tbody>\n"
        var shares = "<table id=\"share-table\"><thead><tr><th>district</th>"
        for c in t.table.columns { shares += "<th>\(escapeXML(c)) observed</th><th>\(escapeXML(c)) configured</th>" }
        shares += "</tr></thead><tbody>\n"
        var bars: [(String, [(Arm, Double, Double)])] = []
        for (i, id) in t.table.rows.enumerated() {
            let d = config.district(id)
            let ratio = d.map { dd in t.table.columns.map { c in String(Arm(rawValue: c).map { dd.weights[$0] } ?? 0) }.joined(separator: ":") } ?? "—"
            s += "<tr><td>\(escapeXML(id))</td><td>\(ratio)</td>"
            shares += "<tr><td>\(escapeXML(id))</td>"
            let total = t.rowTotal(i)
            var bar: [(Arm, Double, Double)] = []
            for (j, c) in t.table.columns.enumerated() {
                let arm = Arm(rawValue: c)
                let configured = d.flatMap { dd in arm.map { Double(dd.weights[$0]) / Double(max(dd.weights.total, 1)) } } ?? 0
                let n = t.cell(i, j)
                let observed: Double? = n.flatMap { n in total.flatMap { $0 > 0 ? Double(n) / Double($0) : nil } }
                s += "<td>\(show(n))</td>"
                shares += "<td>\(observed.map(percent) ?? "—")</td><td>\(percent(configured))</td>"
                if let arm, let observed { bar.append((arm, observed, configured)) }
            }
            s += "<td>\(show(total))</td></tr>\n"
            shares += "</tr>\n"
            if bar.count == t.table.columns.count && !bar.isEmpty { bars.append((id, bar)) }
        }
        s += "<tr><td>total</td><td></td>"
        for j in t.table.columns.indices { s += "<td>\(show(t.columnTotal(j)))</td>" }
        s += "<td>\(show(t.grandTotal))</td></tr>\n</tbody></table>\n"
        s +=
            "<p class=\"note\">Observed shares of each district's allocations against the shares its configured weights give\(publish ? " (— where a count is suppressed)" : "").</p>\n"
        s += shares + "</tbody></table>\n"
        s += "<div class=\"figure\">" + shareBars(bars) + "</div>\n"
        s += "<p class=\"note\">Each bar is a district's observed arm shares; the black ticks mark the configured shares.</p>\n"
        return s
    }

    static let armColours: [Arm: String] = [.whp: "#3b73b9", .psc: "#5aa469", .rcg: "#d9a441"]

    func shareBars(_ bars: [(String, [(Arm, Double, Double)])]) -> String {
        let width = 900, rowHeight = 26, labelWidth = 300, barWidth = width - labelWidth - 20
        let height = bars.count * rowHeight + 10
        var s = "<svg width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"Arm shares by district\">\n"
        for (k, (id, parts)) in bars.enumerated() {
            let y = 5 + k * rowHeight
            s += "<text x=\"0\" y=\"\(y + 16)\" font-size=\"12\">\(escapeXML(id))</text>\n"
            var x = Double(labelWidth), tick = Double(labelWidth)
            for (arm, observed, configured) in parts {
                let w = observed * Double(barWidth)
                s +=
                    "<rect x=\"\(Int(x))\" y=\"\(y)\" width=\"\(max(Int(w.rounded()), 0))\" height=\"20\" fill=\"\(Self.armColours[arm] ?? "#999")\"><title>\(arm.rawValue) \(percent(observed))</title></rect>\n"
                x += w
                tick += configured * Double(barWidth)
                s += "<line x1=\"\(Int(tick))\" y1=\"\(y - 2)\" x2=\"\(Int(tick))\" y2=\"\(y + 22)\" stroke=\"#000\" stroke-width=\"2\"/>\n"
            }
        }
        s += "</svg>\n"
        return s
    }

    func recruitmentSection() -> String {
        var s = "<h2 id=\"recruitment\">Recruitment over time</h2>\n"
        let arms = ExportVocabulary.arms(config).compactMap(Arm.init(rawValue:))
        var rows: [(String, Int?, [Int?])] = []
        if let recruitment {
            rows = recruitment.ordered.map { m in (m.month, m.referred, arms.map { m.randomised[$0, default: 0] }) }
        } else if let t = balance.tables.first(where: { $0.table.id == "allocations_by_referral_month" }) {
            rows = t.table.rows.indices.map { i in (t.table.rows[i], nil, t.table.columns.indices.map { t.cell(i, $0) }) }
        }
        s += "<table id=\"recruitment-table\"><thead><tr><th>referral month</th>\(recruitment == nil ? "" : "<th>referred</th>")"
        for a in arms { s += "<th>randomised to \(a.rawValue)</th>" }
        s += "</tr></thead><tbody>\n"
        for (m, referred, counts) in rows {
            s += "<tr><td>\(escapeXML(m))</td>\(recruitment == nil ? "" : "<td>\(show(referred))</td>")"
            for c in counts { s += "<td>\(show(c))</td>" }
            s += "</tr>\n"
        }
        s += "</tbody></table>\n"
        // A bar chart of the same figures (suppressed figures are left out of it).
        let maxValue = max(1, rows.map { r in (r.1 ?? 0) + 0 }.max() ?? 1, rows.map { r in r.2.compactMap { $0 }.reduce(0, +) }.max() ?? 1)
        let chartHeight = 160, barGroup = 34, width = max(300, rows.count * barGroup + 60)
        var svg =
            "<svg width=\"\(width)\" height=\"\(chartHeight + 40)\" viewBox=\"0 0 \(width) \(chartHeight + 40)\" role=\"img\" aria-label=\"Recruitment by month\">\n"
        svg += "<line x1=\"40\" y1=\"\(chartHeight)\" x2=\"\(width)\" y2=\"\(chartHeight)\" stroke=\"#333\"/>\n"
        svg +=
            "<text x=\"36\" y=\"12\" font-size=\"11\" text-anchor=\"end\">\(maxValue)</text><text x=\"36\" y=\"\(chartHeight)\" font-size=\"11\" text-anchor=\"end\">0</text>\n"
        for (k, (m, referred, counts)) in rows.enumerated() {
            let x = 44 + k * barGroup
            if let referred {
                let h = referred * (chartHeight - 10) / maxValue
                svg +=
                    "<rect x=\"\(x)\" y=\"\(chartHeight - h)\" width=\"14\" height=\"\(h)\" fill=\"#9aa7b8\"><title>\(m): \(referred) referred</title></rect>\n"
            }
            var top = chartHeight
            for (a, c) in zip(arms, counts) {
                guard let c else { continue }
                let h = c * (chartHeight - 10) / maxValue
                top -= h
                svg +=
                    "<rect x=\"\(x + 15)\" y=\"\(top)\" width=\"14\" height=\"\(h)\" fill=\"\(Self.armColours[a] ?? "#999")\"><title>\(m): \(c) \(a.rawValue)</title></rect>\n"
            }
            if k % max(1, rows.count / 12) == 0 {
                svg += "<text x=\"\(x + 14)\" y=\"\(chartHeight + 16)\" font-size=\"10\" text-anchor=\"middle\">\(escapeXML(m))</text>\n"
            }
        }
        svg += "</svg>\n"
        s += "<div class=\"figure\">\(svg)</div>\n"
        s +=
            "<p class=\"note\">\(recruitment == nil ? "Allocations by referral month, as published." : "Grey: referrals made in the month; coloured: those randomised, by arm (WHP blue, PSC green, RCG amber).")</p>\n"
        return s
    }

    func balanceSection() -> String {
        var s = "<h2 id=\"balance\">Balance checks</h2>\n"
        s +=
            "<p>\(balance.ok ? "<span class=\"ok\">All balance checks pass.</span>" : "<span class=\"fail\">BALANCE CHECKS FAILED.</span>") Pearson chi-square per district; a check fails when p &lt; \(balance.alpha).</p>\n"
        s += "<table id=\"balance-table\"><thead><tr><th>check</th><th>result</th><th>chi2</th><th>df</th><th>p</th></tr></thead><tbody>\n"
        for c in balance.checks {
            if publish && !c.published {
                s += "<tr><td>\(escapeXML(c.name))</td><td>withheld</td><td>*</td><td>*</td><td>*</td></tr>\n"
                continue
            }
            let verdict = !c.tested ? "not tested" : (c.passed ? "ok" : "FAIL")
            s +=
                "<tr><td>\(escapeXML(c.name))</td><td class=\"\(!c.tested ? "" : (c.passed ? "ok" : "fail"))\">\(verdict)</td><td>\(Balance.format(c.statistic))</td><td>\(c.df)</td><td>\(Balance.format(c.pValue))</td></tr>\n"
        }
        s += "</tbody></table>\n"
        if !balance.rcgShares.isEmpty {
            s += "<h3>How much the hidden policy hides (RULES2 R3)</h3>\n"
            s +=
                "<table id=\"rcg-share-table\"><thead><tr><th>district</th><th>not selected</th><th>RCG</th><th>RCG share of not allocated</th></tr></thead><tbody>\n"
            for r in balance.rcgShares {
                s +=
                    "<tr><td>\(escapeXML(r.district))</td><td>\(show(r.notSelected))</td><td>\(show(r.rcg))</td><td>\(r.share.map(percent) ?? "—")</td></tr>\n"
            }
            s += "</tbody></table>\n"
            s +=
                "<p class=\"note\">The share of a district's \"not allocated\" referrals that are RCG: how often a work coach who guesses \"RCG\" is right.</p>\n"
        }
        return s
    }

    func overdueSection(_ items: [Overdue.Item]) -> String {
        var s = "<h2 id=\"overdue\">Overdue on \(overdueDate.iso)</h2>\n"
        var byKind: [Overdue.Due: Int] = [:]
        var byDistrict: [String: [Overdue.Due: Int]] = [:]
        for i in items {
            byKind[i.due, default: 0] += 1
            byDistrict[i.district, default: [:]][i.due, default: 0] += 1
        }
        s += "<p id=\"overdue-total\">Overdue items: \(items.count)</p>\n"
        s += "<table id=\"overdue-table\"><thead><tr><th>district</th>"
        for k in Overdue.Due.allCases { s += "<th>\(k.rawValue.replacingOccurrences(of: "_", with: " "))</th>" }
        s += "</tr></thead><tbody>\n"
        for d in config.districts.map(\.id) + byDistrict.keys.filter({ config.district($0) == nil }).sorted() {
            s += "<tr><td>\(escapeXML(d))</td>"
            for k in Overdue.Due.allCases { s += "<td>\(byDistrict[d]?[k] ?? 0)</td>" }
            s += "</tr>\n"
        }
        s += "<tr><td>total</td>"
        for k in Overdue.Due.allCases { s += "<td>\(byKind[k] ?? 0)</td>" }
        s += "</tr>\n</tbody></table>\n"
        let oldest = items.map(\.workingDaysOverdue).max() ?? 0
        s +=
            "<p class=\"note\">gatekeeper: awaiting the gatekeeper longer than \(config.deadlines.pendingDays) days; provider referral: a WHP/PSC allocation not referred to a provider within \(config.deadlines.providerReferralWorkingDays) working days; start: no start (or did not start) within \(config.deadlines.startWorkingDays) working days of the provider referral. The longest is \(oldest) working days overdue.</p>\n"
        return s
    }
}
