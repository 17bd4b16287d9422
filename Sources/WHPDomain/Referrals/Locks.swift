import WHPCrypto
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

    /// Eligibility on `date` given every referral of the claimant. Flags and
    /// opt-outs change nothing here: a flagged or opted-out claimant keeps the lock.
    public static func eligibility(
        history: [ReferralOutcome], on date: CivilDate,
        lengths: LockLengths, policy: FrontlineRCG
    ) -> Eligibility {
        let pending = history.contains { $0.status == .awaitingGatekeeper }
        var latest: CivilDate?
        var latestShown = false
        for o in history {
            guard let from = fromDate(of: o, lengths: lengths) else { continue }
            let shown: Bool
            switch (policy, o.status) {
            case (.dcams, _): shown = true
            case (.hidden, .allocated(.whp)), (.hidden, .allocated(.psc)): shown = true
            default: shown = false
            }
            if latest == nil || from > latest! {
                latest = from
                latestShown = shown
            } else if from == latest! {
                latestShown = latestShown || shown
            }
        }
        let locked = latest.map { date < $0 } ?? false
        let eligible = !pending && !locked
        let from = (!eligible && !pending && locked && latestShown) ? latest : nil
        return Eligibility(eligible: eligible, eligibleFrom: from, pending: pending)
    }
}
