import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPTestSupport

/// A trial the test models on its own: referrals, locks, gatekeeper rules and
/// draws, all from PROTOCOL.md and ALLOCATION.md, never from the service's code.
private final class TrialModel {
    enum State: Equatable { case pending, cancelled, notSelected, allocated(String) }

    struct Referral {
        var id: String
        var claimant: String
        var district: DistrictModel
        var group: String
        var date: Day
        var seq: Int
        var state: State = .pending
        var gk: Day?
        /// The day the decision was recorded: RULES2 R1's lock base.
        var decidedOn: Day?
        var draw: Independent.Draw?
        var stratum: String?
        var lotteryKey: String?
        var rule: String?
    }

    let seed: [UInt8]
    let trial: String
    let stratifyByGroup: Bool
    let permuted: Bool
    let multipliers: [Int]
    var referrals: [Referral] = []
    var byID: [String: Int] = [:]
    /// A person's referrals (indices, in referred order), by the person's key.
    var byPerson: [String: [Int]] = [:]
    /// RULES2 R6: a reference number's NINO, once linked.
    var linkedNINO: [String: String] = [:]
    var strata: [String: Independent.Stratum] = [:]
    var seq = 0

    init(seed: [UInt8], trial: String, stratifyByGroup: Bool, permuted: Bool, multipliers: [Int]) {
        self.seed = seed; self.trial = trial; self.stratifyByGroup = stratifyByGroup
        self.permuted = permuted; self.multipliers = multipliers
    }

    /// PROTOCOL.md §5 from-dates, from the day the decision was recorded (RULES2 R1).
    func from(_ r: Referral) -> Day? {
        guard let gk = r.decidedOn ?? r.gk else { return nil }
        switch r.state {
        case .notSelected: return gk.plus(42)
        case .allocated: return gk.addingMonths(24)
        default: return nil
        }
    }

    /// RULES2 R6: the person of an identifier is a NINO itself, or a
    /// reference number's linked NINO, or the reference number while unlinked.
    func person(_ key: String) -> String { linkedNINO[key] ?? key }

    /// nil if `refer` succeeds, else the error code it must answer.
    func referError(claimant: String, on date: Day) -> String? {
        let mine = (byPerson[person(claimant)] ?? []).map { referrals[$0] }
        if mine.contains(where: { $0.state == .pending }) { return "duplicate_referral" }
        if mine.contains(where: { from($0).map { date < $0 } ?? false }) { return "not_eligible" }
        return nil
    }

    func refer(id: String, claimant: String, district: DistrictModel, group: String, date: Day) {
        seq += 1
        byID[id] = referrals.count
        byPerson[person(claimant), default: []].append(referrals.count)
        referrals.append(Referral(id: id, claimant: claimant, district: district, group: group, date: date, seq: seq))
    }

    /// `link_claimant`: the answer it must give, and the link recorded on success.
    enum LinkAnswer: Equatable { case linked(already: Bool), error(String) }
    func link(nino: String, ref: String) -> LinkAnswer {
        if let n = linkedNINO[ref] { return n == nino ? .linked(already: true) : .error("conflict") }
        let merged = (byPerson[nino] ?? []) + (byPerson[ref] ?? [])
        if merged.filter({ referrals[$0].state == .pending }).count > 1 { return .error("duplicate_referral") }
        linkedNINO[ref] = nino
        byPerson[nino] = merged.sorted { referrals[$0].seq < referrals[$1].seq }
        byPerson[ref] = nil
        return .linked(already: false)
    }

    func pending(_ district: String, upTo gk: Day) -> [Int] {
        referrals.indices.filter { referrals[$0].district.id == district && referrals[$0].state == .pending && referrals[$0].date <= gk }
    }

    /// Decides `decided` (indices, with selected?) on `gk`, then allocates the selected in referred order.
    /// The day the session's clock shows: it moves with the session's dates (SessionSchedule).
    var clock = Day("2017-10-31")

