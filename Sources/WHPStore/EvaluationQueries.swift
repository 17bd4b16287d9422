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

/// A referral that may be waiting for a follow-up event (RULES2 R14).
public struct OpenReferral: Sendable, Equatable {
    public var referral: Referral
    /// The `provider_referral` step's date, if recorded.
    public var providerReferralDate: CivilDate?
    /// Whether `started` or `did_not_start` is recorded.
    public var startRecorded: Bool
}

extension StoreTransaction {
    /// Every referral awaiting the gatekeeper or allocated WHP or PSC, in
    /// referral order, with its follow-up so far: what the overdue counts read.
    public func forEachOpenReferral(_ body: (OpenReferral) throws -> Void) throws {
        try s.stream(
            """
            SELECT \(ReferralSQL.columns),
                   (SELECT f.date FROM follow_ups f WHERE f.step_key = referrals.referral_id || '|provider_referral'),
                   (SELECT COUNT(*) FROM follow_ups f
                     WHERE f.step_key = referrals.referral_id || '|started' OR f.step_key = referrals.referral_id || '|did_not_start')
            FROM referrals
            WHERE status IN ('awaiting_gatekeeper', 'selected', 'allocated_whp', 'allocated_psc')
            ORDER BY referred_seq
            """, []
        ) { r in
            try body(
                OpenReferral(
                    referral: try StoreTransaction.referral(r), providerReferralDate: r.text(19).flatMap(CivilDate.init),
                    startRecorded: (r.int(20) ?? 0) > 0))
        }
    }
}
