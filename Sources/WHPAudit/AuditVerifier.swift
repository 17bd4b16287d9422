import WHPCrypto
import WHPDomain
import WHPJSON

/// One named check of `whp verify` (CLI.md) and the first event that breaks it.
public struct CheckResult: Sendable, Equatable {
    public var name: String
    public var ok: Bool
    public var detail: String
    public var firstBadSeq: Int?
    public init(name: String, ok: Bool, detail: String, firstBadSeq: Int? = nil) {
        self.name = name; self.ok = ok; self.detail = detail; self.firstBadSeq = firstBadSeq
    }
}

public struct AuditReport: Sendable {
    public var events: Int
    public var head: String
    public var checks: [CheckResult]
    public var ok: Bool { checks.allSatisfy(\.ok) }
    public init(events: Int, head: String, checks: [CheckResult]) { self.events = events; self.head = head; self.checks = checks }
}

/// The checks of `whp verify` (docs/rules2.md has the table of which check
/// judges which event).
public enum Check: String, Sendable, CaseIterable, Comparable {
    case chain, configHash = "config_hash", configRules = "config_rules", commitmentFile = "commitment_file"
    case dates, draws, followUp = "follow_up", gatekeeper, links, locks, providers, psc
    case recordedAt = "recorded_at", commitment, derivedSeeds = "derived_seeds", lottery
    public static func < (a: Check, b: Check) -> Bool { a.rawValue < b.rawValue }
}

/// The published commitment file's three facts, if one was found (RULES2 R10).
public struct PublishedCommitment: Sendable, Equatable {
    public var trialID: String, commitment: String, configHash: String
    public init(trialID: String, commitment: String, configHash: String) {
        self.trialID = trialID; self.commitment = commitment; self.configHash = configHash
    }
}

/// Re-derives a trial from its log, one event at a time, as an auditor would
/// (ALLOCATION.md §7, RULES2.md): the chain, every draw, every gatekeeper
/// run, every lock, the PSC rule and `recorded_at`; with the seed also the
/// commitment, every derived seed and every lottery key. It holds
/// per-referral facts, not the events, so a long log streams through it.
///
/// It is total: whatever a log holds, every value is checked before it is
/// used, and a bad one is a failed check at its seq (RULES2 R10).
public struct AuditVerifier {
    public let config: TrialConfig
    public let configHash: Bytes32
    public let seed: Bytes32?
    public let commitmentFile: PublishedCommitment?

    var failures: [Check: (seq: Int?, detail: String)] = [:]
    var counts: [Check: Int] = [:]
    var previousHash: Bytes32?
    /// The seed's HMAC key schedule, computed once (nil without the seed).
    let derivation: SeedDerivation?
    /// Reused per event: the payload being read and `E_n`.
    var fields = PayloadFields()
    var encoded: [UInt8] = []

    var expectedSeq = 1
    var lastRecordedAt: Instant?
    /// The trial as its `trial_started` event says, once read.
    var trial: TrialStarted?
    /// trial_started's trial_id, commitment and config_hash as stored, kept
    /// even when the event does not decode (an unknown `rules` value, say):
    /// the commitment checks are then still made, from these.
    var startedAs: (trialID: String, commitment: Bytes32, configHash: String?)?
    var rules: RulesVersion { trial?.rules ?? .one }

    struct Ref {
        var claimant: Pseudonym, district: String, group: String, date: CivilDate, seq: Int
        var state: ReferralState = .initial
        var gkDate: CivilDate?
        var decidedOn: CivilDate?
        var runID: String?
        var flagged = false

        func outcome(_ rules: RulesVersion) -> ReferralOutcome {
            ReferralOutcome(status: state.status, gkDate: gkDate, lockBase: rules == .one ? gkDate : decidedOn)
        }
    }
    /// Every referral once, by referral id: its position in `refs`.
    var refIndex: [String: Int] = [:]
    var refs: [Ref] = []
    var byClaimant: [Pseudonym: [Int]] = [:]
    var pendingByDistrict: [String: Set<Int>] = [:]
    var lastGkDate: [String: CivilDate] = [:]
    var strata: [String: StratumState] = [:]
    var optedOut: Set<Pseudonym> = []

