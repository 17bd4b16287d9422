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
            let v = Views.claimant(ref.status, provider: providerName(ref))
            return .ok(.object(["referral_id": .string(ref.referralID), "status": .string(v.status), "message": .string(v.message)]))
        case .workCoach:
            let v = Views.workCoach(
                ref.outcome(rules), lengths: config.locks, policy: config.frontlineRCG, name: name,
                provider: providerName(ref))
            var o: JSONObject = ["referral_id": .string(ref.referralID), "status": .string(v.status)]
            if let d = v.date { o["date"] = .string(d.iso) }
            o["summary"] = .string(v.summary)
            o["outcome_text"] = .string(v.outcomeText)
            o["next_steps"] = .string(v.nextSteps)
            // RULES2 R14, R15: a place (WHP or PSC) always shows its progress, and its provider.
            if ref.status == .allocated(.whp) || ref.status == .allocated(.psc) {
                if let id = ref.provider, let p = config.district(ref.district)?.provider(id) {
                    o["provider"] = .object(["id": .string(p.id), "name": .string(p.name)])
                }
                o["progress"] = .array(
                    try tx.followUps(referral: ref.referralID).map { step in
                        var s: JSONObject = ["step": .string(step.step.rawValue), "date": .string(step.date.iso)]
                        if let r = step.reason { s["reason"] = .string(r) }
                        return .object(s)
                    })
            }
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
    /// Under `hidden` on a rules 2 trial only `evaluation_admin` sees them
    /// (RULES2 R3): the event count after a gatekeeper's own run would say how
    /// the run went.
    func status(_ c: Context, _ tx: inout StoreTransaction) -> Answer {
        var o: JSONObject = [
            "protocol": .int(1), "trial_id": .string(config.trialID),
            "frontline_rcg": .string(config.frontlineRCG.rawValue),
        ]
        let seesLog =
            rules >= .two && config.frontlineRCG == .hidden
            ? c.role == .evaluationAdmin
            : c.role == .gatekeeper || c.role == .evaluationAdmin
        if seesLog {
            o["events"] = .int(tx.head?.seq ?? 0)
            o["head"] = .string(tx.head?.hash.hex ?? "")
            o["config_hash"] = .string(configHash.hex)
        }
        return .ok(.object(o))
    }
}

extension Engine {
    /// The name of a WHP/PSC referral's provider, if it drew one.
    func providerName(_ ref: Referral) -> String? {
        guard ref.status == .allocated(.whp) || ref.status == .allocated(.psc), let id = ref.provider else { return nil }
        return config.district(ref.district)?.provider(id)?.name
    }
}
