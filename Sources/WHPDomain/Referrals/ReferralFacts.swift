import WHPCrypto

/// The facts of one referral that the evaluation reads, from the store.
public struct ReferralFacts: Sendable {
    public var claimant: Pseudonym
    public var district: String
    public var group: String
    public var referralDate: CivilDate
    public var status: ReferralStatus
    public var gkDate: CivilDate?
    public var rule: String?
    public var flag: String?
    /// 1 for the claimant's first referral in the trial (cancelled ones count), 2 for the second, …
    public var claimantReferralNumber: Int
    public var optedOut: Bool

    public init(
        claimant: Pseudonym, district: String, group: String, referralDate: CivilDate, status: ReferralStatus,
        gkDate: CivilDate?, rule: String?, flag: String?, claimantReferralNumber: Int, optedOut: Bool
    ) {
        self.claimant = claimant; self.district = district; self.group = group; self.referralDate = referralDate
        self.status = status; self.gkDate = gkDate; self.rule = rule; self.flag = flag
        self.claimantReferralNumber = claimantReferralNumber; self.optedOut = optedOut
    }
}

/// One allocated referral, as the balance checks read it.
public struct AllocatedReferral: Sendable, Equatable {
    public var district: String
    public var group: String
    public var referralDate: CivilDate
    public var arm: Arm
    public init(district: String, group: String, referralDate: CivilDate, arm: Arm) {
        self.district = district; self.group = group; self.referralDate = referralDate; self.arm = arm
    }
}
