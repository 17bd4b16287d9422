import Benchmark
import Foundation
import WHPCore
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
            let (draw, next) = Allocator.next(state: state, seed: seed, trialID: "whp-demo", stratum: "devon-cornwall",
                                              weights: weights, method: .permutedBlock, multipliers: [1, 2])
            state = next
            blackHole(draw)
        }
    }

    let event = Event(seq: 2, type: .referred, payload: [
        "referral_id": "R-1", "claimant": String(repeating: "5", count: 64), "district": "devon-cornwall",
        "group": "disability", "referral_date": "2017-11-01", "actor": "work_coach:WC0042", "recorded_at": "2017-11-01T09:05:00Z",
    ])
    Benchmark("event encoding + chain hash") { benchmark in
        var h = seed
        for _ in benchmark.scaledIterations { h = Chain.next(previous: h, event: event) }
        blackHole(h)
    }

    let line = Array(#"{"v":1,"id":"c-17","op":"refer","actor":{"role":"work_coach","id":"WC0042"},"referral_id":"R-000123","claimant":{"nino":"AB 12 34 56 C"},"district":"devon-cornwall","group":"disability","referral_date":"2017-11-01"}"#.utf8)
    let config = TrialConfig(trialID: "whp-demo", groups: ["disability", "early_access"], districts: [
        District(id: "devon-cornwall", name: "Devon and Cornwall", psc: true, gatekeeperRule: .lottery, weights: weights),
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
            try tx.append(.trialStarted, config.trialStartedPayload(commitment: seed, configHash: seed, recordedAt: Instant("2017-11-01T09:00:00Z")!))
        }
        var n = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try store.write { tx in
                for _ in 0..<1000 {
                    n += 1
                    try tx.append(.referred, ["referral_id": "R-\(n)", "claimant": "c\(n)", "district": "devon-cornwall",
                                              "group": "disability", "referral_date": "2017-11-01", "actor": "work_coach:W",
                                              "recorded_at": "2017-11-01T09:05:00Z"])
                }
            }
        }
    }
}
