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
}

/// Re-derives a trial from its log, one event at a time, as an auditor would
/// (ALLOCATION.md §7): the chain, every draw, every gatekeeper run, every
/// lock, the PSC rule and `recorded_at`; with the seed also the commitment,
/// every derived seed and every lottery key. It holds per-referral facts, not
/// the events, so a long log streams through it.
public struct AuditVerifier {
    public let config: TrialConfig
    public let configHash: Bytes32
    public let seed: Bytes32?
    public let commitmentFile: (trialID: String, commitment: String, configHash: String)?

    private var failures: [String: (seq: Int?, detail: String)] = [:]
    private var counts = [Int](repeating: 0, count: Counted.allCases.count)
    private var previousHash: Bytes32?
    /// The seed's HMAC key schedule, computed once (nil without the seed).
    private let derivation: SeedDerivation?
    /// Reused per event: the payload being read and `E_n`.
    private var fields = PayloadFields()
    private var encoded: [UInt8] = []

    /// The checks that count what they re-derived (for the summaries).
    private enum Counted: Int, CaseIterable { case chain, recordedAt, locks, gatekeeper, lottery, psc, derivedSeeds, draws, commitment }
    private var expectedSeq = 1
    private var lastRecordedAt: Instant?
    private var trialStarted = false

    private struct Ref {
        var claimant: String, district: String, group: String, date: CivilDate, seq: Int
        var status: ReferralStatus = .awaitingGatekeeper
        var gkDate: CivilDate?
        var runID: String?
        var selectedAwaitingAllocation = false
    }
    /// Every referral once, by referral id: its position in `refs`.
    private var refIndex: [String: Int] = [:]
    private var refs: [Ref] = []
    private var byClaimant: [String: [Int]] = [:]
    private var pendingByDistrict: [String: Set<Int>] = [:]
    private var lastGkDate: [String: CivilDate] = [:]
    private var strata: [String: Stratum] = [:]

    /// `StratumState` with the open block's dealt counts inline (WHP, PSC, RCG):
    /// no dictionary to copy on every allocation.
    private struct Stratum {
        var nextIndex = 0, block = -1, blockStart = 0, blockSize = 0
        var dealt = (0, 0, 0)
        func dealtCount(_ arm: Arm) -> Int {
            switch arm { case .whp: dealt.0; case .psc: dealt.1; case .rcg: dealt.2 }
        }
        mutating func deal(_ arm: Arm) {
            switch arm { case .whp: dealt.0 += 1; case .psc: dealt.1 += 1; case .rcg: dealt.2 += 1 }
        }
    }
    private var flagged: Set<String> = []
    private var optedOut: Set<String> = []

    private struct Run {
        var id: String, district: String, gkDate: CivilDate, rule: String, capacity: Int?, firstSeq: Int
        var eligible: Set<Int>
        var decided: [(id: String, ref: Int, selected: Bool, key: Bytes32?, seq: Int)] = []
    }
    private var openRun: Run?
    private var seenRuns: Set<String> = []

    public static let checkNames = ["chain", "config_hash", "commitment_file", "draws", "gatekeeper", "locks", "psc", "recorded_at"]
    public static let seedCheckNames = ["commitment", "derived_seeds", "lottery"]

    public init(config: TrialConfig, configHash: Bytes32, seed: Bytes32?,
                commitmentFile: (trialID: String, commitment: String, configHash: String)?) {
        self.config = config; self.configHash = configHash; self.seed = seed; self.commitmentFile = commitmentFile
        derivation = seed.map { SeedDerivation(seed: $0, trialID: config.trialID) }
        encoded.reserveCapacity(1024)
    }

    private mutating func fail(_ check: String, _ seq: Int?, _ detail: String) {
        if failures[check] == nil { failures[check] = (seq, detail) }
    }

    private mutating func count(_ check: Counted) { counts[check.rawValue] += 1 }

