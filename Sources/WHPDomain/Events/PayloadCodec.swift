import WHPCrypto
import WHPJSON

/// A key of an event payload (PROTOCOL.md §6, RULES2.md). This is the one
/// place where each key is spelled. Everything else names a key through one
/// of these constants, so a key cannot be misspelled in one of its readers.
public struct PayloadKey: Sendable, CustomStringConvertible {
    /// The key's bytes, as a static string so the verifier's byte-level
    /// reader can look it up without building a `String`.
    public let text: StaticString
    public init(_ text: StaticString) { self.text = text }
    public var name: String { text.description }
    public var description: String { name }

    public static let recordedAt = PayloadKey("recorded_at")
    public static let actor = PayloadKey("actor")

    // trial_started
    public static let algorithm = PayloadKey("algorithm")
    public static let trialID = PayloadKey("trial_id")
    public static let commitment = PayloadKey("commitment")
    public static let configHash = PayloadKey("config_hash")
    public static let method = PayloadKey("method")
    public static let blockMultipliers = PayloadKey("block_multipliers")
    public static let stratifyByGroup = PayloadKey("stratify_by_group")
    public static let frontlineRCG = PayloadKey("frontline_rcg")
    public static let rules = PayloadKey("rules")
    public static let pseudonymKeyCheck = PayloadKey("pseudonym_key_check")
    public static let evaluationKeyCheck = PayloadKey("evaluation_key_check")

    // referrals
    public static let referralID = PayloadKey("referral_id")
    public static let claimant = PayloadKey("claimant")
    public static let district = PayloadKey("district")
    public static let group = PayloadKey("group")
    public static let referralDate = PayloadKey("referral_date")
    public static let reason = PayloadKey("reason")
    public static let correctedGroup = PayloadKey("corrected_group")
    public static let date = PayloadKey("date")
    public static let alias = PayloadKey("alias")

    // gatekeeper runs
    public static let runID = PayloadKey("run_id")
    public static let decision = PayloadKey("decision")
    public static let gkDate = PayloadKey("gk_date")
    public static let rule = PayloadKey("rule")
    public static let lotteryKey = PayloadKey("lottery_key")
    public static let capacity = PayloadKey("capacity")

    // allocations
    public static let stratum = PayloadKey("stratum")
    public static let index = PayloadKey("index")
    public static let arm = PayloadKey("arm")
    public static let allocSeed = PayloadKey("alloc_seed")
    public static let block = PayloadKey("block")
    public static let blockSize = PayloadKey("block_size")
    public static let position = PayloadKey("position")

    // provider draws (RULES2 R15)
    public static let provider = PayloadKey("provider")
    public static let providerStratum = PayloadKey("provider_stratum")
    public static let providerIndex = PayloadKey("provider_index")
    public static let providerSeed = PayloadKey("provider_seed")
    public static let providerShares = PayloadKey("provider_shares")
    public static let providerBlock = PayloadKey("provider_block")
    public static let providerBlockSize = PayloadKey("provider_block_size")
    public static let providerPosition = PayloadKey("provider_position")
    public static let effective = PayloadKey("effective")
    public static let shares = PayloadKey("shares")

    // follow-up (RULES2 R14)
    public static let step = PayloadKey("step")

    // export_made
    public static let manifestSHA256 = PayloadKey("manifest_sha256")
    public static let rows = PayloadKey("rows")
    public static let removedOptedOut = PayloadKey("removed_opted_out")
}

/// Read access to a stored payload, whatever holds it: a dictionary, or the
/// verifier's byte-level reader. The typed reads have defaults over `text`;
/// a fast reader overrides them.
public protocol PayloadSource {
    func text(_ key: PayloadKey) -> String?
    func has(_ key: PayloadKey) -> Bool
    func date(_ key: PayloadKey) -> CivilDate?
    func instant(_ key: PayloadKey) -> Instant?
    func bytes32(_ key: PayloadKey) -> Bytes32?
    func decimal(_ key: PayloadKey) -> Int?
}

