import Foundation
import Testing
@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

/// CONFIG.md: parsing and validating district-config, and its hash (ALLOCATION.md §6).
@Suite("Config")
struct ConfigTests {
    static let trialTOML = """
        trial_id = "whp-demo"
        method = "permuted_block"
        block_multipliers = [1, 2]
        stratify_by_group = false
        frontline_rcg = "hidden"
        groups = ["disability", "early_access"]

        [locks]
        not_selected_days = 42
        rcg_months = 24
        allocated_months = 24

        """

    static let districtsTOML = """
        [[district]]
        id = "devon-cornwall"
        name = "Devon and Cornwall"
        psc = true
        gatekeeper_rule = "fifo"
        weights = { WHP = 1, PSC = 1, RCG = 1 }

        [[district]]
        id = "example-north"
        name = "Example North"
        psc = false
        gatekeeper_rule = "lottery"
        weights = { WHP = 2, RCG = 1 }

        """

    static func files(trial: String? = trialTOML, districts: String? = districtsTOML, extra: [String: String] = [:]) -> [ConfigFile] {
        var out: [ConfigFile] = []
        if let trial { out.append(ConfigFile(path: "trial.toml", bytes: Array(trial.utf8))) }
        if let districts { out.append(ConfigFile(path: "districts.toml", bytes: Array(districts.utf8))) }
        for (p, s) in extra { out.append(ConfigFile(path: p, bytes: Array(s.utf8))) }
        return out
    }

    static func replacing(_ text: String, _ old: String, _ new: String) -> String {
        precondition(text.contains(old), "test setup: \(old) not in text")
        return text.replacingOccurrences(of: old, with: new)
    }

