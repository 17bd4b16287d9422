import Foundation
import WHPCrypto
import WHPDomain
import WHPJSON

/// How exact the dates of an evaluation export are (CLI.md, "The evaluation export").
/// Coarser dates make re-identification harder; `month` is the default.
public enum DatePrecision: String, Sendable, CaseIterable {
    case day, week, month

    /// `2017-11-03`, `2017-W44` (ISO week-year and week) or `2017-11`.
    public func format(_ d: CivilDate) -> String {
        switch self {
        case .day: return d.iso
        case .week:
            let w = d.isoWeek
            return pad(w.year, 4) + "-W" + pad(w.week, 2)
        case .month: return pad(d.year, 4) + "-" + pad(d.month, 2)
        }
    }
}

public enum ExportFormat: String, Sendable, CaseIterable { case csv, jsonl }

/// One row of the de-identified dataset: nothing in it identifies a person
/// (no NINO, reference, pseudonym, referral id, staff id or free text).
public struct EvaluationRow: Sendable, Equatable {
    public var researchID: String
    public var district: String
    public var group: String
    public var stratum: String
    public var referralNumber: Int
    public var referralDate: String
    public var gkDate: String
    public var gkOutcome: String
    public var gkRule: String
    public var arm: String
    public var inError: String
    /// RULES2 R14: the follow-up steps (dates at the export's precision) and reasons.
    public var providerReferralDate: String = ""
    public var startDate: String = ""
    public var notStartedReason: String = ""
    public var leftDate: String = ""
    public var leftReason: String = ""
    /// RULES2 R14: the referral has a `disclosed` event.
    public var disclosed: Bool = false
    public var correctedGroup: String = ""
    /// RULES2 R15: the provider's id.
    public var provider: String = ""

    public static let columns = [
        "research_id", "district", "group", "stratum", "referral_number", "referral_date",
        "gk_date", "gk_outcome", "gk_rule", "arm", "in_error",
        "provider_referral_date", "start_date", "not_started_reason", "left_date", "left_reason",
        "disclosed", "corrected_group", "provider",
    ]

    /// The columns holding dates at the chosen precision.
    public static let dateColumns: Set<String> = ["referral_date", "gk_date", "provider_referral_date", "start_date", "left_date"]

    public init(
        researchID: String, district: String, group: String, stratum: String, referralNumber: Int,
        referralDate: String, gkDate: String, gkOutcome: String, gkRule: String, arm: String, inError: String
    ) {
        self.researchID = researchID; self.district = district; self.group = group; self.stratum = stratum
        self.referralNumber = referralNumber; self.referralDate = referralDate; self.gkDate = gkDate
        self.gkOutcome = gkOutcome; self.gkRule = gkRule; self.arm = arm; self.inError = inError
    }

    public var values: [String] {
        [
            researchID, district, group, stratum, String(referralNumber), referralDate, gkDate, gkOutcome, gkRule, arm, inError,
            providerReferralDate, startDate, notStartedReason, leftDate, leftReason, disclosed ? "true" : "false", correctedGroup, provider,
        ]
    }

    /// An RFC 4180 record with its CRLF.
    public func csv(into out: inout [UInt8]) {
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(0x2c) }
            CSV.field(v, into: &out)
        }
        out.append(0x0d); out.append(0x0a)
    }

    public static func csvHeader(into out: inout [UInt8]) {
        for (i, c) in columns.enumerated() {
            if i > 0 { out.append(0x2c) }
            CSV.field(c, into: &out)
        }
        out.append(0x0d); out.append(0x0a)
    }

    /// A JSON Lines record: every column; strings except `referral_number`
    /// (a number) and `disclosed` (a boolean); empty cells are null.
    public func jsonl(into out: inout [UInt8]) {
        var w = JSONWriter(capacity: 320)
        w.beginObject()
        for (c, v) in zip(EvaluationRow.columns, values) {
            w.key(c)
            if c == "referral_number" {
                w.int(referralNumber)
            } else if c == "disclosed" {
                w.bool(disclosed)
            } else if v.isEmpty {
                w.null()
            } else {
                w.string(v)
            }
        }
        w.endObject()
        w.newline()
        out.append(contentsOf: w.bytes)
    }
}

