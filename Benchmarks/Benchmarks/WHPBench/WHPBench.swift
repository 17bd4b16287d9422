import Benchmark
import Foundation
import WHPAudit
import WHPCrypto
import WHPDomain
import WHPEvaluation
import WHPJSON
import WHPService
import WHPStore

/// Micro-benchmarks of the hot paths named in the performance issue: the pure
/// draw, event encoding + chain hash, request decode + response encode, and
/// the store's group commit. End-to-end figures come from `scripts/bench`.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .cpuTotal], maxDuration: .seconds(3))

    let seed = Bytes32(hex: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")!
    let weights = Weights(whp: 1, psc: 1, rcg: 1)

    Benchmark("uniform(seed, 6)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Uniform.draw(seed, 6)) }
    }

    Benchmark("permuted_block allocation") { benchmark in
        var state = StratumState()
        for _ in benchmark.scaledIterations {
            let (draw, next) = Allocator.next(
                state: state, seed: seed, trialID: "whp-demo", stratum: "devon-cornwall",
                weights: weights, method: .permutedBlock, multipliers: [1, 2])
            state = next
            blackHole(draw)
        }
    }

    let at = Instant("2017-11-01T09:05:00Z")!
    let referred = TrialEvent.referred(
        Referred(
            referralID: "R-1", claimant: Pseudonym(hex: String(repeating: "5", count: 64)), district: "devon-cornwall",
            group: "disability", referralDate: CivilDate("2017-11-01")!, actor: "work_coach:WC0042", recordedAt: at))
    let event = Event(seq: 2, type: referred.type.rawValue, payload: referred.payload)
    Benchmark("event encoding + chain hash") { benchmark in
        var h = seed
        for _ in benchmark.scaledIterations { h = Chain.next(previous: h, event: event) }
        blackHole(h)
    }

    let line = Array(
        #"{"v":1,"id":"c-17","op":"refer","actor":{"role":"work_coach","id":"WC0042"},"referral_id":"R-000123","claimant":{"nino":"AB 12 34 56 C"},"district":"devon-cornwall","group":"disability","referral_date":"2017-11-01"}"#
            .utf8)
    let config = TrialConfig(
        trialID: "whp-demo", groups: ["disability", "early_access"],
        districts: [
            District(
                id: "devon-cornwall", name: "Devon and Cornwall", psc: true, gatekeeperRule: .lottery, weights: weights,
                providers: [Provider(id: "prov-a", name: "A", arm: .whp, share: 2), Provider(id: "prov-b", name: "B", arm: .whp, share: 1)])
        ])
    let decoder = RequestDecoder(config: config)
    let today = CivilDate("2018-01-01")!
    Benchmark("request decode + response encode") { benchmark in
        var w = JSONWriter(capacity: 1 << 16)
        for _ in benchmark.scaledIterations {
            if case .success(let r) = decoder.decode(line[...], today: today) {
                ResponseWriter.append(id: r.id, .ok(.object(["referral_id": "R-000123", "status": "awaiting_gatekeeper"])), to: &w)
            }
            if w.bytes.count > 60_000 { w.reset() }
        }
        blackHole(w.bytes.count)
    }

    Benchmark("store group commit of 1,000 events", configuration: .init(maxDuration: .seconds(5))) { benchmark in
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("whp-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store.create(path: dir.appendingPathComponent("whp.sqlite").path)
        try store.write { tx in
            _ = try tx.append(.trialStarted(config.trialStarted(commitment: seed, configHash: seed, rules: .current, recordedAt: at)))
        }
        var n = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try store.write { tx in
                for _ in 0..<1000 {
                    n += 1
                    _ = try tx.append(
                        .referred(
                            Referred(
                                referralID: "R-\(n)", claimant: Pseudonym(hex: Crypto.sha256(Array("c\(n)".utf8)).hex),
                                district: "devon-cornwall", group: "disability", referralDate: CivilDate("2017-11-01")!,
                                actor: "work_coach:W", recordedAt: at)))
                }
            }
        }
    }

    // --- Pure-core costs of `verify` and `export` (performance issue #7) ---

    let shares = config.districts[0].configuredShares(of: .whp)!
    Benchmark("provider draw (RULES2 R15, permuted_block)") { benchmark in
        var state = ProviderStratumState()
        for _ in benchmark.scaledIterations {
            let p = ProviderDraw.next(
                state: state, seed: seed, trialID: "whp-demo", stratum: "devon-cornwall|WHP", shares: shares,
                method: .permutedBlock, multipliers: [1, 2])!
            state.apply(p)
            blackHole(p)
        }
    }

    let trialLog = SyntheticTrial.log(config: config, seed: seed, referrals: 3_000)
    Benchmark("verify: consume one event (payload text, with seed)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        // scalingFactor .kilo: one iteration = 1,000 events of a referred / decided / allocated trial.
        var v = AuditVerifier(config: config, configHash: seed, seed: seed, commitmentFile: nil)
        var k = 0
        for _ in benchmark.scaledIterations {
            if k == trialLog.count { v = AuditVerifier(config: config, configHash: seed, seed: seed, commitmentFile: nil); k = 0 }
            let e = trialLog[k]
            v.consume(seq: e.seq, type: e.type, payloadText: e.text, storedHash: e.hash)
            k += 1
        }
        blackHole(v)
    }

    Benchmark("verify: consume one event (dictionary payload, as before)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var v = AuditVerifier(config: config, configHash: seed, seed: seed, commitmentFile: nil)
        var k = 0
        for _ in benchmark.scaledIterations {
            if k == trialLog.count { v = AuditVerifier(config: config, configHash: seed, seed: seed, commitmentFile: nil); k = 0 }
            let e = trialLog[k]
            v.consume(seq: e.seq, type: e.type, payload: try? PayloadJSON.decode(e.text), storedHash: e.hash)
            k += 1
        }
        blackHole(v)
    }

    // verify's derived_tables check: two stores' referrals merged in key order
    // and compared as bytes (TablePager), 20,000 rows a side.
    let referralRows = 20_000
    func referrals() throws -> Store {
        let store = try Store.scratch()
        try store.backend.transaction(.write, retry: false) { s in
            for i in 0..<referralRows {
                try s.exec(
                    """
                    INSERT INTO referrals(referral_id, referred_seq, claimant, person, district, grp, referral_date, status,
                                          run_id, gk_date, decided_on, rule, stratum, alloc_index, arm, disclosed, last_seq)
                    VALUES (?, ?, ?, ?, 'devon-cornwall', 'disability', '2017-11-01', 'allocated_rcg', 'gk-1', '2017-11-20',
                            '2017-11-20', 'lottery', 'devon-cornwall|disability', ?, 'RCG', 0, ?)
                    """,
                    [.text("G\(i)"), .int(i + 2), .text(String(repeating: "ab", count: 32)), .text(String(repeating: "cd", count: 32)), .int(i), .int(i + 2)])
            }
        }
        return store
    }
    let storedReferrals = try? referrals(), rebuiltReferrals = try? referrals()
    Benchmark("verify: derived tables compared, 20,000 referral rows", configuration: .init(maxDuration: .seconds(5))) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try storedReferrals?.snapshot { try $0.compareDerivedTables(with: rebuiltReferrals!) })
        }
    }

    let allocatedText = trialLog.last { $0.type == "allocated" }!.text
    Benchmark("payload parse: PayloadFields", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var f = PayloadFields()
        for _ in benchmark.scaledIterations { blackHole(f.parse(allocatedText)) }
    }
    Benchmark("payload parse: PayloadJSON.decode (dictionary)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? PayloadJSON.decode(allocatedText)) }
    }

    let message = Array(repeating: UInt8(0x61), count: 60)
    Benchmark("HMAC-SHA256: HMACKey (key schedule once)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let key = HMACKey(seed)
        for _ in benchmark.scaledIterations { blackHole(key.mac(message)) }
    }
    Benchmark("HMAC-SHA256: Crypto.hmac (per-thread context)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Crypto.hmac(key: seed, message)) }
    }
    Benchmark("HMAC-SHA256: one-shot HMAC() (before)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Crypto.oneShotHMAC(key: seed, message)) }
    }

    let facts = (0..<1_000).map { i in
        ReferralFacts(
            claimant: Pseudonym(hex: Crypto.sha256(Array("c\(i)".utf8)).hex), district: "devon-cornwall", group: "disability",
            referralDate: CivilDate("2017-11-01")!, status: .allocated(Arm.allCases[i % 3]), gkDate: CivilDate("2017-11-20"),
            rule: "lottery", flag: nil, claimantReferralNumber: 1 + i % 3, optedOut: false)
    }
    for format in ExportFormat.allCases {
        Benchmark("export row (\(format)): EvaluationRowWriter", configuration: .init(scalingFactor: .kilo)) { benchmark in
            let writer = EvaluationRowWriter(config: config, evaluationKey: seed, precision: .month, format: format)
            var out: [UInt8] = []
            out.reserveCapacity(1 << 20)
            var k = 0
            for _ in benchmark.scaledIterations {
                writer.append(facts[k], to: &out)
                k = k == facts.count - 1 ? 0 : k + 1
                if out.count > 1 << 19 { out.removeAll(keepingCapacity: true) }
            }
            blackHole(out.count)
        }
        Benchmark("export row (\(format)): Evaluation.row + \(format)(into:) (before)", configuration: .init(scalingFactor: .kilo)) { benchmark in
            var out: [UInt8] = []
            out.reserveCapacity(1 << 20)
            var k = 0
            for _ in benchmark.scaledIterations {
                let row = Evaluation.row(facts[k], config: config, evaluationKey: seed, precision: .month)!
                if format == .csv { row.csv(into: &out) } else { row.jsonl(into: &out) }
                k = k == facts.count - 1 ? 0 : k + 1
                if out.count > 1 << 19 { out.removeAll(keepingCapacity: true) }
            }
            blackHole(out.count)
        }
    }
}

