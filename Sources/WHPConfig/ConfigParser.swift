internal import TOMLKit
import WHPDomain

extension TrialConfig {
    static func idPattern(_ s: String) -> Bool {
        let u = s.utf8
        return (1...64).contains(u.count) && u.allSatisfy { (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2d }
    }
    static func groupPattern(_ s: String) -> Bool {
        let u = s.utf8
        return (1...64).contains(u.count)
            && u.allSatisfy {
                (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2d || $0 == 0x5f
            }
    }

    /// Parses and validates `trial.toml` and `districts.toml` from the folder's files.
    /// Other files in the folder (a README, say) are hashed but not read.
    public static func parse(files: [ConfigFile]) throws(ConfigError) -> TrialConfig {
        func text(_ name: String) throws(ConfigError) -> String {
            guard let f = files.first(where: { $0.path == name }) else {
                throw ConfigError(file: name, "missing: district-config must contain \(name)")
            }
            guard let s = String(validating: f.bytes, as: UTF8.self) else {
                throw ConfigError(file: name, "not valid UTF-8")
            }
            return s
        }
        let trialText = try text("trial.toml")
        let districtsText = try text("districts.toml")
        var config = try parseTrial(trialText)
        config.districts = try parseDistricts(districtsText, trialFile: "districts.toml")
        if files.contains(where: { $0.path == "calendar.toml" }) {
            config.bankHolidays = try parseCalendar(try text("calendar.toml"))
        }
        return config
    }

    private static func table(_ text: String, file: String) throws(ConfigError) -> TOMLTable {
        do {
            return try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigError(file: file, "TOML syntax error at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch {
            throw ConfigError(file: file, "TOML syntax error: \(error)")
        }
    }

    static func parseTrial(_ text: String) throws(ConfigError) -> TrialConfig {
        let file = "trial.toml"
        let t = try table(text, file: file)
        let allowed: Set<String> = [
            "trial_id", "method", "block_multipliers", "stratify_by_group", "frontline_rcg", "groups", "locks", "recruitment", "deadlines",
        ]
        for k in t.keys where !allowed.contains(k) {
            throw ConfigError(file: file, key: k, "unknown key (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        let r = TOMLReader(table: t, file: file, district: nil, prefix: "")
        let trialID = try r.string("trial_id")
        guard idPattern(trialID) else { throw ConfigError(file: file, key: "trial_id", "must match [a-z0-9-]{1,64}, got \"\(trialID)\"") }
        let methodText = try r.string("method")
        guard let method = AllocationMethod(rawValue: methodText) else {
            throw ConfigError(file: file, key: "method", "must be \"permuted_block\" or \"simple\", got \"\(methodText)\"")
        }
        let multipliers = try r.intArray("block_multipliers")
        guard !multipliers.isEmpty else { throw ConfigError(file: file, key: "block_multipliers", "must not be empty") }
        if let bad = multipliers.first(where: { $0 < 1 || $0 > 1_000 }) {
            throw ConfigError(file: file, key: "block_multipliers", "each multiplier must be from 1 to 1000, got \(bad)")
        }
        let stratify = try r.bool("stratify_by_group")
        let policyText = try r.string("frontline_rcg")
        guard let policy = FrontlineRCG(rawValue: policyText) else {
            throw ConfigError(file: file, key: "frontline_rcg", "must be \"hidden\" or \"dcams\", got \"\(policyText)\"")
        }
        let groups = try r.stringArray("groups")
        guard !groups.isEmpty else { throw ConfigError(file: file, key: "groups", "must list at least one group") }
        for g in groups where !groupPattern(g) {
            throw ConfigError(file: file, key: "groups", "group \"\(g)\" must match [a-z0-9_-]{1,64}")
        }
        if Set(groups).count != groups.count { throw ConfigError(file: file, key: "groups", "a group is listed twice") }
        guard let lockTable = t["locks"]?.table else { throw ConfigError(file: file, key: "locks", "missing table [locks]") }
        let lockKeys: Set<String> = ["not_selected_days", "rcg_months", "allocated_months", "allocated_once"]
        for k in lockTable.keys where !lockKeys.contains(k) {
            throw ConfigError(file: file, key: "locks." + k, "unknown key (allowed: \(lockKeys.sorted().joined(separator: ", ")))")
        }
        let lr = TOMLReader(table: lockTable, file: file, district: nil, prefix: "locks.")
        let locks = LockLengths(
            notSelectedDays: try lr.int("not_selected_days"), rcgMonths: try lr.int("rcg_months"),
            allocatedMonths: try lr.int("allocated_months"), allocatedOnce: try lr.optionalBool("allocated_once") ?? false)
        for (k, v) in [("not_selected_days", locks.notSelectedDays), ("rcg_months", locks.rcgMonths), ("allocated_months", locks.allocatedMonths)]
        where v < 1 || v > 1200 {
            throw ConfigError(file: file, key: "locks." + k, "a lock must be from 1 to 1200, got \(v)")
        }
        var recruitment = Recruitment()
        if let v = t["recruitment"] {
            guard let rt = v.table else { throw ConfigError(file: file, key: "recruitment", "must be a table [recruitment]") }
            let keys: Set<String> = ["opens", "closes", "max_backdate_days"]
            for k in rt.keys where !keys.contains(k) {
                throw ConfigError(file: file, key: "recruitment." + k, "unknown key (allowed: \(keys.sorted().joined(separator: ", ")))")
            }
            let rr = TOMLReader(table: rt, file: file, district: nil, prefix: "recruitment.")
            recruitment.opens = try rr.optionalDate("opens")
            recruitment.closes = try rr.optionalDate("closes")
            if let n = try rr.optionalInt("max_backdate_days") {
                guard (0...365).contains(n) else { throw rr.fail("max_backdate_days", "must be from 0 to 365, got \(n)") }
                recruitment.maxBackdateDays = n
            }
            if let o = recruitment.opens, let c = recruitment.closes, c < o {
                throw rr.fail("closes", "\(c.iso) is before opens (\(o.iso))")
            }
        }
        var deadlines = Deadlines()
        if let v = t["deadlines"] {
            guard let dt = v.table else { throw ConfigError(file: file, key: "deadlines", "must be a table [deadlines]") }
            let keys: Set<String> = ["provider_referral_working_days", "start_working_days", "pending_days"]
            for k in dt.keys where !keys.contains(k) {
                throw ConfigError(file: file, key: "deadlines." + k, "unknown key (allowed: \(keys.sorted().joined(separator: ", ")))")
            }
            let dr = TOMLReader(table: dt, file: file, district: nil, prefix: "deadlines.")
            func days(_ k: String, _ d: Int) throws(ConfigError) -> Int {
                guard let n = try dr.optionalInt(k) else { return d }
                guard (1...365).contains(n) else { throw dr.fail(k, "must be from 1 to 365, got \(n)") }
                return n
            }
            deadlines = Deadlines(
                providerReferralWorkingDays: try days("provider_referral_working_days", 10),
                startWorkingDays: try days("start_working_days", 15), pendingDays: try days("pending_days", 28))
        }
        return TrialConfig(
            trialID: trialID, method: method, blockMultipliers: multipliers, stratifyByGroup: stratify,
            frontlineRCG: policy, groups: groups, locks: locks, districts: [], recruitment: recruitment, deadlines: deadlines)
    }

    /// `calendar.toml`: `bank_holidays = ["2017-12-25", …]`, the days that are not working days.
    static func parseCalendar(_ text: String) throws(ConfigError) -> Set<CivilDate> {
        let file = "calendar.toml"
        let t = try table(text, file: file)
        for k in t.keys where k != "bank_holidays" {
            throw ConfigError(file: file, key: k, "unknown key (allowed: bank_holidays)")
        }
        let r = TOMLReader(table: t, file: file, district: nil, prefix: "")
        var out: Set<CivilDate> = []
        for text in try r.stringArray("bank_holidays") {
            guard let d = CivilDate(text), CalendarRange.contains(d) else {
                throw r.fail("bank_holidays", "\"\(text)\" is not a date YYYY-MM-DD from 1900 to 2999")
            }
            guard out.insert(d).inserted else { throw r.fail("bank_holidays", "\(text) is listed twice") }
        }
        return out
    }

    static func parseDistricts(_ text: String, trialFile file: String) throws(ConfigError) -> [District] {
        let t = try table(text, file: file)
        for k in t.keys where k != "district" {
            throw ConfigError(file: file, key: k, "unknown key (only [[district]] tables are allowed)")
        }
        guard let list = t["district"]?.array else { throw ConfigError(file: file, key: "district", "no [[district]] tables") }
        var out: [District] = []
        var seen: Set<String> = []
        for (n, item) in list.enumerated() {
            guard let dt = item.table else { throw ConfigError(file: file, key: "district", "entry \(n + 1) is not a table") }
            let label = dt["id"]?.string ?? "#\(n + 1)"
            let allowed: Set<String> = ["id", "name", "psc", "gatekeeper_rule", "weights", "provider"]
            for k in dt.keys where !allowed.contains(k) {
                throw ConfigError(file: file, district: label, key: k, "unknown key (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
            let r = TOMLReader(table: dt, file: file, district: label, prefix: "")
            let id = try r.string("id")
            guard idPattern(id) else { throw ConfigError(file: file, district: label, key: "id", "must match [a-z0-9-]{1,64}") }
            guard seen.insert(id).inserted else { throw ConfigError(file: file, district: id, key: "id", "duplicate district id") }
            let name = try r.string("name")
            let psc = try r.bool("psc")
            let ruleText = try r.string("gatekeeper_rule")
            guard let rule = GatekeeperRule(rawValue: ruleText) else {
                throw ConfigError(file: file, district: id, key: "gatekeeper_rule", "must be \"fifo\" or \"lottery\", got \"\(ruleText)\"")
            }
            guard let wt = dt["weights"]?.table else {
                throw ConfigError(file: file, district: id, key: "weights", "missing (a table such as { WHP = 1, RCG = 1 })")
            }
            var weights = Weights()
            for k in wt.keys {
                guard let arm = Arm(rawValue: k) else {
                    throw ConfigError(file: file, district: id, key: "weights." + k, "unknown arm (arms are WHP, PSC, RCG)")
                }
                guard let v = wt[k]?.int else { throw ConfigError(file: file, district: id, key: "weights." + k, "must be an integer") }
                guard v >= 0 else { throw ConfigError(file: file, district: id, key: "weights." + k, "a weight must not be negative, got \(v)") }
                guard v <= 1_000 else { throw ConfigError(file: file, district: id, key: "weights." + k, "a weight must be at most 1000, got \(v)") }
                switch arm {
                case .whp: weights.whp = v;
                case .psc: weights.psc = v;
                case .rcg: weights.rcg = v
                }
            }
            if weights.psc > 0 && !psc {
                throw ConfigError(
                    file: file, district: id, key: "weights.PSC", "PSC weight is \(weights.psc) but psc = false: PSC runs only in the PSC districts")
            }
            guard weights.total > 0 else { throw ConfigError(file: file, district: id, key: "weights", "all weights are 0: no arm can be drawn") }
            let providers = try parseProviders(dt["provider"], district: id, psc: psc, file: file)
            out.append(District(id: id, name: name, psc: psc, gatekeeperRule: rule, weights: weights, providers: providers))
        }
        return out
    }
}

extension TrialConfig {
    /// `[[district.provider]]` tables (RULES2 R15).
    static func parseProviders(_ value: (any TOMLValueConvertible)?, district: String, psc: Bool, file: String) throws(ConfigError) -> [Provider] {
        guard let value else { return [] }
        guard let list = value.array else { throw ConfigError(file: file, district: district, key: "provider", "must be [[district.provider]] tables") }
        var out: [Provider] = []
        for (n, item) in list.enumerated() {
            guard let pt = item.table else {
                throw ConfigError(file: file, district: district, key: "provider", "entry \(n + 1) is not a table")
            }
            let keys: Set<String> = ["id", "name", "arm", "share"]
            for k in pt.keys where !keys.contains(k) {
                throw ConfigError(file: file, district: district, key: "provider." + k, "unknown key (allowed: \(keys.sorted().joined(separator: ", ")))")
            }
            let r = TOMLReader(table: pt, file: file, district: district, prefix: "provider.")
            let id = try r.string("id")
            guard idPattern(id) else { throw r.fail("id", "must match [a-z0-9-]{1,64}, got \"\(id)\"") }
            guard !out.contains(where: { $0.id == id }) else { throw r.fail("id", "provider \(id) is listed twice in this district") }
            let name = try r.string("name")
            guard (1...200).contains(name.unicodeScalars.count), !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw r.fail("name", "must be 1 to 200 characters without control characters")
            }
            let armText = try r.string("arm")
            guard let arm = Arm(rawValue: armText), arm != .rcg else { throw r.fail("arm", "must be \"WHP\" or \"PSC\", got \"\(armText)\"") }
            if arm == .psc && !psc { throw r.fail("arm", "PSC providers only in districts with psc = true") }
            let share = try r.int("share")
            guard (0...1000).contains(share) else { throw r.fail("share", "must be from 0 to 1000, got \(share)") }
            out.append(Provider(id: id, name: name, arm: arm, share: share))
        }
        for arm in [Arm.whp, .psc] {
            let of = out.filter { $0.arm == arm }
            if !of.isEmpty && of.allSatisfy({ $0.share == 0 }) {
                throw ConfigError(file: file, district: district, key: "provider.share", "every \(arm.rawValue) provider has share 0: none can be drawn")
            }
        }
        return out
    }
}

/// Typed reads from a TOML table that fail with the file, district and key named.
private struct TOMLReader {
    let table: TOMLTable
    let file: String
    let district: String?
    let prefix: String

    func fail(_ key: String, _ problem: String) -> ConfigError {
        ConfigError(file: file, district: district, key: prefix + key, problem)
    }
    func value(_ key: String) throws(ConfigError) -> any TOMLValueConvertible {
        guard let v = table[key] else { throw fail(key, "missing required key") }
        return v
    }
    func string(_ key: String) throws(ConfigError) -> String {
        guard let s = try value(key).string else { throw fail(key, "must be a string") }
        return s
    }
    func int(_ key: String) throws(ConfigError) -> Int {
        let v = try value(key)
        guard v.type == .int, let i = v.int else { throw fail(key, "must be an integer") }
        return i
    }
    func optionalInt(_ key: String) throws(ConfigError) -> Int? {
        guard table[key] != nil else { return nil }
        return try int(key)
    }
    func optionalBool(_ key: String) throws(ConfigError) -> Bool? {
        guard table[key] != nil else { return nil }
        return try bool(key)
    }
    /// A date written as a quoted string `"YYYY-MM-DD"` (CONFIG.md writes dates so), 1900–2999.
    func optionalDate(_ key: String) throws(ConfigError) -> CivilDate? {
        guard let v = table[key] else { return nil }
        guard let s = v.string else { throw fail(key, "must be a date written as a string, \"YYYY-MM-DD\"") }
        guard let d = CivilDate(s), CalendarRange.contains(d) else { throw fail(key, "\"\(s)\" is not a date YYYY-MM-DD from 1900 to 2999") }
        return d
    }
    func bool(_ key: String) throws(ConfigError) -> Bool {
        guard let b = try value(key).bool else { throw fail(key, "must be true or false") }
        return b
    }
    func intArray(_ key: String) throws(ConfigError) -> [Int] {
        guard let a = try value(key).array else { throw fail(key, "must be an array of integers") }
        var out: [Int] = []
        for e in a {
            guard e.type == .int, let i = e.int else { throw fail(key, "must be an array of integers") }
            out.append(i)
        }
        return out
    }
    func stringArray(_ key: String) throws(ConfigError) -> [String] {
        guard let a = try value(key).array else { throw fail(key, "must be an array of strings") }
        var out: [String] = []
        for e in a {
            guard let s = e.string else { throw fail(key, "must be an array of strings") }
            out.append(s)
        }
        return out
    }
}