    /// Feeds the next stored event (payload as parsed from the store or bundle;
    /// nil if it did not parse).
    public mutating func consume(seq: Int, type: String, payload: [String: String]?, storedHash: String) {
        var h = storedHash
        h.withUTF8 { hash in
            if let payload {
                fields.set(payload)
                consumeFields(seq: seq, type: type, parsed: true, storedHash: hash)
            } else {
                consumeFields(seq: seq, type: type, parsed: false, storedHash: hash)
            }
        }
    }

    /// Feeds the next stored event as its stored payload text, without
    /// building a dictionary: the same checks and results as
    /// `consume(seq:type:payload: try? PayloadJSON.decode(text), storedHash:)`.
    public mutating func consume(seq: Int, type: String, payloadText: UnsafeBufferPointer<UInt8>, storedHash: UnsafeBufferPointer<UInt8>) {
        let parsed = fields.parse(payloadText)
        consumeFields(seq: seq, type: type, parsed: parsed, storedHash: storedHash)
    }

    public mutating func consume(seq: Int, type: String, payloadText: String, storedHash: String) {
        var text = payloadText, hash = storedHash
        text.withUTF8 { t in hash.withUTF8 { consume(seq: seq, type: type, payloadText: t, storedHash: $0) } }
    }

    private mutating func consumeFields(seq: Int, type: String, parsed: Bool, storedHash: UnsafeBufferPointer<UInt8>) {
        // chain
        if seq != expectedSeq {
            fail("chain", expectedSeq, seq > expectedSeq ? "event \(expectedSeq) is missing (next stored is \(seq))" : "event \(seq) is out of order")
        }
        expectedSeq = max(expectedSeq, seq) + 1
        guard parsed else {
            fail("chain", seq, "event \(seq): payload is not a flat JSON object of strings")
            previousHash = Bytes32(hexUTF8: storedHash)
            return
        }
        let p = fields
        if seq == 1 {
            guard type == EventType.trialStarted.rawValue, let tid = p["trial_id"], let c = p.bytes32("commitment") else {
                fail("chain", 1, "event 1 is not a well-formed trial_started")
                previousHash = Bytes32(hexUTF8: storedHash)
                return
            }
            previousHash = Derivation.genesis(trialID: tid, commitment: c)
        }
        if let prev = previousHash {
            let h = chainHash(previous: prev, seq: seq, type: type, p)
            if !h.isHex(storedHash) { fail("chain", seq, "event \(seq): stored hash does not match its content and the previous hash") }
            count(.chain)
            previousHash = h
        }
        // recorded_at
        if let at = p.instant("recorded_at") {
            if let last = lastRecordedAt, at < last { fail("recorded_at", seq, "event \(seq): recorded_at \(at.iso) is before the previous event's \(last.iso)") }
            lastRecordedAt = at
            count(.recordedAt)
        } else {
            fail("recorded_at", seq, "event \(seq): recorded_at is missing or not YYYY-MM-DDTHH:MM:SSZ")
        }
        if let run = openRun, !((type == "gatekeeper_decision" || type == "allocated") && p.value("run_id", equals: run.id)) {
            closeRun()
        }
        apply(seq: seq, type: type, p)
    }

    /// `h_n = H(h_{n−1} ‖ E_n)`, with `E_n` written from the payload's bytes in key order.
    private mutating func chainHash(previous: Bytes32, seq: Int, type: String, _ p: PayloadFields) -> Bytes32 {
        encoded.removeAll(keepingCapacity: true)
        encoded.append(contentsOf: AuditVerifier.eventLabel)
        let n = UInt64(truncatingIfNeeded: seq)
        for shift in stride(from: 56, through: 0, by: -8) { encoded.append(UInt8(truncatingIfNeeded: n >> UInt64(shift))) }
        var t = type
        t.withUTF8 { u in
            ByteWriter.appendU32(UInt32(u.count), to: &encoded)
            encoded.append(contentsOf: u)
        }
        ByteWriter.appendU32(UInt32(p.count), to: &encoded)
        for i in 0..<p.count {
            p.withField(i) { k, v in
                ByteWriter.appendU32(UInt32(k.count), to: &encoded)
                encoded.append(contentsOf: k)
                ByteWriter.appendU32(UInt32(v.count), to: &encoded)
                encoded.append(contentsOf: v)
            }
        }
        return previous.withUnsafeBytes { a in encoded.withUnsafeBytes { Crypto.sha256(a, $0) } }
    }

