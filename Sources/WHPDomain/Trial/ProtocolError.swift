/// An error answer of the wire protocol. Each code is exactly one of
/// PROTOCOL.md §2's codes; tests match on `code`, people read `message`.
public struct ProtocolError: Error, Sendable, Equatable {
    public var code: Code
    /// The dotted path of the one field to blame, if any.
    public var field: String?
    /// What exactly is wrong with the input. Only for codes decided before any
    /// claimant state is read, so it can never reveal a true status.
    public var detail: String?

    public init(_ code: Code, field: String? = nil, detail: String? = nil) {
        self.code = code; self.field = field
        self.detail = code.mayCarryDetail ? detail : nil
    }

    /// The one fixed message of the code: under `hidden` no message may name an
    /// arm, a status, a lock date or length, so none ever does.
    public var message: String { code.message }

    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Backing: String, CaseIterable {
            case tooLarge = "too_large", badJSON = "bad_json", badRequest = "bad_request"
            case unknownOp = "unknown_op", forbidden, invalidField = "invalid_field"
            case unknownDistrict = "unknown_district", unknownGroup = "unknown_group"
            case conflict, notFound = "not_found", wrongState = "wrong_state"
            case duplicateReferral = "duplicate_referral", notEligible = "not_eligible", `internal`
        }
        fileprivate let backing: Backing
        private init(_ b: Backing) { backing = b }

        public static let tooLarge = Code(.tooLarge)
        public static let badJSON = Code(.badJSON)
        public static let badRequest = Code(.badRequest)
        public static let unknownOp = Code(.unknownOp)
        public static let forbidden = Code(.forbidden)
        public static let invalidField = Code(.invalidField)
        public static let unknownDistrict = Code(.unknownDistrict)
        public static let unknownGroup = Code(.unknownGroup)
        public static let conflict = Code(.conflict)
        public static let notFound = Code(.notFound)
        public static let wrongState = Code(.wrongState)
        public static let duplicateReferral = Code(.duplicateReferral)
        public static let notEligible = Code(.notEligible)
        public static let `internal` = Code(.internal)

        /// Every code, in the order PROTOCOL.md checks them.
        public static var all: [Code] { Backing.allCases.map(Code.init) }

        /// The wire name, e.g. `not_eligible`.
        public var description: String { backing.rawValue }
        public var wireName: String { backing.rawValue }

        fileprivate var mayCarryDetail: Bool {
            switch backing {
            case .tooLarge, .badJSON, .badRequest, .unknownOp, .forbidden, .invalidField, .unknownDistrict, .unknownGroup: true
            default: false
            }
        }

        public var message: String {
            switch backing {
            case .tooLarge: "The request line is longer than 65,536 bytes."
            case .badJSON: "The request line is not a valid JSON object."
            case .badRequest: "The request envelope is not valid."
            case .unknownOp: "The operation is not known."
            case .forbidden: "Your role may not use this operation."
            case .invalidField: "A field is missing or not valid."
            case .unknownDistrict: "The district is not known."
            case .unknownGroup: "The group is not known."
            case .conflict: "This id was already used for a different request."
            case .notFound: "No such referral was found."
            case .wrongState: "This cannot be done to the referral now."
            case .duplicateReferral: "The claimant already has a referral awaiting the gatekeeper."
            case .notEligible: "The claimant cannot be referred on this date."
            case .internal: "The service could not complete the request and it had no effect. Please try again."
            }
        }
    }
}
