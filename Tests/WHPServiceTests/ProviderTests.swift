import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPTestSupport

/// RULES2 R15: providers share a district's places, equally until a contract
/// manager shifts the shares. Checked through the wire and the log, against
/// a re-derivation written here from the spec alone.
@Suite("Providers and market share", .serialized)
struct ProviderTests {
    static func trial() throws -> TrialFolder {
        let t = try TrialFolder()
        try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: Seeds.a).status == 0)
        return t
    }

    static func setShares(
        _ id: String, district: String = "example-north", arm: String = "WHP", effective: String, _ shares: [String: Any],
        role: String = "contract_manager"
    ) -> String {
        Req.line(Req.envelope(id, "set_shares", role: role, ["district": district, "arm": arm, "effective": effective, "shares": shares]))
    }

    /// Refers `n` people to example-north and selects them all in one run.
    static func allocate(_ door: InProcessService, _ n: Int, from k: Int, date: String) {
        let refs = (0..<n).map { Q.refer("r\(k + $0)", "N-\(k + $0)", claimant: Q.nino(1000 + k + $0), district: "example-north", date: date) }
        #expect(door.send(refs).allSatisfy { $0.contains("\"ok\":true") })
        #expect(door.send(Q.capacity("g\(k)", run: "run-\(k)", district: "example-north", date: date, n)).contains("\"ok\":true"))
    }

    /// The provider draws of the log, in order.
    static func providerDraws(_ t: TrialFolder) throws -> [[String: String]] {
        try readLog(t).filter { $0.type == "allocated" && $0.payload["provider"] != nil }.map(\.payload)
    }

    /// `p_j`, from the spec's formula with this file's own byte encoding.
    static func providerSeed(_ seed: String, trial: String, stratum: String, j: Int) -> String {
        Independent.hex(
            Independent.hmac(
                Independent.unhex(seed),
                Independent.enc("whp/provider/v1") + Independent.enc(trial) + Independent.enc(stratum) + Independent.u64(UInt64(j))))
    }

    @Test("every WHP place draws a provider, RCG none; complete blocks split equally; seeds re-derive; verify --seed passes")
    func equalShare() throws {
        let t = try Self.trial()
        let door = try InProcessService(t, now: "2017-11-10T09:00:00Z")
        Self.allocate(door, 60, from: 0, date: "2017-11-10")
        let log = try readLog(t)
        let trialID = try #require(log.first?.payload["trial_id"])
        let allocated = log.filter { $0.type == "allocated" }
        #expect(allocated.count == 60)
        for e in allocated {
            let arm = e.payload["arm"]
            #expect((e.payload["provider"] != nil) == (arm == "WHP"), "seq \(e.seq): arm \(arm ?? "?") provider \(e.payload["provider"] ?? "none")")
        }
        let draws = try Self.providerDraws(t)
        #expect(draws.count > 20)
        var nextJ: [String: Int] = [:]
        var blocks: [String: [String: Int]] = [:]
        var sizes: [String: Int] = [:]
        for d in draws {
            let pi = try #require(d["provider_stratum"])
            #expect(pi == d["stratum"]! + "|WHP")
            let j = try #require(d["provider_index"].flatMap { Int($0) })
            #expect(j == nextJ[pi, default: 0], "indices count from 0 per stratum")
            nextJ[pi] = j + 1
            #expect(d["provider_seed"] == Self.providerSeed(Seeds.a, trial: trialID, stratum: pi, j: j))
            #expect(d["provider_shares"] == "prov-a=1,prov-b=1")
            let key = pi + "#" + (d["provider_block"] ?? "?")
            blocks[key, default: [:]][d["provider"]!, default: 0] += 1
            sizes[key] = Int(d["provider_block_size"] ?? "")
        }
        var complete = 0
        for (key, counts) in blocks where counts.values.reduce(0, +) == sizes[key] {
            complete += 1
            #expect(counts["prov-a"] == counts["prov-b"], "block \(key): \(counts)")
        }
        #expect(complete >= 5, "enough complete blocks to mean something: \(complete)")
        let v = try t.verify(["--seed", t.seedFile.path, "--json"])
        #expect(v.status == 0 && v.stdout.contains("\"name\":\"providers\""), "\(v.stdout)\(v.stderr)")
    }

    @Test("a share shift abandons the open block; the same shares again change nothing; effective later waits for its day")
    func marketShareShift() throws {
        let t = try Self.trial()
        let door = try InProcessService(t, now: "2017-11-10T09:00:00Z")
        // One place at a time until a provider block is open and not full.
        var k = 0
        var last: [String: String] = [:]
        repeat {
            Self.allocate(door, 1, from: k, date: "2017-11-10")
            k += 1
            last = try Self.providerDraws(t).last ?? [:]
        } while k < 40 && !(last["provider_block_size"].flatMap(Int.init).map { size in Int(last["provider_position"]!)! + 1 < size } ?? false)
        try #require(k < 40, "no open block after 40 places")
        let abandoned = try #require(last["provider_block"].flatMap(Int.init))
        let pi = try #require(last["provider_stratum"])

        let shift = Resp(door.send(Self.setShares("s1", effective: "2017-11-10", ["prov-a": 2, "prov-b": 1])))
        #expect(shift.ok, "\(shift)")
        #expect(shift.str("effective") == "2017-11-10" && (shift.result["shares"] as? [String: Int]) == ["prov-a": 2, "prov-b": 1])
        let beforeNext = try Self.providerDraws(t).count
        repeat {
            Self.allocate(door, 1, from: k, date: "2017-11-10")
            k += 1
        } while try Self.providerDraws(t).count == beforeNext
        let first = try #require(try Self.providerDraws(t).last)
        #expect(first["provider_stratum"] == pi)
        #expect(first["provider_shares"] == "prov-a=2,prov-b=1")
        #expect(first["provider_block"] == String(abandoned + 1) && first["provider_position"] == "0", "\(first)")
        #expect(Int(first["provider_block_size"]!)! % 3 == 0)

        // Re-sending the shares in force appends an event and leaves the open block open.
        let draws = try Self.providerDraws(t).count
        #expect(Resp(door.send(Self.setShares("s2", effective: "2017-11-10", ["prov-a": 2, "prov-b": 1]))).ok)
        repeat {
            Self.allocate(door, 1, from: k, date: "2017-11-10")
            k += 1
        } while try Self.providerDraws(t).count == draws
        let second = try #require(try Self.providerDraws(t).last)
        if Int(first["provider_block_size"]!)! > 1 {
            #expect(second["provider_block"] == first["provider_block"] && second["provider_position"] == "1", "\(second)")
        }
        #expect(try readLog(t).filter { $0.type == "shares_set" }.count == 2)

        // A shift effective on the 13th: places recorded on the 10th keep 2:1; from the 13th only prov-b.
        #expect(Resp(door.send(Self.setShares("s3", effective: "2017-11-13", ["prov-a": 0, "prov-b": 1]))).ok)
        let beforeLater = try Self.providerDraws(t).count
        Self.allocate(door, 6, from: k, date: "2017-11-10")
        k += 6
        #expect(try Self.providerDraws(t).dropFirst(beforeLater).allSatisfy { $0["provider_shares"] == "prov-a=2,prov-b=1" })
        door.clock.set("2017-11-13T09:00:00Z")
        let beforeShift = try Self.providerDraws(t).count
        Self.allocate(door, 12, from: k, date: "2017-11-13")
        let after = try Self.providerDraws(t).dropFirst(beforeShift)
        #expect(!after.isEmpty && after.allSatisfy { $0["provider"] == "prov-b" && $0["provider_shares"] == "prov-a=0,prov-b=1" })
        #expect(try t.verify(["--seed", t.seedFile.path]).status == 0)
    }

    @Test("set_shares refusals change nothing; only a contract manager may shift shares")
    func setSharesRefusals() throws {
        let t = try Self.trial()
        let door = try InProcessService(t, now: "2017-11-10T09:00:00Z")
        let before = LogHead(Resp(door.send(Q.status("h0"))))
        let cases: [(String, String, String?, String)] = [
            (Self.setShares("a", effective: "2017-11-09", ["prov-a": 1, "prov-b": 2]), "invalid_field", "effective", "before today"),
            (Self.setShares("b", effective: "3000-01-01", ["prov-a": 1, "prov-b": 2]), "invalid_field", "effective", "after 2999"),
            (Self.setShares("c", effective: "2017-11-10", ["prov-a": 1, "prov-b": 2], role: "work_coach"), "forbidden", "actor.role", "coach"),
            (Self.setShares("d", effective: "2017-11-10", ["prov-a": 1, "prov-b": 2], role: "gatekeeper"), "forbidden", "actor.role", "gatekeeper"),
            (Self.setShares("e", district: "nowhere", effective: "2017-11-10", ["prov-a": 1]), "unknown_district", "district", "district"),
            (Self.setShares("f", arm: "PSC", effective: "2017-11-10", ["prov-a": 1, "prov-b": 2]), "invalid_field", "arm", "no PSC providers"),
            (Self.setShares("g", arm: "RCG", effective: "2017-11-10", ["prov-a": 1, "prov-b": 2]), "invalid_field", "arm", "RCG"),
            (Self.setShares("h", district: "devon-cornwall", effective: "2017-11-10", ["prov-a": 1]), "invalid_field", "arm", "no providers there"),
            (Self.setShares("i", effective: "2017-11-10", ["prov-a": 1]), "invalid_field", "shares", "a provider missing"),
            (Self.setShares("j", effective: "2017-11-10", ["prov-a": 1, "prov-b": 1, "prov-c": 1]), "invalid_field", "shares", "a provider too many"),
            (Self.setShares("k", effective: "2017-11-10", ["prov-a": 0, "prov-b": 0]), "invalid_field", "shares", "all zero"),
            (Self.setShares("l", effective: "2017-11-10", ["prov-a": 1001, "prov-b": 0]), "invalid_field", "shares", "above 1000"),
            (Self.setShares("m", effective: "2017-11-10", ["prov-a": -1, "prov-b": 2]), "invalid_field", "shares", "negative"),
            (Self.setShares("n", effective: "2017-11-10", ["prov-a": 1.5, "prov-b": 2]), "invalid_field", "shares", "not an integer"),
            (Self.setShares("o", effective: "2017-11-10", ["prov-a": "1", "prov-b": 2]), "invalid_field", "shares", "a string"),
            (Self.setShares("p", effective: "2017-11-10", [:]), "invalid_field", "shares", "empty"),
            (Self.setShares("q", effective: "2017-02-30", ["prov-a": 1, "prov-b": 2]), "invalid_field", "effective", "no such day"),
        ]
        for (line, code, field, why) in cases {
            expectError(Resp(door.send(line)), code, field: field, "\(why):")
        }
        #expect(LogHead(Resp(door.send(Q.status("h1")))) == before, "no refusal appended an event")
        // And what the refusals did not change: the next place still draws 1:1.
        Self.allocate(door, 4, from: 0, date: "2017-11-10")
        #expect(try Self.providerDraws(t).allSatisfy { $0["provider_shares"] == "prov-a=1,prov-b=1" })
    }

    @Test("a shift recorded by one process is in force in the next; the provider shows to the coach and the claimant, never for RCG")
    func acrossRestartsAndViews() throws {
        let t = try Self.trial()
        var s1 = Script()
        s1.add(Self.setShares(s1.nextID(), effective: "2017-11-10", ["prov-a": 0, "prov-b": 1]), tag: "shift")
        let r1 = try t.run(s1, now: "2017-11-10T09:00:00Z")
        #expect(r1[s1.index("shift")].ok, "\(r1[0])")

        var s2 = Script()
        let ids = (0..<12).map { "V-\($0)" }
        for (i, rid) in ids.enumerated() { s2.add(Q.refer(s2.nextID(), rid, claimant: Q.nino(500 + i), district: "example-north", date: "2017-11-10")) }
        s2.add(Q.capacity(s2.nextID(), run: "run-v", district: "example-north", date: "2017-11-10", 12))
        var truth: [String: Int] = [:], coach: [String: Int] = [:], claimant: [String: Int] = [:]
        for rid in ids {
            truth[rid] = s2.add(Q.disclose(s2.nextID(), rid))
            coach[rid] = s2.add(Q.outcome(s2.nextID(), rid: rid, name: "Sam"))
            claimant[rid] = s2.add(Q.outcome(s2.nextID(), rid: rid, audience: "claimant"))
        }
        let r2 = try t.run(s2, now: "2017-11-10T10:00:00Z")
        var sawWHP = false, sawRCG = false
        for rid in ids {
            let status = r2[truth[rid]!].str("status")
            let c = r2[coach[rid]!], m = r2[claimant[rid]!]
            if status == "allocated_whp" {
                sawWHP = true
                let p = c.result["provider"] as? [String: String]
                #expect(p?["id"] == "prov-b" && p?["name"] == "Example Provider B (example provider)", "\(c)")
                #expect(
                    c.str("next_steps") == "Please refer Sam to Example Provider B (example provider) through the appropriate referral system (LMS / WSP / DPT)"
                )
                #expect(m.str("message") == "You have been allocated a place on the Work and Health Programme with Example Provider B (example provider).")
            } else {
                sawRCG = true
                #expect(c.result["provider"] == nil && !c.line.contains("prov-"), "\(c)")
                #expect(!m.line.contains("prov-") && !m.line.contains("Provider"), "\(m)")
            }
        }
        #expect(sawWHP && sawRCG)
    }

    @Test("verify: a provider swapped in the log, or shares set to all zero, fail `providers` even re-chained, and never trap")
    func tamperedProviders() throws {
        /// The same trial each time (same seed, same requests, same clock).
        func build() throws -> (TrialFolder, [LogEvent]) {
            let t = try Self.trial()
            let door = try InProcessService(t, now: "2017-11-10T09:00:00Z")
            #expect(Resp(door.send(Self.setShares("s", effective: "2017-11-10", ["prov-a": 3, "prov-b": 1]))).ok)
            Self.allocate(door, 10, from: 0, date: "2017-11-10")
            return (t, try readLog(t))
        }
        let (swapped, log) = try build()
        let victim = try #require(log.first { $0.type == "allocated" && $0.payload["provider"] == "prov-b" })
        let sharesSeq = try #require(log.first { $0.type == "shares_set" }?.seq)

        try swapped.openStore().unsafeExecute(
            "UPDATE events SET payload = replace(payload, '\"provider\":\"prov-b\"', '\"provider\":\"prov-a\"') WHERE seq = \(victim.seq);")
        try rehash(try swapped.openStore(), from: victim.seq)
        let a = try swapped.verify(["--json"])
        #expect(a.status == 1)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(a.stdout.utf8)) as? [String: Any])
        let checks = (report["checks"] as? [[String: Any]]) ?? []
        #expect(checks.first { $0["name"] as? String == "chain" }?["ok"] as? Bool == true)
        let providers = checks.first { $0["name"] as? String == "providers" }
        #expect(providers?["ok"] as? Bool == false && providers?["first_bad_seq"] as? Int == victim.seq, "\(providers ?? [:])")

        let (zero, _) = try build()
        try zero.openStore().unsafeExecute(
            "UPDATE events SET payload = replace(payload, 'prov-a=3,prov-b=1', 'prov-a=0,prov-b=0') WHERE seq = \(sharesSeq);")
        try rehash(try zero.openStore(), from: sharesSeq)
        let b = try zero.verify(["--json"])
        #expect(b.status == 1, "\(b.stdout)\(b.stderr)")
        #expect(
            b.stdout.contains("\"name\":\"providers\",\"ok\":false") || b.stdout.contains("\"ok\":false,\"name\":\"providers\"")
                || {
                    let r = (try? JSONSerialization.jsonObject(with: Data(b.stdout.utf8))) as? [String: Any]
                    return ((r?["checks"] as? [[String: Any]]) ?? []).contains { $0["name"] as? String == "providers" && $0["ok"] as? Bool == false }
                }(), "\(b.stdout)")
    }
}
