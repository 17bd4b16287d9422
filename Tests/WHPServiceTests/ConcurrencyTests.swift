import Foundation
import Testing
import WHPTestSupport

/// PROTOCOL.md §1: several processes may serve one store at once; the chain never
/// forks and no claimant is allocated twice.
@Suite("Two serve processes on one store")
struct ConcurrencyTests {
    @Test("racing the same claimants through two servers: one referral each, one decision each, verify passes")
    func twoServers() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        let n = 600
        let districts = DistrictModel.shipped.map(\.id)
        func session(_ tag: String) -> [String] {
            var lines: [String] = []
            for k in 0..<n {
                lines.append(Q.refer("\(tag)-\(k)", "\(tag)-\(k)", claimant: Q.nino(k), district: districts[k % 6], date: "2017-11-\(10 + k % 20)"))
                if k % 150 == 149 {
                    for (j, d) in districts.enumerated() {
                        lines.append(Q.capacity("\(tag)-run-\(k)-\(j)", run: "\(tag)-run-\(k)-\(j)", district: d, date: "2017-12-0\(1 + k / 150)", 7))
                    }
                }
            }
            return lines
        }
        let sessions = [session("A"), session("B")]
        nonisolated(unsafe) var outs: [[String]] = [[], []]
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let out = (try? trial.serveStreaming(sessions[i], now: "2018-01-31T12:00:00Z").1) ?? []
            lock.lock(); outs[i] = out; lock.unlock()
        }
        try #require(outs[0].count == sessions[0].count && outs[1].count == sessions[1].count)
        let a = outs[0].map(Resp.init), b = outs[1].map(Resp.init)
        var problems: [String] = []
        var decided: [String: Int] = [:]
        for (resps, lines) in [(a, sessions[0]), (b, sessions[1])] {
            for (r, line) in zip(resps, lines) where line.contains("\"gatekeep\"") {
                if r.ok {
                    for rid in (r.strings("selected") ?? []) + (r.strings("not_selected") ?? []) { decided[rid, default: 0] += 1 }
                } else if r.code != "wrong_state" && !(r.code == "invalid_field" && r.field == "gk_date") {
                    // Nothing left to decide, or the other server's later run came first.
                    problems.append("run: \(r.line)")
                }
            }
        }
        for k in 0..<n {
            let ra = a.first { $0.id == "A-\(k)" }!, rb = b.first { $0.id == "B-\(k)" }!
            let oks = [ra, rb].filter(\.ok).count
            if oks != 1 { problems.append("claimant \(k): \(ra.line) / \(rb.line)") }
            for r in [ra, rb] where !r.ok && !["duplicate_referral", "not_eligible"].contains(r.code ?? "") {
                problems.append("claimant \(k): \(r.line)")
            }
        }
        expectNone(problems, "answers break one-referral-per-claimant")
        #expect(decided.values.allSatisfy { $0 == 1 }, "a referral decided twice: \(decided.filter { $0.value > 1 })")
        let v = try trial.verify(["--seed", trial.seedFile.path])
        #expect(v.status == 0, "verify after two concurrent servers: \(v.stdout)")
        let head = try trial.logHead(now: "2018-01-31T12:00:00Z")
        let expected =
            1 + n + decided.count + a.filter(\.ok).compactMap { $0.strings("selected") }.joined().count
            + b.filter(\.ok).compactMap { $0.strings("selected") }.joined().count
        #expect(head.events == expected, "each answered change is in the log once: \(head.events) vs \(expected)")
    }
}
