@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

// The audit verifier as it was before the dictionary-free fast path (commit
// 24fa100, Sources/WHPCore/Audit.swift), kept verbatim as the reference the
// fast path must agree with, report for report. Only renamed.

/// Re-derives a trial from its log, one event at a time, as an auditor would
/// (ALLOCATION.md §7): the chain, every draw, every gatekeeper run, every
/// lock, the PSC rule and `recorded_at`; with the seed also the commitment,
/// every derived seed and every lottery key. It holds per-referral facts, not
/// the events, so a long log streams through it.
struct ReferenceAuditVerifier {
    let config: TrialConfig
    let configHash: Bytes32
    let seed: Bytes32?
    let commitmentFile: (trialID: String, commitment: String, configHash: String)?

    private var failures: [String: (seq: Int?, detail: String)] = [:]
    private var counts: [String: Int] = [:]
    private var previousHash: Bytes32?
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
    private var referrals: [String: Ref] = [:]
    private var byClaimant: [String: [String]] = [:]
    private var pendingByDistrict: [String: Set<String>] = [:]
    private var lastGkDate: [String: CivilDate] = [:]
    private var strata: [String: StratumState] = [:]
    private var flagged: Set<String> = []
    private var optedOut: Set<String> = []

    private struct Run {
        var id: String, district: String, gkDate: CivilDate, rule: String, capacity: Int?, firstSeq: Int
        var eligible: Set<String>
        var decided: [(id: String, selected: Bool, key: Bytes32?, seq: Int)] = []
    }
    private var openRun: Run?
    private var seenRuns: Set<String> = []

    static let checkNames = ["chain", "config_hash", "commitment_file", "draws", "gatekeeper", "locks", "psc", "recorded_at"]
    static let seedCheckNames = ["commitment", "derived_seeds", "lottery"]

    init(
        config: TrialConfig, configHash: Bytes32, seed: Bytes32?,
        commitmentFile: (trialID: String, commitment: String, configHash: String)?
    ) {
        self.config = config; self.configHash = configHash; self.seed = seed; self.commitmentFile = commitmentFile
    }

    private mutating func fail(_ check: String, _ seq: Int?, _ detail: String) {
        if failures[check] == nil { failures[check] = (seq, detail) }
    }

    private mutating func count(_ check: String) { counts[check, default: 0] += 1 }

    /// Feeds the next stored event (payload as parsed from the store or bundle;
    /// nil if it did not parse).
    mutating func consume(seq: Int, type: String, payload: [String: String]?, storedHash: String) {
        // chain
        if seq != expectedSeq {
            fail("chain", expectedSeq, seq > expectedSeq ? "event \(expectedSeq) is missing (next stored is \(seq))" : "event \(seq) is out of order")
        }
        expectedSeq = max(expectedSeq, seq) + 1
        guard let payload else {
            fail("chain", seq, "event \(seq): payload is not a flat JSON object of strings")
            previousHash = Bytes32(hex: storedHash)
            return
        }
        let event = Event(seq: seq, type: type, payload: payload)
        if seq == 1 {
            guard type == EventType.trialStarted.rawValue, let tid = payload["trial_id"],
                let c = payload["commitment"].flatMap(Bytes32.init(hex:))
            else {
                fail("chain", 1, "event 1 is not a well-formed trial_started")
                previousHash = Bytes32(hex: storedHash)
                return
            }
            previousHash = Derivation.genesis(trialID: tid, commitment: c)
        }
        if let prev = previousHash {
            let h = Chain.next(previous: prev, event: event)
            if h.hex != storedHash { fail("chain", seq, "event \(seq): stored hash does not match its content and the previous hash") }
            count("chain")
            previousHash = h
        }
        // recorded_at
        if let at = payload["recorded_at"].flatMap(Instant.init) {
            if let last = lastRecordedAt, at < last {
                fail("recorded_at", seq, "event \(seq): recorded_at \(at.iso) is before the previous event's \(last.iso)")
            }
            lastRecordedAt = at
            count("recorded_at")
        } else {
            fail("recorded_at", seq, "event \(seq): recorded_at is missing or not YYYY-MM-DDTHH:MM:SSZ")
        }
        if let run = openRun, !(type == "gatekeeper_decision" && payload["run_id"] == run.id) && !(type == "allocated" && payload["run_id"] == run.id) {
            closeRun()
        }
        apply(event)
    }

