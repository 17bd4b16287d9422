import WHPCrypto
import WHPDomain
import WHPJSON

/// The staff roles of PROTOCOL.md §2 and RULES2 R15. The client
/// authenticated the user; the service enforces what each role may do.
public enum Role: String, Sendable, CaseIterable {
    case workCoach = "work_coach"
    case gatekeeper
    case evaluationAdmin = "evaluation_admin"
    case contractManager = "contract_manager"
}

public struct Actor: Sendable, Equatable {
    public var role: Role
    public var id: String
    /// `role:id`, as events record it.
    public var recorded: String { role.rawValue + ":" + id }
}

/// The ops of PROTOCOL.md §3 and RULES2, and the one role each allows (`status`: any).
public enum Op: String, Sendable, CaseIterable {
    case refer, cancel, pending, gatekeep, outcome, eligibility, disclose
    case optOut = "opt_out", flagError = "flag_error", status
    case linkClaimant = "link_claimant", followUp = "follow_up", setShares = "set_shares"

    func allows(_ role: Role) -> Bool {
        switch self {
        case .refer, .cancel, .outcome, .eligibility, .disclose, .linkClaimant, .followUp: role == .workCoach
        case .pending, .gatekeep, .flagError: role == .gatekeeper
        case .optOut: role == .evaluationAdmin
        case .setShares: role == .contractManager
        case .status: true
        }
    }

    /// The keyed ops (RULES2 R8): an identical repeat of a remembered success
    /// gets its first answer before any other check.
    var isKeyed: Bool {
        switch self {
        case .refer, .cancel, .flagError, .gatekeep, .followUp: true
        default: false
        }
    }
}

public enum GatekeeperSelectionInput: Sendable, Equatable {
    case capacity(Int)
    /// `(referral_id, selected?)` in the order given.
    case decisions([(String, Bool)])

    public static func == (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.capacity(let x), .capacity(let y)): x == y
        case (.decisions(let x), .decisions(let y)): x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        default: false
        }
    }
}

public enum Audience: String, Sendable { case workCoach = "work_coach", claimant }
public enum OutcomeTarget: Sendable, Equatable { case referral(String), claimant(ClaimantID) }

/// A request whose envelope and fields are well-formed: everything the op
/// needs, typed. What remains to check needs the store.
public enum Command: Sendable, Equatable {
    case refer(referralID: String, claimant: ClaimantID, district: String, group: String, referralDate: CivilDate)
    case cancel(referralID: String, reason: String)
    case pending(district: String, gkDate: CivilDate)
    case gatekeep(runID: String, district: String, gkDate: CivilDate, selection: GatekeeperSelectionInput)
    case outcome(target: OutcomeTarget, audience: Audience, name: String?)
    case eligibility(claimant: ClaimantID, date: CivilDate)
    case disclose(referralID: String, reason: String)
    case optOut(claimant: ClaimantID, date: CivilDate)
    case flagError(referralID: String, reason: FlagReason, correctedGroup: String?)
    case status
    case linkClaimant(nino: ClaimantID, ref: ClaimantID)
    case followUp(referralID: String, step: FollowUpStep, date: CivilDate, reason: String?)
    case setShares(district: String, arm: Arm, effective: CivilDate, shares: ProviderShares)
}

public struct Request: Sendable, Equatable {
    public var id: String
    public var actor: Actor
    public var op: Op
    public var command: Command
    /// The first check that depends on today (a date after today, or outside
    /// the recruitment window) and failed. It is answered after the replay
    /// check of a keyed op (RULES2 R8): a repeat of an earlier success gets
    /// its first answer whatever the day now.
    public var deferred: ProtocolError?
}

/// A request that failed before reaching the store, with the id to echo (nil
/// when the line had no usable id).
public struct RejectedRequest: Error, Sendable {
    public var id: String?
    public var error: ProtocolError
}

/// Turns one line into a `Request`, checking in PROTOCOL.md §2's order:
/// too_large, bad_json, bad_request, unknown_op, forbidden, invalid_field
/// (fields in the op's listed order), unknown_district, unknown_group.
/// Pure: the config, the recruitment window and today's date come in.
public struct RequestDecoder: Sendable {
    public static let maxLineBytes = 65_536

    public let config: TrialConfig
    /// Rules 2 trials only (RULES2 R2).
    public let window: RecruitmentWindow?
    private let districtIDs: Set<String>
    private let groups: Set<String>