    // RULES2 R6: links, alias → claimant, and each claimant's aliases.
    var aliasOf: [Pseudonym: Pseudonym] = [:]
    var aliasesOf: [Pseudonym: [Pseudonym]] = [:]
    var linkPairs: Set<[Pseudonym]> = []
    // RULES2 R14: the steps each referral has taken, in order, with their dates.
    var steps: [Int: [(step: FollowUpStep, date: CivilDate)]] = [:]
    // RULES2 R15: each provider stratum's blocks, and the share changes by district|arm.
    var providerStrata: [String: ProviderStratumState] = [:]
    var shareChanges: [String: [SharesInForce.Change]] = [:]
    var sawProviderEvent = false
    /// Whether a `trial_started` came first (well-formed or not).
    var trialSeen = false
    /// The recruitment window of a rules 2 trial, once its start is known.
    var window: RecruitmentWindow?

    struct Run {
        var id: String, district: String, gkDate: CivilDate, rule: RunRule, capacity: Int?, firstSeq: Int
        var eligible: Set<Int>
        var decided: [(id: String, ref: Int, selected: Bool, key: Bytes32?, seq: Int)] = []
    }
    var openRun: Run?
    var seenRuns: Set<String> = []

    public init(config: TrialConfig, configHash: Bytes32, seed: Bytes32?, commitmentFile: PublishedCommitment?) {
        self.config = config; self.configHash = configHash; self.seed = seed; self.commitmentFile = commitmentFile
        derivation = seed.map { SeedDerivation(seed: $0, trialID: config.trialID) }
        encoded.reserveCapacity(1024)
    }

    /// Keeps, per check, the failure at the lowest seq (one without a seq only
    /// when none has one): failures are found out of seq order (a run's own are
    /// judged when it closes, after its decisions'), and `first_bad_seq` is
    /// where an auditor starts reading.
    mutating func fail(_ check: Check, _ seq: Int?, _ detail: String) {
        guard let kept = failures[check] else { failures[check] = (seq, detail); return }
        if let seq, kept.seq.map({ seq < $0 }) ?? true { failures[check] = (seq, detail) }
    }

    mutating func count(_ check: Check) { counts[check, default: 0] += 1 }

    /// The UTC day of an event's `recorded_at`, or nil when it lies outside
    /// 1900–2999: `recorded_at` fails there, and no lock, window or share
    /// choice is computed from it (docs/rules2.md, "Dates out of range").
    func recordedDay(_ at: Instant) -> CivilDate? {
        let d = at.date
        return CalendarRange.contains(d) ? d : nil
    }

    /// Feeds the next stored event (payload as parsed from the store or bundle;
    /// nil if it did not parse).
    @discardableResult
    public mutating func consume(seq: Int, type: String, payload: [String: String]?, storedHash: String) -> TrialEvent? {
        var h = storedHash
        return h.withUTF8 { hash in
            if let payload {
                fields.set(payload)
                return consumeFields(seq: seq, type: type, parsed: true, storedHash: hash)
            } else {
                return consumeFields(seq: seq, type: type, parsed: false, storedHash: hash)
            }
        }
    }

    /// Feeds the next stored event as its stored payload text, without
    /// building a dictionary: the same checks and results as
    /// `consume(seq:type:payload: try? PayloadJSON.decode(text), storedHash:)`.
    ///
    /// Returns the event when its payload parses and decodes as its type,
    /// whatever the checks make of it: exactly the events the derived tables
    /// are rebuilt from, so `verify`'s rebuild takes them from here instead
    /// of parsing every payload a second time.
    @discardableResult
    public mutating func consume(
        seq: Int, type: String, payloadText: UnsafeBufferPointer<UInt8>, storedHash: UnsafeBufferPointer<UInt8>
    ) -> TrialEvent? {
        let parsed = fields.parse(payloadText)
        return consumeFields(seq: seq, type: type, parsed: parsed, storedHash: storedHash)
    }

    @discardableResult
    public mutating func consume(seq: Int, type: String, payloadText: String, storedHash: String) -> TrialEvent? {
        var text = payloadText, hash = storedHash
        return text.withUTF8 { t in hash.withUTF8 { consume(seq: seq, type: type, payloadText: t, storedHash: $0) } }
    }

