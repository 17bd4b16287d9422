import WHPCrypto

/// The event types of PROTOCOL.md §6 and RULES2.md.
public enum EventType: String, Sendable, CaseIterable {
    case trialStarted = "trial_started"
    case referred
    case cancelled
    case gatekeeperDecision = "gatekeeper_decision"
    case allocated
    case disclosed
    case optedOut = "opted_out"
    case flaggedInError = "flagged_in_error"
    case exportMade = "export_made"
    case claimantLinked = "claimant_linked"
    case followedUp = "followed_up"
    case sharesSet = "shares_set"
}

/// Every state change of a trial, typed. The log stores each one as a flat
/// map of strings (ALLOCATION.md §7), and the chain hashes that map. The
/// mapping to and from it is `PayloadCodec.swift`, so the engine, the
/// projection and the verifier all read and write one vocabulary.
public enum TrialEvent: Sendable, Equatable {
    case trialStarted(TrialStarted)
    case referred(Referred)
    case cancelled(Cancelled)
    case gatekeeperDecision(GatekeeperDecision)
    case allocated(Allocated)
    case disclosed(Disclosed)
    case optedOut(OptedOut)
    case flaggedInError(FlaggedInError)
    case exportMade(ExportMade)
    case claimantLinked(ClaimantLinked)
    case followedUp(FollowedUp)
    case sharesSet(SharesSet)

    public var type: EventType {
        switch self {
        case .trialStarted: .trialStarted
        case .referred: .referred
        case .cancelled: .cancelled
        case .gatekeeperDecision: .gatekeeperDecision
        case .allocated: .allocated
        case .disclosed: .disclosed
        case .optedOut: .optedOut
        case .flaggedInError: .flaggedInError
        case .exportMade: .exportMade
        case .claimantLinked: .claimantLinked
        case .followedUp: .followedUp
        case .sharesSet: .sharesSet
        }
    }

    /// The referral an event is about, if it is about one.
    public var referralID: String? {
        switch self {
        case .referred(let e): e.referralID
        case .cancelled(let e): e.referralID
        case .gatekeeperDecision(let e): e.referralID
        case .allocated(let e): e.referralID
        case .disclosed(let e): e.referralID
        case .flaggedInError(let e): e.referralID
        case .followedUp(let e): e.referralID
        case .trialStarted, .optedOut, .exportMade, .claimantLinked, .sharesSet: nil
        }
    }
}

/// Which revision of the contract judges a trial (RULES2 R0). A trial keeps
/// the rules it was started under, whatever release reads it.
public enum RulesVersion: Int, Sendable, Comparable, CaseIterable {
    /// ALLOCATION/PROTOCOL/CONFIG/CLI.md as first written: `trial_started` has no `rules`.
    case one = 1
    /// RULES2.md: what `whp init` starts now.
    case two = 2

    public static let current = RulesVersion.two
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// `trial_started`: the trial's fixed facts.
public struct TrialStarted: Sendable, Equatable {
    public var algorithm: String
    public var trialID: String
    public var commitment: Bytes32
    public var configHash: Bytes32
    public var method: AllocationMethod
    public var blockMultipliers: [Int]
    public var stratifyByGroup: Bool
    public var frontlineRCG: FrontlineRCG
    public var rules: RulesVersion
    /// RULES2 R4: `HMAC(K, enc("whp/key-check/v1"))` of the pseudonym and evaluation keys.
    public var pseudonymKeyCheck: Bytes32?
    public var evaluationKeyCheck: Bytes32?
    public var recordedAt: Instant