    private static let eventLabel = ByteWriter.enc("whp/event/v1")

    private mutating func apply(seq: Int, type: String, _ p: PayloadFields) {
        switch EventType(rawValue: type) {
        case .trialStarted:
            if trialStarted { fail("chain", seq, "a second trial_started at event \(seq)"); return }
            trialStarted = true
            checkTrialStarted(p, seq)
        case .referred:
            guard let rid = p["referral_id"], let claimant = p["claimant"], let district = p["district"],
                  let group = p["group"], let date = p.date("referral_date") else {
                fail("locks", seq, "event \(seq): referred event lacks a field"); return
            }
            let existing = refIndex[rid]
            if existing != nil { fail("locks", seq, "event \(seq): referral \(rid) was already referred") }
            let history = (byClaimant[claimant] ?? []).map { ReferralOutcome(status: refs[$0].status, gkDate: refs[$0].gkDate) }
            let e = Locks.eligibility(history: history, on: date, lengths: config.locks, policy: config.frontlineRCG)
            if !e.eligible {
                fail("locks", seq, "event \(seq): referral \(rid) was accepted while the claimant \(e.pending ? "had a referral awaiting the gatekeeper" : "was inside a re-referral lock")")
            }
            count(.locks)
            if config.district(district) == nil { fail("psc", seq, "event \(seq): district \(district) is not in district-config") }
            let ref = Ref(claimant: claimant, district: district, group: group, date: date, seq: seq)
            let i: Int
            if let existing {
                i = existing
                refs[i] = ref
            } else {
                i = refs.count
                refs.append(ref)
                refIndex[rid] = i
            }
            byClaimant[claimant, default: []].append(i)
            pendingByDistrict[district, default: []].insert(i)
        case .cancelled:
            guard let rid = p["referral_id"], let i = refIndex[rid], refs[i].status == .awaitingGatekeeper else {
                fail("locks", seq, "event \(seq): cancelled a referral that was not awaiting the gatekeeper"); return
            }
            refs[i].status = .cancelled
            pendingByDistrict[refs[i].district]?.remove(i)
        case .gatekeeperDecision:
            decision(p, seq)
        case .allocated:
            allocation(p, seq)
        case .flaggedInError:
            guard let rid = p["referral_id"], let i = refIndex[rid], refs[i].gkDate != nil, !flagged.contains(rid) else {
                fail("gatekeeper", seq, "event \(seq): flag on a referral that was not decided, or flagged twice"); return
            }
            flagged.insert(rid)
        case .optedOut:
            if let c = p["claimant"], !optedOut.insert(c).inserted { fail("locks", seq, "event \(seq): claimant opted out twice") }
        case .disclosed:
            if p["referral_id"].flatMap({ refIndex[$0] }) == nil { fail("gatekeeper", seq, "event \(seq): disclosed an unknown referral") }
        case .exportMade:
            break
        case .none:
            fail("chain", seq, "event \(seq): unknown event type \(type)")
        }
    }

