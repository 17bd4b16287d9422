import WHPCrypto
import WHPDomain
import WHPJSON

/// Referrals and the distinct people among them. A person referred more than
/// once can be in several boxes (not selected once, allocated later), so
/// people do not add up across boxes the way referrals do.
public struct Count: Sendable, Equatable {
    public var referrals = 0
    public var people = 0
    public init(referrals: Int = 0, people: Int = 0) { self.referrals = referrals; self.people = people }
    public var text: String { "\(referrals) referral\(referrals == 1 ? "" : "s") (\(people) \(people == 1 ? "person" : "people"))" }
}

/// A box of the CONSORT flow.
public enum ConsortBox: Hashable, Sendable {
    case referred, excluded, cancelled, awaiting, notSelected, randomised
    case notSelectedBy(String), randomisedBy(String)
    case allocated(Arm), providerReferral(Arm), started(Arm), didNotStart(Arm), left(Arm), flagged(Arm), disclosed(Arm)
    case didNotStartBecause(Arm, String), leftBecause(Arm, String), flaggedBecause(Arm, String)
    case inDataset(Arm), removedOptedOut(Arm)
    /// Every referral in the dataset, and every one removed by opt-out (any outcome).
    case inDatasetAll, removedOptedOutAll
}

/// One flow: the whole trial, or one district.
public struct ConsortPanel: Sendable, Equatable {
    public var counts: [ConsortBox: Count] = [:]
    public init() {}
    public subscript(_ b: ConsortBox) -> Count { counts[b] ?? Count() }

    /// The reasons recorded under a box kind, most frequent first.
    func reasons(_ pick: (ConsortBox) -> String?) -> [(String, Count)] {
        counts.compactMap { k, v in pick(k).map { ($0, v) } }.sorted { ($1.1.referrals, $0.0) < ($0.1.referrals, $1.0) }
    }
}

/// The newest event when the flow was counted, and the dates it covers.
public struct ConsortCut: Sendable, Equatable {
    public var seq = 0
    public var head = ""
    public var recordedAt: Instant?
    public var firstReferral: CivilDate?
    public var lastReferral: CivilDate?
    public var firstDecision: CivilDate?
    public var lastDecision: CivilDate?
    public init() {}

    public var text: String {
        var s = "event \(seq) (head \(head.prefix(16))…)"
        if let recordedAt { s += ", recorded \(recordedAt.iso)" }
        if let a = firstReferral, let b = lastReferral { s += "; referrals dated \(a.iso) to \(b.iso)" }
        if let a = firstDecision, let b = lastDecision { s += "; gatekeeper decisions dated \(a.iso) to \(b.iso)" }
        return s
    }
}

/// The trial's flow in the CONSORT 2025 layout: Enrollment (referred;
/// excluded: cancelled, awaiting the gatekeeper, not selected, with the
/// gatekeeper rule), Allocation (per arm, referrals and people), Follow-up
/// (provider referral, started, did not start with reasons, left with
/// reasons, flagged in error, disclosed) and Analysis (in the dataset,
/// removed by opt-out); for the trial and for each district. Feed it every
/// referral, person by person (`forEachReferralFact`'s order), then `finish`.
public struct ConsortFlow: Sendable, Equatable {
    public var trial = ConsortPanel()
    public var districts: [String: ConsortPanel] = [:]
    public var cut = ConsortCut()
    private var person: Pseudonym?
    private var marks: Set<ConsortBox> = []
    private var districtMarks: [String: Set<ConsortBox>] = [:]

    public init() {}

    // The figures the earlier table and tests read, referral counts.
    public var referred: Int { trial[.referred].referrals }
    public var cancelled: Int { trial[.cancelled].referrals }
    public var awaiting: Int { trial[.awaiting].referrals }
    public var notSelected: Int { trial[.notSelected].referrals }
    public var selected: Int { trial[.randomised].referrals }
    public var decided: Int { notSelected + selected }
    public var removedOptedOut: Int { trial[.removedOptedOutAll].referrals }
    public var inDataset: Int { trial[.inDatasetAll].referrals }
    public var allocated: [Arm: Int] {
        Dictionary(uniqueKeysWithValues: Arm.allCases.compactMap { a in trial.counts[.allocated(a)].map { (a, $0.referrals) } })
    }