    public init(
        algorithm: String = "whp/v1", trialID: String, commitment: Bytes32, configHash: Bytes32,
        method: AllocationMethod, blockMultipliers: [Int], stratifyByGroup: Bool, frontlineRCG: FrontlineRCG,
        rules: RulesVersion, pseudonymKeyCheck: Bytes32?, evaluationKeyCheck: Bytes32?, recordedAt: Instant
    ) {
        self.algorithm = algorithm; self.trialID = trialID; self.commitment = commitment; self.configHash = configHash
        self.method = method; self.blockMultipliers = blockMultipliers; self.stratifyByGroup = stratifyByGroup
        self.frontlineRCG = frontlineRCG; self.rules = rules; self.pseudonymKeyCheck = pseudonymKeyCheck
        self.evaluationKeyCheck = evaluationKeyCheck; self.recordedAt = recordedAt
    }
}

/// `referred`: a work coach referred a claimant.
public struct Referred: Sendable, Equatable {
    public var referralID: String
    /// The pseudonym of the identifier the request sent (RULES2 R6: not the person's).
    public var claimant: Pseudonym
    public var district: String
    public var group: String
    public var referralDate: CivilDate
    public var actor: String
    public var recordedAt: Instant
    public init(
        referralID: String, claimant: Pseudonym, district: String, group: String, referralDate: CivilDate,
        actor: String, recordedAt: Instant
    ) {
        self.referralID = referralID; self.claimant = claimant; self.district = district; self.group = group
        self.referralDate = referralDate; self.actor = actor; self.recordedAt = recordedAt
    }
}

public struct Cancelled: Sendable, Equatable {
    public var referralID: String
    public var reason: String
    public var actor: String
    public var recordedAt: Instant
    public init(referralID: String, reason: String, actor: String, recordedAt: Instant) {
        self.referralID = referralID; self.reason = reason; self.actor = actor; self.recordedAt = recordedAt
    }
}

/// How a gatekeeper run chose: the district's capacity rule, or the gatekeeper's own list.
public enum RunRule: String, Sendable, Equatable {
    case fifo, lottery, manual
    public init(_ rule: GatekeeperRule) {
        switch rule {
        case .fifo: self = .fifo
        case .lottery: self = .lottery
        }
    }
}

public enum Decision: String, Sendable, Equatable {
    case selected
    case notSelected = "not_selected"
}

public struct GatekeeperDecision: Sendable, Equatable {
    public var runID: String
    public var referralID: String
    public var decision: Decision
    public var gkDate: CivilDate
    public var rule: RunRule
    public var lotteryKey: Bytes32?
    /// The run's capacity (docs/decisions.md); absent for manual runs.
    public var capacity: Int?
    public var actor: String
    public var recordedAt: Instant
    public init(
        runID: String, referralID: String, decision: Decision, gkDate: CivilDate, rule: RunRule,
        lotteryKey: Bytes32?, capacity: Int?, actor: String, recordedAt: Instant
    ) {
        self.runID = runID; self.referralID = referralID; self.decision = decision; self.gkDate = gkDate
        self.rule = rule; self.lotteryKey = lotteryKey; self.capacity = capacity; self.actor = actor
        self.recordedAt = recordedAt
    }
}

/// Where an allocation sits in its stratum's blocks (permuted_block only).
public struct BlockSlot: Sendable, Equatable {
    public var block: Int
    public var size: Int
    public var position: Int
    public init(block: Int, size: Int, position: Int) { self.block = block; self.size = size; self.position = position }
}

/// A provider draw inside an allocation (RULES2 R15).
public struct ProviderAllocation: Sendable, Equatable {
    public var provider: String
    /// π = σ + "|" + arm.
    public var stratum: String
    public var index: Int
    public var seed: Bytes32
    /// The shares in force, `id=share,…` sorted by id.
    public var shares: String
    public var slot: BlockSlot?
    public init(provider: String, stratum: String, index: Int, seed: Bytes32, shares: String, slot: BlockSlot?) {
        self.provider = provider; self.stratum = stratum; self.index = index; self.seed = seed
        self.shares = shares; self.slot = slot
    }
}

public struct Allocated: Sendable, Equatable {
    public var referralID: String
    public var claimant: Pseudonym
    public var district: String
    public var group: String
    public var stratum: String
    public var index: Int
    public var arm: Arm
    public var allocSeed: Bytes32
    public var gkDate: CivilDate
    public var runID: String
    public var slot: BlockSlot?
    public var provider: ProviderAllocation?
    public var recordedAt: Instant
    public init(
        referralID: String, claimant: Pseudonym, district: String, group: String, stratum: String, index: Int,
        arm: Arm, allocSeed: Bytes32, gkDate: CivilDate, runID: String, slot: BlockSlot?,
        provider: ProviderAllocation?, recordedAt: Instant
    ) {
        self.referralID = referralID; self.claimant = claimant; self.district = district; self.group = group
        self.stratum = stratum; self.index = index; self.arm = arm; self.allocSeed = allocSeed; self.gkDate = gkDate
        self.runID = runID; self.slot = slot; self.provider = provider; self.recordedAt = recordedAt
    }
}

public struct Disclosed: Sendable, Equatable {
    public var referralID: String
    public var reason: String
    public var actor: String
    public var recordedAt: Instant
    public init(referralID: String, reason: String, actor: String, recordedAt: Instant) {
        self.referralID = referralID; self.reason = reason; self.actor = actor; self.recordedAt = recordedAt
    }
}

public struct OptedOut: Sendable, Equatable {
    public var claimant: Pseudonym
    public var date: CivilDate
    public var actor: String
    public var recordedAt: Instant
    public init(claimant: Pseudonym, date: CivilDate, actor: String, recordedAt: Instant) {
        self.claimant = claimant; self.date = date; self.actor = actor; self.recordedAt = recordedAt
    }
}

/// Why a gatekeeper flagged an allocation as made in error (PROTOCOL.md §3).
public enum FlagReason: String, Sendable, Equatable, CaseIterable {
    case ineligible, duplicate, wrongGroup = "wrong_group", other
}

public struct FlaggedInError: Sendable, Equatable {
    public var referralID: String
    public var reason: FlagReason
    /// RULES2 R14: the group the referral should have had (`wrong_group` only).
    public var correctedGroup: String?
    public var actor: String
    public var recordedAt: Instant
    public init(referralID: String, reason: FlagReason, correctedGroup: String?, actor: String, recordedAt: Instant) {
        self.referralID = referralID; self.reason = reason; self.correctedGroup = correctedGroup
        self.actor = actor; self.recordedAt = recordedAt
    }
}

public struct ExportMade: Sendable, Equatable {
    public var manifestSHA256: Bytes32
    public var rows: Int
    public var removedOptedOut: Int
    public var recordedAt: Instant
    public init(manifestSHA256: Bytes32, rows: Int, removedOptedOut: Int, recordedAt: Instant) {
        self.manifestSHA256 = manifestSHA256; self.rows = rows; self.removedOptedOut = removedOptedOut
        self.recordedAt = recordedAt
    }
}

/// RULES2 R6: a NINO and a DCAMS reference number are one person.
public struct ClaimantLinked: Sendable, Equatable {
    /// The NINO's pseudonym: the person.
    public var claimant: Pseudonym
    /// The reference number's pseudonym.
    public var alias: Pseudonym
    public var actor: String
    public var recordedAt: Instant
    public init(claimant: Pseudonym, alias: Pseudonym, actor: String, recordedAt: Instant) {
        self.claimant = claimant; self.alias = alias; self.actor = actor; self.recordedAt = recordedAt
    }
}

/// RULES2 R14: the steps after an allocation to WHP or PSC, in their order.
public enum FollowUpStep: String, Sendable, Equatable, CaseIterable {
    case providerReferral = "provider_referral"
    case started
    case didNotStart = "did_not_start"
    case left