    private mutating func checkTrialStarted(_ p: PayloadFields, _ seq: Int) {
        if p["config_hash"] != configHash.hex {
            fail("config_hash", seq, "the trial was started with config \(p["config_hash"] ?? "?") but district-config hashes to \(configHash.hex)")
        }
        if p["trial_id"] != config.trialID || p["method"] != config.method.rawValue
            || p["block_multipliers"] != config.blockMultipliers.map(String.init).joined(separator: ",")
            || p["stratify_by_group"] != (config.stratifyByGroup ? "true" : "false")
            || p["frontline_rcg"] != config.frontlineRCG.rawValue || p["algorithm"] != "whp/v1" {
            fail("config_hash", seq, "trial_started does not match district-config (trial_id, algorithm, method, multipliers, stratification or policy)")
        }
        if let f = commitmentFile {
            if f.trialID != p["trial_id"] || f.commitment != p["commitment"] || f.configHash != p["config_hash"] {
                fail("commitment_file", seq, "the commitment file does not match trial_started (trial_id, commitment or config_hash)")
            }
        } else {
            fail("commitment_file", nil, "no commitment file (expected SEEDS/<trial_id>.commitment.json)")
        }
        if let seed {
            let c = Derivation.commitment(trialID: p["trial_id"] ?? "", seed: seed)
            if c.hex != p["commitment"] { fail("commitment", seq, "the seed does not match the commitment in trial_started") }
            count(.commitment)
        }
    }

    private mutating func decision(_ p: PayloadFields, _ seq: Int) {
        guard let runID = p["run_id"], let rid = p["referral_id"], let gk = p.date("gk_date"),
              let rule = p["rule"], let dec = p["decision"], dec == "selected" || dec == "not_selected" else {
            fail("gatekeeper", seq, "event \(seq): malformed gatekeeper_decision"); return
        }
        guard let i = refIndex[rid], refs[i].status == .awaitingGatekeeper else {
            fail("gatekeeper", seq, "event \(seq): decision on referral \(rid), which was not awaiting the gatekeeper"); return
        }
        let r = refs[i]
        if openRun?.id != runID {
            if seenRuns.contains(runID) { fail("gatekeeper", seq, "event \(seq): run \(runID) continues after other events") }
            seenRuns.insert(runID)
            if let last = lastGkDate[r.district], gk < last {
                fail("gatekeeper", seq, "event \(seq): run \(runID) is dated \(gk.iso), before the district's previous run (\(last.iso))")
            }
            let eligible = (pendingByDistrict[r.district] ?? []).filter { refs[$0].date <= gk }
            openRun = Run(id: runID, district: r.district, gkDate: gk, rule: rule, capacity: p["capacity"].flatMap { Int($0) },
                          firstSeq: seq, eligible: eligible)
            lastGkDate[r.district] = max(lastGkDate[r.district] ?? gk, gk)
        }
        guard let run = openRun, run.district == r.district, run.gkDate == gk, run.rule == rule else {
            fail("gatekeeper", seq, "event \(seq): decision does not match its run (district, gk_date, rule)"); return
        }
        if r.date > gk { fail("gatekeeper", seq, "event \(seq): referral \(rid) is dated after the gatekeeper date") }
        let key = p.bytes32("lottery_key")
        if rule == "lottery" {
            if key == nil { fail("gatekeeper", seq, "event \(seq): lottery decision without a lottery_key") }
            if let derivation, let key {
                let g = derivation.lotteryKey(runID: runID, referralID: rid)
                if g != key { fail("lottery", seq, "event \(seq): lottery_key of \(rid) is not the one the seed derives") }
                count(.lottery)
            }
        }
        openRun!.decided.append((rid, i, dec == "selected", key, seq))
        refs[i].status = dec == "selected" ? .awaitingGatekeeper : .notSelected
        refs[i].selectedAwaitingAllocation = dec == "selected"
        refs[i].gkDate = gk
        refs[i].runID = runID
        pendingByDistrict[r.district]?.remove(i)
        count(.gatekeeper)
    }