    private mutating func apply(_ e: Event) {
        let p = e.payload, seq = e.seq
        switch e.eventType {
        case .trialStarted:
            if trialStarted { fail("chain", seq, "a second trial_started at event \(seq)"); return }
            trialStarted = true
            checkTrialStarted(p, seq)
        case .referred:
            guard let rid = p["referral_id"], let claimant = p["claimant"], let district = p["district"],
                let group = p["group"], let date = p["referral_date"].flatMap(CivilDate.init)
            else {
                fail("locks", seq, "event \(seq): referred event lacks a field"); return
            }
            if referrals[rid] != nil { fail("locks", seq, "event \(seq): referral \(rid) was already referred") }
            let history = (byClaimant[claimant] ?? []).compactMap { referrals[$0] }.map { ReferralOutcome(status: $0.status, gkDate: $0.gkDate) }
            let e = Locks.eligibility(history: history, on: date, lengths: config.locks, policy: config.frontlineRCG)
            if !e.eligible {
                fail(
                    "locks", seq,
                    "event \(seq): referral \(rid) was accepted while the claimant \(e.pending ? "had a referral awaiting the gatekeeper" : "was inside a re-referral lock")"
                )
            }
            count("locks")
            if config.district(district) == nil { fail("psc", seq, "event \(seq): district \(district) is not in district-config") }
            referrals[rid] = Ref(claimant: claimant, district: district, group: group, date: date, seq: seq)
            byClaimant[claimant, default: []].append(rid)
            pendingByDistrict[district, default: []].insert(rid)
        case .cancelled:
            guard let rid = p["referral_id"], var r = referrals[rid], r.status == .awaitingGatekeeper else {
                fail("locks", seq, "event \(seq): cancelled a referral that was not awaiting the gatekeeper"); return
            }
            r.status = .cancelled
            referrals[rid] = r
            pendingByDistrict[r.district]?.remove(rid)
        case .gatekeeperDecision:
            decision(p, seq)
        case .allocated:
            allocation(p, seq)
        case .flaggedInError:
            guard let rid = p["referral_id"], let r = referrals[rid], r.gkDate != nil, !flagged.contains(rid) else {
                fail("gatekeeper", seq, "event \(seq): flag on a referral that was not decided, or flagged twice"); return
            }
            flagged.insert(rid)
        case .optedOut:
            if let c = p["claimant"], !optedOut.insert(c).inserted { fail("locks", seq, "event \(seq): claimant opted out twice") }
        case .disclosed:
            if p["referral_id"].flatMap({ referrals[$0] }) == nil { fail("gatekeeper", seq, "event \(seq): disclosed an unknown referral") }
        case .exportMade, .claimantLinked, .followedUp, .sharesSet:
            break
        case .none:
            fail("chain", seq, "event \(seq): unknown event type \(e.type)")
        }
    }

    private mutating func checkTrialStarted(_ p: [String: String], _ seq: Int) {
        if p["config_hash"] != configHash.hex {
            fail("config_hash", seq, "the trial was started with config \(p["config_hash"] ?? "?") but district-config hashes to \(configHash.hex)")
        }
        if p["trial_id"] != config.trialID || p["method"] != config.method.rawValue
            || p["block_multipliers"] != config.blockMultipliers.map(String.init).joined(separator: ",")
            || p["stratify_by_group"] != (config.stratifyByGroup ? "true" : "false")
            || p["frontline_rcg"] != config.frontlineRCG.rawValue || p["algorithm"] != "whp/v1"
        {
            fail("config_hash", seq, "trial_started does not match district-config (trial_id, algorithm, method, multipliers, stratification or policy)")
        }
        if let f = commitmentFile {
            if f.trialID != p["trial_id"] || f.commitment != p["commitment"] || f.configHash != p["config_hash"] {
                fail("commitment_file", seq, "the commitment file does not match trial_started (trial_id, commitment or config_hash)")
            }
        }
        if let seed {
            let c = Derivation.commitment(trialID: p["trial_id"] ?? "", seed: seed)
            if c.hex != p["commitment"] { fail("commitment", seq, "the seed does not match the commitment in trial_started") }
            count("commitment")
        }
    }

