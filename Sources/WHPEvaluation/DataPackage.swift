import WHPDomain
import WHPJSON

/// The export's vocabularies, in the order the contract lists them (RULES2
/// R14, PROTOCOL.md): the Table Schema's `enum`s and the codebook read them.
public enum ExportVocabulary {
    public static let gkOutcomes = ["selected", "not_selected", "pending"]
    public static let gkRules = ["fifo", "lottery", "manual"]
    public static let flagReasons = FlagReason.allCases.map(\.rawValue)
    public static let notStartedReasons = ["declined", "did_not_attend", "not_suitable", "moved_away", "deceased", "other"]
    public static let leftReasons = ["completed", "found_work", "moved_away", "deceased", "health", "other"]
    /// An ISO 8601 week as the export writes it, `2017-W44`.
    public static let isoWeekPattern = "[0-9]{4}-W(0[1-9]|[1-4][0-9]|5[0-3])"
    /// A provider id (RULES2 R15).
    public static let providerPattern = "[a-z0-9-]{1,64}"

    /// The arms of the trial: those some district weighs.
    public static func arms(_ config: TrialConfig) -> [String] {
        Arm.allCases.filter { arm in config.districts.contains { $0.weights[arm] > 0 } }.map(\.rawValue)
    }

    /// Every stratum the config can give a referral.
    public static func strata(_ config: TrialConfig) -> [String] {
        var out: [String] = []
        for d in config.districts {
            if config.stratifyByGroup {
                for g in config.groups { out.append(config.stratum(district: d.id, group: g)) }
            } else {
                out.append(d.id)
            }
        }
        return out
    }

    /// Every provider id of the config, sorted, once each.
    public static func providers(_ config: TrialConfig) -> [String] {
        Array(Set(config.districts.flatMap { $0.providers.map(\.id) })).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
}

/// `datapackage.json`: a Frictionless Data Package whose one resource is the
/// data file, with a Table Schema that types every column (dates by the
/// export's precision), constrains every coded column to its values, names
/// the missing value and the primary key, and carries the file's size and
/// sha256 so that a changed copy fails validation.
public enum DataPackage {
    public static func descriptor(
        config: TrialConfig, precision: DatePrecision, format: ExportFormat, dataFile: String, bytes: Int, sha256: String,
        rows: Int, created: Instant
    ) -> JSONValue {
        let resource: JSONObject = [
            "name": "allocations",
            "type": "table",
            "path": .string(dataFile),
            "scheme": "file",
            "format": .string(format == .csv ? "csv" : "jsonl"),
            "mediatype": .string(format == .csv ? "text/csv" : "application/x-ndjson"),
            "encoding": "utf-8",
            "profile": "tabular-data-resource",
            "title": "One row per referral that was not cancelled, of people who did not opt out",
            "bytes": .int(bytes),
            "hash": .string("sha256:" + sha256),
        ]
        var r = resource
        if format == .csv {
            r["dialect"] = .object([
                "delimiter": ",", "lineTerminator": "\r\n", "quoteChar": "\"", "doubleQuote": true, "header": true,
            ])
        }
        r["schema"] = schema(config: config, precision: precision)
        let package: JSONObject = [
            "profile": "tabular-data-package",
            "name": .string(packageName(config.trialID)),
            "title": .string("Evaluation dataset of the Work and Health Programme trial \(config.trialID)"),
            "description": .string(
                "De-identified evaluation export (\(rows) rows, dates by \(precision.rawValue)). Column meanings, loading recipes and caveats: codebook.md."
            ),
            "created": .string(created.iso),
            "keywords": ["randomised controlled trial", "Work and Health Programme"],
            "resources": .array([.object(r)]),
        ]
        return .object(package)
    }

    /// A package name as the spec allows it: lower case, digits, `-`, `_`, `.`.
    static func packageName(_ trialID: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
        let name = String(trialID.lowercased().map { allowed.contains($0) ? $0 : "-" })
        return (name.isEmpty ? "trial" : name) + "-evaluation"
    }