    /// Checks a finished run against its rule: a capacity run decides every
    /// eligible pending referral, selects min(capacity, n), in fifo or lottery order.
    private mutating func closeRun() {
        guard let run = openRun else { return }
        openRun = nil
        let seq = run.firstSeq
        for d in run.decided where d.selected && refs[d.ref].selectedAwaitingAllocation {
            fail("draws", d.seq, "referral \(d.id) was selected in run \(run.id) but never allocated")
        }
        guard run.rule != "manual" else { return }
        guard let district = config.district(run.district), district.gatekeeperRule.rawValue == run.rule else {
            fail("gatekeeper", seq, "run \(run.id) used rule \(run.rule), not the district's configured rule"); return
        }
        if Set(run.decided.map(\.ref)) != run.eligible {
            fail("gatekeeper", seq, "run \(run.id) did not decide exactly the district's pending referrals dated on or before \(run.gkDate.iso)")
        }
        let selected = run.decided.filter(\.selected), rejected = run.decided.filter { !$0.selected }
        if let c = run.capacity, selected.count != min(c, run.decided.count) {
            fail("gatekeeper", seq, "run \(run.id) selected \(selected.count) with capacity \(c) and \(run.decided.count) pending")
        }
        switch run.rule {
        case "fifo":
            // Order key (referral day, referred seq) packed into one comparable integer.
            func order(_ i: Int) -> Int { refs[i].date.dayNumber << 40 | refs[i].seq }
            if let worstIn = selected.map({ order($0.ref) }).max(), let bestOut = rejected.map({ order($0.ref) }).min(), bestOut < worstIn {
                fail("gatekeeper", seq, "fifo run \(run.id) passed over an older referral")
            }
        case "lottery":
            if let worstIn = selected.compactMap(\.key).max(), let bestOut = rejected.compactMap(\.key).min(), bestOut < worstIn {
                fail("gatekeeper", seq, "lottery run \(run.id) did not select the smallest lottery keys")
            }
        default:
            fail("gatekeeper", seq, "run \(run.id) has unknown rule \(run.rule)")
        }
    }

    private mutating func allocation(_ p: PayloadFields, _ seq: Int) {
        guard let rid = p["referral_id"], let i = refIndex[rid], refs[i].selectedAwaitingAllocation,
              p["run_id"] == refs[i].runID, let gk = refs[i].gkDate, p.withValue("gk_date", { gk.isISO($0) }) == true else {
            fail("draws", seq, "event \(seq): allocation without a selection in the same run"); return
        }
        let r = refs[i]
        guard let stratum = p["stratum"], let index = p.int("index"),
              let arm = p["arm"].flatMap(Arm.init(rawValue:)), let a = p.bytes32("alloc_seed") else {
            fail("draws", seq, "event \(seq): allocated event lacks stratum, index, arm or alloc_seed"); return
        }
        if !p.value("claimant", equals: r.claimant) || !p.value("district", equals: r.district) || !p.value("group", equals: r.group)
            || stratum != config.stratum(district: r.district, group: r.group) {
            fail("draws", seq, "event \(seq): allocation facts differ from the referral (claimant, district, group or stratum)")
        }
        guard let district = config.district(r.district) else { fail("psc", seq, "event \(seq): unknown district"); return }
        if arm == .psc && !district.psc { fail("psc", seq, "event \(seq): PSC allocation in \(r.district), which is not a PSC district") }
        count(.psc)
        if district.weights[arm] == 0 { fail("draws", seq, "event \(seq): arm \(arm.rawValue) has weight 0 in \(r.district)") }
        var s = strata[stratum] ?? Stratum()
        if index != s.nextIndex { fail("draws", seq, "event \(seq): index \(index) in \(stratum), expected \(s.nextIndex)") }
        if let derivation {
            let expected = derivation.allocationSeed(stratum: stratum, index: index)
            if expected != a { fail("derived_seeds", seq, "event \(seq): alloc_seed is not the one the seed derives") }
            count(.derivedSeeds)
        }
        let derivedArm: Arm?
        switch config.method {
        case .simple:
            derivedArm = Allocator.simpleArm(allocSeed: a, weights: district.weights)
        case .permutedBlock:
            guard let block = p.int("block"), let size = p.int("block_size"), let pos = p.int("position") else {
                fail("draws", seq, "event \(seq): permuted_block allocation without block, block_size or position"); return
            }
            if s.block < 0 || index >= s.blockStart + s.blockSize {
                let start = s.block < 0 ? 0 : s.blockStart + s.blockSize
                if block != s.block + 1 || pos != 0 || index != start {
                    fail("draws", seq, "event \(seq): block \(block) position \(pos) does not continue the stratum's blocks")
                }
                s.block = block; s.blockStart = index - pos; s.blockSize = size; s.dealt = (0, 0, 0)
                let w = district.weights.total
                if w == 0 || size % w != 0 || !config.blockMultipliers.contains(size / w) {
                    fail("draws", seq, "event \(seq): block size \(size) is not W × a configured multiplier")
                }
                if let derivation {
                    let k = derivation.blockSeed(stratum: stratum, block: block)
                    let expected = district.weights.total * config.blockMultipliers[Int(Uniform.draw(k, UInt64(config.blockMultipliers.count)))]
                    if expected != size { fail("derived_seeds", seq, "event \(seq): block size \(size) of block \(block) is not the one the seed derives (\(expected))") }
                }
            } else if block != s.block || size != s.blockSize || pos != index - s.blockStart {
                fail("draws", seq, "event \(seq): block facts do not continue the open block")
            }
            // Allocator.permutedBlockArm, reading the inline counts.
            let weights = district.weights, position = index - s.blockStart
            if weights.total > 0, s.blockSize % weights.total == 0, position < s.blockSize {
                let m = s.blockSize / weights.total
                let t = Uniform.draw(a, UInt64(s.blockSize - position))
                let st = s
                derivedArm = Allocator.walk(t) { weights[$0] * m - st.dealtCount($0) }
            } else {
                derivedArm = nil
            }
            s.deal(arm)
        }
        if derivedArm != arm {
            fail("draws", seq, "event \(seq): arm \(arm.rawValue) does not follow from alloc_seed and the block (expected \(derivedArm?.rawValue ?? "none"))")
        }
        count(.draws)
        s.nextIndex = index + 1
        strata[stratum] = s
        refs[i].status = .allocated(arm)
        refs[i].selectedAwaitingAllocation = false
    }

