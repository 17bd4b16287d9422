import WHPCrypto
/// The outcome views of PROTOCOL.md §4. Under `hidden` a not-selected and an
/// RCG referral render identically, so nothing a work coach or claimant reads
/// can reveal the control group; only `disclose` tells them apart.
public struct WorkCoachView: Sendable, Equatable {
    public var status: String
    public var date: CivilDate?
    public var summary: String
    public var outcomeText: String
    public var nextSteps: String
}

public struct ClaimantView: Sendable, Equatable {
    public var status: String
    public var message: String
}

public enum Views {
    /// Replaces each `{name}` once, literally: a name that itself contains
    /// `{name}` is not expanded again.
    public static func fill(_ template: String, name: String?) -> String {
        guard let name else { return template }
        return template.split(separator: "{name}", omittingEmptySubsequences: false).joined(separator: name)
    }

    /// `provider` is the provider's name of a WHP/PSC allocation that drew
    /// one (RULES2 R15); it is inserted as is, never expanded.
    public static func workCoach(
        _ outcome: ReferralOutcome, lengths: LockLengths,
        policy: FrontlineRCG, name: String?, provider: String? = nil
    ) -> WorkCoachView {
        let dateText = outcome.gkDate?.longText ?? ""
        let fromText = Locks.fromDate(of: outcome, lengths: lengths)?.longText ?? ""
        let refer = "Please refer {name} to the provider through the appropriate referral system (LMS / WSP / DPT)"
        let (status, summary, text, next): (String, String, String, String)
        switch (outcome.status, policy) {
        case (.awaitingGatekeeper, _):
            (status, summary, text, next) = (
                outcome.status.wireName, "Awaiting gatekeeper",
                "{name} is awaiting the district gatekeeper", "Check again after the gatekeeper has acted"
            )
        case (.cancelled, _):
            (status, summary, text, next) = (
                outcome.status.wireName, "Referral cancelled",
                "The referral for {name} was cancelled", "A new referral can be made for {name}"
            )
        case (.notSelected, .hidden), (.allocated(.rcg), .hidden):
            (status, summary, text, next) = (
                "not_allocated", "Not allocated a place (on \(dateText))",
                "{name} was not allocated a place on the Work and Health Programme",
                "Please continue to provide Work Coach support for {name}"
            )
        case (.notSelected, .dcams):
            (status, summary, text, next) = (
                outcome.status.wireName, "Not selected (on \(dateText))",
                "{name} was not selected by the district gatekeeper for allocation to the Work and Health Programme",
                "A new referral can be made for {name} from \(fromText)"
            )
        case (.allocated(.whp), _):
            (status, summary, text, next) = (
                outcome.status.wireName, "Allocated to the WHP on \(dateText)",
                "{name} was allocated to the Work and Health Programme", refer
            )
        case (.allocated(.psc), _):
            (status, summary, text, next) = (
                outcome.status.wireName, "Allocated to the PSC on \(dateText)",
                "{name} was allocated a place with the Public Sector Comparator", refer
            )
        case (.allocated(.rcg), .dcams):
            (status, summary, text, next) = (
                outcome.status.wireName, "Allocated to the RCG on \(dateText)",
                "{name} was allocated a place in the Random Control Group",
                "Please continue to provide Work Coach support for {name}. A new referral can be made for {name} from \(fromText)"
            )
        }
        let shownDate: CivilDate? = (outcome.status == .awaitingGatekeeper || outcome.status == .cancelled) ? nil : outcome.gkDate
        var nextSteps = fill(next, name: name)
        if let provider, outcome.status == .allocated(.whp) || outcome.status == .allocated(.psc) {
            nextSteps = fill("Please refer {name} to ", name: name) + provider + " through the appropriate referral system (LMS / WSP / DPT)"
        }
        return WorkCoachView(
            status: status, date: shownDate, summary: fill(summary, name: name),
            outcomeText: fill(text, name: name), nextSteps: nextSteps)
    }

    /// The claimant's own view: the same under both policies, RCG never shown.
    public static func claimant(_ status: ReferralStatus, provider: String? = nil) -> ClaimantView {
        if let provider {
            switch status {
            case .allocated(.whp):
                return ClaimantView(status: "offered_place", message: "You have been allocated a place on the Work and Health Programme with \(provider).")
            case .allocated(.psc):
                return ClaimantView(
                    status: "offered_place", message: "You have been allocated a place with the Public Sector Comparator, with \(provider).")
            default: break
            }
        }
        return switch status {
        case .awaitingGatekeeper:
            ClaimantView(status: "pending", message: "We will tell you the outcome of your referral to the Work and Health Programme soon.")
        case .allocated(.whp):
            ClaimantView(status: "offered_place", message: "You have been allocated a place on the Work and Health Programme.")
        case .allocated(.psc):
            ClaimantView(status: "offered_place", message: "You have been allocated a place with the Public Sector Comparator.")
        case .notSelected, .allocated(.rcg):
            ClaimantView(status: "not_successful", message: "You were not successful in getting a place on the Work and Health Programme.")
        case .cancelled:
            ClaimantView(status: "cancelled", message: "Your referral to the Work and Health Programme was cancelled.")
        }
    }
}