    /// The reasons this step takes; nil when it takes none.
    public var reasons: Set<String>? {
        switch self {
        case .providerReferral, .started: nil
        case .didNotStart: ["declined", "did_not_attend", "not_suitable", "moved_away", "deceased", "other"]
        case .left: ["completed", "found_work", "moved_away", "deceased", "health", "other"]
        }
    }
}

public struct FollowedUp: Sendable, Equatable {
    public var referralID: String
    public var step: FollowUpStep
    public var date: CivilDate
    public var reason: String?
    public var actor: String
    public var recordedAt: Instant
    public init(referralID: String, step: FollowUpStep, date: CivilDate, reason: String?, actor: String, recordedAt: Instant) {
        self.referralID = referralID; self.step = step; self.date = date; self.reason = reason
        self.actor = actor; self.recordedAt = recordedAt
    }
}

/// RULES2 R15: a contract manager's market-share shift.
public struct SharesSet: Sendable, Equatable {
    public var district: String
    public var arm: Arm
    public var effective: CivilDate
    /// `id=share,…` sorted by id, as `provider_shares`.
    public var shares: String
    public var actor: String
    public var recordedAt: Instant
    public init(district: String, arm: Arm, effective: CivilDate, shares: String, actor: String, recordedAt: Instant) {
        self.district = district; self.arm = arm; self.effective = effective; self.shares = shares
        self.actor = actor; self.recordedAt = recordedAt
    }
}

/// The order of the follow-up steps (RULES2 R14), decided once: the service
/// refuses a step out of order, and `verify` fails one.
public enum FollowUpOrder {
    /// Whether `step` may come after the steps already taken, and which step
    /// its date must not precede (nil: the first step, bounded by the
    /// decision's recorded date). `.none` when it may not come now.
    public static func previous(of step: FollowUpStep, after taken: [FollowUpStep]) -> FollowUpStep?? {
        guard !taken.contains(step) else { return .none }
        switch step {
        case .providerReferral:
            return taken.isEmpty ? .some(nil) : .none
        case .started, .didNotStart:
            return taken == [.providerReferral] ? .some(.providerReferral) : .none
        case .left:
            return taken == [.providerReferral, .started] ? .some(.started) : .none
        }
    }
}