    func decide(run: String, gk: Day, rule: String = "manual", _ decided: [(Int, Bool)]) -> (selected: [String], notSelected: [String]) {
        let ordered = decided.sorted { referrals[$0.0].seq < referrals[$1.0].seq }
        for (i, sel) in ordered {
            referrals[i].gk = gk
            referrals[i].decidedOn = clock
            referrals[i].rule = rule
            if !sel { referrals[i].state = .notSelected }
        }
        for (i, sel) in ordered where sel {
            let r = referrals[i]
            let name = stratifyByGroup ? r.district.id + "|" + r.group : r.district.id
            var s =
                strata[name]
                ?? Independent.Stratum(
                    seed: seed, trial: trial, name: name, weights: r.district.weights,
                    multipliers: multipliers, permuted: permuted)
            let d = s.draw()
            strata[name] = s
            referrals[i].state = .allocated(d.arm)
            referrals[i].draw = d
            referrals[i].stratum = name
        }
        return (ordered.filter(\.1).map { referrals[$0.0].id }, ordered.filter { !$0.1 }.map { referrals[$0.0].id })
    }

    /// A capacity run under the district's rule (ALLOCATION.md §4).
    func capacityRun(run: String, district: DistrictModel, gk: Day, capacity: Int) -> (selected: [String], notSelected: [String]) {
        let pend = pending(district.id, upTo: gk)
        let order: [Int]
        if district.lottery {
            var keys: [Int: [UInt8]] = [:]
            for i in pend {
                let k = Independent.lotteryKey(seed, trial: trial, run: run, referral: referrals[i].id)
                keys[i] = k
                referrals[i].lotteryKey = Independent.hex(k)
            }
            order = pend.sorted { Independent.lessBytes(keys[$0]!, keys[$1]!) }
        } else {
            order = pend.sorted { (referrals[$0].date, referrals[$0].seq) < (referrals[$1].date, referrals[$1].seq) }
        }
        let chosen = Set(order.prefix(capacity))
        return decide(run: run, gk: gk, rule: district.lottery ? "lottery" : "fifo", pend.map { ($0, chosen.contains($0)) })
    }

    func trueStatus(_ r: Referral) -> String {
        switch r.state {
        case .pending: "awaiting_gatekeeper"
        case .cancelled: "cancelled"
        case .notSelected: "not_selected"
        case .allocated(let a): "allocated_" + a.lowercased()
        }
    }
}

struct GeneratedCase: Sendable, CustomTestStringConvertible {
    var name: String
    var method: String
    var stratifyByGroup: Bool
    var multipliers: [Int]
    var referrals: Int
    var weeks: Int
    var rngSeed: UInt64
    var testDescription: String { "\(name): \(referrals) referrals, \(method), stratify_by_group=\(stratifyByGroup)" }
}

@Suite("Generated sessions: PSC only in PSC districts, arms as an independent re-derivation gives them")
struct GeneratedSessionTests {
    static let cases: [GeneratedCase] = [
        GeneratedCase(
            name: "shipped", method: "permuted_block", stratifyByGroup: false, multipliers: [1, 2],
            referrals: 3000, weeks: 30, rngSeed: 0x5EED_0001),
        GeneratedCase(
            name: "by-group", method: "permuted_block", stratifyByGroup: true, multipliers: [1, 3, 2],
            referrals: 900, weeks: 12, rngSeed: 0x5EED_0002),
        GeneratedCase(
            name: "simple", method: "simple", stratifyByGroup: true, multipliers: [1, 2],
            referrals: 600, weeks: 10, rngSeed: 0x5EED_0003),
    ]