/// A trial log for the verifier benchmarks: `referrals` referrals in one
/// district, one lottery run selecting all of them, their allocations (with
/// a provider draw for WHP places when the district has providers); chained
/// as the store chains it.
enum SyntheticTrial {
    struct Stored { var seq: Int; var type: String; var text: String; var hash: String }

    static func log(config: TrialConfig, seed: Bytes32, referrals n: Int) -> [Stored] {
        let at = Instant("2017-11-01T09:00:00Z")!
        let day = CivilDate("2017-11-01")!, gk = CivilDate("2017-11-20")!
        let commitment = Derivation.commitment(trialID: config.trialID, seed: seed)
        var events: [TrialEvent] = [.trialStarted(config.trialStarted(commitment: commitment, configHash: seed, rules: .current, recordedAt: at))]
        let district = config.districts[0]
        let claimant = { (i: Int) in Pseudonym(hex: Crypto.sha256(Array("c\(i)".utf8)).hex) }
        let ids = (0..<n).map { "R\($0)" }
        for (i, id) in ids.enumerated() {
            events.append(
                .referred(
                    Referred(
                        referralID: id, claimant: claimant(i), district: district.id, group: "disability", referralDate: day,
                        actor: "work_coach:WC1", recordedAt: at)))
        }
        let sel = GatekeeperSelection.select(
            ids.enumerated().map { PendingReferral(referralID: $1, referralDate: day, referredSeq: $0 + 2) },
            capacity: n, rule: .lottery
        ) { Derivation.lotteryKey(seed: seed, trialID: config.trialID, runID: "gk-1", referralID: $0) }
        for id in ids {
            events.append(
                .gatekeeperDecision(
                    GatekeeperDecision(
                        runID: "gk-1", referralID: id, decision: .selected, gkDate: gk, rule: .lottery, lotteryKey: sel.keys[id],
                        capacity: n, actor: "gatekeeper:GK", recordedAt: at)))
        }
        var state = StratumState()
        var providers: [String: ProviderStratumState] = [:]
        let stratum = config.stratum(district: district.id, group: "disability")
        for (i, id) in ids.enumerated() {
            let (d, next) = Allocator.next(
                state: state, seed: seed, trialID: config.trialID, stratum: stratum, weights: district.weights,
                method: config.method, multipliers: config.blockMultipliers)
            state = next
            var provider: ProviderAllocation?
            if let shares = district.configuredShares(of: d.arm) {
                let pi = ProviderDraw.stratum(stratum, arm: d.arm)
                provider = ProviderDraw.next(
                    state: providers[pi] ?? ProviderStratumState(), seed: seed, trialID: config.trialID, stratum: pi,
                    shares: shares, method: config.method, multipliers: config.blockMultipliers)
                providers[pi, default: ProviderStratumState()].apply(provider!)
            }
            events.append(
                .allocated(
                    Allocated(
                        referralID: id, claimant: claimant(i), district: district.id, group: "disability", stratum: stratum,
                        index: d.index, arm: d.arm, allocSeed: d.allocSeed, gkDate: gk, runID: "gk-1", slot: d.slot,
                        provider: provider, recordedAt: at)))
        }
        var prev = Derivation.genesis(trialID: config.trialID, commitment: commitment)
        return events.enumerated().map { k, e in
            let event = Event(seq: k + 1, type: e.type.rawValue, payload: e.payload)
            prev = Chain.next(previous: prev, event: event)
            return Stored(seq: k + 1, type: event.type, text: PayloadJSON.encode(event.payload), hash: prev.hex)
        }
    }
}
