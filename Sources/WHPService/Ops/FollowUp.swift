import WHPDomain
import WHPJSON
import WHPStore

extension Engine {
    /// `follow_up` (RULES2 R14): the steps after an allocation to WHP or PSC.
    /// Keyed by (op, referral_id, step). A referral that is not a WHP or PSC
    /// allocation gets one answer whatever it is (`wrong_state` on
    /// `referral_id`), so an RCG referral answers exactly as a not-selected one.
    func followUp(
        _ rid: String, step: FollowUpStep, date: CivilDate, reason: String?,
        _ c: Context, _ tx: inout StoreTransaction
    ) throws -> Answer {
        let ref = try tx.referral(rid)
        let done = try ref.map { try tx.followUps(referral: $0.referralID) } ?? []
        if let earlier = done.first(where: { $0.step == step }), earlier.date == date, earlier.reason == reason {
            return .ok(Self.followedUp(rid, step, date))
        }
        if let deferred = c.deferred { return .error(deferred) }
        guard let ref else { return .error(ProtocolError(.notFound, field: "referral_id")) }
        if done.contains(where: { $0.step == step }) { return .error(ProtocolError(.conflict, field: "step")) }
        guard ref.status == .allocated(.whp) || ref.status == .allocated(.psc) else {
            return .error(ProtocolError(.wrongState, field: "referral_id"))
        }
        guard let previous = FollowUpOrder.previous(of: step, after: done.map(\.step)) else {
            return .error(ProtocolError(.wrongState, field: "step"))
        }
        let notBefore = previous.flatMap { p in done.first { $0.step == p }?.date } ?? ref.decidedOn
        if let notBefore, date < notBefore { return .error(ProtocolError(.wrongState, field: "date")) }
        try tx.append(.followedUp(FollowedUp(referralID: rid, step: step, date: date, reason: reason, actor: c.actor, recordedAt: c.at)))
        return .ok(Self.followedUp(rid, step, date))
    }

    static func followedUp(_ rid: String, _ step: FollowUpStep, _ date: CivilDate) -> JSONValue {
        .object(["referral_id": .string(rid), "step": .string(step.rawValue), "date": .string(date.iso)])
    }
}