    private mutating func consumeFields(seq storedSeq: Int, type: String, parsed: Bool, storedHash: UnsafeBufferPointer<UInt8>) -> TrialEvent? {
        // chain
        if storedSeq != expectedSeq {
            fail(
                .chain, expectedSeq,
                storedSeq > expectedSeq ? "event \(expectedSeq) is missing (next stored is \(storedSeq))" : "event \(storedSeq) is out of order")
        }
        // An event stored out of order (a seq of 0, -1 or one already seen) is
        // judged where it stands: every failure it causes is at that place, so
        // a crafted seq cannot become every check's first bad one. The chain
        // still hashes the seq as stored.
        let seq = max(storedSeq, expectedSeq)
        // The next expectation saturates: a seq at or near Int.max (a crafted
        // line or row) must not overflow it, however many events follow.
        expectedSeq = seq < Int.max ? seq + 1 : Int.max
        guard parsed else {
            fail(.chain, seq, "event \(seq): payload is not a flat JSON object of strings")
            previousHash = Bytes32(hexUTF8: storedHash)
            return nil
        }
        if seq == 1 {
            guard type == EventType.trialStarted.rawValue, let tid = fields.text(.trialID), let c = fields.bytes32(.commitment) else {
                fail(.chain, 1, "event 1 is not a well-formed trial_started")
                previousHash = Bytes32(hexUTF8: storedHash)
                return EventType(rawValue: type).flatMap { try? TrialEvent.decode(type: $0, fields) }
            }
            previousHash = Derivation.genesis(trialID: tid, commitment: c)
            startedAs = (tid, c, fields.text(.configHash))
        }
        if let prev = previousHash {
            let h = chainHash(previous: prev, seq: storedSeq, type: type)
            if !h.isHex(storedHash) { fail(.chain, seq, "event \(seq): stored hash does not match its content and the previous hash") }
            count(.chain)
            previousHash = h
        }
        // recorded_at
        if let at = fields.instant(.recordedAt), CalendarRange.contains(at.date) {
            if let last = lastRecordedAt, at < last { fail(.recordedAt, seq, "event \(seq): recorded_at \(at.iso) is before the previous event's \(last.iso)") }
            lastRecordedAt = at
            count(.recordedAt)
        } else {
            fail(.recordedAt, seq, "event \(seq): recorded_at is missing, not YYYY-MM-DDTHH:MM:SSZ, or outside 1900–2999")
        }
        if let run = openRun, !((type == "gatekeeper_decision" || type == "allocated") && fields.value(PayloadKey.runID.text, equals: run.id)) {
            closeRun()
        }
        guard let eventType = EventType(rawValue: type) else {
            fail(.chain, seq, "event \(seq): unknown event type \(type)")
            return nil
        }
        let event: TrialEvent
        do { event = try TrialEvent.decode(type: eventType, fields) } catch {
            malformed(eventType, seq, error)
            return nil
        }
        apply(event, seq: seq)
        return event
    }

    /// `h_n = H(h_{n−1} ‖ E_n)`, with `E_n` written from the payload's bytes in key order.
    private mutating func chainHash(previous: Bytes32, seq: Int, type: String) -> Bytes32 {
        encoded.removeAll(keepingCapacity: true)
        encoded.append(contentsOf: AuditVerifier.eventLabel)
        let n = UInt64(truncatingIfNeeded: seq)
        for shift in stride(from: 56, through: 0, by: -8) { encoded.append(UInt8(truncatingIfNeeded: n >> UInt64(shift))) }
        var t = type
        t.withUTF8 { u in
            ByteWriter.appendU32(UInt32(truncatingIfNeeded: u.count), to: &encoded)
            encoded.append(contentsOf: u)
        }
        let p = fields
        ByteWriter.appendU32(UInt32(truncatingIfNeeded: p.count), to: &encoded)
        for i in 0..<p.count {
            p.withField(i) { k, v in
                ByteWriter.appendU32(UInt32(truncatingIfNeeded: k.count), to: &encoded)
                encoded.append(contentsOf: k)
                ByteWriter.appendU32(UInt32(truncatingIfNeeded: v.count), to: &encoded)
                encoded.append(contentsOf: v)
            }
        }
        return previous.withUnsafeBytes { a in encoded.withUnsafeBytes { Crypto.sha256(a, $0) } }
    }

    private static let eventLabel = ByteWriter.enc("whp/event/v1")

