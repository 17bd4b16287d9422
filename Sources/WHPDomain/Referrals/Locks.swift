import WHPCrypto

/// What the lock rules and views read of one referral of a person.
public struct ReferralOutcome: Sendable, Equatable {
    public var status: ReferralStatus
    /// The gatekeeper date, once decided: the date views show.
    public var gkDate: CivilDate?
    /// The date the referral's lock runs from (`Referral.lockBase`).
    public var lockBase: CivilDate?
    public init(status: ReferralStatus, gkDate: CivilDate?, lockBase: CivilDate?) {
        self.status = status; self.gkDate = gkDate; self.lockBase = lockBase
    }
    /// A rules 1 outcome: the lock runs from the gatekeeper date.
    public init(status: ReferralStatus, gkDate: CivilDate?) { self.init(status: status, gkDate: gkDate, lockBase: gkDate) }
}

/// A claimant's answer to "may they be referred on date x?" (PROTOCOL.md §5).
public struct Eligibility: Sendable, Equatable {
    public var eligible: Bool
    /// Set only where the policy lets the front line see it.
    public var eligibleFrom: CivilDate?
    /// A referral awaits the gatekeeper (refer answers `duplicate_referral`).
    public var pending: Bool
}

/// The re-referral locks: 6 weeks after not selected, 24 months after RCG,
/// `allocated_months` after WHP/PSC. Every lock is decided here.
public enum Locks {
    /// The from-date a decided referral imposes; nil for pending or cancelled ones.
    public static func fromDate(of outcome: ReferralOutcome, lengths: LockLengths) -> CivilDate? {
        guard let d = outcome.lockBase else { return nil }
        switch outcome.status {
        case .awaitingGatekeeper, .cancelled: return nil
        case .notSelected: return d.adding(days: lengths.notSelectedDays)
        case .allocated(.rcg): return d.adding(months: lengths.rcgMonths)
        case .allocated: return d.adding(months: lengths.allocatedMonths)
        }
    }

    /// Eligibility on `date` given every referral of the person (RULES2 R6:
    /// whichever identifier each was made under). Flags and opt-outs change
    /// nothing here: a flagged or opted-out person keeps the lock.
    ///
    /// `eligibleFrom` is given only when nothing is pending. Under `dcams` it is
    /// the latest from-date after `date`. Under `hidden` it is the latest from-date
    /// after `date` of a WHP or PSC allocation, whatever the person's other
    /// locks (RULES2 R6), so that neither an RCG lock nor a linked identifier's
    /// lock can show. With `allocated_once` (RULES2 R14) a person with any
    /// allocation is never eligible again and never gets a from-date.
    public static func eligibility(
        history: [ReferralOutcome], on date: CivilDate,
        lengths: LockLengths, policy: FrontlineRCG
    ) -> Eligibility {
        let pending = history.contains { $0.status == .awaitingGatekeeper }
        if lengths.allocatedOnce && history.contains(where: { if case .allocated = $0.status { true } else { false } }) {
            return Eligibility(eligible: false, eligibleFrom: nil, pending: pending)
        }
        var latest: CivilDate?
        var latestAllocatedPlace: CivilDate?
        for o in history {
            guard let from = fromDate(of: o, lengths: lengths) else { continue }
            latest = max(latest ?? from, from)
            if o.status == .allocated(.whp) || o.status == .allocated(.psc) {
                latestAllocatedPlace = max(latestAllocatedPlace ?? from, from)
            }
        }
        let locked = latest.map { date < $0 } ?? false
        let eligible = !pending && !locked
        var from: CivilDate?
        if !pending {
            switch policy {
            case .dcams: from = locked ? latest : nil
            case .hidden: from = latestAllocatedPlace.flatMap { $0 > date ? $0 : nil }
            }
        }
        return Eligibility(eligible: eligible, eligibleFrom: from, pending: pending)
    }
}
