import Foundation
import WHPCrypto
import WHPDomain
import WHPJSON

/// The trial's flow in the CONSORT style: referred → cancelled / awaiting /
/// decided → not selected / selected → WHP / PSC / RCG → removed by opt-out →
/// in the dataset. Every box is the sum of the boxes it splits into.
public struct ConsortFlow: Sendable, Equatable {
    public var referred = 0
    public var cancelled = 0
    public var awaiting = 0
    public var notSelected = 0
    public var allocated: [Arm: Int] = [:]
    /// Referrals left out of the dataset because the claimant opted out, by where they ended.
    public var optedOutAwaiting = 0
    public var optedOutNotSelected = 0
    public var optedOutAllocated: [Arm: Int] = [:]

    public init() {}

    public var decided: Int { notSelected + selected }
    public var selected: Int { allocated.values.reduce(0, +) }
    public var removedOptedOut: Int { optedOutAwaiting + optedOutNotSelected + optedOutAllocated.values.reduce(0, +) }
    public var inDataset: Int { referred - cancelled - removedOptedOut }

    public mutating func add(_ f: ReferralFacts) {
        referred += 1
        switch f.status {
        case .cancelled: cancelled += 1
        case .awaitingGatekeeper:
            awaiting += 1
            if f.optedOut { optedOutAwaiting += 1 }
        case .notSelected:
            notSelected += 1
            if f.optedOut { optedOutNotSelected += 1 }
        case .allocated(let a):
            allocated[a, default: 0] += 1
            if f.optedOut { optedOutAllocated[a, default: 0] += 1 }
        }
    }

    /// The arms that occur (PSC only in trials with a PSC district).
    public func arms(config: TrialConfig) -> [Arm] {
        Arm.allCases.filter { arm in config.districts.contains { $0.weights[arm] > 0 } || allocated[arm, default: 0] > 0 }
    }

    public func table(config: TrialConfig) -> String {
        var rows: [(String, Int)] = [
            ("Referred", referred),
            ("  Cancelled before the gatekeeper", cancelled),
            ("  Awaiting the gatekeeper", awaiting),
            ("  Decided by the gatekeeper", decided),
            ("    Not selected", notSelected),
            ("    Selected and randomly allocated", selected),
        ]
        for a in arms(config: config) { rows.append(("      \(a.rawValue)", allocated[a, default: 0])) }
        rows.append(("Removed by opt-out (referrals)", removedOptedOut))
        rows.append(("  from awaiting", optedOutAwaiting))
        rows.append(("  from not selected", optedOutNotSelected))
        for a in arms(config: config) { rows.append(("  from \(a.rawValue)", optedOutAllocated[a, default: 0])) }
        rows.append(("In the dataset", inDataset))
        rows.append(("  awaiting", awaiting - optedOutAwaiting))
        rows.append(("  not selected", notSelected - optedOutNotSelected))
        for a in arms(config: config) { rows.append(("  \(a.rawValue)", allocated[a, default: 0] - optedOutAllocated[a, default: 0])) }
        let width = rows.map(\.0.count).max()! + 2
        return (["CONSORT flow — trial \(config.trialID)"] + rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + String($0.1) })
            .joined(separator: "\n")
    }

    /// A CONSORT-style diagram: boxes with counts joined by arrows.
    public func svg(config: TrialConfig) -> String {
        let arms = arms(config: config)
        let boxW = 190, boxH = 58, gap = 30
        let armCount = max(arms.count, 1)
        let width = max(armCount * (boxW + gap) + gap, 3 * (boxW + gap) + gap)
        let height = 660
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="Helvetica, Arial, sans-serif">
            <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(width / 2)" y="26" text-anchor="middle" font-size="16" font-weight="bold">CONSORT flow — trial \(escape(config.trialID))</text>

            """
        func box(_ x: Int, _ y: Int, _ title: String, _ n: Int, fill: String = "#f4f7fb") {
            s += """
                <g><rect x="\(x)" y="\(y)" width="\(boxW)" height="\(boxH)" rx="6" fill="\(fill)" stroke="#2b4c7e" stroke-width="1.5"/>
                <text x="\(x + boxW / 2)" y="\(y + 24)" text-anchor="middle" font-size="13">\(escape(title))</text>
                <text x="\(x + boxW / 2)" y="\(y + 45)" text-anchor="middle" font-size="15" font-weight="bold">n = \(n)</text></g>

                """
        }
        func arrow(_ x1: Int, _ y1: Int, _ x2: Int, _ y2: Int) {
            s += "<line x1=\"\(x1)\" y1=\"\(y1)\" x2=\"\(x2)\" y2=\"\(y2)\" stroke=\"#333\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>\n"
        }
        let cx = width / 2 - boxW / 2
        // Row 1: referred. Row 2: cancelled | decided | awaiting. Row 3: not selected | selected.
        box(cx, 50, "Referred", referred, fill: "#e3ecf7")
        let row2 = 160
        let left = gap, right = width - gap - boxW
        box(left, row2, "Cancelled", cancelled)
        box(cx, row2, "Decided by gatekeeper", decided, fill: "#e3ecf7")
        box(right, row2, "Awaiting gatekeeper", awaiting)
        arrow(cx + boxW / 2, 50 + boxH, cx + boxW / 2, row2)
        arrow(cx, 50 + boxH / 2, left + boxW / 2, row2)
        arrow(cx + boxW, 50 + boxH / 2, right + boxW / 2, row2)
        let row3 = 270
        box(left, row3, "Not selected", notSelected)
        box(cx, row3, "Selected, randomised", selected, fill: "#e3ecf7")
        arrow(cx + boxW / 2, row2 + boxH, cx + boxW / 2, row3)
        arrow(cx, row2 + boxH / 2 + 10, left + boxW / 2, row3)
        // Row 4: arms; row 5: removed by opt-out; row 6: in the dataset.
        let row4 = 380, row5 = 470, row6 = 550
        for (i, a) in arms.enumerated() {
            let x = gap + i * (boxW + gap) + (width - (armCount * (boxW + gap) + gap)) / 2
            box(x, row4, "Allocated to \(a.rawValue)", allocated[a, default: 0], fill: "#eaf5ea")
            arrow(cx + boxW / 2, row3 + boxH, x + boxW / 2, row4)
            box(x, row5, "Opted out (removed)", optedOutAllocated[a, default: 0], fill: "#fbeeee")
            arrow(x + boxW / 2, row4 + boxH, x + boxW / 2, row5)
            box(x, row6, "\(a.rawValue) in the dataset", allocated[a, default: 0] - optedOutAllocated[a, default: 0], fill: "#eaf5ea")
            arrow(x + boxW / 2, row5 + boxH, x + boxW / 2, row6)
        }
        s +=
            "<text x=\"\(left + boxW / 2)\" y=\"\(row3 + boxH + 18)\" text-anchor=\"middle\" font-size=\"12\">opted out (removed): \(optedOutNotSelected)</text>\n"
        s +=
            "<text x=\"\(right + boxW / 2)\" y=\"\(row2 + boxH + 18)\" text-anchor=\"middle\" font-size=\"12\">opted out (removed): \(optedOutAwaiting)</text>\n"
        s +=
            "<text x=\"\(width / 2)\" y=\"\(height - 14)\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">In the dataset: \(inDataset) referrals (\(removedOptedOut) removed by opt-out)</text>\n"
        s += "</svg>\n"
        return s
    }

    private func escape(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