    /// The Table Schema of the data file.
    public static func schema(config: TrialConfig, precision: DatePrecision) -> JSONValue {
        func strings(_ a: [String]) -> JSONValue { .array(a.map { .string($0) }) }
        func coded(_ name: String, _ values: [String], required: Bool = false, _ description: String) -> JSONValue {
            var c: JSONObject = ["enum": strings(values)]
            if required { c["required"] = true }
            return .object(["name": .string(name), "type": "string", "description": .string(description), "constraints": .object(c)])
        }
        func date(_ name: String, required: Bool = false, _ description: String) -> JSONValue {
            var f: JSONObject = ["name": .string(name), "description": .string(description)]
            var c: JSONObject = [:]
            if required { c["required"] = true }
            switch precision {
            case .day: f["type"] = "date"; f["format"] = "default"
            case .month: f["type"] = "yearmonth"
            case .week:
                f["type"] = "string"
                f["format"] = "default"
                c["pattern"] = .string(ExportVocabulary.isoWeekPattern)
            }
            if !c.isEmpty { f["constraints"] = .object(c) }
            return .object(f)
        }
        let providers = ExportVocabulary.providers(config)
        var providerConstraints: JSONObject = ["pattern": .string(ExportVocabulary.providerPattern)]
        if !providers.isEmpty { providerConstraints["enum"] = strings(providers) }
        let fields: [JSONValue] = [
            .object([
                "name": "research_id", "type": "string",
                "description": "The person, as a stable research id (64 hex digits; ALLOCATION.md section 5 over the person's pseudonym)",
                "constraints": .object(["required": true, "pattern": "[0-9a-f]{64}"]),
            ]),
            coded("district", config.districts.map(\.id), required: true, "The district that made the referral"),
            coded("group", config.groups, required: true, "The referral's group"),
            coded("stratum", ExportVocabulary.strata(config), required: true, "The allocation stratum"),
            .object([
                "name": "referral_number", "type": "integer",
                "description": "The person's exported rows numbered 1, 2, ... in referral order",
                "constraints": .object(["required": true, "minimum": 1]),
            ]),
            date("referral_date", required: true, "When the work coach referred"),
            date("gk_date", "When the district gatekeeper decided; missing while pending"),
            coded("gk_outcome", ExportVocabulary.gkOutcomes, required: true, "The gatekeeper's decision"),
            coded("gk_rule", ExportVocabulary.gkRules, "How the gatekeeper decided; missing while pending"),
            coded("arm", ExportVocabulary.arms(config), "The random allocation of a selected referral"),
            coded("in_error", ExportVocabulary.flagReasons, "Why the allocation was flagged as made in error"),
            date("provider_referral_date", "When the work coach referred the participant to the provider"),
            date("start_date", "When the participant started with the provider"),
            coded("not_started_reason", ExportVocabulary.notStartedReasons, "Why the participant did not start"),
            date("left_date", "When the participant left the programme"),
            coded("left_reason", ExportVocabulary.leftReasons, "Why the participant left"),
            .object([
                "name": "disclosed", "type": "boolean", "trueValues": ["true"], "falseValues": ["false"],
                "description": "Whether the referral's true status was disclosed to front-line staff",
                "constraints": .object(["required": true]),
            ]),
            coded("corrected_group", config.groups, "The group a wrong_group flag says the referral should have had"),
            .object([
                "name": "provider", "type": "string", "description": "The provider a WHP or PSC allocation drew",
                "constraints": .object(providerConstraints),
            ]),
        ]
        return .object([
            "fields": .array(fields),
            "missingValues": [""],
            "primaryKey": ["research_id", "referral_number"],
        ])
    }
}

/// JSON for people to read: two-space indents, one member a line, keys in
/// the order they were given. The bytes parse to the same value as `JSON.encode`'s.
public enum PrettyJSON {
    public static func encode(_ v: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        write(v, indent: 0, into: &out)
        out.append(0x0a)
        return out
    }

    private static func write(_ v: JSONValue, indent: Int, into out: inout [UInt8]) {
        switch v {
        case .array(let a) where !a.isEmpty:
            out.append(0x5b)
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(0x2c) }
                newline(indent + 1, &out)
                write(e, indent: indent + 1, into: &out)
            }
            newline(indent, &out)
            out.append(0x5d)
        case .object(let o) where !o.isEmpty:
            out.append(0x7b)
            for (i, e) in o.entries.enumerated() {
                if i > 0 { out.append(0x2c) }
                newline(indent + 1, &out)
                out.append(contentsOf: JSON.encode(.string(e.key)))
                out.append(0x3a); out.append(0x20)
                write(e.value, indent: indent + 1, into: &out)
            }
            newline(indent, &out)
            out.append(0x7d)
        default:
            out.append(contentsOf: JSON.encode(v))
        }
    }

    private static func newline(_ indent: Int, _ out: inout [UInt8]) {
        out.append(0x0a)
        out.append(contentsOf: repeatElement(0x20, count: indent * 2))
    }
}