    public init(config: TrialConfig, window: RecruitmentWindow? = nil) {
        self.config = config
        self.window = window
        districtIDs = Set(config.districts.map(\.id))
        groups = Set(config.groups)
    }

    public func decode(_ line: ArraySlice<UInt8>, today: CivilDate) -> Result<Request, RejectedRequest> {
        guard line.count <= RequestDecoder.maxLineBytes else {
            return .failure(RejectedRequest(id: nil, error: ProtocolError(.tooLarge, detail: "the line has \(line.count) bytes")))
        }
        let value: JSONValue
        do { value = try JSON.parse(line) } catch {
            return .failure(RejectedRequest(id: nil, error: ProtocolError(.badJSON, detail: error.message)))
        }
        guard case .object(let obj) = value else {
            return .failure(RejectedRequest(id: nil, error: ProtocolError(.badJSON, detail: "the line is not a JSON object")))
        }
        var id: String?
        if case .string(let s)? = obj["id"], (1...128).contains(s.unicodeScalars.count) { id = s }
        do {
            return .success(try decodeEnvelope(obj, id: id, today: today))
        } catch {
            return .failure(RejectedRequest(id: id, error: error))
        }
    }

    private func decodeEnvelope(_ obj: JSONObject, id: String?, today: CivilDate) throws(ProtocolError) -> Request {
        guard case .number(let v)? = obj["v"], v.intValue == 1 else {
            throw ProtocolError(.badRequest, field: "v", detail: "\"v\" must be the integer 1")
        }
        guard let id else { throw ProtocolError(.badRequest, field: "id", detail: "\"id\" must be a string of 1 to 128 characters") }
        guard case .string(let opText)? = obj["op"] else { throw ProtocolError(.badRequest, field: "op", detail: "\"op\" must be a string") }
        guard case .object(let actorObj)? = obj["actor"] else {
            throw ProtocolError(.badRequest, field: "actor", detail: "\"actor\" must be an object {role, id}")
        }
        guard case .string(let roleText)? = actorObj["role"], let role = Role(rawValue: roleText) else {
            throw ProtocolError(
                .badRequest, field: "actor.role",
                detail: "\"actor.role\" must be work_coach, gatekeeper, evaluation_admin or contract_manager")
        }
        guard case .string(let staff)? = actorObj["id"], (1...64).contains(staff.unicodeScalars.count),
            staff.unicodeScalars.allSatisfy({ (0x21...0x7e).contains($0.value) })
        else {
            throw ProtocolError(.badRequest, field: "actor.id", detail: "\"actor.id\" must be 1 to 64 printable ASCII characters")
        }
        guard let op = Op(rawValue: opText) else { throw ProtocolError(.unknownOp, field: "op", detail: "no op named \"\(opText)\"") }
        guard op.allows(role) else { throw ProtocolError(.forbidden, field: "actor.role", detail: "\(role.rawValue) may not use \(op.rawValue)") }
        let f = Fields(obj: obj, today: today, window: window)
        let command: Command
        do {
            command = try self.command(op, obj, f)
        } catch {
            // A date check that depends on today fails at its own, earlier field.
            throw f.deferred ?? error
        }
        return Request(id: id, actor: Actor(role: role, id: staff), op: op, command: command, deferred: f.deferred)
    }

