import WHPCrypto
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

/// Lock lengths from `[locks]` (PROTOCOL.md §5).
public struct LockLengths: Sendable, Equatable {
    public var notSelectedDays: Int
    public var rcgMonths: Int
    public var allocatedMonths: Int
    public init(notSelectedDays: Int = 42, rcgMonths: Int = 24, allocatedMonths: Int = 24) {
        self.notSelectedDays = notSelectedDays; self.rcgMonths = rcgMonths; self.allocatedMonths = allocatedMonths
    }
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
    public init(id: String, name: String, psc: Bool, gatekeeperRule: GatekeeperRule, weights: Weights) {
        self.id = id; self.name = name; self.psc = psc; self.gatekeeperRule = gatekeeperRule; self.weights = weights
    }
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

    public init(
        trialID: String, method: AllocationMethod = .permutedBlock, blockMultipliers: [Int] = [1, 2],
        stratifyByGroup: Bool = false, frontlineRCG: FrontlineRCG = .hidden, groups: [String],
        locks: LockLengths = LockLengths(), districts: [District]
    ) {
        self.trialID = trialID; self.method = method; self.blockMultipliers = blockMultipliers
        self.stratifyByGroup = stratifyByGroup; self.frontlineRCG = frontlineRCG; self.groups = groups
        self.locks = locks; self.districts = districts
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