    private mutating func decision(_ p: [String: String], _ seq: Int) {
        guard let runID = p["run_id"], let rid = p["referral_id"], let gk = p["gk_date"].flatMap(CivilDate.init),
            let rule = p["rule"], let dec = p["decision"], dec == "selected" || dec == "not_selected"
        else {
            fail("gatekeeper", seq, "event \(seq): malformed gatekeeper_decision"); return
        }
        guard var r = referrals[rid], r.status == .awaitingGatekeeper else {
            fail("gatekeeper", seq, "event \(seq): decision on referral \(rid), which was not awaiting the gatekeeper"); return
        }
        if openRun?.id != runID {
            if seenRuns.contains(runID) { fail("gatekeeper", seq, "event \(seq): run \(runID) continues after other events") }
            seenRuns.insert(runID)
            if let last = lastGkDate[r.district], gk < last {
                fail("gatekeeper", seq, "event \(seq): run \(runID) is dated \(gk.iso), before the district's previous run (\(last.iso))")
            }
            let eligible = (pendingByDistrict[r.district] ?? []).filter { referrals[$0]!.date <= gk }
            openRun = Run(
                id: runID, district: r.district, gkDate: gk, rule: rule, capacity: p["capacity"].flatMap { Int($0) },
                firstSeq: seq, eligible: eligible)
            lastGkDate[r.district] = max(lastGkDate[r.district] ?? gk, gk)
        }
        guard let run = openRun, run.district == r.district, run.gkDate == gk, run.rule == rule else {
            fail("gatekeeper", seq, "event \(seq): decision does not match its run (district, gk_date, rule)"); return
        }
        if r.date > gk { fail("gatekeeper", seq, "event \(seq): referral \(rid) is dated after the gatekeeper date") }
        let key = p["lottery_key"].flatMap(Bytes32.init(hex:))
        if rule == "lottery" {
            if key == nil { fail("gatekeeper", seq, "event \(seq): lottery decision without a lottery_key") }
            if let seed, let key {
                let g = Derivation.lotteryKey(seed: seed, trialID: config.trialID, runID: runID, referralID: rid)
                if g != key { fail("lottery", seq, "event \(seq): lottery_key of \(rid) is not the one the seed derives") }
                count("lottery")
            }
        }
        openRun!.decided.append((rid, dec == "selected", key, seq))
        r.status = dec == "selected" ? .awaitingGatekeeper : .notSelected
        r.selectedAwaitingAllocation = dec == "selected"
        r.gkDate = gk
        r.runID = runID
        referrals[rid] = r
        pendingByDistrict[r.district]?.remove(rid)
        count("gatekeeper")
    }

