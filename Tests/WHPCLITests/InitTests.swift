import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore
import WHPTestSupport

/// `whp init`: keys, commitment, store; runs once; never overwrites a key;
/// refuses a bad config and creates nothing then.
@Suite struct InitTests {
    static let keyNames = ["seed.hex", "pseudonym.key", "evaluation.key"]

    @Test func initThenVerifyPassesOnAFreshStore() throws {
        let t = try TrialFolder()
        let i = try t.initialise(now: "2017-10-31T09:00:00Z")
        #expect(i.status == 0, "init: \(i.stderr)")

        // Plain verify: exit 0, every check ok.
        let plain = try t.verify()
        #expect(plain.status == 0, "verify: \(plain.stdout)\(plain.stderr)")
        #expect(plain.stdout.hasPrefix("OK:"), "the text report starts with OK: \(plain.stdout)")

        let (r, report) = try verifyJSON(t)
        #expect(r.status == 0)
        #expect(report.ok)
        #expect(report.events == 1, "a fresh store holds only trial_started")
        #expect(report.failedNames.isEmpty, "every check ok: \(report.failedNames)")
        let required: Set<String> = ["chain", "config_hash", "draws", "locks", "psc", "recorded_at", "derived_tables"]
        #expect(required.isSubset(of: report.checkNames), "missing checks: \(required.subtracting(report.checkNames))")

        let (rs, withSeed) = try verifyJSON(t, ["--seed", t.seedFile.path])
        #expect(rs.status == 0, "verify --seed: \(rs.stdout)\(rs.stderr)")
        #expect(withSeed.ok && withSeed.failedNames.isEmpty)
        let seedChecks: Set<String> = required.union(["commitment", "derived_seeds", "lottery"])
        #expect(seedChecks.isSubset(of: withSeed.checkNames), "missing checks: \(seedChecks.subtracting(withSeed.checkNames))")
        #expect(withSeed.head == report.head)
        #expect(withSeed.head == (try readLog(t)).last?.hash)
    }

    @Test func keyFilesAreNewPrivateAndWellFormed() throws {
        let t = try TrialFolder()
        #expect(try t.initialise().status == 0)
        let keys = t.data.appendingPathComponent("keys")
        var seen: Set<String> = []
        for name in Self.keyNames {
            let url = keys.appendingPathComponent(name)
            #expect(exists(url), "\(name) created")
            #expect(try fileMode(url) == 0o600, "\(name) has mode 0600")
            let text = try String(contentsOf: url, encoding: .utf8)
            #expect(text.count == 65 && text.hasSuffix("\n"), "\(name): 64 hex digits and a newline")
            let hex = String(text.dropLast())
            #expect(hex.allSatisfy { "0123456789abcdef".contains($0) }, "\(name): lower-case hex")
            seen.insert(hex)
        }
        #expect(seen.count == 3, "three different keys")
    }

