import WHPCrypto
import WHPJSON
/// The three arms, in the canonical order every draw walks them (ALLOCATION.md §4).
public enum Arm: String, CaseIterable, Sendable, Hashable, Comparable {
    case whp = "WHP"
    case psc = "PSC"
    case rcg = "RCG"

    public static func < (a: Arm, b: Arm) -> Bool {
        Arm.allCases.firstIndex(of: a)! < Arm.allCases.firstIndex(of: b)!
    }
}

public enum AllocationMethod: String, Sendable { case permutedBlock = "permuted_block", simple }
public enum GatekeeperRule: String, Sendable { case fifo, lottery }
/// How work-coach views treat RCG (PROTOCOL.md §4). `hidden` is the default.
public enum FrontlineRCG: String, Sendable { case hidden, dcams }

/// Lock lengths from `[locks]` (PROTOCOL.md §5, RULES2 R14).
public struct LockLengths: Sendable, Equatable {
    public var notSelectedDays: Int
    public var rcgMonths: Int
    public var allocatedMonths: Int
    /// RULES2 R14: a person with any allocation is never eligible again.
    public var allocatedOnce: Bool
    public init(notSelectedDays: Int = 42, rcgMonths: Int = 24, allocatedMonths: Int = 24, allocatedOnce: Bool = false) {
        self.notSelectedDays = notSelectedDays; self.rcgMonths = rcgMonths; self.allocatedMonths = allocatedMonths
        self.allocatedOnce = allocatedOnce
    }
}

/// `[recruitment]` (RULES2 R2): the dates a referral or a run may carry.
public struct Recruitment: Sendable, Equatable {
    /// Default: the UTC date of `whp init` (the trial's `trial_started`).
    public var opens: CivilDate?
    public var closes: CivilDate?
    public var maxBackdateDays: Int
    public init(opens: CivilDate? = nil, closes: CivilDate? = nil, maxBackdateDays: Int = 14) {
        self.opens = opens; self.closes = closes; self.maxBackdateDays = maxBackdateDays
    }
}

/// `[deadlines]` (RULES2 R14).
public struct Deadlines: Sendable, Equatable {
    public var providerReferralWorkingDays: Int
    public var startWorkingDays: Int
    public var pendingDays: Int
    public init(providerReferralWorkingDays: Int = 10, startWorkingDays: Int = 15, pendingDays: Int = 28) {
        self.providerReferralWorkingDays = providerReferralWorkingDays; self.startWorkingDays = startWorkingDays
        self.pendingDays = pendingDays
    }
}

/// A provider of one district and arm (RULES2 R15).
public struct Provider: Sendable, Equatable {
    public var id: String
    public var name: String
    public var arm: Arm
    public var share: Int
    public init(id: String, name: String, arm: Arm, share: Int) { self.id = id; self.name = name; self.arm = arm; self.share = share }
}

/// Arm weights of one district; arms it does not list weigh 0.
public struct Weights: Sendable, Equatable {
    public var whp: Int, psc: Int, rcg: Int
    public init(whp: Int = 0, psc: Int = 0, rcg: Int = 0) { self.whp = whp; self.psc = psc; self.rcg = rcg }
    public subscript(arm: Arm) -> Int {
        switch arm {
        case .whp: whp;
        case .psc: psc;
        case .rcg: rcg
        }
    }
    /// `W`.
    public var total: Int { whp + psc + rcg }
}

public struct District: Sendable, Equatable {
    public var id: String
    public var name: String
    public var psc: Bool
    public var gatekeeperRule: GatekeeperRule
    public var weights: Weights
    public var providers: [Provider]
    public init(id: String, name: String, psc: Bool, gatekeeperRule: GatekeeperRule, weights: Weights, providers: [Provider] = []) {
        self.id = id; self.name = name; self.psc = psc; self.gatekeeperRule = gatekeeperRule; self.weights = weights
        self.providers = providers
    }

    /// The providers of one arm, sorted by id.
    public func providers(of arm: Arm) -> [Provider] {
        providers.filter { $0.arm == arm }.sorted { $0.id.utf8.lexicographicallyPrecedes($1.id.utf8) }
    }

    /// The config's shares of one arm, or nil when the arm has no providers here.
    public func configuredShares(of arm: Arm) -> ProviderShares? {
        let list = providers(of: arm)
        guard !list.isEmpty else { return nil }
        return ProviderShares(Dictionary(uniqueKeysWithValues: list.map { ($0.id, $0.share) }))
    }

    public func provider(_ id: String) -> Provider? { providers.first { $0.id == id } }
}