    /// Checks a finished run against its rule: a capacity run decides every
    /// eligible pending referral, selects min(capacity, n), in fifo or lottery order.
    private mutating func closeRun() {
        guard let run = openRun else { return }
        openRun = nil
        let seq = run.firstSeq
        for d in run.decided where d.selected && referrals[d.id]?.selectedAwaitingAllocation == true {
            fail("draws", d.seq, "referral \(d.id) was selected in run \(run.id) but never allocated")
        }
        guard run.rule != "manual" else { return }
        guard let district = config.district(run.district), district.gatekeeperRule.rawValue == run.rule else {
            fail("gatekeeper", seq, "run \(run.id) used rule \(run.rule), not the district's configured rule"); return
        }
        if Set(run.decided.map(\.id)) != run.eligible {
            fail("gatekeeper", seq, "run \(run.id) did not decide exactly the district's pending referrals dated on or before \(run.gkDate.iso)")
        }
        let selected = run.decided.filter(\.selected), rejected = run.decided.filter { !$0.selected }
        if let c = run.capacity, selected.count != min(c, run.decided.count) {
            fail("gatekeeper", seq, "run \(run.id) selected \(selected.count) with capacity \(c) and \(run.decided.count) pending")
        }
        switch run.rule {
        case "fifo":
            // Order key (referral day, referred seq) packed into one comparable integer.
            func order(_ id: String) -> Int { referrals[id]!.date.dayNumber << 40 | referrals[id]!.seq }
            if let worstIn = selected.map({ order($0.id) }).max(), let bestOut = rejected.map({ order($0.id) }).min(), bestOut < worstIn {
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

    private mutating func allocation(_ p: [String: String], _ seq: Int) {
        guard let rid = p["referral_id"], var r = referrals[rid], r.selectedAwaitingAllocation,
            p["run_id"] == r.runID, p["gk_date"] == r.gkDate?.iso
        else {
            fail("draws", seq, "event \(seq): allocation without a selection in the same run"); return
        }
        guard let stratum = p["stratum"], let index = p["index"].flatMap({ Int($0) }),
            let arm = p["arm"].flatMap(Arm.init(rawValue:)), let a = p["alloc_seed"].flatMap(Bytes32.init(hex:))
        else {
            fail("draws", seq, "event \(seq): allocated event lacks stratum, index, arm or alloc_seed"); return
        }
        if p["claimant"] != r.claimant || p["district"] != r.district || p["group"] != r.group
            || stratum != config.stratum(district: r.district, group: r.group)
        {
            fail("draws", seq, "event \(seq): allocation facts differ from the referral (claimant, district, group or stratum)")
        }
        guard let district = config.district(r.district) else { fail("psc", seq, "event \(seq): unknown district"); return }
        if arm == .psc && !district.psc { fail("psc", seq, "event \(seq): PSC allocation in \(r.district), which is not a PSC district") }
        count("psc")
        if district.weights[arm] == 0 { fail("draws", seq, "event \(seq): arm \(arm.rawValue) has weight 0 in \(r.district)") }
        var s = strata[stratum] ?? StratumState()
        if index != s.nextIndex { fail("draws", seq, "event \(seq): index \(index) in \(stratum), expected \(s.nextIndex)") }
        if let seed {
            let expected = Derivation.allocationSeed(seed: seed, trialID: config.trialID, stratum: stratum, index: index)
            if expected != a { fail("derived_seeds", seq, "event \(seq): alloc_seed is not the one the seed derives") }
            count("derived_seeds")
        }
        let derivedArm: Arm?
        switch config.method {
        case .simple:
            derivedArm = Allocator.simpleArm(allocSeed: a, weights: district.weights)
        case .permutedBlock:
            guard let block = p["block"].flatMap({ Int($0) }), let size = p["block_size"].flatMap({ Int($0) }),
                let pos = p["position"].flatMap({ Int($0) })
            else {
                fail("draws", seq, "event \(seq): permuted_block allocation without block, block_size or position"); return
            }
            if s.block < 0 || index >= s.blockStart + s.blockSize {
                let start = s.block < 0 ? 0 : s.blockStart + s.blockSize
                if block != s.block + 1 || pos != 0 || index != start {
                    fail("draws", seq, "event \(seq): block \(block) position \(pos) does not continue the stratum's blocks")
                }
                s.block = block; s.blockStart = index - pos; s.blockSize = size; s.dealt = ArmCounts()
                let w = district.weights.total
                if w == 0 || size % w != 0 || !config.blockMultipliers.contains(size / w) {
                    fail("draws", seq, "event \(seq): block size \(size) is not W × a configured multiplier")
                }
                if let seed {
                    let expected = Allocator.blockSize(
                        seed: seed, trialID: config.trialID, stratum: stratum, block: block,
                        weights: district.weights, multipliers: config.blockMultipliers)
                    if expected != size {
                        fail("derived_seeds", seq, "event \(seq): block size \(size) of block \(block) is not the one the seed derives (\(expected))")
                    }
                }
            } else if block != s.block || size != s.blockSize || pos != index - s.blockStart {
                fail("draws", seq, "event \(seq): block facts do not continue the open block")
            }
            derivedArm = Allocator.permutedBlockArm(
                allocSeed: a, weights: district.weights, blockSize: s.blockSize,
                position: index - s.blockStart, dealt: s.dealt)
            s.dealt[arm] += 1
        }
        if derivedArm != arm {
            fail("draws", seq, "event \(seq): arm \(arm.rawValue) does not follow from alloc_seed and the block (expected \(derivedArm?.rawValue ?? "none"))")
        }
        count("draws")
        s.nextIndex = index + 1
        strata[stratum] = s
        r.status = .allocated(arm)
        r.selectedAwaitingAllocation = false
        referrals[rid] = r
    }

    /// Closes the audit: the results of every check, in a fixed order.
    mutating func finish(events: Int, head: String) -> AuditReport {
        closeRun()
        if !trialStarted { fail("chain", 1, "the log has no trial_started event") }
        // RULES2 R10: without a published file the check is left out, not failed.
        var names = ReferenceAuditVerifier.checkNames.filter { $0 != "commitment_file" || commitmentFile != nil }
        if seed != nil { names += ReferenceAuditVerifier.seedCheckNames }
        let checks = names.sorted().map { name -> CheckResult in
            if let f = failures[name] { return CheckResult(name: name, ok: false, detail: f.detail, firstBadSeq: f.seq) }
            return CheckResult(name: name, ok: true, detail: summary(name))
        }
        return AuditReport(events: events, head: head, checks: checks)
    }

    private func summary(_ name: String) -> String {
        let n = counts[name, default: 0]
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
