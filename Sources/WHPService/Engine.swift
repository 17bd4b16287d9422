import Logging
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore

/// The trial's secrets the service needs: the master seed (draws, lottery
/// keys) and the pseudonym key. Never logged, never in a response.
public struct ServiceKeys: Sendable {
    public var seed: Bytes32
    public var pseudonym: Bytes32
    public init(seed: Bytes32, pseudonym: Bytes32) { self.seed = seed; self.pseudonym = pseudonym }
}

/// An op's answer before it is written as JSON.
public enum Answer: Sendable {
    case ok(JSONValue)
    case error(ProtocolError)
}

/// Runs decoded requests against the store: every rule that needs state
/// (idempotency, locks, gatekeeper runs, allocation) is applied here, one op
/// to a file under `Ops/`, and every change is a typed event appended in the
/// caller's transaction.
public struct Engine: Sendable {
    public let config: TrialConfig
    public let configHash: Bytes32
    public let keys: ServiceKeys
    /// The revision of the contract the trial was started under (RULES2 R0).
    public let rules: RulesVersion
    /// The recruitment window of a rules 2 trial (RULES2 R2); nil on rules 1.
    public let window: RecruitmentWindow?

    let pseudonyms: Derivation.PseudonymKey

    public init(config: TrialConfig, configHash: Bytes32, keys: ServiceKeys, rules: RulesVersion, window: RecruitmentWindow? = nil) {
        self.config = config; self.configHash = configHash; self.keys = keys; self.rules = rules
        self.window = rules >= .two ? window : nil
        pseudonyms = Derivation.PseudonymKey(keys.pseudonym)
    }

    func pseudonym(_ c: ClaimantID) -> Pseudonym { pseudonyms.pseudonym(c) }

    /// What one request sees: the transaction, the instant it records and its actor.
    struct Context {
        var at: Instant
        var actor: String
        var role: Role
        /// A failed check that depends on today (`Request.deferred`): a keyed
        /// op answers it after its replay check, any other op at once.
        var deferred: ProtocolError?
    }

    /// Executes one request. State errors are answers; a thrown error is a
    /// store fault and fails the whole group.
    public func execute(_ r: Request, _ tx: inout StoreTransaction, now: Instant) throws -> Answer {
        let c = Context(at: tx.recordedAt(now), actor: r.actor.recorded, role: r.actor.role, deferred: r.deferred)
        if let deferred = r.deferred, !r.op.isKeyed { return .error(deferred) }
        switch r.command {
        case let .refer(rid, claimant, district, group, date):
            return try refer(rid, claimant: claimant, district: district, group: group, date: date, c, &tx)
        case let .cancel(rid, reason):
            return try cancel(rid, reason: reason, c, &tx)
        case let .pending(district, gkDate):
            return try pending(district: district, gkDate: gkDate, &tx)
        case let .gatekeep(runID, district, gkDate, selection):
            return try gatekeep(runID: runID, district: district, gkDate: gkDate, selection: selection, c, &tx)
        case let .outcome(target, audience, name):
            return try outcome(target, audience: audience, name: name, &tx)
        case let .eligibility(claimant, date):
            return try eligibility(claimant, on: date, &tx)
        case let .disclose(rid, reason):
            return try disclose(rid, reason: reason, c, &tx)
        case let .optOut(claimant, date):
            return try optOut(claimant, date: date, c, &tx)
        case let .flagError(rid, reason, corrected):
            return try flagError(rid, reason: reason, correctedGroup: corrected, c, &tx)
        case .status:
            return status(c, &tx)
        case let .linkClaimant(nino, ref):
            return try link(nino: nino, ref: ref, c, &tx)
        case let .followUp(rid, step, date, reason):
            return try followUp(rid, step: step, date: date, reason: reason, c, &tx)
        case let .setShares(district, arm, effective, shares):
            return try setShares(district: district, arm: arm, effective: effective, shares: shares, c, &tx)
        }
    }

    /// Fetches what a group's `refer`s will read, in a few queries for the
    /// whole group (`StoreTransaction.prefetchReferReads`): on PostgreSQL
    /// each read is otherwise a round trip per request. Answers do not change.
    public func prefetch(_ requests: [Request], _ tx: inout StoreTransaction) throws {
        guard tx.prefetchesReads else { return }
        var wanted: [(referralID: String, claimant: Pseudonym)] = []
        for r in requests {
            if case let .refer(rid, claimant, _, _, _) = r.command { wanted.append((rid, pseudonym(claimant))) }
        }
        try tx.prefetchReferReads(wanted)
    }

    /// Every referral of the person an identifier belongs to, oldest first.
    func history(of person: Pseudonym, _ tx: inout StoreTransaction) throws -> [Referral] {
        try tx.referrals(person: person)
    }

    func eligibility(of history: [Referral], on date: CivilDate) -> Eligibility {
        Locks.eligibility(history: history.map { $0.outcome(rules) }, on: date, lengths: config.locks, policy: config.frontlineRCG)
    }
}
