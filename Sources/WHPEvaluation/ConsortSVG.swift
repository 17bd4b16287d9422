import WHPDomain

extension ConsortFlow {
    /// The CONSORT 2025 diagram: the four phases down the left (Enrollment,
    /// Allocation, Follow-up, Analysis), one column per arm from Allocation
    /// on, the excluded referrals beside Enrollment, the data cut under the
    /// title, then one panel per district with its configured ratio.
    /// Self-contained SVG (no fonts, images or links fetched).
    public func svg(config: TrialConfig) -> String {
        let arms = arms(config: config)
        let columnWidth = 300, gap = 24, phaseBar = 34, margin = 16
        let armCount = max(arms.count, 2)
        let contentWidth = armCount * columnWidth + (armCount - 1) * gap
        let width = margin * 2 + phaseBar + gap + contentWidth
        let left = margin + phaseBar + gap
        var body = ""
        var y = 20

        body += text(width / 2, y + 14, "CONSORT 2025 flow — trial \(config.trialID)", size: 18, bold: true, anchor: "middle")
        y += 30
        for line in wrap("Data cut: \(cut.text)", width: 140) {
            body += text(width / 2, y + 12, line, size: 12, anchor: "middle", fill: "#444")
            y += 16
        }
        y += 10

        func phase(_ name: String, _ top: Int, _ bottom: Int) {
            body +=
                "<rect x=\"\(margin)\" y=\"\(top)\" width=\"\(phaseBar)\" height=\"\(bottom - top)\" rx=\"4\" fill=\"#a9c4e8\" stroke=\"#2b4c7e\"/>\n"
            let cx = margin + phaseBar / 2, cy = (top + bottom) / 2
            body +=
                "<text x=\"\(cx)\" y=\"\(cy)\" transform=\"rotate(-90 \(cx) \(cy))\" text-anchor=\"middle\" dominant-baseline=\"central\" font-size=\"14\" font-weight=\"bold\">\(escapeXML(name))</text>\n"
        }

        let panel = sections(trial, config: config, arms: arms)
        // Enrollment: referred, with the excluded box beside it, then randomised.
        let enrollTop = y
        let mainX = left + (contentWidth - columnWidth) / 2 - (armCount > 2 ? columnWidth / 2 + gap / 2 : 0)
        let sideX = mainX + columnWidth + gap * 2
        let sideWidth = min(columnWidth + 60, width - margin - sideX)
        let referredBox = panel[0].boxes[0], excludedBox = panel[0].boxes[1], randomisedBox = panel[0].boxes[2]
        let h1 = box(&body, mainX, y, columnWidth, referredBox.title, referredBox.lines, fill: "#e3ecf7")
        let excludedY = y + h1 + 14
        let h2 = box(&body, sideX, excludedY, sideWidth, excludedBox.title, excludedBox.lines, fill: "#f7f7f7")
        arrow(&body, mainX + columnWidth / 2, y + h1, mainX + columnWidth / 2, excludedY + h2 + 24)
        arrow(&body, mainX + columnWidth / 2, excludedY + h2 / 2, sideX, excludedY + h2 / 2, marker: true)
        y = excludedY + h2 + 24
        let h3 = box(&body, mainX, y, columnWidth, randomisedBox.title, randomisedBox.lines, fill: "#e3ecf7")
        let randomisedBottom = y + h3
        y += h3 + 30
        phase("Enrollment", enrollTop, randomisedBottom)

        // Allocation, Follow-up, Analysis: a column per arm.
        let x0 = left + (contentWidth - (arms.count * columnWidth + max(arms.count - 1, 0) * gap)) / 2
        func armX(_ i: Int) -> Int { x0 + i * (columnWidth + gap) }
        let splitY = randomisedBottom + 15
        body += line(mainX + columnWidth / 2, randomisedBottom, mainX + columnWidth / 2, splitY)
        if !arms.isEmpty { body += line(armX(0) + columnWidth / 2, splitY, armX(arms.count - 1) + columnWidth / 2, splitY) }
        for i in arms.indices { arrow(&body, armX(i) + columnWidth / 2, splitY, armX(i) + columnWidth / 2, y) }
        var previousBottoms: [Int] = []
        for (k, section) in panel.enumerated() where k > 0 {
            let top = y
            var bottoms: [Int] = []
            let armBoxes = Array(section.boxes.prefix(arms.count))
            let heights = armBoxes.map { measure($0.title, $0.lines, columnWidth) }
            let rowHeight = max(heights.max() ?? 40, 96)
            for (i, b) in armBoxes.enumerated() {
                if !previousBottoms.isEmpty { arrow(&body, armX(i) + columnWidth / 2, previousBottoms[i], armX(i) + columnWidth / 2, y) }
                let fill = section.phase == "Allocation" ? "#eaf5ea" : (section.phase == "Analysis" ? "#fdf3e3" : "#ffffff")
                _ = box(&body, armX(i), y, columnWidth, b.title, b.lines, fill: fill, height: rowHeight)
                bottoms.append(y + rowHeight)
            }
            y += rowHeight
            // The Analysis phase also shows the whole dataset (every outcome).
            if section.boxes.count > arms.count {
                y += 16
                for extra in section.boxes.dropFirst(arms.count) {
                    let h = box(&body, mainX, y, columnWidth, extra.title, extra.lines, fill: "#fdf3e3")
                    y += h + 8
                }
                y -= 8
            }
            phase(section.phase, top, y)
            previousBottoms = bottoms
            y += 30
        }
        for l in wrap(
            "People are distinct research ids: a person referred more than once can be in more than one box, so people do not add up as referrals do.",
            width: 150)
        {
            body += text(width / 2, y, l, size: 11, anchor: "middle", fill: "#444")
            y += 15
        }
        y += 20

        // Per-district panels, two a row.
        body += text(margin, y + 14, "By district (each district randomises with its own ratio)", size: 15, bold: true)
        y += 30
        let perRow = 2
        let panelWidth = (width - 2 * margin - gap * (perRow - 1)) / perRow
        let ids = districtOrder(config: config)
        var rowTop = y, rowBottom = y
        for (i, id) in ids.enumerated() {
            if i % perRow == 0 { rowTop = rowBottom + (i == 0 ? 0 : 16) }
            let x = margin + (i % perRow) * (panelWidth + gap)
            let (title, lines) = districtPanel(id, config: config)
            let h = box(&body, x, rowTop, panelWidth, title, lines, fill: "#f4f7fb", titleSize: 13)
            rowBottom = max(rowBottom, rowTop + h)
        }
        y = rowBottom + margin

        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(y)" viewBox="0 0 \(width) \(y)" font-family="Helvetica, Arial, sans-serif" role="img" aria-label="CONSORT 2025 flow diagram of trial \(escapeXML(config.trialID))">
            <title>CONSORT 2025 flow — trial \(escapeXML(config.trialID))</title>
            <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>
            <rect width="100%" height="100%" fill="white"/>
            \(body)</svg>

            """
    }

    private var lineHeight: Int { 16 }

    /// The height a box needs.
    private func measure(_ title: String, _ lines: [String], _ width: Int) -> Int {
        let chars = max(20, (width - 20) / 7)
        let titleLines = wrap(title, width: chars).count
        let bodyLines = lines.reduce(0) { $0 + wrap($1, width: chars).count }
        return 12 + titleLines * 18 + bodyLines * lineHeight + 8
    }

    /// Draws a box with a bold title and wrapped lines; returns its height.
    @discardableResult
    private func box(
        _ out: inout String, _ x: Int, _ y: Int, _ width: Int, _ title: String, _ lines: [String], fill: String, height: Int? = nil,
        titleSize: Int = 14
    ) -> Int {
        let h = height ?? measure(title, lines, width)
        let chars = max(20, (width - 20) / 7)
        out += "<g><rect x=\"\(x)\" y=\"\(y)\" width=\"\(width)\" height=\"\(h)\" rx=\"6\" fill=\"\(fill)\" stroke=\"#2b4c7e\" stroke-width=\"1.5\"/>\n"
        var ty = y + 20
        for t in wrap(title, width: chars) {
            out += text(x + 10, ty, t, size: titleSize, bold: true)
            ty += 18
        }
        for l in lines {
            for (k, w) in wrap(l, width: chars).enumerated() {
                out += text(x + (k == 0 ? 10 : 22), ty, w, size: 12)
                ty += lineHeight
            }
        }
        out += "</g>\n"
        return h
    }

    private func text(_ x: Int, _ y: Int, _ s: String, size: Int, bold: Bool = false, anchor: String = "start", fill: String = "#111") -> String {
        "<text x=\"\(x)\" y=\"\(y)\" font-size=\"\(size)\"\(bold ? " font-weight=\"bold\"" : "") text-anchor=\"\(anchor)\" fill=\"\(fill)\">\(escapeXML(s))</text>\n"
    }

    private func line(_ x1: Int, _ y1: Int, _ x2: Int, _ y2: Int) -> String {
        "<line x1=\"\(x1)\" y1=\"\(y1)\" x2=\"\(x2)\" y2=\"\(y2)\" stroke=\"#333\" stroke-width=\"1.5\"/>\n"
    }

    private func arrow(_ out: inout String, _ x1: Int, _ y1: Int, _ x2: Int, _ y2: Int, marker: Bool = true) {
        out +=
            "<line x1=\"\(x1)\" y1=\"\(y1)\" x2=\"\(x2)\" y2=\"\(y2)\" stroke=\"#333\" stroke-width=\"1.5\"\(marker ? " marker-end=\"url(#arrow)\"" : "")/>\n"
    }
}

/// Splits text into lines of at most `width` characters, at spaces.
func wrap(_ s: String, width: Int) -> [String] {
    var lines: [String] = []
    var current = ""
    for word in s.split(separator: " ", omittingEmptySubsequences: false) {
        if current.isEmpty {
            current = String(word)
        } else if current.count + 1 + word.count <= width {
            current += " " + word
        } else {
            lines.append(current)
            current = String(word)
        }
    }
    lines.append(current)
    return lines
}

/// Text for XML and HTML: `&`, `<`, `>` and quotes escaped.
public func escapeXML(_ t: String) -> String {
    var out = ""
    out.reserveCapacity(t.utf8.count)
    for ch in t {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(ch)
        }
    }
    return out
}