    /// The op's fields, in the order its row of PROTOCOL.md §3 (or RULES2) lists them.
    private func command(_ op: Op, _ obj: JSONObject, _ f: Fields) throws(ProtocolError) -> Command {
        switch op {
        case .refer:
            let rid = try f.identifier("referral_id")
            let claimant = try f.claimant("claimant")
            let district = try f.string("district", 1...64)
            let group = try f.string("group", 1...64)
            let date = try f.date("referral_date", window: .referral)
            try knownDistrict(district)
            try knownGroup(group, field: "group")
            return .refer(referralID: rid, claimant: claimant, district: district, group: group, referralDate: date)
        case .cancel:
            return .cancel(referralID: try f.identifier("referral_id"), reason: try f.string("reason", 1...500))
        case .pending:
            let district = try f.string("district", 1...64)
            let date = try f.date("gk_date", window: .gatekeeper)
            try knownDistrict(district)
            return .pending(district: district, gkDate: date)
        case .gatekeep:
            let run = try f.identifier("run_id")
            let district = try f.string("district", 1...64)
            let date = try f.date("gk_date", window: .gatekeeper)
            let selection = try f.selection()
            try knownDistrict(district)
            return .gatekeep(runID: run, district: district, gkDate: date, selection: selection)
        case .outcome:
            let target: OutcomeTarget
            switch (obj["referral_id"], obj["claimant"]) {
            case (nil, nil), (.null?, .null?), (nil, .null?), (.null?, nil):
                throw ProtocolError(.invalidField, field: "referral_id", detail: "give referral_id or claimant")
            case (let r?, let c?) where r != .null && c != .null:
                throw ProtocolError(.invalidField, field: "claimant", detail: "give referral_id or claimant, not both")
            case (let r?, _) where r != .null: target = .referral(try f.identifier("referral_id"))
            default: target = .claimant(try f.claimant("claimant"))
            }
            let audienceText = try f.optionalString("audience", 1...32) ?? "work_coach"
            guard let audience = Audience(rawValue: audienceText) else {
                throw ProtocolError(.invalidField, field: "audience", detail: "audience must be work_coach or claimant")
            }
            return .outcome(target: target, audience: audience, name: try f.optionalString("name", 1...200))
        case .eligibility:
            return .eligibility(claimant: try f.claimant("claimant"), date: try f.date("date"))
        case .disclose:
            return .disclose(referralID: try f.identifier("referral_id"), reason: try f.string("reason", 1...500))
        case .optOut:
            return .optOut(claimant: try f.claimant("claimant"), date: try f.date("date"))
        case .flagError:
            let rid = try f.identifier("referral_id")
            let text = try f.string("reason", 1...32)
            guard let reason = FlagReason(rawValue: text) else {
                throw ProtocolError(.invalidField, field: "reason", detail: "reason must be ineligible, duplicate, wrong_group or other")
            }
            let corrected = try f.optionalString("corrected_group", 1...64)
            if corrected != nil && reason != .wrongGroup {
                throw ProtocolError(.invalidField, field: "corrected_group", detail: "corrected_group goes only with reason wrong_group")
            }
            if let corrected { try knownGroup(corrected, field: "corrected_group") }
            return .flagError(referralID: rid, reason: reason, correctedGroup: corrected)
        case .status:
            return .status
        case .linkClaimant:
            let nino = try f.claimantPart("nino", kind: .nino)
            let ref = try f.claimantPart("ref", kind: .reference)
            return .linkClaimant(nino: nino, ref: ref)
        case .followUp:
            let rid = try f.identifier("referral_id")
            let stepText = try f.string("step", 1...32)
            guard let step = FollowUpStep(rawValue: stepText) else {
                throw ProtocolError(.invalidField, field: "step", detail: "step must be provider_referral, started, did_not_start or left")
            }
            let date = try f.date("date")
            let reason = try f.optionalString("reason", 1...32)
            switch (step.reasons, reason) {
            case (nil, nil): break
            case (nil, _?): throw ProtocolError(.invalidField, field: "reason", detail: "\(step.rawValue) takes no reason")
            case (_?, nil): throw ProtocolError(.invalidField, field: "reason", detail: "\(step.rawValue) needs a reason")
            case (let allowed?, let r?):
                guard allowed.contains(r) else {
                    throw ProtocolError(
                        .invalidField, field: "reason", detail: "reason for \(step.rawValue) must be one of \(allowed.sorted().joined(separator: ", "))")
                }
            }
            return .followUp(referralID: rid, step: step, date: date, reason: reason)
        case .setShares:
            let district = try f.string("district", 1...64)
            let armText = try f.string("arm", 1...8)
            guard let arm = Arm(rawValue: armText), arm != .rcg else {
                throw ProtocolError(.invalidField, field: "arm", detail: "arm must be WHP or PSC")
            }
            let effective = try f.futureDate("effective")
            let shares = try f.shares("shares")
            try knownDistrict(district)
            guard let configured = config.district(district)?.configuredShares(of: arm) else {
                throw ProtocolError(.invalidField, field: "arm", detail: "district \(district) has no \(arm.rawValue) providers")
            }
            guard Set(shares.keys) == Set(configured.ids) else {
                throw ProtocolError(
                    .invalidField, field: "shares", detail: "shares must name exactly the providers \(configured.ids.joined(separator: ", "))")
            }
            return .setShares(district: district, arm: arm, effective: effective, shares: ProviderShares(shares))
        }
    }

