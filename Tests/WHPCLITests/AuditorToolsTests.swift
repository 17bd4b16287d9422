import Foundation
import Testing
import WHPTestSupport

/// RULES2 R10 as an auditor or an honest operator meets it: the commitment
/// file needs no `--seeds` when none is there to find, the repository's own
/// public demo seed is a valid `--seed` after a clone, a missing or malformed
/// seed file is a usage error (exit 2) and never a failed check, and hostile
/// bundles are failed checks at their seq (exit 1), never a trap.
@Suite struct AuditorToolsTests {
    /// A folder with no `seeds/` in it, to run `whp` from.
    static func emptyWorkingDirectory(_ t: TrialFolder) throws -> URL {
        let cwd = t.root.appendingPathComponent("elsewhere")
        try FileManager.default.createDirectory(at: cwd, withIntermediateDirectories: true)
        return cwd
    }

    /// `whp init --seeds pub`, then from a folder with no `seeds/`: `verify`
    /// exits 0 (the check is left out, stderr says where it looked) and
    /// `audit-bundle` writes the commitment file from trial_started, equal to
    /// the published one.
    @Test func freshStoreVerifiesAndBundlesWithoutSeeds() throws {
        let t = try SmallTrial.build()
        let cwd = try Self.emptyWorkingDirectory(t)
        let paths = t.common

        let v = try runWHP(["verify", "--json"] + paths, cwd: cwd)
        #expect(v.status == 0, "a fresh honest store verifies from anywhere: \(v.stdout) \(v.stderr)")
        let report = try VerifyReport(v.stdout)
        #expect(report.ok)
        #expect(!report.checkNames.contains("commitment_file"), "no file found, no check: \(report.checkNames)")
        #expect(v.stderr.contains("seeds/whp-demo.commitment.json"), "stderr says where it looked: \(v.stderr)")

        let seed = try runWHP(["verify"] + paths + ["--seed", t.seedFile.path], cwd: cwd)
        #expect(seed.status == 0, "\(seed.stdout) \(seed.stderr)")

        let bundle = cwd.appendingPathComponent("bundle")
        let b = try runWHP(["audit-bundle"] + paths + ["--out", bundle.path], cwd: cwd)
        #expect(b.status == 0, "audit-bundle needs no --seeds: \(b.stderr)")
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: bundle.appendingPathComponent("whp-demo.commitment.json"))) as? [String: String]
        let published =
            try JSONSerialization.jsonObject(with: Data(contentsOf: t.seeds.appendingPathComponent("whp-demo.commitment.json"))) as? [String: String]
        #expect(written != nil && written == published, "the bundle's commitment file is the published one: \(String(describing: written))")

        let (vb, bundled) = try verifyBundleJSON(bundle, ["--seed", t.seedFile.path])
        #expect(vb.status == 0, "\(vb.stdout) \(vb.stderr)")
        bundled.expectPasses("commitment_file")
        bundled.expectPasses("commitment")
    }

    /// A fresh clone of the demo: the repository's district-config, session and
    /// public seed files copied with a clone's modes (0644). `whp demo` runs,
    /// and `verify --seed seeds/whp-demo.seed.hex` (the repository file, by its
    /// relative path) passes on the store and on its audit bundle.
    @Test func demoSeedOfAFreshCloneVerifies() throws {
        let fm = FileManager.default
        let clone = fm.temporaryDirectory.appendingPathComponent("whp-clone-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: clone) }
        let repo = WHPBinary.repoRoot
        for dir in ["district-config", "seeds", "examples"] {
            try fm.createDirectory(at: clone.appendingPathComponent(dir), withIntermediateDirectories: true)
        }
        for file in [
            "district-config/trial.toml", "district-config/districts.toml", "district-config/calendar.toml",
            "seeds/whp-demo.seed.hex", "seeds/whp-demo.commitment.json", "examples/dcams-session.jsonl",
        ] {
            try fm.copyItem(at: repo.appendingPathComponent(file), to: clone.appendingPathComponent(file))
            try setMode(clone.appendingPathComponent(file), 0o644)
        }
        #expect(try fileMode(clone.appendingPathComponent("seeds/whp-demo.seed.hex")) == 0o644)

        let run = clone.appendingPathComponent("run")
        let demo = try runWHP(["demo", "--dir", run.path], cwd: clone)
        try #require(demo.status == 0, "whp demo in a fresh clone: \(demo.stdout) \(demo.stderr)")
        let paths = ["--config", run.appendingPathComponent("district-config").path, "--data", run.appendingPathComponent(".whp").path]

        let v = try runWHP(["verify", "--json"] + paths + ["--seeds", "seeds", "--seed", "seeds/whp-demo.seed.hex"], cwd: clone)
        #expect(v.status == 0, "verify --seed seeds/whp-demo.seed.hex: \(v.stdout) \(v.stderr)")
        let report = try VerifyReport(v.stdout)
        report.expectPasses("commitment")
        report.expectPasses("commitment_file")
        report.expectPasses("derived_seeds")

        let bundle = clone.appendingPathComponent("bundle")
        #expect(try runWHP(["audit-bundle"] + paths + ["--out", bundle.path], cwd: clone).status == 0)
        let b = try runWHP(["verify", "--bundle", bundle.path, "--seed", "seeds/whp-demo.seed.hex"], cwd: clone)
        #expect(b.status == 0, "the bundle verifies with the clone's seed file: \(b.stdout) \(b.stderr)")
    }

    /// A missing, empty, malformed or unreadable seed file is a usage error
    /// (exit 2, naming the file), on the store and on a bundle; nothing is
    /// printed as a report.
    @Test func badSeedFilesExit2() throws {
        let t = try SmallTrial.build()
        let bundle = t.root.appendingPathComponent("bundle")
        #expect(try runWHP(["audit-bundle"] + t.common + ["--out", bundle.path]).status == 0)
        let dir = t.root.appendingPathComponent("seed-files")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var files: [String: URL] = ["missing": dir.appendingPathComponent("no-such-seed.hex")]
        for (name, text) in [
            ("empty", ""), ("short", String(repeating: "a", count: 63) + "\n"), ("not-hex", String(repeating: "g", count: 64) + "\n"),
            ("long", String(repeating: "a", count: 65) + "\n"),
        ] {
            let url = dir.appendingPathComponent(name + ".hex")
            try text.write(to: url, atomically: true, encoding: .utf8)
            files[name] = url
        }
        files["a-folder"] = dir
        for (name, url) in files.sorted(by: { $0.key < $1.key }) {
            for target in [t.common, ["--bundle", bundle.path]] {
                let r = try runWHP(["verify", "--json"] + target + ["--seed", url.path])
                #expect(r.status == 2, "\(name) seed file (\(target.first ?? "")): exit \(r.status) \(r.stdout) \(r.stderr)")
                #expect(r.stdout.isEmpty, "no report for a usage error: \(r.stdout)")
                #expect(r.stderr.contains(url.lastPathComponent), "stderr names the file: \(r.stderr)")
            }
        }
    }

    /// The committed hostile bundles (fuzz/hostile-bundles: the issue's three
    /// crafted logs and what fuzzing found), each re-chained so that only
    /// its one forged fact is wrong: `verify --bundle` exits 1 naming the
    /// check and seq its `expected` file gives, and `--json` prints one
    /// valid JSON report. Text output too exits 1, and nothing traps.
    @Test(arguments: HostileBundles.names)
    func hostileBundleIsAFailedCheck(_ name: String) throws {
        let dir = HostileBundles.root.appendingPathComponent(name)
        let expected = try HostileBundles.expected(dir)
        let seed = HostileBundles.root.appendingPathComponent("../verify-trials/demo/seed.hex").standardizedFileURL
        for extra in [[], ["--seed", seed.path]] {
            let (r, report) = try verifyBundleJSON(dir, extra)
            #expect(r.status == 1, "\(name): exit \(r.status) \(r.stderr)")
            #expect(!report.ok)
            for (check, seq) in expected { report.expectFails(check, at: seq) }
            let text = try runWHP(["verify", "--bundle", dir.path] + extra)
            #expect(text.status == 1, "\(name) (text): exit \(text.status) \(text.stderr)")
            #expect(text.stdout.hasPrefix("FAILED:"))
        }
    }
}

/// fuzz/hostile-bundles: one audit bundle per folder, with `expected` listing
/// `check seq` per line (seq `-` for a check failed without one).
enum HostileBundles {
    static var root: URL { WHPBinary.repoRoot.appendingPathComponent("fuzz/hostile-bundles") }

    static var names: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter {
            FileManager.default.fileExists(atPath: root.appendingPathComponent($0 + "/expected").path)
        }.sorted()
    }

    static func expected(_ dir: URL) throws -> [(String, Int?)] {
        try String(contentsOf: dir.appendingPathComponent("expected"), encoding: .utf8).split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 2, !line.hasPrefix("#") else { return nil }
            return (String(f[0]), Int(f[1]))
        }
    }
}
