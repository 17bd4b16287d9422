/// What `whp report overdue` lists (RULES2 R14): on date `D`, a step whose
/// event is still missing from the log after its due date.
public enum Overdue {
    /// The step a referral waits for.
    public enum Due: String, Sendable, Equatable, Comparable, CaseIterable {
        case gatekeeper, providerReferral = "provider_referral", start
        public static func < (a: Due, b: Due) -> Bool { a.rawValue < b.rawValue }
    }

    /// What the report reads of one referral.
    public struct Facts: Sendable, Equatable {
        public var referralID: String
        public var district: String
        public var status: ReferralStatus
        public var referralDate: CivilDate
        public var gkDate: CivilDate?
        /// The day its decision was recorded (with `gkDate`, R1's `b`).
        public var decidedOn: CivilDate?
        public var providerReferral: CivilDate?
        /// A `started` or `did_not_start` step is recorded.
        public var startRecorded: Bool
        public init(
            referralID: String, district: String, status: ReferralStatus, referralDate: CivilDate, gkDate: CivilDate?, decidedOn: CivilDate?,
            providerReferral: CivilDate?, startRecorded: Bool
        ) {
            self.referralID = referralID; self.district = district; self.status = status; self.referralDate = referralDate; self.gkDate = gkDate
            self.decidedOn = decidedOn; self.providerReferral = providerReferral; self.startRecorded = startRecorded
        }
    }

    public struct Item: Sendable, Equatable {
        public var referralID: String
        public var district: String
        public var due: Due
        public var dueDate: CivilDate
        /// The working days in (due date, D].
        public var workingDaysOverdue: Int
    }

    /// The step `f` waits for on `date`, and when it was due; nil if none.
    public static func waiting(_ f: Facts, rules: RulesVersion, deadlines: Deadlines, days: WorkingDays) -> (Due, CivilDate)? {
        switch f.status {
        case .awaitingGatekeeper:
            return (.gatekeeper, f.referralDate.adding(days: deadlines.pendingDays))
        case .allocated(.whp), .allocated(.psc):
            if let sent = f.providerReferral {
                return f.startRecorded ? nil : (.start, days.adding(deadlines.startWorkingDays, to: sent))
            }
            guard let b = Referral.lockBase(rules, gkDate: f.gkDate, decidedOn: f.decidedOn) else { return nil }
            return (.providerReferral, days.adding(deadlines.providerReferralWorkingDays, to: b))
        default:
            return nil
        }
    }

    /// Every item overdue on `date`, sorted by due date, then referral id.
    public static func items(_ facts: [Facts], on date: CivilDate, rules: RulesVersion, deadlines: Deadlines, days: WorkingDays) -> [Item] {
        facts.compactMap { f -> Item? in
            guard let (due, dueDate) = waiting(f, rules: rules, deadlines: deadlines, days: days), date > dueDate else { return nil }
            return Item(
                referralID: f.referralID, district: f.district, due: due, dueDate: dueDate,
                workingDaysOverdue: days.count(after: dueDate, through: date))
        }
        .sorted { a, b in
            a.dueDate != b.dueDate ? a.dueDate < b.dueDate : a.referralID.utf8.lexicographicallyPrecedes(b.referralID.utf8)
        }
    }
}