extension PayloadSource {
    public func has(_ key: PayloadKey) -> Bool { text(key) != nil }
    public func date(_ key: PayloadKey) -> CivilDate? { text(key).flatMap(CivilDate.init) }
    public func instant(_ key: PayloadKey) -> Instant? { text(key).flatMap(Instant.init) }
    public func bytes32(_ key: PayloadKey) -> Bytes32? { text(key).flatMap(Bytes32.init(hex:)) }
    public func decimal(_ key: PayloadKey) -> Int? { text(key).flatMap(PayloadDecimal.parse) }
}

extension Dictionary: PayloadSource where Key == String, Value == String {
    public func text(_ key: PayloadKey) -> String? { self[key.name] }
}

/// Decimal integers as payloads hold them (ALLOCATION.md: no sign, no leading
/// zeros), below 2^31 like every integer of the protocol. Anything else is not
/// a number to the readers of a log, so a crafted value never reaches arithmetic.
public enum PayloadDecimal {
    public static let limit = 1 << 31

    public static func parse(_ s: String) -> Int? {
        var s = s
        return s.withUTF8 { parse($0) }
    }

    public static func parse(_ u: UnsafeBufferPointer<UInt8>) -> Int? {
        guard u.count >= 1, u.count <= 10 else { return nil }
        if u.count > 1 && u[0] == 0x30 { return nil }
        var n = 0
        for c in u {
            guard c >= 0x30, c <= 0x39 else { return nil }
            n = n * 10 + Int(c - 0x30)
        }
        return n < limit ? n : nil
    }
}

// MARK: - The codec: typed events to and from the stored flat map

/// A stored payload that does not make a well-formed event of its type.
public struct PayloadError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String?
    public var problem: String
    public init(_ key: PayloadKey?, _ problem: String) { self.key = key?.name; self.problem = problem }
    public var description: String { key.map { "\($0): \(problem)" } ?? problem }
}

/// Builds a payload's entries in order of insertion (`TrialEvent.sortedPairs` sorts them).
struct PayloadBuilder {
    /// Each key at most once (checked in debug builds: a codec that set a
    /// key twice would store one value and could hash another).
    var pairs: [(key: String, value: String)] = []
    init(capacity: Int) { pairs.reserveCapacity(capacity) }
    mutating func set(_ k: PayloadKey, _ v: String) {
        let name = k.name
        assert(!pairs.contains { $0.key == name }, "payload key \(name) set twice")
        pairs.append((name, v))
    }
    mutating func set(_ k: PayloadKey, _ v: String?) { if let v { set(k, v) } }
    mutating func set(_ k: PayloadKey, _ v: Int) { set(k, String(v)) }
    mutating func set(_ k: PayloadKey, _ v: Int?) { if let v { set(k, String(v)) } }
    mutating func set(_ k: PayloadKey, _ v: CivilDate) { set(k, v.iso) }
    mutating func set(_ k: PayloadKey, _ v: Instant) { set(k, v.iso) }
    mutating func set(_ k: PayloadKey, _ v: Bytes32) { set(k, v.hex) }
    mutating func set(_ k: PayloadKey, _ v: Bytes32?) { if let v { set(k, v.hex) } }
    mutating func set(_ k: PayloadKey, _ v: Pseudonym) { set(k, v.hex) }
}

