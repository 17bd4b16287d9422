import WHPDomain

extension StoreTransaction {
    /// What `report overdue` reads (RULES2 R14): every referral that may wait
    /// for a step, with the steps it has, streamed.
    public func forEachOverdueCandidate(_ body: (Overdue.Facts) throws -> Void) throws {
        try s.stream(
            """
            SELECT r.referral_id, r.district, r.status, r.referral_date, r.gk_date, r.decided_on,
                   (SELECT date FROM follow_ups f WHERE f.step_key = r.referral_id || '|provider_referral'),
                   CASE WHEN EXISTS (SELECT 1 FROM follow_ups f WHERE f.step_key IN (r.referral_id || '|started', r.referral_id || '|did_not_start'))
                        THEN 1 ELSE 0 END
            FROM referrals r
            WHERE r.status IN ('awaiting_gatekeeper', 'allocated_whp', 'allocated_psc')
            ORDER BY r.referred_seq
            """, []
        ) { r in
            guard let state = r.text(2).flatMap(ReferralState.init(storedName:)), let date = r.text(3).flatMap(CivilDate.init) else {
                throw StoreError("referral with a malformed stored row: run `whp verify`")
            }
            try body(
                Overdue.Facts(
                    referralID: r.text(0) ?? "", district: r.text(1) ?? "", status: state.status, referralDate: date,
                    gkDate: r.text(4).flatMap(CivilDate.init), decidedOn: r.text(5).flatMap(CivilDate.init),
                    providerReferral: r.text(6).flatMap(CivilDate.init), startRecorded: r.int(7) == 1))
        }
    }
}