    @Test func commitmentFileIsWrittenAndReDerives() throws {
        let t = try TrialFolder()
        #expect(try t.initialise(now: "2017-10-31T09:00:00Z").status == 0)
        let url = t.seeds.appendingPathComponent("whp-demo.commitment.json")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: String])
        #expect(Set(obj.keys) == ["trial_id", "commitment", "config_hash", "created"])
        #expect(obj["trial_id"] == "whp-demo")
        #expect(obj["created"] == "2017-10-31T09:00:00Z", "created is the service clock (WHP_NOW)")

        // C = H(enc("whp/seed-commitment/v1") ‖ enc(trial_id) ‖ S), re-derived here.
        let seed = try hexBytes(try keyHex(t.seedFile))
        let c = Crypto.sha256(enc("whp/seed-commitment/v1") + enc("whp-demo") + seed)
        #expect(obj["commitment"] == c.hex)

        // Config hash over the two config files, sorted by path (ALLOCATION.md §6).
        let d = try [UInt8](Data(contentsOf: t.config.appendingPathComponent("districts.toml")))
        let tr = try [UInt8](Data(contentsOf: t.config.appendingPathComponent("trial.toml")))
        let h = Crypto.sha256(enc("whp/config/v1") + u32(2) + enc("districts.toml") + enc(d) + enc("trial.toml") + enc(tr))
        #expect(obj["config_hash"] == h.hex)

        // trial_started records the same commitment and config hash.
        let log = try readLog(t)
        #expect(log.count == 1)
        #expect(log.first?.type == "trial_started")
        #expect(log.first?.payload["commitment"] == c.hex)
        #expect(log.first?.payload["config_hash"] == h.hex)
        #expect(log.first?.payload["algorithm"] == "whp/v1")
    }

    @Test func initTwiceFailsAndChangesNothing() throws {
        let t = try TrialFolder()
        #expect(try t.initialise(now: "2017-10-31T09:00:00Z").status == 0)
        let reqs = [Req.refer("r1", referral: "R-1", nino: Req.nino(1), district: "example-north", date: "2017-11-01")]
        #expect(try t.serveJSON(reqs).first?["ok"] as? Bool == true)

        let keys = t.data.appendingPathComponent("keys")
        let commitment = t.seeds.appendingPathComponent("whp-demo.commitment.json")
        func snapshot() throws -> [String: Data] {
            var s: [String: Data] = [:]
            for name in Self.keyNames { s[name] = try Data(contentsOf: keys.appendingPathComponent(name)) }
            s["commitment"] = try Data(contentsOf: commitment)
            return s
        }
        let before = try snapshot()
        let logBefore = try readLog(t)

        let again = try t.initialise(now: "2018-01-01T00:00:00Z")
        #expect(again.status == 1, "a second init fails with exit 1: \(again.stderr)")
        #expect(!again.stderr.isEmpty, "and says why")
        #expect(try snapshot() == before, "keys and commitment file unchanged")
        let logAfter = try readLog(t)
        #expect(logAfter.count == logBefore.count)
        #expect(logAfter.last?.hash == logBefore.last?.hash, "store head unchanged")

        // Also with another imported seed: still refused, nothing changes.
        let other = try t.initialise(now: "2018-01-01T00:00:00Z", seedHex: String(repeating: "ab", count: 32))
        #expect(other.status == 1)
        #expect(try snapshot() == before)
        #expect(try readLog(t).last?.hash == logBefore.last?.hash)
        #expect(try verifyJSON(t, ["--seed", t.seedFile.path]).1.ok)
    }

    @Test func initNeverOverwritesAnExistingKeyFile() throws {
        let t = try TrialFolder()
        let keys = t.data.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
        let mine = String(repeating: "5a", count: 32)
        let pk = keys.appendingPathComponent("pseudonym.key")
        try (mine + "\n").write(to: pk, atomically: false, encoding: .utf8)
        try setMode(pk, 0o600)

        let r = try t.initialise()
        #expect(r.status == 0, "init keeps an existing key and makes the others: \(r.stderr)")
        #expect(try keyHex(pk) == mine, "the existing pseudonym key is kept")
        #expect(try fileMode(pk) == 0o600)
        #expect(exists(keys.appendingPathComponent("seed.hex")))
        #expect(exists(keys.appendingPathComponent("evaluation.key")))
        #expect(try keyHex(keys.appendingPathComponent("seed.hex")) != mine)
    }

    @Test func importSeedNeverReplacesAnExistingSeedFile() throws {
        let t = try TrialFolder()
        let keys = t.data.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
        let mine = String(repeating: "c3", count: 32)
        try (mine + "\n").write(to: t.seedFile, atomically: false, encoding: .utf8)
        try setMode(t.seedFile, 0o600)

        let r = try t.initialise(seedHex: String(repeating: "d4", count: 32))
        #expect(r.status == 1, "a different imported seed is refused: \(r.stderr)")
        #expect(try keyHex(t.seedFile) == mine, "the seed file is untouched")
        #expect(!exists(t.store), "no store is created")
    }

    /// A published commitment is never replaced: a fresh data folder with a new
    /// seed cannot re-init the same trial id into the same seeds folder.
    @Test func publishedCommitmentIsNeverReplaced() throws {
        let t = try TrialFolder()
        #expect(try t.initialise().status == 0)
        let url = t.seeds.appendingPathComponent("whp-demo.commitment.json")
        let published = try Data(contentsOf: url)
        try FileManager.default.removeItem(at: t.data)

        let r = try t.initialise(now: "2018-01-01T00:00:00Z")
        #expect(r.status == 1, "init refuses to replace the commitment: \(r.stderr)")
        #expect(r.stderr.contains("commitment"))
        #expect(try Data(contentsOf: url) == published, "the published commitment is unchanged")
        #expect(!exists(t.store), "and no store is started on a seed nobody can check")
    }

    // MARK: bad config

    struct BadConfig: Sendable, CustomTestStringConvertible {
        var name: String
        var edit: @Sendable (String) -> String
        /// Substrings stderr must contain: the file, the district, the key.
        var mentions: [String]
        var testDescription: String { name }
    }

    static let northWeights = "name = \"Example North (example district)\"\npsc = false\ngatekeeper_rule = \"lottery\"\nweights = { WHP = 1, RCG = 1 }"

    static let badConfigs: [BadConfig] = [
        BadConfig(
            name: "PSC weight in a psc = false district",
            edit: {
                $0.replacingOccurrences(of: northWeights, with: northWeights.replacingOccurrences(of: "WHP = 1, RCG = 1", with: "WHP = 1, PSC = 1, RCG = 1"))
            }, mentions: ["districts.toml", "example-north", "PSC"]),
        BadConfig(
            name: "unknown key in a district",
            edit: {
                $0.replacingOccurrences(
                    of: "name = \"Example North (example district)\"", with: "name = \"Example North (example district)\"\ncolour = \"red\"")
            }, mentions: ["districts.toml", "example-north", "colour"]),
        BadConfig(
            name: "duplicate district id",
            edit: {
                $0.replacingOccurrences(of: "id = \"example-south\"", with: "id = \"example-north\"")
            }, mentions: ["districts.toml", "example-north", "id", "duplicate"]),
        BadConfig(
            name: "fifo under the hidden policy (RULES2 R3)",
            edit: {
                $0.replacingOccurrences(of: northWeights, with: northWeights.replacingOccurrences(of: "lottery", with: "fifo"))
            }, mentions: ["districts.toml", "example-north", "gatekeeper_rule", "fifo", "\"lottery\"", "frontline_rcg = \"dcams\""]),
        BadConfig(
            name: "all weights zero",
            edit: {
                $0.replacingOccurrences(of: "weights = { WHP = 2, RCG = 1 }", with: "weights = { WHP = 0, RCG = 0 }")
            }, mentions: ["districts.toml", "example-south", "weights"]),
    ]

    @Test(arguments: badConfigs)
    func badConfigIsRefusedAndNothingIsCreated(_ bad: BadConfig) throws {
        let shipped = try String(contentsOf: WHPBinary.repoRoot.appendingPathComponent("district-config/districts.toml"), encoding: .utf8)
        let edited = bad.edit(shipped)
        try #require(edited != shipped, "the edit applies to the shipped districts.toml")
        let t = try TrialFolder(districtsTOML: edited)
        let r = try t.initialise()
        #expect(r.status == 1, "init refuses the config with exit 1 (got \(r.status)): \(r.stderr)")
        for m in bad.mentions {
            #expect(r.stderr.contains(m), "the message names \(m): \(r.stderr)")
        }
        #expect(r.stdout.isEmpty)
        #expect(!exists(t.store), "no store file")
        #expect(!exists(t.data), "no data folder, no keys")
        #expect(!exists(t.seeds), "no commitment file")
    }

    @Test func symlinkInConfigIsRefused() throws {
        let t = try TrialFolder()
        let outside = t.root.appendingPathComponent("outside.toml")
        try "# outside the config folder\n".write(to: outside, atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(at: t.config.appendingPathComponent("extra.toml"), withDestinationURL: outside)
        let r = try t.initialise()
        // ALLOCATION.md §6: a symbolic link in district-config is a config error,
        // and a config error is "an operation failed" (exit 1), as for every other bad config.
        #expect(r.status == 1, "init refuses a symlink in the config with exit 1 (got \(r.status)): \(r.stderr)")
        #expect(r.stderr.contains("extra.toml"), "the message names the link: \(r.stderr)")
        #expect(r.stderr.lowercased().contains("link"), "and says it is a link: \(r.stderr)")
        #expect(!exists(t.store))
        #expect(!exists(t.data))
        #expect(!exists(t.seeds))
    }
}
