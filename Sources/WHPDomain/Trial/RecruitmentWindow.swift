/// The dates a rules 2 trial accepts (RULES2 R2), fixed by `[recruitment]`
/// and the trial's start. The service checks a request's date against the
/// day it is read; `verify` checks a logged date against the day it was
/// recorded. Both ask these functions, so the window is decided once.
public struct RecruitmentWindow: Sendable, Equatable {
    public var opens: CivilDate
    public var closes: CivilDate?
    public var maxBackdateDays: Int

    /// `opens` defaults to the UTC date of `trial_started`.
    public init(_ r: Recruitment, startedOn: CivilDate) {
        opens = r.opens ?? startedOn
        closes = r.closes
        maxBackdateDays = r.maxBackdateDays
    }

    /// Which bound a date crosses, and how, for the error's `detail`.
    public struct Crossing: Sendable, Equatable {
        /// `opens`, `closes` or `max_backdate_days`.
        public var bound: String
        public var detail: String
    }

    /// A referral date on `today`: on or after `opens`, on or before `closes`,
    /// and no more than `max_backdate_days` before today.
    public func check(referralDate d: CivilDate, today: CivilDate) -> Crossing? {
        if d < opens { return Crossing(bound: "opens", detail: "referral_date \(d.iso) is before recruitment opens (\(opens.iso))") }
        if let closes, d > closes {
            return Crossing(bound: "closes", detail: "referral_date \(d.iso) is after recruitment closes (\(closes.iso))")
        }
        return backdate("referral_date", d, today)
    }

    /// A gatekeeper date on `today`: on or after `opens` and no more than
    /// `max_backdate_days` before today. `closes` never bounds it: referrals
    /// made before the trial closes may still be decided after.
    public func check(gkDate d: CivilDate, today: CivilDate) -> Crossing? {
        if d < opens { return Crossing(bound: "opens", detail: "gk_date \(d.iso) is before recruitment opens (\(opens.iso))") }
        return backdate("gk_date", d, today)
    }

    private func backdate(_ field: String, _ d: CivilDate, _ today: CivilDate) -> Crossing? {
        let earliest = today.adding(days: -maxBackdateDays)
        guard d < earliest else { return nil }
        return Crossing(
            bound: "max_backdate_days",
            detail: "\(field) \(d.iso) is more than max_backdate_days (\(maxBackdateDays)) before today (\(today.iso))")
    }
}
