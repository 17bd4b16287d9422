import WHPCrypto

/// Where a referral stands. The true status; views decide what each audience sees.
public enum ReferralStatus: Sendable, Equatable, Hashable {
    case awaitingGatekeeper
    case cancelled
    case notSelected
    case allocated(Arm)

    /// The wire name of the true status (PROTOCOL.md §4, `disclose`).
    public var wireName: String {
        switch self {
        case .awaitingGatekeeper: "awaiting_gatekeeper"
        case .cancelled: "cancelled"
        case .notSelected: "not_selected"
        case .allocated(.whp): "allocated_whp"
        case .allocated(.psc): "allocated_psc"
        case .allocated(.rcg): "allocated_rcg"
        }
    }
}

/// Where a referral stands in its life. This is the one mapping between the
/// states, their stored names and the true status, and `after(_:)` is the
/// one table of which event moves a referral from which state. The engine
/// asks it whether an op applies, the projection asks it what to store, and
/// the verifier asks it whether a log's events could have happened.
public enum ReferralState: Sendable, Equatable, Hashable {
    case awaitingGatekeeper
    /// Selected by its run and not yet allocated: a moment inside one commit.
    case selected
    case notSelected
    case cancelled
    case allocated(Arm)

    /// Every state, for the reverse mapping.
    public static let all: [ReferralState] = [.awaitingGatekeeper, .selected, .notSelected, .cancelled] + Arm.allCases.map { .allocated($0) }

    /// The name the store keeps: the true status's wire name, and `selected`
    /// for the moment between a selection and its allocation.
    public var storedName: String { self == .selected ? "selected" : status.wireName }

    public init?(storedName: String) {
        guard let s = ReferralState.all.first(where: { $0.storedName == storedName }) else { return nil }
        self = s
    }

    /// The true status (PROTOCOL.md §4): a selected referral still awaits its allocation.
    public var status: ReferralStatus {
        switch self {
        case .awaitingGatekeeper, .selected: .awaitingGatekeeper
        case .notSelected: .notSelected
        case .cancelled: .cancelled
        case .allocated(let arm): .allocated(arm)
        }
    }

    /// Whether the gatekeeper has decided the referral (flags need it).
    public var isDecided: Bool {
        switch self {
        case .notSelected, .allocated, .selected: true
        case .awaitingGatekeeper, .cancelled: false
        }
    }

    /// The state `event` moves a referral in this state to; nil when the
    /// event cannot apply to it. Events that leave the state alone (a
    /// disclosure, a flag, a follow-up) return the state unchanged.
    public func after(_ event: TrialEvent) -> ReferralState? {
        switch (self, event) {
        case (.awaitingGatekeeper, .cancelled): .cancelled
        case (.awaitingGatekeeper, .gatekeeperDecision(let d)): d.decision == .selected ? .selected : .notSelected
        case (.selected, .allocated(let a)): .allocated(a.arm)
        case (_, .disclosed): self
        case (_, .flaggedInError): isDecided ? self : nil
        case (.allocated(.whp), .followedUp), (.allocated(.psc), .followedUp): self
        default: nil
        }
    }

    /// The state a `referred` event starts a referral in.
    public static let initial = ReferralState.awaitingGatekeeper
}

extension ReferralState {
    /// The state an event leaves its referral in, whatever the state before:
    /// what the projection stores (the log was checked when it was written,
    /// and `verify` checks `after(_:)` on every event).
    public static func resulting(from event: TrialEvent) -> ReferralState? {
        switch event {
        case .referred: .initial
        case .cancelled: .cancelled
        case .gatekeeperDecision(let d): d.decision == .selected ? .selected : .notSelected
        case .allocated(let a): .allocated(a.arm)
        default: nil
        }
    }
}

/// One referral as the service knows it: its facts, its state, and what the
/// rules read of it.
public struct Referral: Sendable, Equatable {
    public var referralID: String
    /// Seq of its `referred` event: a person's referrals are ordered by it.
    public var referredSeq: Int
    /// The pseudonym of the identifier the referral was made under.
    public var claimant: Pseudonym
    /// The person (RULES2 R6): the claimant's linked NINO pseudonym, or the claimant.
    public var person: Pseudonym
    public var district: String
    public var group: String
    public var referralDate: CivilDate
    public var state: ReferralState
    public var cancelReason: String?
    public var runID: String?
    public var gkDate: CivilDate?
    /// The UTC date its `gatekeeper_decision` was recorded (RULES2 R1).
    public var decidedOn: CivilDate?
    public var rule: RunRule?
    public var stratum: String?
    public var allocIndex: Int?
    public var flag: FlagReason?
    public var correctedGroup: String?
    public var provider: String?
    public var disclosed: Bool

    public init(
        referralID: String, referredSeq: Int, claimant: Pseudonym, person: Pseudonym, district: String, group: String,
        referralDate: CivilDate, state: ReferralState = .initial, cancelReason: String? = nil, runID: String? = nil,
        gkDate: CivilDate? = nil, decidedOn: CivilDate? = nil, rule: RunRule? = nil, stratum: String? = nil,
        allocIndex: Int? = nil, flag: FlagReason? = nil, correctedGroup: String? = nil, provider: String? = nil,
        disclosed: Bool = false
    ) {
        self.referralID = referralID; self.referredSeq = referredSeq; self.claimant = claimant; self.person = person
        self.district = district; self.group = group; self.referralDate = referralDate; self.state = state
        self.cancelReason = cancelReason; self.runID = runID; self.gkDate = gkDate; self.decidedOn = decidedOn
        self.rule = rule; self.stratum = stratum; self.allocIndex = allocIndex; self.flag = flag
        self.correctedGroup = correctedGroup; self.provider = provider; self.disclosed = disclosed
    }

    public var status: ReferralStatus { state.status }

    /// The date its lock runs from: the decision's recorded date under rules
    /// 2 (R1), the gatekeeper date under rules 1. Nil until decided.
    public func lockBase(_ rules: RulesVersion) -> CivilDate? { Self.lockBase(rules, gkDate: gkDate, decidedOn: decidedOn) }

    /// The rule itself, for readers holding only the two dates.
    public static func lockBase(_ rules: RulesVersion, gkDate: CivilDate?, decidedOn: CivilDate?) -> CivilDate? {
        rules == .one ? gkDate : decidedOn
    }

    /// What the lock rules and views read of it.
    public func outcome(_ rules: RulesVersion) -> ReferralOutcome {
        ReferralOutcome(status: status, gkDate: gkDate, lockBase: lockBase(rules))
    }
}
