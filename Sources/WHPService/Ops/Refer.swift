import WHPDomain
import WHPJSON
import WHPStore

extension Engine {
    /// `refer` (PROTOCOL.md §3): a new referral, if the person may be referred on its date.
    func refer(
        _ rid: String, claimant id: ClaimantID, district: String, group: String, date: CivilDate,
        _ c: Context, _ tx: inout StoreTransaction
    ) throws -> Answer {
        let claimant = pseudonym(id)
        let person = try tx.person(of: claimant)
        let (existing, history) = try tx.referralAndHistory(rid, person: person)
        if let existing {
            // Idempotency compares the identifier as sent (RULES2 R6), not the person.
            let same =
                existing.claimant == claimant && existing.district == district && existing.group == group
                && existing.referralDate == date
            if same { return .ok(Self.awaiting(rid)) }
            if let deferred = c.deferred { return .error(deferred) }
            return .error(ProtocolError(.conflict, field: "referral_id"))
        }
        if let deferred = c.deferred { return .error(deferred) }
        let e = eligibility(of: history, on: date)
        if e.pending { return .error(ProtocolError(.duplicateReferral, field: "claimant")) }
        if !e.eligible { return .error(ProtocolError(.notEligible, field: "claimant")) }
        try tx.append(
            .referred(
                Referred(
                    referralID: rid, claimant: claimant, district: district, group: group,
                    referralDate: date, actor: c.actor, recordedAt: c.at)))
        return .ok(Self.awaiting(rid))
    }

    static func awaiting(_ rid: String) -> JSONValue {
        .object(["referral_id": .string(rid), "status": .string(ReferralState.awaitingGatekeeper.storedName)])
    }

    /// `cancel`: only while the referral awaits the gatekeeper.
    func cancel(_ rid: String, reason: String, _ c: Context, _ tx: inout StoreTransaction) throws -> Answer {
        guard let ref = try tx.referral(rid) else { return .error(ProtocolError(.notFound, field: "referral_id")) }
        if ref.state == .cancelled {
            return ref.cancelReason == reason ? .ok(Self.cancelled(rid)) : .error(ProtocolError(.conflict, field: "referral_id"))
        }
        let event = TrialEvent.cancelled(Cancelled(referralID: rid, reason: reason, actor: c.actor, recordedAt: c.at))
        guard ref.state.after(event) != nil else { return .error(ProtocolError(.wrongState, field: "referral_id")) }
        try tx.append(event)
        return .ok(Self.cancelled(rid))
    }

    static func cancelled(_ rid: String) -> JSONValue {
        .object(["referral_id": .string(rid), "status": .string(ReferralState.cancelled.storedName)])
    }
}