/// Typed reads that fail naming the key.
struct PayloadReader<Source: PayloadSource> {
    let p: Source
    func text(_ k: PayloadKey) throws(PayloadError) -> String {
        guard let v = p.text(k) else { throw PayloadError(k, "missing") }
        return v
    }
    func optionalText(_ k: PayloadKey) -> String? { p.text(k) }
    func date(_ k: PayloadKey) throws(PayloadError) -> CivilDate {
        guard p.has(k) else { throw PayloadError(k, "missing") }
        guard let d = p.date(k) else { throw PayloadError(k, "not a date YYYY-MM-DD") }
        return d
    }
    func instant(_ k: PayloadKey) throws(PayloadError) -> Instant {
        guard p.has(k) else { throw PayloadError(k, "missing") }
        guard let i = p.instant(k) else { throw PayloadError(k, "not an instant YYYY-MM-DDTHH:MM:SSZ") }
        return i
    }
    func bytes32(_ k: PayloadKey) throws(PayloadError) -> Bytes32 {
        guard p.has(k) else { throw PayloadError(k, "missing") }
        // Stored hex is lower-case (ALLOCATION.md): an upper-case digit is a
        // different payload, so a different event, never the same value.
        guard let t = p.text(k), Hex.isLowerHex(t, count: 64), let b = Bytes32(hex: t) else {
            throw PayloadError(k, "not 64 lower-case hex digits")
        }
        return b
    }
    func optionalBytes32(_ k: PayloadKey) throws(PayloadError) -> Bytes32? {
        guard p.has(k) else { return nil }
        return try bytes32(k)
    }
    func decimal(_ k: PayloadKey) throws(PayloadError) -> Int {
        guard p.has(k) else { throw PayloadError(k, "missing") }
        guard let n = p.decimal(k) else { throw PayloadError(k, "not a decimal below 2^31") }
        return n
    }
    func optionalDecimal(_ k: PayloadKey) throws(PayloadError) -> Int? {
        guard p.has(k) else { return nil }
        return try decimal(k)
    }
    func pseudonym(_ k: PayloadKey) throws(PayloadError) -> Pseudonym {
        let t = try text(k)
        guard Hex.isLowerHex(t, count: 64) else { throw PayloadError(k, "not a pseudonym (64 lower-case hex digits)") }
        return Pseudonym(hex: t)
    }
    func value<T: RawRepresentable>(_ k: PayloadKey, as: T.Type) throws(PayloadError) -> T where T.RawValue == String {
        let t = try text(k)
        guard let v = T(rawValue: t) else { throw PayloadError(k, "unknown value \"\(t)\"") }
        return v
    }
}

extension TrialEvent {
    /// Reads a stored event. Unknown keys are left to the chain, which hashes them.
    public static func decode(type: String, _ source: some PayloadSource) throws(PayloadError) -> TrialEvent {
        guard let t = EventType(rawValue: type) else { throw PayloadError(nil, "unknown event type \(type)") }
        return try decode(type: t, source)
    }