public enum CSV {
    /// Quotes a field only when RFC 4180 requires it (comma, quote, CR or LF).
    public static func field(_ v: String, into out: inout [UInt8]) {
        let u = v.utf8
        if u.contains(where: { $0 == 0x2c || $0 == 0x22 || $0 == 0x0d || $0 == 0x0a }) {
            out.append(0x22)
            for c in u {
                if c == 0x22 { out.append(0x22) }
                out.append(c)
            }
            out.append(0x22)
        } else {
            out.append(contentsOf: u)
        }
    }
}

public enum Evaluation {
    /// Whether a referral has a row in the export: not when it was cancelled,
    /// nor when its claimant opted out (CLI.md, "The evaluation export";
    /// RULES2 R6: the person, under either identifier).
    public static func isExported(_ f: ReferralFacts) -> Bool { f.status != .cancelled && !f.optedOut }

    /// The export row of a referral, or nil if it is left out (`isExported`).
    public static func row(_ f: ReferralFacts, config: TrialConfig, evaluationKey: Bytes32, precision: DatePrecision) -> EvaluationRow? {
        if !isExported(f) { return nil }
        let outcome: String
        var arm = ""
        switch f.status {
        case .awaitingGatekeeper: outcome = "pending"
        case .notSelected: outcome = "not_selected"
        case .allocated(let a): outcome = "selected"; arm = a.rawValue
        case .cancelled: return nil
        }
        var row = EvaluationRow(
            researchID: Derivation.researchID(key: evaluationKey, pseudonym: f.claimant),
            district: f.district, group: f.group, stratum: config.stratum(district: f.district, group: f.group),
            referralNumber: f.claimantReferralNumber, referralDate: precision.format(f.referralDate),
            gkDate: f.gkDate.map(precision.format) ?? "", gkOutcome: outcome,
            gkRule: outcome == "pending" ? "" : (f.rule ?? ""), arm: arm, inError: f.flag ?? "")
        row.providerReferralDate = f.followUp.providerReferralDate.map(precision.format) ?? ""
        row.startDate = f.followUp.startDate.map(precision.format) ?? ""
        row.notStartedReason = f.followUp.notStartedReason ?? ""
        row.leftDate = f.followUp.leftDate.map(precision.format) ?? ""
        row.leftReason = f.followUp.leftReason ?? ""
        row.disclosed = f.disclosed
        row.correctedGroup = f.correctedGroup ?? ""
        row.provider = f.provider ?? ""
        return row
    }
}

/// Writes export rows straight into a byte buffer: the same bytes as
/// `Evaluation.row(...)` followed by `csv(into:)` or `jsonl(into:)`, without the
/// per-row strings, and with the research-id HMAC key schedule computed once.
/// One instance per export; one thread at a time.
public final class EvaluationRowWriter {
    public let config: TrialConfig
    public let precision: DatePrecision
    public let format: ExportFormat
    private let researchIDs: ResearchIDs
    private var json = JSONWriter(capacity: 128)
    private var field: [UInt8] = []

    public init(config: TrialConfig, evaluationKey: Bytes32, precision: DatePrecision, format: ExportFormat) {
        self.config = config; self.precision = precision; self.format = format
        researchIDs = ResearchIDs(key: evaluationKey)
        field.reserveCapacity(128)
    }

    /// The CSV header row (nothing for JSON Lines).
    public func header(into out: inout [UInt8]) {
        if format == .csv { EvaluationRow.csvHeader(into: &out) }
    }

