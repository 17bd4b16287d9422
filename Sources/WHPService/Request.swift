import WHPCrypto
import WHPDomain
import WHPJSON

/// The staff roles of PROTOCOL.md §2. The client authenticated the user; the
/// service enforces what each role may do.
public enum Role: String, Sendable {
    case workCoach = "work_coach"
    case gatekeeper
    case evaluationAdmin = "evaluation_admin"
}

public struct Actor: Sendable, Equatable {
    public var role: Role
    public var id: String
    /// `role:id`, as events record it.
    public var recorded: String { role.rawValue + ":" + id }
}

/// The ops of PROTOCOL.md §3 and the one role each allows (`status`: any).
public enum Op: String, Sendable, CaseIterable {
    case refer, cancel, pending, gatekeep, outcome, eligibility, disclose
    case optOut = "opt_out", flagError = "flag_error", status

    func allows(_ role: Role) -> Bool {
        switch self {
        case .refer, .cancel, .outcome, .eligibility, .disclose: role == .workCoach
        case .pending, .gatekeep, .flagError: role == .gatekeeper
        case .optOut: role == .evaluationAdmin
        case .status: true
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

/// A request whose envelope and fields are valid: everything the op needs,
/// typed. What remains to check needs the store.
public enum Command: Sendable, Equatable {
    case refer(referralID: String, claimant: ClaimantID, district: String, group: String, referralDate: CivilDate)
    case cancel(referralID: String, reason: String)
    case pending(district: String, gkDate: CivilDate)
    case gatekeep(runID: String, district: String, gkDate: CivilDate, selection: GatekeeperSelectionInput)
    case outcome(target: OutcomeTarget, audience: Audience, name: String?)
    case eligibility(claimant: ClaimantID, date: CivilDate)
    case disclose(referralID: String, reason: String)
    case optOut(claimant: ClaimantID, date: CivilDate)
    case flagError(referralID: String, reason: FlagReason)
    case status
}

public struct Request: Sendable, Equatable {
    public var id: String
    public var actor: Actor
    public var command: Command
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
/// Pure: the config and today's date come in.
public struct RequestDecoder: Sendable {
    public static let maxLineBytes = 65_536

    public let config: TrialConfig
    private let districtIDs: Set<String>
    private let groups: Set<String>

    public init(config: TrialConfig) {
        self.config = config
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
            throw ProtocolError(.badRequest, field: "actor.role", detail: "\"actor.role\" must be work_coach, gatekeeper or evaluation_admin")
        }
        guard case .string(let staff)? = actorObj["id"], (1...64).contains(staff.unicodeScalars.count),
            staff.unicodeScalars.allSatisfy({ (0x21...0x7e).contains($0.value) })
        else {
            throw ProtocolError(.badRequest, field: "actor.id", detail: "\"actor.id\" must be 1 to 64 printable ASCII characters")
        }
        guard let op = Op(rawValue: opText) else { throw ProtocolError(.unknownOp, field: "op", detail: "no op named \"\(opText)\"") }
        guard op.allows(role) else { throw ProtocolError(.forbidden, field: "actor.role", detail: "\(role.rawValue) may not use \(op.rawValue)") }
        let f = Fields(obj: obj, today: today)
        let command: Command
        switch op {
        case .refer:
            let rid = try f.identifier("referral_id")
            let claimant = try f.claimant("claimant")
            let district = try f.string("district", 1...64)
            let group = try f.string("group", 1...64)
            let date = try f.date("referral_date")
            try knownDistrict(district)
            guard groups.contains(group) else { throw ProtocolError(.unknownGroup, field: "group", detail: "no group \"\(group)\" in district-config") }
            command = .refer(referralID: rid, claimant: claimant, district: district, group: group, referralDate: date)
        case .cancel:
            command = .cancel(referralID: try f.identifier("referral_id"), reason: try f.string("reason", 1...500))
        case .pending:
            let district = try f.string("district", 1...64)
            let date = try f.date("gk_date")
            try knownDistrict(district)
            command = .pending(district: district, gkDate: date)
        case .gatekeep:
            let run = try f.identifier("run_id")
            let district = try f.string("district", 1...64)
            let date = try f.date("gk_date")
            let selection = try f.selection()
            try knownDistrict(district)
            command = .gatekeep(runID: run, district: district, gkDate: date, selection: selection)
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
            command = .outcome(target: target, audience: audience, name: try f.optionalString("name", 1...200))
        case .eligibility:
            command = .eligibility(claimant: try f.claimant("claimant"), date: try f.date("date"))
        case .disclose:
            command = .disclose(referralID: try f.identifier("referral_id"), reason: try f.string("reason", 1...500))
        case .optOut:
            command = .optOut(claimant: try f.claimant("claimant"), date: try f.date("date"))
        case .flagError:
            let rid = try f.identifier("referral_id")
            let text = try f.string("reason", 1...32)
            guard let reason = FlagReason(rawValue: text) else {
                throw ProtocolError(.invalidField, field: "reason", detail: "reason must be ineligible, duplicate, wrong_group or other")
            }
            command = .flagError(referralID: rid, reason: reason)
        case .status:
            command = .status
        }
        return Request(id: id, actor: Actor(role: role, id: staff), command: command)
    }

    private func knownDistrict(_ d: String) throws(ProtocolError) {
        guard districtIDs.contains(d) else { throw ProtocolError(.unknownDistrict, field: "district", detail: "no district \"\(d)\" in district-config") }
    }
}

/// Typed field reads that fail with `invalid_field` naming the field.
private struct Fields {
    let obj: JSONObject
    let today: CivilDate

    func invalid(_ field: String, _ detail: String) -> ProtocolError {
        ProtocolError(.invalidField, field: field, detail: detail)
    }

    func string(_ key: String, _ length: ClosedRange<Int>) throws(ProtocolError) -> String {
        try string(obj[key], field: key, length)
    }

    func string(_ v: JSONValue?, field: String, _ length: ClosedRange<Int>) throws(ProtocolError) -> String {
        guard let v, v != .null else { throw invalid(field, "\(field) is missing") }
        guard case .string(let s) = v else { throw invalid(field, "\(field) must be a string") }
        guard length.contains(s.unicodeScalars.count) else {
            throw invalid(field, "\(field) must have \(length.lowerBound) to \(length.upperBound) characters")
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

    /// A date that exists and is not after today.
    func date(_ key: String) throws(ProtocolError) -> CivilDate {
        let s = try string(key, 1...32)
        guard let d = CivilDate(s) else { throw invalid(key, "\(key) must be a date YYYY-MM-DD that exists") }
        guard d <= today else { throw invalid(key, "\(key) must not be after today (\(today.iso))") }
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