    @Test(arguments: cases)
    func generatedSession(_ c: GeneratedCase) throws {
        let shipped = try String(contentsOf: WHPBinary.repoRoot.appendingPathComponent("district-config/trial.toml"), encoding: .utf8)
        let trialTOML =
            shipped
            .replacingOccurrences(of: "method = \"permuted_block\"", with: "method = \"\(c.method)\"")
            .replacingOccurrences(of: "stratify_by_group = false", with: "stratify_by_group = \(c.stratifyByGroup)")
            .replacingOccurrences(of: "block_multipliers = [1, 2]", with: "block_multipliers = [\(c.multipliers.map(String.init).joined(separator: ", "))]")
        let trial = try TrialFolder(trialTOML: TrialFolder.testTrialTOML(trialTOML))
        let seedHex = c.rngSeed % 2 == 0 ? Seeds.b : Seeds.a
        let initRun = try trial.initialise(now: "2017-10-31T09:00:00Z", seedHex: seedHex)
        try #require(initRun.status == 0, "init: \(initRun.stderr)")

        let model = TrialModel(
            seed: Independent.unhex(seedHex), trial: "whp-demo", stratifyByGroup: c.stratifyByGroup,
            permuted: c.method == "permuted_block", multipliers: c.multipliers)
        var rng = SplitMix(c.rngSeed)
        var script = Script()
        /// Per request: what its response must be (nil = as expected, else a description of the mismatch).
        var checks: [Int: (Resp) -> String?] = [:]
        func expectOK(_ i: Int, _ extra: @escaping (Resp) -> String? = { _ in nil }) {
            checks[i] = { r in r.ok ? extra(r) : "expected ok, got \(r.line)" }
        }
        func expectError(_ i: Int, _ code: String) {
            checks[i] = { r in r.code == code ? nil : "expected \(code), got \(r.line)" }
        }

        let groups = ["disability", "early_access"]
        let districts = DistrictModel.shipped
        let start = Day("2017-11-06")  // a Monday; gatekeepers act on Fridays
        let perWeek = c.referrals / c.weeks
        var nextClaimant = 1
        var claimantJSON: [String: [String: String]] = [:]
        var known: [String] = []
        var referralCount = 0, referAttempts = 0, manualRuns = 0, capacityRuns = 0
        var links: [(nino: String, ref: String)] = []
        var linkAnswers: [String: Int] = [:]
        var expectedRefusals: [String: Int] = [:]

        for w in 0..<c.weeks {
            let weekStart = start.plus(7 * w)
            let gk = weekStart.plus(4)
            var weekPending: [String] = []
            for _ in 0..<perWeek {
                let district = districts[rng.int(0...districts.count - 1)]
                let group = groups[rng.int(0...1)]
                let date = weekStart.plus(rng.int(0...6))  // Sat/Sun referrals wait for next week's run
                let key: String
                let roll = rng.int(0...99)
                if roll < 14, !known.isEmpty {
                    key = known[rng.int(0...known.count - 1)]  // a re-referral: lock, pending or eligible
                } else {
                    let n = nextClaimant
                    nextClaimant += 1
                    let json = rng.chance(0.1) ? Q.ref(n) : Q.nino(n)
                    key = json.keys.first! + ":" + json.values.first!
                    claimantJSON[key] = json
                    known.append(key)
                }
                referAttempts += 1
                let rid = "r-\(referAttempts)"
                let i = script.add(
                    Q.refer(
                        script.nextID(), rid, claimant: claimantJSON[key]!, district: district.id,
                        group: group, date: date.iso))
                model.clock = max(model.clock, date)
                if let code = model.referError(claimant: key, on: date) {
                    expectError(i, code)
                    expectedRefusals[code, default: 0] += 1
                } else {
                    model.refer(id: rid, claimant: key, district: district, group: group, date: date)
                    referralCount += 1
                    weekPending.append(rid)
                    expectOK(i) { r in r.str("status") == "awaiting_gatekeeper" && r.str("referral_id") == rid ? nil : "refer: \(r.line)" }
                }
            }
            // RULES2 R6: some NINOs turn out to have a reference number, fresh or
            // already used on its own (then its history joins the NINO's).
            for _ in 0..<rng.int(0...max(1, perWeek / 15)) {
                let ninos = known.filter { $0.hasPrefix("nino:") }, refs = known.filter { $0.hasPrefix("ref:") }
                guard !ninos.isEmpty else { break }
                let nino = ninos[rng.int(0...ninos.count - 1)]
                let ref: String
                if refs.isEmpty || rng.chance(0.4) {
                    let json = Q.ref(nextClaimant)
                    nextClaimant += 1
                    ref = "ref:" + json["ref"]!
                    claimantJSON[ref] = json
                    known.append(ref)
                } else {
                    ref = refs[rng.int(0...refs.count - 1)]
                }
                let line = Req.line(
                    Req.envelope(
                        script.nextID(), "link_claimant", role: "work_coach",
                        ["nino": claimantJSON[nino]!["nino"]!, "ref": claimantJSON[ref]!["ref"]!]))
                let i = script.add(line)
                switch model.link(nino: nino, ref: ref) {
                case .linked(let already):
                    linkAnswers[already ? "already" : "linked", default: 0] += 1
                    if !already { links.append((nino, ref)) }
                    expectOK(i) { r in
                        r.result["linked"] as? Bool == true && r.result["already"] as? Bool == already ? nil : "link: \(r.line)"
                    }
                case .error(let code):
                    linkAnswers[code, default: 0] += 1
                    expectError(i, code)
                }
            }
            for rid in weekPending where rng.chance(0.03) {
                model.referrals[model.byID[rid]!].state = .cancelled
                let i = script.add(Q.cancel(script.nextID(), rid))
                expectOK(i) { r in r.str("status") == "cancelled" ? nil : "cancel: \(r.line)" }
            }
            for district in districts.shuffled(using: &rng) {
                let run = "run-\(w)-\(district.id)"
                let pend = model.pending(district.id, upTo: gk)
                let p = script.add(Q.pending(script.nextID(), district: district.id, date: gk.iso))
                model.clock = max(model.clock, gk)
                let pendRows = pend.map { i -> String in
                    let m = model.referrals[i]
                    return "\(m.id)|\(m.group)|\(m.date.iso)"
                }
                expectOK(p) { r in
                    let got = (r.result["referrals"] as? [[String: Any]])?.map {
                        "\($0["referral_id"] as? String ?? "?")|\($0["group"] as? String ?? "?")|\($0["referral_date"] as? String ?? "?")"
                    }
                    return got == pendRows && r.str("district") == district.id ? nil : "pending \(district.id) \(gk): got \(got ?? []), expected \(pendRows)"
                }
                if pend.isEmpty {
                    if rng.chance(0.5) {
                        expectError(script.add(Q.capacity(script.nextID(), run: run, district: district.id, date: gk.iso, 3)), "wrong_state")
                    }
                    continue
                }
                let answer: (selected: [String], notSelected: [String])
                let i: Int
                if rng.chance(0.2) {
                    manualRuns += 1
                    var subset = pend.filter { _ in rng.chance(0.6) }
                    if subset.isEmpty { subset = [pend[0]] }
                    let decisions = subset.map { ($0, rng.chance(0.5)) }
                    answer = model.decide(run: run, gk: gk, decisions)
                    i = script.add(
                        Q.decide(
                            script.nextID(), run: run, district: district.id, date: gk.iso,
                            decisions.shuffled(using: &rng).map { (model.referrals[$0.0].id, $0.1) }))
                } else {
                    capacityRuns += 1
                    let cap = rng.chance(0.1) ? 0 : rng.int(0...pend.count + 1)
                    answer = model.capacityRun(run: run, district: district, gk: gk, capacity: cap)
                    i = script.add(Q.capacity(script.nextID(), run: run, district: district.id, date: gk.iso, cap))
                }
                expectOK(i) { r in
                    Set(r.result.keys) == ["run_id", "district", "gk_date", "selected", "not_selected"]
                        && r.strings("selected") == answer.selected && r.strings("not_selected") == answer.notSelected
                        && r.str("run_id") == run && r.str("gk_date") == gk.iso && r.str("district") == district.id
                        ? nil : "run \(run): got \(r.line), expected selected \(answer.selected) not_selected \(answer.notSelected)"
                }
            }
        }
        #expect(referralCount >= c.referrals * 8 / 10)
        #expect(manualRuns > 0 && capacityRuns > 0)
        #expect((expectedRefusals["not_eligible"] ?? 0) > 0, "the generator re-refers claimants inside a lock")
        #expect((linkAnswers["linked"] ?? 0) >= 10 && (linkAnswers["conflict"] ?? 0) > 0, "the generator links people: \(linkAnswers)")

        // The session's own moving clock: each line is read on the latest day it names.
        let now: String? = nil
        let resps = try trial.run(script, now: now)
        var mismatches: [String] = []
        for (i, check) in checks.sorted(by: { $0.key < $1.key }) {
            if let m = check(resps[i]) { mismatches.append("line \(i): \(m)") }
        }
        expectNone(mismatches, "responses differ from the model")

        // The true status of every referral, through the wire: disclose.
        var disclose = Script()
        for r in model.referrals { disclose.add(Q.disclose(disclose.nextID("d"), r.id)) }
        let truth = try trial.run(disclose, now: now)
        var wrong: [String] = []
        var pscOutside: [String] = []
        var armsSeen: [String: Set<String>] = [:]
        for (r, resp) in zip(model.referrals, truth) {
            let status = resp.str("status") ?? resp.line
            if status != model.trueStatus(r) { wrong.append("\(r.id) \(r.district.id): disclose \(status), model \(model.trueStatus(r))") }
            if status == "allocated_psc", !r.district.psc { pscOutside.append(r.id) }
            if status.hasPrefix("allocated_") { armsSeen[r.district.id, default: []].insert(status) }
        }
        expectNone(pscOutside, "PSC allocations outside the PSC districts")
        expectNone(wrong, "true statuses differ from the independent re-derivation")
        for d in districts where armsSeen[d.id] != nil {
            let expected: Set<String> = d.psc ? ["allocated_whp", "allocated_psc", "allocated_rcg"] : ["allocated_whp", "allocated_rcg"]
            #expect(armsSeen[d.id] == expected, "arms seen in \(d.id): \(armsSeen[d.id]!.sorted())")
        }

        // The log itself, from an audit bundle: every allocated event as derived from the seed.
        let bundle = trial.root.appendingPathComponent("bundle")
        let ab = try runWHP(["audit-bundle"] + trial.common + ["--seeds", trial.seeds.path, "--out", bundle.path])
        try #require(ab.status == 0, "audit-bundle: \(ab.stderr)")
        let events = try jsonLines(bundle.appendingPathComponent("events.jsonl"))
        var allocated = 0
        var eventMismatches: [String] = []
        // ALLOCATION.md §5: the pseudonym, from the deployment's key, computed here.
        let kp = Independent.unhex(
            try String(contentsOf: trial.data.appendingPathComponent("keys/pseudonym.key"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines))
        func pseudonym(_ key: String) -> String {
            let (kind, value) = (key.prefix { $0 != ":" }, key.drop { $0 != ":" }.dropFirst())
            let normalised = (kind == "nino" ? "NINO:" : "REF:") + value
            return Independent.hex(Independent.hmac(kp, Independent.enc("whp/claimant/v1") + Independent.enc(normalised)))
        }
        // PROTOCOL.md §3: a run's events are every decision, then every allocation, each in referred order.
        var runBlocks: [(run: String, types: [String], ids: [String])] = []
        for e in events {
            let p = e["payload"] as? [String: String] ?? [:]
            let type = e["type"] as? String ?? ""
            guard type == "gatekeeper_decision" || type == "allocated", let run = p["run_id"], let rid = p["referral_id"] else { continue }
            if runBlocks.last?.run != run { runBlocks.append((run, [], [])) }
            runBlocks[runBlocks.count - 1].types.append(type)
            runBlocks[runBlocks.count - 1].ids.append(rid)
        }
        #expect(Set(runBlocks.map(\.run)).count == runBlocks.count, "each run's events are contiguous")
        for b in runBlocks {
            let decisions = b.ids.enumerated().filter { b.types[$0.offset] == "gatekeeper_decision" }.map(\.element)
            let allocations = b.ids.enumerated().filter { b.types[$0.offset] == "allocated" }.map(\.element)
            let seq = { (id: String) in model.referrals[model.byID[id]!].seq }
            let selected = decisions.filter { if case .allocated = model.referrals[model.byID[$0]!].state { true } else { false } }
            if b.types != Array(repeating: "gatekeeper_decision", count: decisions.count) + Array(repeating: "allocated", count: allocations.count)
                || decisions.map(seq) != decisions.map(seq).sorted() || allocations.map(seq) != allocations.map(seq).sorted()
                || allocations != selected
            {
                eventMismatches.append("run \(b.run): events \(zip(b.types, b.ids).map { "\($0.0):\($0.1)" })")
            }
        }
        for e in events {
            let p = e["payload"] as? [String: String] ?? [:]
            switch e["type"] as? String {
            case "referred":
                guard let rid = p["referral_id"], let k = model.byID[rid] else { eventMismatches.append("unexpected referral \(p)"); continue }
                let r = model.referrals[k]
                if p["claimant"] != pseudonym(r.claimant) || p["actor"] != "work_coach:WC0001" || p["district"] != r.district.id
                    || p["group"] != r.group || p["referral_date"] != r.date.iso
                {
                    eventMismatches.append("\(rid): referred \(p)")
                }
            case "allocated":
                allocated += 1
                guard let rid = p["referral_id"], let k = model.byID[rid], let d = model.referrals[k].draw else {
                    eventMismatches.append("unexpected allocation \(p)"); continue
                }
                let r = model.referrals[k]
                #expect(!(p["arm"] == "PSC" && !DistrictModel.pscIDs.contains(p["district"] ?? "")), "PSC in \(p["district"] ?? "?")")
                let same =
                    p["arm"] == d.arm && p["alloc_seed"] == d.allocSeed && p["index"] == String(d.index)
                    && p["stratum"] == r.stratum && p["district"] == r.district.id && p["gk_date"] == r.gk?.iso
                    && p["block"] == d.block.map(String.init) && p["block_size"] == d.blockSize.map(String.init)
                    && p["position"] == d.position.map(String.init)
                if !same { eventMismatches.append("\(rid): event \(p), derived \(d)") }
            case "gatekeeper_decision":
                guard let rid = p["referral_id"], let k = model.byID[rid] else { eventMismatches.append("decision \(p)"); continue }
                if p["actor"] != "gatekeeper:S001" || p["rule"] != model.referrals[k].rule || p["gk_date"] != model.referrals[k].gk?.iso
                    || p["decision"] != (model.referrals[k].draw == nil ? "not_selected" : "selected")
                {
                    eventMismatches.append("\(rid): decision \(p)")
                }
                if p["lottery_key"] != model.referrals[k].lotteryKey {
                    eventMismatches.append("\(rid): lottery_key \(p["lottery_key"] ?? "-"), derived \(model.referrals[k].lotteryKey ?? "-")")
                }
            default: break
            }
        }
        #expect(allocated == model.referrals.filter { $0.draw != nil }.count)
        // RULES2 R6: one claimant_linked event per new link, in order, keyed by the pseudonyms.
        let linkEvents = events.filter { $0["type"] as? String == "claimant_linked" }.map { $0["payload"] as? [String: String] ?? [:] }
        #expect(linkEvents.map { [$0["claimant"] ?? "", $0["alias"] ?? ""] } == links.map { [pseudonym($0.nino), pseudonym($0.ref)] })
        expectNone(eventMismatches, "events differ from the derivation")

        let v = try trial.verify(["--seed", trial.seedFile.path])
        #expect(v.status == 0, "verify --seed: \(v.stdout) \(v.stderr)")
    }
}