    @Test("a valid minimal config parses")
    func validConfig() throws {
        let c = try TrialConfig.parse(files: Self.files(extra: ["README.md": "# notes\n"]))
        #expect(c.trialID == "whp-demo")
        #expect(c.method == .permutedBlock)
        #expect(c.blockMultipliers == [1, 2])
        #expect(c.stratifyByGroup == false)
        #expect(c.frontlineRCG == .hidden)
        #expect(c.groups == ["disability", "early_access"])
        #expect(c.locks == LockLengths(notSelectedDays: 42, rcgMonths: 24, allocatedMonths: 24))
        #expect(
            c.districts == [
                District(
                    id: "devon-cornwall", name: "Devon and Cornwall", psc: true, gatekeeperRule: .fifo,
                    weights: Weights(whp: 1, psc: 1, rcg: 1)),
                District(
                    id: "example-north", name: "Example North", psc: false, gatekeeperRule: .lottery,
                    weights: Weights(whp: 2, psc: 0, rcg: 1)),
            ])
        #expect(c.district("example-north")?.weights.total == 3)
        #expect(c.district("nowhere") == nil)
    }

    @Test("the other values of method, frontline_rcg, stratify_by_group and the locks are read")
    func otherValues() throws {
        var t = Self.replacing(Self.trialTOML, "\"permuted_block\"", "\"simple\"")
        t = Self.replacing(t, "\"hidden\"", "\"dcams\"")
        t = Self.replacing(t, "stratify_by_group = false", "stratify_by_group = true")
        t = Self.replacing(t, "not_selected_days = 42", "not_selected_days = 7")
        t = Self.replacing(t, "rcg_months = 24", "rcg_months = 12")
        t = Self.replacing(t, "allocated_months = 24", "allocated_months = 18")
        t = Self.replacing(t, "[1, 2]", "[3]")
        let c = try TrialConfig.parse(files: Self.files(trial: t))
        #expect(c.method == .simple)
        #expect(c.frontlineRCG == .dcams)
        #expect(c.stratifyByGroup)
        #expect(c.blockMultipliers == [3])
        #expect(c.locks == LockLengths(notSelectedDays: 7, rcgMonths: 12, allocatedMonths: 18))
    }

    /// One CONFIG.md validation case: a change to the valid config and the
    /// file, district and key the error must name.
    struct Case: Sendable, CustomTestStringConvertible {
        let label: String
        let trial: String?
        let districts: String?
        let file: String
        let district: String?
        let key: String?
        var testDescription: String { label }

        static func trial(_ label: String, _ old: String, _ new: String, key: String?) -> Case {
            Case(
                label: label, trial: ConfigTests.replacing(ConfigTests.trialTOML, old, new), districts: ConfigTests.districtsTOML,
                file: "trial.toml", district: nil, key: key)
        }
        static func districts(_ label: String, _ old: String, _ new: String, district: String?, key: String?) -> Case {
            Case(
                label: label, trial: ConfigTests.trialTOML, districts: ConfigTests.replacing(ConfigTests.districtsTOML, old, new),
                file: "districts.toml", district: district, key: key)
        }
    }

    static let north = "id = \"example-north\""
    static let northWeights = "weights = { WHP = 2, RCG = 1 }"
    static let devonWeights = "weights = { WHP = 1, PSC = 1, RCG = 1 }"

    static let cases: [Case] = [
        .trial("unknown trial key", "method =", "colour = \"blue\"\nmethod =", key: "colour"),
        .trial("unknown locks key", "rcg_months = 24", "rcg_months = 24\nextra_days = 3", key: "locks.extra_days"),
        .districts("unknown district key", north, north + "\nregion = \"north\"", district: "example-north", key: "region"),
        .districts(
            "unknown weights arm", northWeights, "weights = { WHP = 2, RCG = 1, XYZ = 1 }",
            district: "example-north", key: "weights.XYZ"),
        .districts(
            "lower-case arm name", northWeights, "weights = { whp = 2, RCG = 1 }",
            district: "example-north", key: "weights.whp"),
        .districts(
            "PSC weight where psc = false", northWeights, "weights = { WHP = 2, PSC = 1, RCG = 1 }",
            district: "example-north", key: "weights.PSC"),
        .districts("all weights 0", northWeights, "weights = { WHP = 0, RCG = 0 }", district: "example-north", key: "weights"),
        .districts("empty weights", northWeights, "weights = {}", district: "example-north", key: "weights"),
        .districts(
            "a PSC district with all weights 0", devonWeights, "weights = { WHP = 0, PSC = 0, RCG = 0 }",
            district: "devon-cornwall", key: "weights"),
        .districts("negative weight", northWeights, "weights = { WHP = -1, RCG = 1 }", district: "example-north", key: "weights.WHP"),
        .districts(
            "negative PSC weight", devonWeights, "weights = { WHP = 1, PSC = -2, RCG = 1 }",
            district: "devon-cornwall", key: "weights.PSC"),
        .districts("duplicate district id", north, "id = \"devon-cornwall\"", district: "devon-cornwall", key: "id"),
        .trial("empty block_multipliers", "[1, 2]", "[]", key: "block_multipliers"),
        .trial("multiplier 0", "[1, 2]", "[1, 0]", key: "block_multipliers"),
        .trial("negative multiplier", "[1, 2]", "[-1]", key: "block_multipliers"),
        .trial("not_selected_days < 1", "not_selected_days = 42", "not_selected_days = 0", key: "locks.not_selected_days"),
        .trial("rcg_months < 1", "rcg_months = 24", "rcg_months = 0", key: "locks.rcg_months"),
        .trial("allocated_months < 1", "allocated_months = 24", "allocated_months = -3", key: "locks.allocated_months"),
        .trial("bad method", "\"permuted_block\"", "\"blocked\"", key: "method"),
        .trial("bad frontline_rcg", "\"hidden\"", "\"shown\"", key: "frontline_rcg"),
        .districts("bad gatekeeper_rule", "\"lottery\"", "\"random\"", district: "example-north", key: "gatekeeper_rule"),
        .trial("trial_id not [a-z0-9-]", "\"whp-demo\"", "\"WHP Demo\"", key: "trial_id"),
        .trial("missing method", "method = \"permuted_block\"\n", "", key: "method"),
        .trial("missing [locks]", "[locks]\nnot_selected_days = 42\nrcg_months = 24\nallocated_months = 24\n", "", key: "locks"),
        .trial(
            "wrong type for stratify_by_group", "stratify_by_group = false", "stratify_by_group = \"no\"",
            key: "stratify_by_group"),
        .districts("bad district id", north, "id = \"Example North\"", district: "Example North", key: "id"),
        Case(label: "missing trial.toml", trial: nil, districts: districtsTOML, file: "trial.toml", district: nil, key: nil),
        Case(label: "missing districts.toml", trial: trialTOML, districts: nil, file: "districts.toml", district: nil, key: nil),
    ]

    @Test("each validation error names the file, the district and the key", arguments: cases)
    func refused(_ c: Case) {
        #expect {
            _ = try TrialConfig.parse(files: Self.files(trial: c.trial, districts: c.districts))
        } throws: { error in
            guard let e = error as? ConfigError else {
                Issue.record("not a ConfigError: \(error)")
                return false
            }
            #expect(e.file == c.file)
            #expect(e.district == c.district)
            #expect(e.key == c.key)
            #expect(!e.problem.isEmpty)
            #expect(e.description.contains(c.file))
            if let d = c.district { #expect(e.description.contains(d)) }
            if let k = c.key { #expect(e.description.contains(k)) }
            return true
        }
    }

    @Test("a TOML syntax error names the file", arguments: ["trial.toml", "districts.toml"])
    func syntaxError(_ file: String) {
        let broken = "this is = = not toml ["
        let files = file == "trial.toml" ? Self.files(trial: broken) : Self.files(districts: broken)
        #expect {
            _ = try TrialConfig.parse(files: files)
        } throws: { error in
            (error as? ConfigError)?.file == file
        }
    }

    // MARK: hash

    @Test("the hash does not depend on the order files are given in")
    func hashOrderIndependent() {
        let files = Self.files(extra: ["README.md": "notes\n", "sub/.hidden": "x", "a.b": "1"])
        let h = TrialConfig.hash(of: files)
        #expect(TrialConfig.hash(of: files.reversed()) == h)
        #expect(TrialConfig.hash(of: files.shuffled()) == h)
        #expect(TrialConfig.hash(of: Array(files.dropFirst()) + [files[0]]) == h)
        #expect(h == referenceHash(files))
    }

    @Test("the hash changes when any byte, a path or the file count changes")
    func hashSensitive() {
        let files = Self.files()
        let h = TrialConfig.hash(of: files)
        for i in files.indices {
            for position in [0, files[i].bytes.count / 2, files[i].bytes.count - 1] {
                var changed = files
                changed[i].bytes[position] ^= 0x01
                #expect(TrialConfig.hash(of: changed) != h, "\(files[i].path) byte \(position)")
            }
            var longer = files
            longer[i].bytes.append(0x0a)
            #expect(TrialConfig.hash(of: longer) != h)
        }
        var renamed = files
        renamed[0].path = "trial2.toml"
        #expect(TrialConfig.hash(of: renamed) != h)
        #expect(TrialConfig.hash(of: files + [ConfigFile(path: "empty", bytes: [])]) != h)
        // Moving a byte across the path/bytes boundary changes the hash (enc is length-prefixed).
        let a = [ConfigFile(path: "ab", bytes: Array("c".utf8))]
        let b = [ConfigFile(path: "a", bytes: Array("bc".utf8))]
        #expect(TrialConfig.hash(of: a) != TrialConfig.hash(of: b))
    }

    /// Paths sort by UTF-8 bytes, not by Swift's String order (which treats a
    /// precomposed and a decomposed "é" as equal).
    @Test("paths sort by UTF-8 bytes")
    func hashSortsByBytes() {
        let pre = ConfigFile(path: "caf\u{E9}.toml", bytes: [1])
        let dec = ConfigFile(path: "cafe\u{301}.toml", bytes: [2])
        let upper = ConfigFile(path: "Z.toml", bytes: [3])
        let dir = ConfigFile(path: "a/b", bytes: [4])
        let dot = ConfigFile(path: "a.b", bytes: [5])
        let prefix = ConfigFile(path: "a", bytes: [6])
        let all = [pre, dec, upper, dir, dot, prefix]
        let h = TrialConfig.hash(of: all)
        #expect(h == referenceHash(all))
        #expect(TrialConfig.hash(of: all.reversed()) == h)
        #expect(TrialConfig.hash(of: [dec, pre]) == TrialConfig.hash(of: [pre, dec]))
    }

    /// ALLOCATION.md §6 written out independently: sort paths by their UTF-8
    /// bytes, then H(enc(tag) ‖ u32(count) ‖ Σ enc(path) ‖ enc(bytes)).
    func referenceHash(_ files: [ConfigFile]) -> Bytes32 {
        func u32(_ n: Int) -> [UInt8] { [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }
        func enc(_ b: [UInt8]) -> [UInt8] { u32(b.count) + b }
        let sorted = files.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
        var bytes = enc(Array("whp/config/v1".utf8)) + u32(sorted.count)
        for f in sorted { bytes += enc(Array(f.path.utf8)) + enc(f.bytes) }
        return Crypto.sha256(bytes)
    }

    // MARK: the shipped default

    static let shippedConfig = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("district-config")

    static var shippedConfigExists: Bool {
        FileManager.default.fileExists(atPath: shippedConfig.appendingPathComponent("trial.toml").path)
            && FileManager.default.fileExists(atPath: shippedConfig.appendingPathComponent("districts.toml").path)
    }

    /// Every regular file under the folder, paths relative and `/`-separated.
    static func readShipped() throws -> [ConfigFile] {
        let root = shippedConfig.standardizedFileURL.resolvingSymlinksInPath()
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var files: [ConfigFile] = []
        for case let url as URL in walker {
            guard try url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile == true else { continue }
            let full = url.standardizedFileURL.resolvingSymlinksInPath().path
            let rel = String(full.dropFirst(root.path.count + 1))
            files.append(ConfigFile(path: rel, bytes: Array(try Data(contentsOf: url))))
        }
        return files
    }

    static let pscDistrictNames: Set<String> = [
        "Lincolnshire, Nottinghamshire and Rutland",
        "Leicestershire and Northants",
        "Dorset, Wiltshire, Hampshire and the Isle of Wight",
        "Devon and Cornwall",
    ]

    @Test(
        "the shipped district-config parses and marks exactly the four PSC districts of the guidance",
        .enabled(if: shippedConfigExists, "district-config/trial.toml and districts.toml are not shipped yet"))
    func shippedDefault() throws {
        let files = try Self.readShipped()
        #expect(files.contains { $0.path == "trial.toml" })
        #expect(files.contains { $0.path == "districts.toml" })
        let c = try TrialConfig.parse(files: files)
        let psc = c.districts.filter(\.psc)
        #expect(psc.count == 4)
        #expect(Set(psc.map(\.name)) == Self.pscDistrictNames)
        for d in c.districts where !d.psc {
            #expect(d.weights.psc == 0, "\(d.id) has a PSC weight but psc = false")
        }
        #expect(Set(c.districts.map(\.id)).count == c.districts.count)
    }
}
