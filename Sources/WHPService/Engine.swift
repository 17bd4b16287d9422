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
/// (idempotency, locks, gatekeeper runs, allocation) is applied here, and
/// every change is an event appended in the caller's transaction.
public struct Engine: Sendable {
    public let config: TrialConfig
    public let configHash: Bytes32
    public let keys: ServiceKeys

    let pseudonyms: Derivation.PseudonymKey

    public init(config: TrialConfig, configHash: Bytes32, keys: ServiceKeys) {
        self.config = config; self.configHash = configHash; self.keys = keys
        pseudonyms = Derivation.PseudonymKey(keys.pseudonym)
    }

    func pseudonym(_ c: ClaimantID) -> String { pseudonyms.pseudonym(c).hex }

    /// Executes one request. State errors are answers; a thrown error is a
    /// store fault and fails the whole group.
    public func execute(_ r: Request, _ tx: inout StoreTransaction, now: Instant) throws -> Answer {
        let at = tx.recordedAt(now).iso
        let actor = r.actor.recorded
        switch r.command {
        case let .refer(rid, claimantID, district, group, date):
            let claimant = pseudonym(claimantID)
            let (existing, records) = try tx.referralAndHistory(rid, claimant: claimant)
            if let existing {
                let same = existing.claimant == claimant && existing.district == district && existing.group == group
                    && existing.referralDate == date.iso
                return same ? .ok(.object(["referral_id": .string(rid), "status": .string("awaiting_gatekeeper")]))
                            : .error(ProtocolError(.conflict, field: "referral_id"))
            }
            let history = records.map(\.outcome)
            let e = Locks.eligibility(history: history, on: date, lengths: config.locks, policy: config.frontlineRCG)
            if e.pending { return .error(ProtocolError(.duplicateReferral, field: "claimant")) }
            if !e.eligible { return .error(ProtocolError(.notEligible, field: "claimant")) }
            try tx.append(.referred, ["referral_id": rid, "claimant": claimant, "district": district, "group": group,
                                      "referral_date": date.iso, "actor": actor, "recorded_at": at],
                          claimantReferralNumber: records.count + 1)
            return .ok(.object(["referral_id": .string(rid), "status": .string("awaiting_gatekeeper")]))

        case let .cancel(rid, reason):
            guard let ref = try tx.referral(rid) else { return .error(ProtocolError(.notFound, field: "referral_id")) }
            if ref.status == "cancelled" {
                return ref.cancelReason == reason ? .ok(cancelled(rid)) : .error(ProtocolError(.conflict, field: "referral_id"))
            }
            guard ref.status == "awaiting_gatekeeper" else { return .error(ProtocolError(.wrongState, field: "referral_id")) }
            try tx.append(.cancelled, ["referral_id": rid, "reason": reason, "actor": actor, "recorded_at": at])
            return .ok(cancelled(rid))

        case let .pending(district, gkDate):
            let list = try tx.pending(district: district, upTo: gkDate.iso).map { p -> JSONValue in
                .object(["referral_id": .string(p.referralID), "group": .string(p.group), "referral_date": .string(p.referralDate)])
            }
            return .ok(.object(["district": .string(district), "referrals": .array(list)]))

        case let .gatekeep(runID, district, gkDate, selection):
            return try gatekeep(runID: runID, district: district, gkDate: gkDate, selection: selection,
                                actor: actor, at: at, &tx)

        case let .outcome(target, audience, name):
            let ref: ReferralRecord?
            switch target {
            case .referral(let rid): ref = try tx.referral(rid)
            case .claimant(let c): ref = try tx.referrals(claimant: pseudonym(c)).last
            }
            guard let ref else {
                let field = if case .referral = target { "referral_id" } else { "claimant" }
                return .error(ProtocolError(.notFound, field: field))
            }
            switch audience {
            case .claimant:
                let v = Views.claimant(ref.trueStatus)
                return .ok(.object(["referral_id": .string(ref.referralID), "status": .string(v.status), "message": .string(v.message)]))
            case .workCoach:
                let v = Views.workCoach(ref.outcome, lengths: config.locks, policy: config.frontlineRCG, name: name)
                var o: JSONObject = ["referral_id": .string(ref.referralID), "status": .string(v.status)]
                if let d = v.date { o["date"] = .string(d.iso) }
                o["summary"] = .string(v.summary)
                o["outcome_text"] = .string(v.outcomeText)
                o["next_steps"] = .string(v.nextSteps)
                return .ok(.object(o))
            }

        case let .eligibility(claimantID, date):
            let history = try tx.referrals(claimant: pseudonym(claimantID)).map(\.outcome)
            let e = Locks.eligibility(history: history, on: date, lengths: config.locks, policy: config.frontlineRCG)
            var o: JSONObject = ["eligible": .bool(e.eligible)]
            if let from = e.eligibleFrom { o["eligible_from"] = .string(from.iso) }
            return .ok(.object(o))

        case let .disclose(rid, reason):
            guard let ref = try tx.referral(rid) else { return .error(ProtocolError(.notFound, field: "referral_id")) }
            try tx.append(.disclosed, ["referral_id": rid, "reason": reason, "actor": actor, "recorded_at": at])
            return .ok(.object(["referral_id": .string(rid), "status": .string(ref.trueStatus.wireName)]))

        case let .optOut(claimantID, date):
            let claimant = pseudonym(claimantID)
            if try tx.isOptedOut(claimant: claimant) {
                return .ok(.object(["opted_out": .bool(true), "already": .bool(true)]))
            }
            try tx.append(.optedOut, ["claimant": claimant, "date": date.iso, "actor": actor, "recorded_at": at])
            return .ok(.object(["opted_out": .bool(true), "already": .bool(false)]))

        case let .flagError(rid, reason):
            guard let ref = try tx.referral(rid) else { return .error(ProtocolError(.notFound, field: "referral_id")) }
            if let flag = ref.flag {
                return flag == reason.rawValue ? .ok(flagged(rid, flag)) : .error(ProtocolError(.conflict, field: "reason"))
            }
            guard ref.gkDate != nil else { return .error(ProtocolError(.wrongState, field: "referral_id")) }
            try tx.append(.flaggedInError, ["referral_id": rid, "reason": reason.rawValue, "actor": actor, "recorded_at": at])
            return .ok(flagged(rid, reason.rawValue))

        case .status:
            var o: JSONObject = ["protocol": .int(1), "trial_id": .string(config.trialID),
                                "frontline_rcg": .string(config.frontlineRCG.rawValue)]
            if r.actor.role != .workCoach {
                o["events"] = .int(tx.head?.seq ?? 0)
                o["head"] = .string(tx.head?.hash.hex ?? "")
                o["config_hash"] = .string(configHash.hex)
            }
            return .ok(.object(o))
        }
    }

