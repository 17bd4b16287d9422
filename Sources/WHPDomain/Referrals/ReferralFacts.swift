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
    /// The person's exported rows numbered 1, 2, … in referral order (RULES2 R6); set by the export.
    public var claimantReferralNumber: Int
    /// Any identifier of the person opted out (RULES2 R6).
    public var optedOut: Bool
    /// RULES2 R14: the group a `wrong_group` flag says it should have had.
    public var correctedGroup: String?
    /// RULES2 R14: the referral has a `disclosed` event.
    public var disclosed: Bool
    /// RULES2 R15: the provider a WHP/PSC allocation drew.
    public var provider: String?
    /// RULES2 R14: the follow-up steps recorded.
    public var followUp: FollowUpFacts

    public init(
        claimant: Pseudonym, district: String, group: String, referralDate: CivilDate, status: ReferralStatus,
        gkDate: CivilDate?, rule: String?, flag: String?, claimantReferralNumber: Int, optedOut: Bool,
        correctedGroup: String? = nil, disclosed: Bool = false, provider: String? = nil, followUp: FollowUpFacts = FollowUpFacts()
    ) {
        self.claimant = claimant; self.district = district; self.group = group; self.referralDate = referralDate
        self.status = status; self.gkDate = gkDate; self.rule = rule; self.flag = flag
        self.claimantReferralNumber = claimantReferralNumber; self.optedOut = optedOut
        self.correctedGroup = correctedGroup; self.disclosed = disclosed; self.provider = provider; self.followUp = followUp
    }
}

/// A referral's follow-up as the evaluation reads it (RULES2 R14).
public struct FollowUpFacts: Sendable, Equatable {
    public var providerReferralDate: CivilDate?
    public var startDate: CivilDate?
    public var notStartedDate: CivilDate?
    public var notStartedReason: String?
    public var leftDate: CivilDate?
    public var leftReason: String?
    public init(
        providerReferralDate: CivilDate? = nil, startDate: CivilDate? = nil, notStartedDate: CivilDate? = nil,
        notStartedReason: String? = nil, leftDate: CivilDate? = nil, leftReason: String? = nil
    ) {
        self.providerReferralDate = providerReferralDate; self.startDate = startDate; self.notStartedDate = notStartedDate
        self.notStartedReason = notStartedReason; self.leftDate = leftDate; self.leftReason = leftReason
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