    /// Closes the audit: the results of every check, in a fixed order.
    public mutating func finish(events: Int, head: String) -> AuditReport {
        closeRun()
        if !trialStarted { fail("chain", 1, "the log has no trial_started event") }
        var names = AuditVerifier.checkNames
        if seed != nil { names += AuditVerifier.seedCheckNames }
        let checks = names.sorted().map { name -> CheckResult in
            if let f = failures[name] { return CheckResult(name: name, ok: false, detail: f.detail, firstBadSeq: f.seq) }
            return CheckResult(name: name, ok: true, detail: summary(name))
        }
        return AuditReport(events: events, head: head, checks: checks)
    }

    private func summary(_ name: String) -> String {
        let counted: [String: Counted] = ["chain": .chain, "recorded_at": .recordedAt, "locks": .locks, "gatekeeper": .gatekeeper,
                                          "lottery": .lottery, "psc": .psc, "derived_seeds": .derivedSeeds, "draws": .draws,
                                          "commitment": .commitment]
        let n = counted[name].map { counts[$0.rawValue] } ?? 0
        switch name {
        case "chain": return "\(n) event hashes re-computed from the genesis hash"
        case "config_hash": return "district-config hashes to \(configHash.hex), as trial_started records"
        case "commitment_file": return "the commitment file matches trial_started"
        case "draws": return "\(n) allocations re-derived from their alloc_seed and block"
        case "gatekeeper": return "\(n) gatekeeper decisions follow their run's rule, date and pending set"
        case "locks": return "\(n) referrals made outside every re-referral lock"
        case "psc": return "\(n) allocations; PSC only in PSC districts"
        case "recorded_at": return "\(n) events recorded in time order"
        case "commitment": return "the seed matches the published commitment"
        case "derived_seeds": return "\(n) allocation seeds and every block size derived from the seed"
        case "lottery": return "\(n) lottery keys derived from the seed"
        default: return "ok"
        }
    }
}