/// Everything a deployment decides (CONFIG.md), validated.
public struct TrialConfig: Sendable, Equatable {
    public var trialID: String
    public var method: AllocationMethod
    public var blockMultipliers: [Int]
    public var stratifyByGroup: Bool
    public var frontlineRCG: FrontlineRCG
    public var groups: [String]
    public var locks: LockLengths
    public var districts: [District]
    public var recruitment: Recruitment
    public var deadlines: Deadlines
    /// `calendar.toml`'s bank holidays: the days that are not working days (RULES2 R14).
    public var bankHolidays: Set<CivilDate>

    public init(
        trialID: String, method: AllocationMethod = .permutedBlock, blockMultipliers: [Int] = [1, 2],
        stratifyByGroup: Bool = false, frontlineRCG: FrontlineRCG = .hidden, groups: [String],
        locks: LockLengths = LockLengths(), districts: [District], recruitment: Recruitment = Recruitment(),
        deadlines: Deadlines = Deadlines(), bankHolidays: Set<CivilDate> = []
    ) {
        self.trialID = trialID; self.method = method; self.blockMultipliers = blockMultipliers
        self.stratifyByGroup = stratifyByGroup; self.frontlineRCG = frontlineRCG; self.groups = groups
        self.locks = locks; self.districts = districts; self.recruitment = recruitment; self.deadlines = deadlines
        self.bankHolidays = bankHolidays
    }

    /// Whether any district lists a provider (the `providers` check applies).
    public var hasProviders: Bool { districts.contains { !$0.providers.isEmpty } }

    /// The config rules that depend on the trial's revision (RULES2 R3): a
    /// config that breaks one may not start or serve a rules 2 trial, and
    /// `verify` fails `config_rules` on it.
    public func ruleViolations(_ rules: RulesVersion) -> [ConfigError] {
        guard rules >= .two, frontlineRCG == .hidden else { return [] }
        return districts.filter { $0.gatekeeperRule == .fifo }.map { d in
            ConfigError(
                file: "districts.toml", district: d.id, key: "gatekeeper_rule",
                "fifo cannot be used under frontline_rcg = \"hidden\": fifo selects a known prefix of the queue, so a work coach who sees a WHP or PSC allocation knows that every older \"not allocated\" referral of the same run is RCG. Use gatekeeper_rule = \"lottery\", or frontline_rcg = \"dcams\" where work coaches may see RCG (RULES2 R3)"
            )
        }
    }

    public func district(_ id: String) -> District? { districts.first { $0.id == id } }

    /// σ: the district id, or `district|group` when stratifying by group (ALLOCATION.md §4).
    public func stratum(district: String, group: String) -> String {
        stratifyByGroup ? district + "|" + group : district
    }
}

/// One file of the config folder, as read from disk: its path relative to
/// the folder (`/`-separated) and its bytes.
public struct ConfigFile: Sendable {
    public var path: String
    public var bytes: [UInt8]
    public init(path: String, bytes: [UInt8]) { self.path = path; self.bytes = bytes }
}

/// A config error names the file, the district (if any) and the key (CONFIG.md, Validation).
public struct ConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    public var file: String
    public var district: String?
    public var key: String?
    public var problem: String
    public init(file: String, district: String? = nil, key: String? = nil, _ problem: String) {
        self.file = file; self.district = district; self.key = key; self.problem = problem
    }
    public var description: String {
        var s = file
        if let district { s += ": district \"\(district)\"" }
        if let key { s += ": key \"\(key)\"" }
        return s + ": " + problem
    }
}

extension TrialConfig {
    /// ALLOCATION.md §6: the hash over every file of the config folder.
    public static func hash(of files: [ConfigFile]) -> Bytes32 {
        let sorted = files.sorted { $0.path.utf8Precedes($1.path) }
        var w = ByteWriter(capacity: 4096)
        w.enc("whp/config/v1")
        w.u32(UInt32(sorted.count))
        for f in sorted {
            w.enc(f.path)
            w.enc(bytes: f.bytes)
        }
        return Crypto.sha256(w.bytes)
    }

}

extension TrialConfig {
    /// The `trial_started` event of a trial started with this config.
    public func trialStarted(
        commitment: Bytes32, configHash: Bytes32, rules: RulesVersion = .current,
        pseudonymKeyCheck: Bytes32? = nil, evaluationKeyCheck: Bytes32? = nil,
        recordedAt: Instant
    ) -> TrialStarted {
        TrialStarted(
            trialID: trialID, commitment: commitment, configHash: configHash, method: method,
            blockMultipliers: blockMultipliers, stratifyByGroup: stratifyByGroup, frontlineRCG: frontlineRCG,
            rules: rules, pseudonymKeyCheck: pseudonymKeyCheck, evaluationKeyCheck: evaluationKeyCheck,
            recordedAt: recordedAt)
    }
}