    /// The 64 hex digits of a person's research id (ALLOCATION.md §5).
    public func researchID(of person: Pseudonym) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        researchIDs.appendHex(pseudonymHex: person.hex, to: &out)
        return out
    }

    /// The research id's 32 bytes, which sort as its hex digits do.
    public func rawResearchID(of person: Pseudonym) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        researchIDs.appendRaw(pseudonymHex: person.hex, to: &out)
        return out
    }

    /// The hex digits of a research id from `rawResearchID(of:)`, as rows carry it.
    public func appendResearchID(raw: ArraySlice<UInt8>, to out: inout [UInt8]) {
        raw.withUnsafeBufferPointer { Hex.append($0, to: &out) }
    }

    /// Appends the row of `f`; false (nothing written) when `Evaluation.row` leaves it out.
    @discardableResult
    public func append(_ f: ReferralFacts, to out: inout [UInt8]) -> Bool {
        write(f, researchID: researchID(of: f.claimant), numbered: true, to: &out) != nil
    }

    /// The row of `f` without its research id and its `referral_number`:
    /// returns the offsets in `out` where each belongs, or nil (nothing
    /// written) when the row is left out. The export sorts rows by research id
    /// (RULES2 R11) and numbers each person's rows once sorted, so it can read
    /// the referrals in their stored order; the sort carries the id as its key
    /// and the row without it.
    public func appendUnnumbered(_ f: ReferralFacts, to out: inout [UInt8]) -> (researchIDAt: Int, numberAt: Int)? {
        write(f, researchID: nil, numbered: false, to: &out)
    }

    /// A row's `referral_number`, as both formats write it.
    public func appendReferralNumber(_ n: Int, to out: inout [UInt8]) { appendDecimal(n, to: &out) }

    /// Writes the row (a nil `rid` is left out) and returns where the
    /// research id and the number are, or belong; nil when the row is left out.
    private func write(
        _ f: ReferralFacts, researchID rid: [UInt8]?, numbered: Bool, to out: inout [UInt8]
    ) -> (researchIDAt: Int, numberAt: Int)? {
        if !Evaluation.isExported(f) { return nil }
        let outcome: StaticString
        var arm: StaticString = ""
        switch f.status {
        case .awaitingGatekeeper: outcome = "pending"
        case .notSelected: outcome = "not_selected"
        case .allocated(.whp): outcome = "selected"; arm = "WHP"
        case .allocated(.psc): outcome = "selected"; arm = "PSC"
        case .allocated(.rcg): outcome = "selected"; arm = "RCG"
        case .cancelled: return nil
        }
        var ridAt = 0, numberAt = 0
        let rule = f.status == .awaitingGatekeeper ? "" : (f.rule ?? "")  // a pending referral has no rule yet
        let flag = f.flag ?? ""
        if format == .csv {
            ridAt = out.count
            if let rid { out.append(contentsOf: rid) }
            out.append(0x2c); CSV.field(f.district, into: &out)
            out.append(0x2c); CSV.field(f.group, into: &out)
            out.append(0x2c)
            if config.stratifyByGroup { CSV.field(config.stratum(district: f.district, group: f.group), into: &out) } else { CSV.field(f.district, into: &out) }
            out.append(0x2c); numberAt = out.count
            if numbered { appendReferralNumber(f.claimantReferralNumber, to: &out) }
            out.append(0x2c); appendDate(f.referralDate, to: &out)
            out.append(0x2c); if let d = f.gkDate { appendDate(d, to: &out) }
            out.append(0x2c); appendStatic(outcome, to: &out)
            out.append(0x2c); CSV.field(rule, into: &out)
            out.append(0x2c); appendStatic(arm, to: &out)
            out.append(0x2c); CSV.field(flag, into: &out)
            let u = f.followUp
            out.append(0x2c); if let d = u.providerReferralDate { appendDate(d, to: &out) }
            out.append(0x2c); if let d = u.startDate { appendDate(d, to: &out) }
            out.append(0x2c); if let r = u.notStartedReason { CSV.field(r, into: &out) }
            out.append(0x2c); if let d = u.leftDate { appendDate(d, to: &out) }
            out.append(0x2c); if let r = u.leftReason { CSV.field(r, into: &out) }
            out.append(0x2c); appendStatic(f.disclosed ? "true" : "false", to: &out)
            out.append(0x2c); if let g = f.correctedGroup { CSV.field(g, into: &out) }
            out.append(0x2c); if let p = f.provider { CSV.field(p, into: &out) }
            out.append(0x0d); out.append(0x0a)
        } else {
            appendStatic("{\"research_id\":\"", to: &out)
            ridAt = out.count
            if let rid { out.append(contentsOf: rid) }
            appendStatic("\",\"district\":", to: &out); jsonString(f.district, to: &out)
            appendStatic(",\"group\":", to: &out); jsonString(f.group, to: &out)
            appendStatic(",\"stratum\":", to: &out)
            jsonString(config.stratifyByGroup ? config.stratum(district: f.district, group: f.group) : f.district, to: &out)
            appendStatic(",\"referral_number\":", to: &out); numberAt = out.count
            if numbered { appendReferralNumber(f.claimantReferralNumber, to: &out) }
            appendStatic(",\"referral_date\":\"", to: &out); appendDate(f.referralDate, to: &out)
            appendStatic("\",\"gk_date\":", to: &out)
            if let d = f.gkDate { out.append(0x22); appendDate(d, to: &out); out.append(0x22) } else { appendStatic("null", to: &out) }
            appendStatic(",\"gk_outcome\":\"", to: &out); appendStatic(outcome, to: &out)
            appendStatic("\",\"gk_rule\":", to: &out); jsonString(rule, to: &out)
            appendStatic(",\"arm\":", to: &out)
            if arm.utf8CodeUnitCount == 0 { appendStatic("null", to: &out) } else { out.append(0x22); appendStatic(arm, to: &out); out.append(0x22) }
            appendStatic(",\"in_error\":", to: &out); jsonString(flag, to: &out)
            let u = f.followUp
            appendStatic(",\"provider_referral_date\":", to: &out); jsonDate(u.providerReferralDate, to: &out)
            appendStatic(",\"start_date\":", to: &out); jsonDate(u.startDate, to: &out)
            appendStatic(",\"not_started_reason\":", to: &out); jsonString(u.notStartedReason ?? "", to: &out)
            appendStatic(",\"left_date\":", to: &out); jsonDate(u.leftDate, to: &out)
            appendStatic(",\"left_reason\":", to: &out); jsonString(u.leftReason ?? "", to: &out)
            appendStatic(f.disclosed ? ",\"disclosed\":true" : ",\"disclosed\":false", to: &out)
            appendStatic(",\"corrected_group\":", to: &out); jsonString(f.correctedGroup ?? "", to: &out)
            appendStatic(",\"provider\":", to: &out); jsonString(f.provider ?? "", to: &out)
            appendStatic("}\n", to: &out)
        }
        return (ridAt, numberAt)
    }

    @inline(__always)
    private func appendStatic(_ s: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// A date cell: null when absent.
    private func jsonDate(_ d: CivilDate?, to out: inout [UInt8]) {
        guard let d else { appendStatic("null", to: &out); return }
        out.append(0x22); appendDate(d, to: &out); out.append(0x22)
    }

    /// A string cell: null when empty, as `jsonl(into:)` writes it.
    private func jsonString(_ s: String, to out: inout [UInt8]) {
        if s.isEmpty { appendStatic("null", to: &out); return }
        json.reset()
        json.string(s)
        out.append(contentsOf: json.bytes)
    }

    /// `String(n)`.
    private func appendDecimal(_ n: Int, to out: inout [UInt8]) {
        guard n >= 0 else { out.append(contentsOf: String(n).utf8); return }
        appendPadded(n, 1, to: &out)
    }

    /// `pad(n, width)` for n ≥ 0: the decimal digits, zero-padded on the left to `width`.
    @inline(__always)
    private func appendPadded(_ n: Int, _ width: Int, to out: inout [UInt8]) {
        var digits = 1, t = n
        while t >= 10 { t /= 10; digits += 1 }
        for _ in digits..<max(width, digits) { out.append(0x30) }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: digits) { d in
            var m = n
            for k in stride(from: digits - 1, through: 0, by: -1) { d[k] = 0x30 &+ UInt8(truncatingIfNeeded: m % 10); m /= 10 }
            out.append(contentsOf: d)
        }
    }

    /// `precision.format(d)`.
    private func appendDate(_ d: CivilDate, to out: inout [UInt8]) {
        switch precision {
        case .day:
            appendPadded(d.year, 4, to: &out); out.append(0x2d)
            appendPadded(d.month, 2, to: &out); out.append(0x2d); appendPadded(d.day, 2, to: &out)
        case .week:
            let w = d.isoWeek
            guard w.year >= 0, w.week >= 0 else { out.append(contentsOf: precision.format(d).utf8); return }
            appendPadded(w.year, 4, to: &out); out.append(0x2d); out.append(0x57); appendPadded(w.week, 2, to: &out)
        case .month:
            appendPadded(d.year, 4, to: &out); out.append(0x2d); appendPadded(d.month, 2, to: &out)
        }
    }
}
