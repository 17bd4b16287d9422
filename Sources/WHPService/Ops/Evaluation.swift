import WHPDomain
import WHPJSON
import WHPStore

extension Engine {
    /// `opt_out`: the person leaves the evaluation (not their locks); a repeat appends nothing.
    func optOut(_ id: ClaimantID, date: CivilDate, _ c: Context, _ tx: inout StoreTransaction) throws -> Answer {
        let claimant = pseudonym(id)
        if try tx.isOptedOut(person: try tx.person(of: claimant)) {
            return .ok(.object(["opted_out": .bool(true), "already": .bool(true)]))
        }
        try tx.append(.optedOut(OptedOut(claimant: claimant, date: date, actor: c.actor, recordedAt: c.at)))
        return .ok(.object(["opted_out": .bool(true), "already": .bool(false)]))
    }

    /// `flag_error`: the allocation keeps its arm and its lock; the flag is for evaluators.
    /// RULES2 R14: `corrected_group` records the group a `wrong_group`
    /// referral should have had; the arm, the stratum and the lock stay.
    func flagError(_ rid: String, reason: FlagReason, correctedGroup: String?, _ c: Context, _ tx: inout StoreTransaction) throws -> Answer {
        guard let ref = try tx.referral(rid) else { return .error(ProtocolError(.notFound, field: "referral_id")) }
        if let flag = ref.flag {
            return flag == reason && ref.correctedGroup == correctedGroup
                ? .ok(Self.flagged(rid, flag)) : .error(ProtocolError(.conflict, field: "reason"))
        }
        let event = TrialEvent.flaggedInError(
            FlaggedInError(referralID: rid, reason: reason, correctedGroup: correctedGroup, actor: c.actor, recordedAt: c.at))
        guard ref.state.after(event) != nil else { return .error(ProtocolError(.wrongState, field: "referral_id")) }
        try tx.append(event)
        return .ok(Self.flagged(rid, reason))
    }

    static func flagged(_ rid: String, _ reason: FlagReason) -> JSONValue {
        .object(["referral_id": .string(rid), "flagged": .string(reason.rawValue)])
    }
}