    /// The check that owns a malformed event of each type (docs/rules2.md).
    private mutating func malformed(_ type: EventType, _ seq: Int, _ error: PayloadError) {
        switch type {
        case .trialStarted:
            if !trialSeen && seq == 1 {
                trialSeen = true
                fail(.configHash, seq, "trial_started does not match district-config (\(error))")
            } else {
                fail(.chain, seq, "a second trial_started at event \(seq)")
            }
        case .referred: fail(.locks, seq, "event \(seq): referred event is malformed (\(error))")
        case .cancelled: fail(.locks, seq, "event \(seq): cancelled event is malformed (\(error))")
        case .optedOut: fail(.locks, seq, "event \(seq): opted_out event is malformed (\(error))")
        case .gatekeeperDecision: fail(.gatekeeper, seq, "event \(seq): malformed gatekeeper_decision (\(error))")
        case .flaggedInError: fail(.gatekeeper, seq, "event \(seq): malformed flagged_in_error (\(error))")
        case .disclosed: fail(.gatekeeper, seq, "event \(seq): malformed disclosed (\(error))")
        case .allocated:
            // A malformed provider field is the provider draw's failure (RULES2 R15); the
            // allocation without it is still judged and applied, so that failure is this
            // event's alone (its arm draw, its stratum and its referral go on as stored).
            if let key = error.key, key.hasPrefix("provider"),
                case .allocated(let e)? = try? TrialEvent.decode(type: .allocated, WithoutProviderDraw(base: fields))
            {
                sawProviderEvent = true
                fail(.providers, seq, "event \(seq): allocated event's provider draw is malformed (\(error))")
                allocation(e, seq)
            } else {
                fail(.draws, seq, "event \(seq): allocated event is malformed (\(error))")
                // Still the allocation of its referral, if it names a selected one and an
                // arm: not also a referral "never allocated" at its run, nor every follow-up after.
                if let rid = fields.text(.referralID), let i = refIndex[rid], refs[i].state == .selected,
                    fields.text(.runID) == refs[i].runID, let arm = fields.text(.arm).flatMap(Arm.init(rawValue:))
                {
                    refs[i].state = .allocated(arm)
                }
            }
        case .claimantLinked: fail(.links, seq, "event \(seq): claimant_linked event is malformed (\(error))")
        case .followedUp: fail(.followUp, seq, "event \(seq): followed_up event is malformed (\(error))")
        case .sharesSet: fail(.providers, seq, "event \(seq): shares_set event is malformed (\(error))")
        case .exportMade: fail(.chain, seq, "event \(seq): export_made event is malformed (\(error))")
        }
    }

    private mutating func apply(_ event: TrialEvent, seq: Int) {
        if case .trialStarted(let e) = event {
            if trialSeen || seq != 1 { fail(.chain, seq, "a second trial_started at event \(seq)"); return }
            trial = e
            trialSeen = true
            if e.rules >= .two {
                // With no configured `opens`, it is the trial's start day, which an
                // out-of-range recorded_at leaves unknown (RULES2 R9: not used).
                var w = RecruitmentWindow(config.recruitment, startedOn: recordedDay(e.recordedAt) ?? CivilDate.earliest)
                if config.recruitment.opens == nil && recordedDay(e.recordedAt) == nil {
                    fail(.dates, seq, "opens is unknown: no [recruitment] opens and trial_started's recorded_at is outside 1900–2999")
                    w.opens = CivilDate.earliest
                }
                window = w
            }
            checkTrialStarted(e, seq)
            return
        }
        switch event {
        case .trialStarted: break
        case .referred(let e): referred(e, seq)
        case .cancelled(let e): cancelled(e, seq)
        case .gatekeeperDecision(let e): decision(e, seq)
        case .allocated(let e): allocation(e, seq)
        case .flaggedInError(let e): flagged(e, seq)
        case .optedOut(let e):
            // RULES2 R6: a repeat is one for any identifier of the person.
            let person = self.person(of: e.claimant)
            if identifiers(of: person).contains(where: optedOut.contains) { fail(.locks, seq, "event \(seq): the person opted out twice") }
            optedOut.insert(e.claimant)
        case .disclosed(let e):
            if refIndex[e.referralID] == nil { fail(.gatekeeper, seq, "event \(seq): disclosed an unknown referral") }
        case .claimantLinked(let e): linked(e, seq)
        case .followedUp(let e): followedUp(e, seq)
        case .sharesSet(let e): sharesSet(e, seq)
        case .exportMade:
            break
        }
    }