    /// The boxes one referral falls in.
    static func boxes(_ f: ReferralFacts) -> [ConsortBox] {
        var out: [ConsortBox] = [.referred]
        let rule = f.rule ?? "unknown"
        switch f.status {
        case .cancelled: out += [.excluded, .cancelled]; return out
        case .awaitingGatekeeper: out += [.excluded, .awaiting]
        case .notSelected: out += [.excluded, .notSelected, .notSelectedBy(rule)]
        case .allocated(let arm):
            out += [.randomised, .randomisedBy(rule), .allocated(arm)]
            let u = f.followUp
            if u.providerReferralDate != nil { out.append(.providerReferral(arm)) }
            if u.startDate != nil { out.append(.started(arm)) }
            if u.notStartedDate != nil || u.notStartedReason != nil {
                out += [.didNotStart(arm), .didNotStartBecause(arm, u.notStartedReason ?? "unknown")]
            }
            if u.leftDate != nil || u.leftReason != nil { out += [.left(arm), .leftBecause(arm, u.leftReason ?? "unknown")] }
            if let flag = f.flag { out += [.flagged(arm), .flaggedBecause(arm, flag)] }
            if f.disclosed { out.append(.disclosed(arm)) }
            out.append(f.optedOut ? .removedOptedOut(arm) : .inDataset(arm))
        }
        out.append(f.optedOut ? .removedOptedOutAll : .inDatasetAll)
        return out
    }

    public mutating func add(_ f: ReferralFacts) {
        if f.claimant != person {
            closePerson()
            person = f.claimant
        }
        let list = Self.boxes(f)
        for b in list {
            trial.counts[b, default: Count()].referrals += 1
            districts[f.district, default: ConsortPanel()].counts[b, default: Count()].referrals += 1
            marks.insert(b)
            districtMarks[f.district, default: []].insert(b)
        }
        cut.firstReferral = min(cut.firstReferral ?? f.referralDate, f.referralDate)
        cut.lastReferral = max(cut.lastReferral ?? f.referralDate, f.referralDate)
        if let d = f.gkDate, f.status != .cancelled {
            cut.firstDecision = min(cut.firstDecision ?? d, d)
            cut.lastDecision = max(cut.lastDecision ?? d, d)
        }
    }

    private mutating func closePerson() {
        for b in marks { trial.counts[b, default: Count()].people += 1 }
        for (d, set) in districtMarks { for b in set { districts[d, default: ConsortPanel()].counts[b, default: Count()].people += 1 } }
        marks.removeAll(keepingCapacity: true)
        districtMarks.removeAll(keepingCapacity: true)
    }

    /// Counts the last person and records the data cut.
    public mutating func finish(head: ChainHead?) {
        closePerson()
        person = nil
        if let head { cut.seq = head.seq; cut.head = head.hash.hex; cut.recordedAt = head.recordedAt }
    }

    /// The arms that occur (PSC only in trials with a PSC district).
    public func arms(config: TrialConfig) -> [Arm] {
        Arm.allCases.filter { arm in config.districts.contains { $0.weights[arm] > 0 } || trial[.allocated(arm)].referrals > 0 }
    }

    // MARK: the four phases, as lines

    /// The lines of each phase for one panel: (phase, box title, lines).
    func sections(_ p: ConsortPanel, config: TrialConfig, arms: [Arm]) -> [(phase: String, boxes: [(title: String, lines: [String])])] {
        func byRule(_ pick: (ConsortBox) -> String?) -> String {
            let r = p.reasons(pick)
            return r.isEmpty ? "" : " — " + r.map { "\($0.0) \($0.1.referrals)" }.joined(separator: ", ")
        }
        let enrollment: [(String, [String])] = [
            ("Referred by work coaches", [p[.referred].text]),
            (
                "Excluded before randomisation: \(p[.excluded].text)",
                [
                    "Cancelled before the gatekeeper: \(p[.cancelled].text)",
                    "Awaiting the gatekeeper: \(p[.awaiting].text)",
                    "Not selected by the gatekeeper: \(p[.notSelected].text)"
                        + byRule { if case .notSelectedBy(let r) = $0 { return r } else { return nil } },
                ]
            ),
            (
                "Selected and randomised",
                [p[.randomised].text + byRule { if case .randomisedBy(let r) = $0 { return r } else { return nil } }]
            ),
        ]
        var allocation: [(String, [String])] = []
        var followUp: [(String, [String])] = []
        var analysis: [(String, [String])] = []
        for a in arms {
            allocation.append(("Allocated to \(a.rawValue)", [p[.allocated(a)].text]))
            var lines: [String] = []
            if a == .rcg {
                lines.append("No programme follow-up: the control group")
            } else {
                lines.append("Referred to a provider: \(p[.providerReferral(a)].text)")
                lines.append("Started: \(p[.started(a)].text)")
                lines.append(
                    "Did not start: \(p[.didNotStart(a)].text)"
                        + byRule { if case .didNotStartBecause(a, let r) = $0 { return r } else { return nil } })
                lines.append("Left: \(p[.left(a)].text)" + byRule { if case .leftBecause(a, let r) = $0 { return r } else { return nil } })
            }
            lines.append(
                "Flagged as allocated in error: \(p[.flagged(a)].text)"
                    + byRule { if case .flaggedBecause(a, let r) = $0 { return r } else { return nil } })
            lines.append("Status disclosed to front-line staff: \(p[.disclosed(a)].text)")
            followUp.append(("\(a.rawValue) follow-up", lines))
            analysis.append(
                (
                    "\(a.rawValue) analysed",
                    ["In the dataset: \(p[.inDataset(a)].text)", "Removed by opt-out: \(p[.removedOptedOut(a)].text)"]
                ))
        }
        return [
            ("Enrollment", enrollment), ("Allocation", allocation), ("Follow-up", followUp),
            (
                "Analysis",
                analysis + [
                    (
                        "Whole dataset (every outcome)",
                        ["In the dataset: \(p[.inDatasetAll].text)", "Removed by opt-out: \(p[.removedOptedOutAll].text)"]
                    )
                ]
            ),
        ]
    }