    public static func decode(type: EventType, _ source: some PayloadSource) throws(PayloadError) -> TrialEvent {
        let r = PayloadReader(p: source)
        let at = try r.instant(.recordedAt)
        switch type {
        case .trialStarted:
            let rules: RulesVersion
            if let text = r.optionalText(.rules) {
                guard text == "2" else { throw PayloadError(.rules, "unknown rules version \"\(text)\"") }
                rules = .two
            } else {
                rules = .one
            }
            let multipliersText = try r.text(.blockMultipliers)
            var multipliers: [Int] = []
            for part in multipliersText.split(separator: ",", omittingEmptySubsequences: false) {
                guard let m = PayloadDecimal.parse(String(part)) else { throw PayloadError(.blockMultipliers, "not decimals joined by ,") }
                multipliers.append(m)
            }
            let stratify = try r.text(.stratifyByGroup)
            guard stratify == "true" || stratify == "false" else { throw PayloadError(.stratifyByGroup, "not true or false") }
            return .trialStarted(
                TrialStarted(
                    algorithm: try r.text(.algorithm), trialID: try r.text(.trialID), commitment: try r.bytes32(.commitment),
                    configHash: try r.bytes32(.configHash), method: try r.value(.method, as: AllocationMethod.self),
                    blockMultipliers: multipliers, stratifyByGroup: stratify == "true",
                    frontlineRCG: try r.value(.frontlineRCG, as: FrontlineRCG.self), rules: rules,
                    pseudonymKeyCheck: try r.optionalBytes32(.pseudonymKeyCheck),
                    evaluationKeyCheck: try r.optionalBytes32(.evaluationKeyCheck), recordedAt: at))
        case .referred:
            return .referred(
                Referred(
                    referralID: try r.text(.referralID), claimant: try r.pseudonym(.claimant), district: try r.text(.district),
                    group: try r.text(.group), referralDate: try r.date(.referralDate), actor: try r.text(.actor), recordedAt: at))
        case .cancelled:
            return .cancelled(
                Cancelled(
                    referralID: try r.text(.referralID), reason: try r.text(.reason),
                    actor: try r.text(.actor), recordedAt: at))
        case .gatekeeperDecision:
            return .gatekeeperDecision(
                GatekeeperDecision(
                    runID: try r.text(.runID), referralID: try r.text(.referralID), decision: try r.value(.decision, as: Decision.self),
                    gkDate: try r.date(.gkDate), rule: try r.value(.rule, as: RunRule.self),
                    lotteryKey: try r.optionalBytes32(.lotteryKey), capacity: try r.optionalDecimal(.capacity),
                    actor: try r.text(.actor), recordedAt: at))
        case .allocated:
            var slot: BlockSlot?
            if source.has(.block) || source.has(.blockSize) || source.has(.position) {
                slot = BlockSlot(block: try r.decimal(.block), size: try r.decimal(.blockSize), position: try r.decimal(.position))
            }
            var provider: ProviderAllocation?
            if source.has(.provider) {
                var pslot: BlockSlot?
                if source.has(.providerBlock) || source.has(.providerBlockSize) || source.has(.providerPosition) {
                    pslot = BlockSlot(
                        block: try r.decimal(.providerBlock), size: try r.decimal(.providerBlockSize),
                        position: try r.decimal(.providerPosition))
                }
                provider = ProviderAllocation(
                    provider: try r.text(.provider), stratum: try r.text(.providerStratum), index: try r.decimal(.providerIndex),
                    seed: try r.bytes32(.providerSeed), shares: try r.text(.providerShares), slot: pslot)
            }
            return .allocated(
                Allocated(
                    referralID: try r.text(.referralID), claimant: try r.pseudonym(.claimant), district: try r.text(.district),
                    group: try r.text(.group), stratum: try r.text(.stratum), index: try r.decimal(.index),
                    arm: try r.value(.arm, as: Arm.self), allocSeed: try r.bytes32(.allocSeed), gkDate: try r.date(.gkDate),
                    runID: try r.text(.runID), slot: slot, provider: provider, recordedAt: at))
        case .disclosed:
            return .disclosed(
                Disclosed(
                    referralID: try r.text(.referralID), reason: try r.text(.reason),
                    actor: try r.text(.actor), recordedAt: at))
        case .optedOut:
            return .optedOut(
                OptedOut(
                    claimant: try r.pseudonym(.claimant), date: try r.date(.date),
                    actor: try r.text(.actor), recordedAt: at))
        case .flaggedInError:
            return .flaggedInError(
                FlaggedInError(
                    referralID: try r.text(.referralID), reason: try r.value(.reason, as: FlagReason.self),
                    correctedGroup: r.optionalText(.correctedGroup), actor: try r.text(.actor), recordedAt: at))
        case .exportMade:
            return .exportMade(
                ExportMade(
                    manifestSHA256: try r.bytes32(.manifestSHA256), rows: try r.decimal(.rows),
                    removedOptedOut: try r.decimal(.removedOptedOut), recordedAt: at))
        case .claimantLinked:
            return .claimantLinked(
                ClaimantLinked(
                    claimant: try r.pseudonym(.claimant), alias: try r.pseudonym(.alias),
                    actor: try r.text(.actor), recordedAt: at))
        case .followedUp:
            return .followedUp(
                FollowedUp(
                    referralID: try r.text(.referralID), step: try r.value(.step, as: FollowUpStep.self), date: try r.date(.date),
                    reason: r.optionalText(.reason), actor: try r.text(.actor), recordedAt: at))
        case .sharesSet:
            return .sharesSet(
                SharesSet(
                    district: try r.text(.district), arm: try r.value(.arm, as: Arm.self), effective: try r.date(.effective),
                    shares: try r.text(.shares), actor: try r.text(.actor), recordedAt: at))
        }
    }

    /// The stored flat map (ALLOCATION.md §7): what the chain hashes.
    public var payload: [String: String] { Dictionary(uniqueKeysWithValues: entries.pairs) }

    /// The stored flat map's entries in the spec's key order (ALLOCATION.md
    /// §7), made without the map: appending an event hashes and stores these
    /// (the same entries as `payload.sorted`, one dictionary fewer per event).
    public var sortedPairs: [(key: String, value: String)] { entries.pairs.sorted { $0.key.utf8Precedes($1.key) } }