    private func cancelled(_ rid: String) -> JSONValue { .object(["referral_id": .string(rid), "status": .string("cancelled")]) }
    private func flagged(_ rid: String, _ reason: String) -> JSONValue { .object(["referral_id": .string(rid), "flagged": .string(reason)]) }

    private func runAnswer(_ runID: String, district: String, gkDate: String, _ decided: [ReferralRecord]) -> JSONValue {
        let selected = decided.filter { $0.status != "not_selected" }.map { JSONValue.string($0.referralID) }
        let notSelected = decided.filter { $0.status == "not_selected" }.map { JSONValue.string($0.referralID) }
        return .object(["run_id": .string(runID), "district": .string(district), "gk_date": .string(gkDate),
                        "selected": .array(selected), "not_selected": .array(notSelected)])
    }

    /// A gatekeeper run: decide, then allocate every selected referral, all in
    /// the caller's commit (PROTOCOL.md §3, "Gatekeeper runs").
    private func gatekeep(runID: String, district: String, gkDate: CivilDate, selection: GatekeeperSelectionInput,
                          actor: String, at: String, _ tx: inout StoreTransaction) throws -> Answer {
        // Idempotency: the same run again gets its first answer.
        if let run = try tx.run(runID) {
            let decided = try tx.referrals(run: runID)
            var same = run.district == district && run.gkDate == gkDate.iso
            switch selection {
            case .capacity(let c): same = same && run.rule != "manual" && run.capacity == c
            case .decisions(let list):
                let asked = Set(list.map { "\($0.0)|\($0.1)" })
                let had = Set(decided.map { "\($0.referralID)|\($0.status != "not_selected")" })
                same = same && run.rule == "manual" && asked == had
            }
            return same ? .ok(runAnswer(runID, district: district, gkDate: gkDate.iso, decided))
                        : .error(ProtocolError(.conflict, field: "run_id"))
        }
        if let last = try tx.lastGatekeeperDate(district: district), gkDate.iso < last {
            return .error(ProtocolError(.invalidField, field: "gk_date"))
        }
        guard let d = config.district(district) else { return .error(ProtocolError(.unknownDistrict, field: "district")) }

        // Decide: (referral, selected?, lottery key) in referred order.
        var decisions: [(ReferralRecord, Bool, Bytes32?)] = []
        let rule: String
        var capacity: Int?
        switch selection {
        case .capacity(let c):
            capacity = c
            rule = d.gatekeeperRule.rawValue
            let pending = try tx.pending(district: district, upTo: gkDate.iso)
            guard !pending.isEmpty else { return .error(ProtocolError(.wrongState, field: "district")) }
            let candidates = pending.map { PendingReferral(referralID: $0.referralID, referralDate: CivilDate($0.referralDate)!, referredSeq: $0.referredSeq) }
            let (chosen, keys) = GatekeeperSelection.select(candidates, capacity: c, rule: d.gatekeeperRule) { rid in
                Derivation.lotteryKey(seed: self.keys.seed, trialID: self.config.trialID, runID: runID, referralID: rid)
            }
            decisions = pending.map { ($0, chosen.contains($0.referralID), keys[$0.referralID]) }
        case .decisions(let list):
            rule = "manual"
            for (n, (rid, selected)) in list.enumerated() {
                let field = "decisions.\(n).referral_id"
                guard let ref = try tx.referral(rid) else { return .error(ProtocolError(.notFound, field: field)) }
                guard ref.district == district, ref.referralDate <= gkDate.iso else {
                    return .error(ProtocolError(.invalidField, field: field))
                }
                guard ref.status == "awaiting_gatekeeper" else { return .error(ProtocolError(.wrongState, field: field)) }
                decisions.append((ref, selected, nil))
            }
            decisions.sort { $0.0.referredSeq < $1.0.referredSeq }
        }

        for (ref, selected, key) in decisions {
            var p = ["run_id": runID, "referral_id": ref.referralID, "decision": selected ? "selected" : "not_selected",
                     "gk_date": gkDate.iso, "rule": rule, "actor": actor, "recorded_at": at]
            if let key { p["lottery_key"] = key.hex }
            if let capacity { p["capacity"] = String(capacity) }
            try tx.append(.gatekeeperDecision, p)
        }
        for (ref, selected, _) in decisions where selected {
            let stratum = config.stratum(district: district, group: ref.group)
            let (draw, _) = Allocator.next(state: try tx.stratum(stratum), seed: keys.seed, trialID: config.trialID,
                                           stratum: stratum, weights: d.weights, method: config.method,
                                           multipliers: config.blockMultipliers)
            var p = ["referral_id": ref.referralID, "claimant": ref.claimant, "district": district, "group": ref.group,
                     "stratum": stratum, "index": String(draw.index), "arm": draw.arm.rawValue,
                     "alloc_seed": draw.allocSeed.hex, "gk_date": gkDate.iso, "run_id": runID, "recorded_at": at]
            if let b = draw.block, let s = draw.blockSize, let pos = draw.position {
                p["block"] = String(b); p["block_size"] = String(s); p["position"] = String(pos)
            }
            try tx.append(.allocated, p)
        }
        let answer = decisions.map { ($0.0.referralID, $0.1) }
        return .ok(.object(["run_id": .string(runID), "district": .string(district), "gk_date": .string(gkDate.iso),
                            "selected": .array(answer.filter { $0.1 }.map { .string($0.0) }),
                            "not_selected": .array(answer.filter { !$0.1 }.map { .string($0.0) })]))
    }
}
