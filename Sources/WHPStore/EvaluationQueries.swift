import WHPCrypto
import WHPDomain

/// One referral as the balance report reads it.
public struct DecisionRecord: Sendable, Equatable {
    public var district: String
    public var group: String
    public var referralDate: CivilDate
    public var status: ReferralStatus
    /// Any identifier of the person opted out (RULES2 R6).
    public var optedOut: Bool
}

extension StoreTransaction {
    /// Every referral in `referred` order, with whether its person opted out:
    /// the balance report's input (its order checks need referral order).
    public func forEachDecisionRecord(_ body: (DecisionRecord) throws -> Void) throws {
        try s.stream(
            """
            SELECT r.district, r.grp, r.referral_date, r.status,
                   CASE WHEN EXISTS (SELECT 1 FROM opt_outs o WHERE o.claimant = r.person)
                          OR EXISTS (SELECT 1 FROM opt_outs o JOIN links l ON l.alias = o.claimant WHERE l.claimant = r.person)
                        THEN 1 ELSE 0 END AS opted
            FROM referrals r
            ORDER BY r.referred_seq
            """, []
        ) { r in
            guard let date = CivilDate(r.text(2) ?? ""), let state = r.text(3).flatMap(ReferralState.init(storedName:)) else {
                throw StoreError("referral with a malformed stored row: run `whp verify`")
            }
            try body(DecisionRecord(district: r.text(0) ?? "", group: r.text(1) ?? "", referralDate: date, status: state.status, optedOut: r.int(4) == 1))
        }
    }

}