    private mutating func checkTrialStarted(_ e: TrialStarted, _ seq: Int) {
        if e.configHash != configHash {
            fail(.configHash, seq, "the trial was started with config \(e.configHash.hex) but district-config hashes to \(configHash.hex)")
        }
        if e.trialID != config.trialID || e.method != config.method || e.blockMultipliers != config.blockMultipliers
            || e.stratifyByGroup != config.stratifyByGroup || e.frontlineRCG != config.frontlineRCG || e.algorithm != "whp/v1"
        {
            fail(.configHash, seq, "trial_started does not match district-config (trial_id, algorithm, method, multipliers, stratification or policy)")
        }
        if e.rules >= .two && (e.pseudonymKeyCheck == nil || e.evaluationKeyCheck == nil) {
            fail(.configHash, seq, "a rules 2 trial_started lacks its key checks (RULES2 R4)")
        }
        if let problem = config.ruleViolations(e.rules).first { fail(.configRules, seq, problem.description) }
        checkCommitments(trialID: e.trialID, commitment: e.commitment, configHash: e.configHash.hex, seq)
    }

    /// The commitment file and the revealed seed against trial_started's
    /// stored commitment (from the decoded event, or from its raw fields when
    /// it did not decode, so neither check passes unexamined).
    private mutating func checkCommitments(trialID: String, commitment: Bytes32, configHash: String?, _ seq: Int) {
        if let f = commitmentFile {
            if f.trialID != trialID || f.commitment != commitment.hex || f.configHash != configHash {
                fail(.commitmentFile, seq, "the commitment file does not match trial_started (trial_id, commitment or config_hash)")
            }
        }
        if let seed {
            if Derivation.commitment(trialID: trialID, seed: seed) != commitment {
                fail(.commitment, seq, "the seed does not match the commitment in trial_started")
            }
            count(.commitment)
        }
    }

    /// The checks a report holds for this trial: those that can apply (RULES2 R0).
    func reportedChecks() -> [Check] {
        var names: [Check] = [.chain, .configHash, .draws, .gatekeeper, .locks, .psc, .recordedAt, .links, .followUp]
        if commitmentFile != nil { names.append(.commitmentFile) }
        if rules >= .two { names += [.dates, .configRules] }
        if config.hasProviders || sawProviderEvent { names.append(.providers) }
        if seed != nil { names += [.commitment, .derivedSeeds, .lottery] }
        return names
    }

    /// Closes the audit: the results of every check, in a fixed order.
    public mutating func finish(events: Int, head: String) -> AuditReport {
        closeRun()
        if !trialSeen { fail(.chain, 1, "the log has no trial_started event") }
        if trial == nil {
            if let s = startedAs {
                checkCommitments(trialID: s.trialID, commitment: s.commitment, configHash: s.configHash, 1)
            } else {
                if commitmentFile != nil { fail(.commitmentFile, 1, "no readable trial_started to compare the commitment file with") }
                if seed != nil { fail(.commitment, 1, "no readable trial_started to compare the seed with") }
            }
        }
        let checks = reportedChecks().sorted().map { check -> CheckResult in
            if let f = failures[check] { return CheckResult(name: check.rawValue, ok: false, detail: f.detail, firstBadSeq: f.seq) }
            return CheckResult(name: check.rawValue, ok: true, detail: summary(check))
        }
        return AuditReport(events: events, head: head, checks: checks)
    }

    private func summary(_ check: Check) -> String {
        let n = counts[check, default: 0]
        switch check {
        case .chain: return "\(n) event hashes re-computed from the genesis hash"
        case .configHash: return "district-config hashes to \(configHash.hex), as trial_started records"
        case .commitmentFile: return "the commitment file matches trial_started"
        case .draws: return "\(n) allocations re-derived from their alloc_seed and block"
        case .gatekeeper: return "\(n) gatekeeper decisions follow their run's rule, date and pending set"
        case .locks: return "\(n) referrals made outside every re-referral lock"
        case .psc: return "\(n) allocations; PSC only in PSC districts"
        case .recordedAt: return "\(n) events recorded in time order"
        case .commitment: return "the seed matches the published commitment"
        case .derivedSeeds: return "\(n) allocation seeds and every block size derived from the seed"
        case .lottery: return "\(n) lottery keys derived from the seed"
        case .configRules: return "the config obeys the rules of its trial's revision"
        case .dates: return "\(n) dates inside the recruitment window"
        case .links: return "\(n) links, each reference number linked to one NINO"
        case .followUp: return "\(n) follow-ups in step order"
        case .providers: return "\(n) provider draws re-derived from their provider_seed and block"
        }
    }
}

/// A stored payload with its provider-draw fields hidden: how an allocation
/// whose provider draw is malformed is still judged as an allocation.
struct WithoutProviderDraw: PayloadSource {
    let base: PayloadFields
    func text(_ key: PayloadKey) -> String? { key.name.hasPrefix("provider") ? nil : base.text(key) }
}