    /// The configured ratio of a district, `WHP 1 : PSC 1 : RCG 1`.
    public static func ratio(_ d: District) -> String {
        Arm.allCases.filter { d.weights[$0] > 0 }.map { "\($0.rawValue) \(d.weights[$0])" }.joined(separator: " : ")
    }

    /// The districts to draw: every configured one, then any other the log names.
    func districtOrder(config: TrialConfig) -> [String] {
        config.districts.map(\.id) + districts.keys.filter { config.district($0) == nil }.sorted()
    }

    /// A district's panel: its title (id, name, configured ratio, gatekeeper
    /// rule) and one line per phase and arm, for the text and the diagram.
    func districtPanel(_ id: String, config: TrialConfig) -> (title: String, lines: [String]) {
        let d = config.district(id)
        let p = districts[id] ?? ConsortPanel()
        let title =
            id + (d.map { " — \($0.name); ratio \(Self.ratio($0)); gatekeeper rule \($0.gatekeeperRule.rawValue)" } ?? " (not in the config)")
        var lines = [
            "Enrollment — referred: \(p[.referred].text); excluded: \(p[.excluded].text) (cancelled \(p[.cancelled].referrals), awaiting \(p[.awaiting].referrals), not selected \(p[.notSelected].referrals)); randomised: \(p[.randomised].text)"
        ]
        for a in Arm.allCases where (d?.weights[a] ?? 0) > 0 || p[.allocated(a)].referrals > 0 {
            lines.append(
                "\(a.rawValue) — allocated \(p[.allocated(a)].text); "
                    + (a == .rcg
                        ? ""
                        : "referred to a provider \(p[.providerReferral(a)].referrals); started \(p[.started(a)].referrals); did not start \(p[.didNotStart(a)].referrals); left \(p[.left(a)].referrals); ")
                    + "in error \(p[.flagged(a)].referrals); disclosed \(p[.disclosed(a)].referrals); in the dataset \(p[.inDataset(a)].text); removed by opt-out \(p[.removedOptedOut(a)].text)"
            )
        }
        return (title, lines)
    }

    /// The flow as text: the same figures as the diagram.
    public func table(config: TrialConfig) -> String {
        let arms = arms(config: config)
        var out = ["CONSORT flow — trial \(config.trialID)", "Data cut: \(cut.text)", ""]
        func panel(_ p: ConsortPanel, indent: String) {
            for section in sections(p, config: config, arms: arms) {
                out.append(indent + section.phase.uppercased())
                for box in section.boxes {
                    out.append(indent + "  " + box.title + (box.lines.count == 1 ? ": " + box.lines[0] : ""))
                    if box.lines.count > 1 { for l in box.lines { out.append(indent + "    " + l) } }
                }
            }
        }
        panel(trial, indent: "")
        for id in districtOrder(config: config) {
            out.append("")
            let (title, lines) = districtPanel(id, config: config)
            out.append("District " + title)
            for l in lines { out.append("  " + l) }
        }
        out.append("")
        out.append("People: distinct research ids; a person referred again can be in more than one box, so people do not add up as referrals do.")
        return out.joined(separator: "\n")
    }

    /// The flow as data (`report consort --json` and the HTML report).
    public func json(config: TrialConfig) -> JSONValue {
        func panelJSON(_ p: ConsortPanel) -> JSONValue {
            let arms = arms(config: config)
            let sections = sections(p, config: config, arms: arms)
            return .object(
                JSONObject(
                    sections.map { s in
                        (s.phase, JSONValue.array(s.boxes.map { .object(["title": .string($0.title), "lines": .array($0.lines.map { .string($0) })]) }))
                    }))
        }
        var districtsJSON = JSONObject()
        for id in districtOrder(config: config) { districtsJSON[id] = panelJSON(districts[id] ?? ConsortPanel()) }
        return .object([
            "trial_id": .string(config.trialID), "head_seq": .int(cut.seq), "head": .string(cut.head),
            "recorded_at": cut.recordedAt.map { .string($0.iso) } ?? .null, "trial": panelJSON(trial), "districts": .object(districtsJSON),
        ])
    }
}