    private func knownDistrict(_ d: String) throws(ProtocolError) {
        guard districtIDs.contains(d) else { throw ProtocolError(.unknownDistrict, field: "district", detail: "no district \"\(d)\" in district-config") }
    }

    private func knownGroup(_ g: String, field: String) throws(ProtocolError) {
        guard groups.contains(g) else { throw ProtocolError(.unknownGroup, field: field, detail: "no group \"\(g)\" in district-config") }
    }
}

/// Typed field reads that fail with `invalid_field` naming the field. A
/// check that depends on today is kept aside (`deferred`) instead of thrown.
private final class Fields {
    let obj: JSONObject
    let today: CivilDate
    let window: RecruitmentWindow?
    private(set) var deferred: ProtocolError?

    init(obj: JSONObject, today: CivilDate, window: RecruitmentWindow?) {
        self.obj = obj; self.today = today; self.window = window
    }

    func invalid(_ field: String, _ detail: String) -> ProtocolError {
        ProtocolError(.invalidField, field: field, detail: detail)
    }

    private func keepAside(_ e: ProtocolError) {
        if deferred == nil { deferred = e }
    }

    func string(_ key: String, _ length: ClosedRange<Int>) throws(ProtocolError) -> String {
        try string(obj[key], field: key, length)
    }

