import WHPDomain
import WHPJSON
import WHPStore

extension Engine {
    /// `outcome` (PROTOCOL.md §4): the referral, or the person's latest, as its audience may see it.
    func outcome(_ target: OutcomeTarget, audience: Audience, name: String?, _ tx: inout StoreTransaction) throws -> Answer {
        let ref: Referral?
        switch target {
        case .referral(let rid): ref = try tx.referral(rid)
        case .claimant(let id): ref = try tx.referrals(person: try tx.person(of: pseudonym(id))).last
        }
        guard let ref else {
            let field = if case .referral = target { "referral_id" } else { "claimant" }
            return .error(ProtocolError(.notFound, field: field))
        }
        switch audience {
        case .claimant:
            let v = Views.claimant(ref.status)
            return .ok(.object(["referral_id": .string(ref.referralID), "status": .string(v.status), "message": .string(v.message)]))
        case .workCoach:
            let v = Views.workCoach(ref.outcome(rules), lengths: config.locks, policy: config.frontlineRCG, name: name)
            var o: JSONObject = ["referral_id": .string(ref.referralID), "status": .string(v.status)]
            if let d = v.date { o["date"] = .string(d.iso) }
            o["summary"] = .string(v.summary)
            o["outcome_text"] = .string(v.outcomeText)
            o["next_steps"] = .string(v.nextSteps)
            return .ok(.object(o))
        }
    }

    /// `eligibility` (PROTOCOL.md §5): may the person be referred on `date`?
    func eligibility(_ id: ClaimantID, on date: CivilDate, _ tx: inout StoreTransaction) throws -> Answer {
        let e = eligibility(of: try tx.referrals(person: try tx.person(of: pseudonym(id))), on: date)
        var o: JSONObject = ["eligible": .bool(e.eligible)]
        if let from = e.eligibleFrom { o["eligible_from"] = .string(from.iso) }
        return .ok(.object(o))
    }

    /// `disclose`: the true status, and a `disclosed` event every time.
    func disclose(_ rid: String, reason: String, _ c: Context, _ tx: inout StoreTransaction) throws -> Answer {
        guard let ref = try tx.referral(rid) else { return .error(ProtocolError(.notFound, field: "referral_id")) }
        try tx.append(.disclosed(Disclosed(referralID: rid, reason: reason, actor: c.actor, recordedAt: c.at)))
        return .ok(.object(["referral_id": .string(rid), "status": .string(ref.status.wireName)]))
    }

    /// `status`: the trial, and for some roles the log's length and head.
    func status(_ c: Context, _ tx: inout StoreTransaction) -> Answer {
        var o: JSONObject = [
            "protocol": .int(1), "trial_id": .string(config.trialID),
            "frontline_rcg": .string(config.frontlineRCG.rawValue),
        ]
        if c.role != .workCoach {
            o["events"] = .int(tx.head?.seq ?? 0)
            o["head"] = .string(tx.head?.hash.hex ?? "")
            o["config_hash"] = .string(configHash.hex)
        }
        return .ok(.object(o))
    }
}
