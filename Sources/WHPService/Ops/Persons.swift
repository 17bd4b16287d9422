import WHPDomain
import WHPJSON
import WHPStore

extension Engine {
    /// `link_claimant` (RULES2 R6): a NINO and a DCAMS reference number are one
    /// person from now on. Checks, in order: a repeat of the same pair appends
    /// nothing; a reference number already linked to another NINO is
    /// `conflict`; a link that would give the person two referrals awaiting
    /// the gatekeeper is `duplicate_referral`.
    func link(nino: ClaimantID, ref: ClaimantID, _ c: Context, _ tx: inout StoreTransaction) throws -> Answer {
        let claimant = pseudonym(nino), alias = pseudonym(ref)
        if let linked = try tx.linkedClaimant(alias: alias) {
            if linked == claimant { return .ok(.object(["linked": .bool(true), "already": .bool(true)])) }
            return .error(ProtocolError(.conflict, field: "ref"))
        }
        let pending = try tx.referrals(person: claimant) + (try tx.referrals(person: alias))
        if pending.filter({ $0.status == .awaitingGatekeeper }).count > 1 {
            return .error(ProtocolError(.duplicateReferral, field: "ref"))
        }
        try tx.append(.claimantLinked(ClaimantLinked(claimant: claimant, alias: alias, actor: c.actor, recordedAt: c.at)))
        return .ok(.object(["linked": .bool(true), "already": .bool(false)]))
    }
}