    /// A string field of an op: its length in Unicode scalars, and no control
    /// characters (RULES2 R7: a NUL broke idempotency on SQLite and failed
    /// whole commit groups on PostgreSQL).
    func string(_ v: JSONValue?, field: String, _ length: ClosedRange<Int>) throws(ProtocolError) -> String {
        guard let v, v != .null else { throw invalid(field, "\(field) is missing") }
        guard case .string(let s) = v else { throw invalid(field, "\(field) must be a string") }
        guard length.contains(s.unicodeScalars.count) else {
            throw invalid(field, "\(field) must have \(length.lowerBound) to \(length.upperBound) characters")
        }
        guard !s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw invalid(field, "\(field) must not contain control characters (U+0000 to U+001F, U+007F)")
        }
        return s
    }

    func optionalString(_ key: String, _ length: ClosedRange<Int>) throws(ProtocolError) -> String? {
        guard let v = obj[key], v != .null else { return nil }
        return try string(v, field: key, length)
    }

    /// `referral_id` / `run_id`: 1–64 of `A-Za-z0-9._:-`.
    func identifier(_ key: String) throws(ProtocolError) -> String {
        try identifier(obj[key], field: key)
    }

    func identifier(_ v: JSONValue?, field: String) throws(ProtocolError) -> String {
        let s = try string(v, field: field, 1...64)
        guard
            s.utf8.allSatisfy({ c in
                (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c) || (0x30...0x39).contains(c) || c == 0x2e || c == 0x5f || c == 0x3a || c == 0x2d
            })
        else { throw invalid(field, "\(field) may contain only A-Z a-z 0-9 . _ : -") }
        return s
    }

    enum WindowKind { case none, referral, gatekeeper }

    /// A date that exists, from 1900 to 2999 (RULES2 R9), and, kept aside,
    /// not after today and inside the recruitment window (RULES2 R2).
    func date(_ key: String, window kind: WindowKind = .none) throws(ProtocolError) -> CivilDate {
        let d = try wellFormedDate(key)
        if d > today {
            keepAside(invalid(key, "\(key) must not be after today (\(today.iso))"))
        } else if let window {
            let crossing: RecruitmentWindow.Crossing? =
                switch kind {
                case .none: nil
                case .referral: window.check(referralDate: d, today: today)
                case .gatekeeper: window.check(gkDate: d, today: today)
                }
            if let crossing { keepAside(invalid(key, crossing.detail)) }
        }
        return d
    }

    /// RULES2 R15's `effective`: the one request date that may be later than
    /// today; it may not be earlier.
    func futureDate(_ key: String) throws(ProtocolError) -> CivilDate {
        let d = try wellFormedDate(key)
        guard d >= today else { throw invalid(key, "\(key) must be today (\(today.iso)) or later") }
        return d
    }

    private func wellFormedDate(_ key: String) throws(ProtocolError) -> CivilDate {
        let s = try string(key, 1...32)
        guard let d = CivilDate(s) else { throw invalid(key, "\(key) must be a date YYYY-MM-DD that exists") }
        guard CalendarRange.contains(d) else { throw invalid(key, "\(key) must be from 1900-01-01 to 2999-12-31") }
        return d
    }

    func claimant(_ key: String) throws(ProtocolError) -> ClaimantID {
        guard case .object(let c)? = obj[key] else { throw invalid(key, "\(key) must be {\"nino\": …} or {\"ref\": …}") }
        let nino = c["nino"].flatMap { $0 == .null ? nil : $0 }
        let ref = c["ref"].flatMap { $0 == .null ? nil : $0 }
        switch (nino, ref) {
        case (let n?, nil):
            guard case .string(let s) = n, let id = ClaimantID.nino(parsing: s) else {
                throw invalid(key + ".nino", "not a valid National Insurance number")
            }
            return id
        case (nil, let r?):
            guard case .string(let s) = r, let id = ClaimantID.reference(parsing: s) else {
                throw invalid(key + ".ref", "a reference number is exactly 12 digits")
            }
            return id
        default:
            throw invalid(key, "give exactly one of nino or ref")
        }
    }

    enum ClaimantKind { case nino, reference }

    /// `link_claimant`'s `nino` and `ref`: top-level, each as `claimant.nino` / `claimant.ref`.
    func claimantPart(_ key: String, kind: ClaimantKind) throws(ProtocolError) -> ClaimantID {
        guard let v = obj[key], v != .null else { throw invalid(key, "\(key) is missing") }
        guard case .string(let s) = v else { throw invalid(key, "\(key) must be a string") }
        switch kind {
        case .nino:
            guard let id = ClaimantID.nino(parsing: s) else { throw invalid(key, "not a valid National Insurance number") }
            return id
        case .reference:
            guard let id = ClaimantID.reference(parsing: s) else { throw invalid(key, "a reference number is exactly 12 digits") }
            return id
        }
    }

    /// `set_shares`'s shares: an object of integers 0–1000, not all 0.
    func shares(_ key: String) throws(ProtocolError) -> [String: Int] {
        guard case .object(let o)? = obj[key], !o.isEmpty else { throw invalid(key, "\(key) must be an object {provider id: share}") }
        var out: [String: Int] = [:]
        for (k, v) in o.entries {
            guard case .number(let n) = v, let i = n.intValue, (0...1000).contains(i) else {
                throw invalid(key, "each share must be an integer from 0 to 1000")
            }
            out[k] = i
        }
        guard out.values.contains(where: { $0 > 0 }) else { throw invalid(key, "at least one share must be above 0") }
        return out
    }

    /// Exactly one of `capacity` or `decisions`.
    func selection() throws(ProtocolError) -> GatekeeperSelectionInput {
        let cap = obj["capacity"].flatMap { $0 == .null ? nil : $0 }
        let dec = obj["decisions"].flatMap { $0 == .null ? nil : $0 }
        switch (cap, dec) {
        case (let c?, nil):
            guard case .number(let n) = c, let i = n.intValue else { throw invalid("capacity", "capacity must be an integer") }
            guard i >= 0, i <= Int(Int32.max) else { throw invalid("capacity", "capacity must be from 0 to 2147483647") }
            return .capacity(i)
        case (nil, let d?):
            guard case .array(let items) = d, !items.isEmpty else { throw invalid("decisions", "decisions must be a non-empty array") }
            var out: [(String, Bool)] = []
            var seen: Set<String> = []
            for (n, item) in items.enumerated() {
                guard case .object(let o) = item else { throw invalid("decisions.\(n)", "each decision must be {referral_id, decision}") }
                let rid = try identifier(o["referral_id"], field: "decisions.\(n).referral_id")
                guard seen.insert(rid).inserted else { throw invalid("decisions.\(n).referral_id", "referral \(rid) is listed twice") }
                let text = try string(o["decision"], field: "decisions.\(n).decision", 1...32)
                guard let decision = Decision(rawValue: text) else {
                    throw invalid("decisions.\(n).decision", "decision must be selected or not_selected")
                }
                out.append((rid, decision == .selected))
            }
            return .decisions(out)
        case (nil, nil):
            throw invalid("capacity", "give capacity or decisions")
        default:
            throw invalid("decisions", "give capacity or decisions, not both")
        }
    }
}
