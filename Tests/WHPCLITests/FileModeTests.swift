import Foundation
import Testing
import WHPTestSupport

/// RULES2 R13: trial data is private whatever the umask, and the keys cannot
/// be swapped through their folder or a symbolic link.
@Suite(.serialized)
struct FileModeTests {
    static func mode(_ path: String) -> Int {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int ?? -1
    }

    @Test("under umask 000 every file whp writes is 0600 and every folder it creates 0700; the commitment file is public")
    func privateUnderUmask000() throws {
        let t = try TrialFolder(sqliteOnly: true)
        let env = ["WHP_NOW": "2017-11-20T09:00:00Z"]
        let data = t.data.path, out = t.root.path
        #expect(try runWHP(["init"] + t.common + ["--seeds", t.seeds.path], env: ["WHP_NOW": "2017-11-01T08:00:00Z"], umask: "000").status == 0)
        let session =
            (0..<6).map { Req.line(Req.refer("r\($0)", referral: "M-\($0)", nino: Req.nino(900 + $0), district: "devon-cornwall", date: "2017-11-15")) }
            + [Req.line(Req.gatekeep("g", run: "run", district: "devon-cornwall", date: "2017-11-20", capacity: 3))]
        let served = try runWHP(["serve"] + t.common, env: env, stdin: Data((session.joined(separator: "\n") + "\n").utf8), umask: "000")
        #expect(served.status == 0)
        #expect(try runWHP(["export"] + t.common + ["--out", out + "/export/nested"], env: env, umask: "000").status == 0)
        #expect(try runWHP(["audit-bundle"] + t.common + ["--out", out + "/bundle"], umask: "000").status == 0)
        #expect(try runWHP(["report", "consort"] + t.common + ["--svg", out + "/consort.svg"], umask: "000").status == 0)
        #expect(try runWHP(["checkpoint"] + t.common, umask: "000").status == 0)

        var wrong: [String] = []
        func walk(_ dir: String, created: Bool) {
            if created && Self.mode(dir) != 0o700 { wrong.append("\(dir): \(String(Self.mode(dir), radix: 8))") }
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                let p = dir + "/" + name
                var isDir: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: p, isDirectory: &isDir)
                if isDir.boolValue { walk(p, created: true) } else if Self.mode(p) != 0o600 { wrong.append("\(p): \(String(Self.mode(p), radix: 8))") }
            }
        }
        walk(data, created: true)
        walk(out + "/export", created: true)
        walk(out + "/bundle", created: true)
        if Self.mode(out + "/consort.svg") != 0o600 { wrong.append("consort.svg: \(String(Self.mode(out + "/consort.svg"), radix: 8))") }
        #expect(wrong.isEmpty, "not private: \(wrong)")
        #expect(FileManager.default.fileExists(atPath: data + "/whp.sqlite-wal"), "the WAL was written (and checked)")
        #expect(Self.mode(t.seeds.path + "/whp-demo.commitment.json") == 0o644, "the published commitment is public")
    }

    @Test("a keys folder group or others can write stops init and serve; so does a key file that is a symbolic link")
    func keysFolderAndSymlinks() throws {
        let t = try TrialFolder(sqliteOnly: true)
        let keys = t.data.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: keys.path)
        let refused = try t.initialise(now: "2017-11-01T08:00:00Z")
        #expect(refused.status == 1 && refused.stderr.contains(keys.path) && refused.stderr.contains("chmod 700"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: t.store.path), "nothing created")
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: keys.path)
        #expect(try t.initialise(now: "2017-11-01T08:00:00Z").status == 0)
        let status = [Req.line(Req.envelope("s", "status", role: "evaluation_admin"))]
        #expect(try t.serve(status, now: "2017-11-02T09:00:00Z").0.status == 0)
        try FileManager.default.setAttributes([.posixPermissions: 0o770], ofItemAtPath: keys.path)
        let (r1, o1) = try t.serve(status, now: "2017-11-02T09:00:00Z")
        #expect(r1.status == 1 && o1.isEmpty && r1.stderr.contains(keys.path), "\(r1.stderr)")
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: keys.path)
        // The pseudonym key swapped for a link to a copy elsewhere.
        let key = keys.appendingPathComponent("pseudonym.key")
        let elsewhere = t.root.appendingPathComponent("elsewhere.key")
        try FileManager.default.moveItem(at: key, to: elsewhere)
        try FileManager.default.createSymbolicLink(at: key, withDestinationURL: elsewhere)
        let (r2, o2) = try t.serve(status, now: "2017-11-02T09:00:00Z")
        #expect(r2.status == 1 && o2.isEmpty && r2.stderr.contains("symbolic link"), "\(r2.stderr)")
    }
}