    private var entries: PayloadBuilder {
        var b = PayloadBuilder(capacity: 16)
        switch self {
        case .trialStarted(let e):
            b.set(.algorithm, e.algorithm); b.set(.trialID, e.trialID); b.set(.commitment, e.commitment)
            b.set(.configHash, e.configHash); b.set(.method, e.method.rawValue)
            b.set(.blockMultipliers, e.blockMultipliers.map(String.init).joined(separator: ","))
            b.set(.stratifyByGroup, e.stratifyByGroup ? "true" : "false"); b.set(.frontlineRCG, e.frontlineRCG.rawValue)
            if e.rules != .one { b.set(.rules, e.rules.rawValue) }
            b.set(.pseudonymKeyCheck, e.pseudonymKeyCheck); b.set(.evaluationKeyCheck, e.evaluationKeyCheck)
            b.set(.recordedAt, e.recordedAt)
        case .referred(let e):
            b.set(.referralID, e.referralID); b.set(.claimant, e.claimant); b.set(.district, e.district)
            b.set(.group, e.group); b.set(.referralDate, e.referralDate); b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        case .cancelled(let e):
            b.set(.referralID, e.referralID); b.set(.reason, e.reason); b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        case .gatekeeperDecision(let e):
            b.set(.runID, e.runID); b.set(.referralID, e.referralID); b.set(.decision, e.decision.rawValue)
            b.set(.gkDate, e.gkDate); b.set(.rule, e.rule.rawValue); b.set(.lotteryKey, e.lotteryKey)
            b.set(.capacity, e.capacity); b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        case .allocated(let e):
            b.set(.referralID, e.referralID); b.set(.claimant, e.claimant); b.set(.district, e.district)
            b.set(.group, e.group); b.set(.stratum, e.stratum); b.set(.index, e.index); b.set(.arm, e.arm.rawValue)
            b.set(.allocSeed, e.allocSeed); b.set(.gkDate, e.gkDate); b.set(.runID, e.runID)
            if let s = e.slot { b.set(.block, s.block); b.set(.blockSize, s.size); b.set(.position, s.position) }
            if let p = e.provider {
                b.set(.provider, p.provider); b.set(.providerStratum, p.stratum); b.set(.providerIndex, p.index)
                b.set(.providerSeed, p.seed); b.set(.providerShares, p.shares)
                if let s = p.slot { b.set(.providerBlock, s.block); b.set(.providerBlockSize, s.size); b.set(.providerPosition, s.position) }
            }
            b.set(.recordedAt, e.recordedAt)
        case .disclosed(let e):
            b.set(.referralID, e.referralID); b.set(.reason, e.reason); b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        case .optedOut(let e):
            b.set(.claimant, e.claimant); b.set(.date, e.date); b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        case .flaggedInError(let e):
            b.set(.referralID, e.referralID); b.set(.reason, e.reason.rawValue); b.set(.correctedGroup, e.correctedGroup)
            b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        case .exportMade(let e):
            b.set(.manifestSHA256, e.manifestSHA256); b.set(.rows, e.rows); b.set(.removedOptedOut, e.removedOptedOut)
            b.set(.recordedAt, e.recordedAt)
        case .claimantLinked(let e):
            b.set(.claimant, e.claimant); b.set(.alias, e.alias); b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        case .followedUp(let e):
            b.set(.referralID, e.referralID); b.set(.step, e.step.rawValue); b.set(.date, e.date); b.set(.reason, e.reason)
            b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        case .sharesSet(let e):
            b.set(.district, e.district); b.set(.arm, e.arm.rawValue); b.set(.effective, e.effective)
            b.set(.shares, e.shares); b.set(.actor, e.actor); b.set(.recordedAt, e.recordedAt)
        }
        return b
    }

    public var recordedAt: Instant {
        switch self {
        case .trialStarted(let e): e.recordedAt
        case .referred(let e): e.recordedAt
        case .cancelled(let e): e.recordedAt
        case .gatekeeperDecision(let e): e.recordedAt
        case .allocated(let e): e.recordedAt
        case .disclosed(let e): e.recordedAt
        case .optedOut(let e): e.recordedAt
        case .flaggedInError(let e): e.recordedAt
        case .exportMade(let e): e.recordedAt
        case .claimantLinked(let e): e.recordedAt
        case .followedUp(let e): e.recordedAt
        case .sharesSet(let e): e.recordedAt
        }
    }
}
