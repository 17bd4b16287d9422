import Foundation
import Testing
import WHPTestSupport
#if canImport(Glibc)
    import Glibc
#endif

/// PROTOCOL.md §1: "A response is written only after every event it reports is
/// durably committed." A client that read an answer may rely on it after a crash.
@Suite("kill -9 during a pipelined stream")
struct CrashTests {
    static let now = "2018-03-01T12:00:00Z"
    static let districts = DistrictModel.shipped.map(\.id)

    @Test("every acknowledged request survives kill -9; replays give the first answers; verify passes")
    func killNineRounds() throws {
        signal(SIGPIPE, SIG_IGN)  // writes into a killed server's stdin must fail, not kill the test
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.b).status == 0)
        var rng = SplitMix(0xC4A5_0009)
        let n = 2000
        for round in 0..<5 {
            let base = try trial.logHead(now: Self.now)
            // A stream of referrals with a capacity run every 400 lines.
            var lines: [String] = []
            var isRun: [Bool] = []
            for i in 0..<n {
                if i % 400 == 399 {
                    let d = Self.districts[(i / 400 + round) % Self.districts.count]
                    lines.append(Q.capacity("k\(round)-\(i)", run: "kr-\(round)-\(i)", district: d, date: "2018-02-0\(round + 1)", 5 + i % 7))
                    isRun.append(true)
                } else {
                    lines.append(
                        Q.refer(
                            "k\(round)-\(i)", "kr-\(round)-\(i)", claimant: Q.nino(100_000 * (round + 1) + i),
                            district: Self.districts[i % Self.districts.count], group: i % 3 == 0 ? "early_access" : "disability",
                            date: "2018-01-\(10 + i % 19)"))
                    isRun.append(false)
                }
            }
            let acknowledge = round == 0 ? rng.int(1...50) : round == 4 ? rng.int(n - 60...n - 1) : rng.int(1...n - 1)

            let serve = try ServeProcess(trial, now: Self.now)
            let writer = DispatchGroup()
            writer.enter()
            let chunks = stride(from: 0, to: n, by: 50).map { lines[$0..<min($0 + 50, n)].joined(separator: "\n") }
            DispatchQueue.global().async {
                defer { writer.leave() }
                for c in chunks { do { try serve.send(c) } catch { return } }
            }
            var acked: [String] = []
            for k in 0..<acknowledge {
                guard let line = serve.readLine() else { Issue.record("round \(round): serve ended after \(k) answers"); break }
                acked.append(line)
            }
            serve.kill9()
            #expect(writer.wait(timeout: .now() + 30) == .success, "round \(round): the writer is stuck")

            let ackedResps = acked.map(Resp.init)
            for (k, r) in ackedResps.enumerated() {
                #expect(r.ok && r.id == "k\(round)-\(k)", "round \(round), answer \(k): \(r)")
            }
            // A new process: the acknowledged requests are in the store.
            let after = try trial.logHead(now: Self.now)
            let minimum =
                base.events
                + ackedResps.enumerated().reduce(0) { sum, e in
                    sum + (isRun[e.offset] ? 2 * (e.element.strings("selected")?.count ?? 0) + (e.element.strings("not_selected")?.count ?? 0) : 1)
                }
            if round == 0 {
                #expect(after.events < base.events + n, "round 0 reads ≤ 50 answers, so the kill must land mid-stream")
            }
            #expect(after.events >= minimum, "round \(round) (seed 0xC4A50009): \(after.events) events, \(acknowledge) answers read need ≥ \(minimum)")

            let crashed = try trial.verify()
            #expect(crashed.status == 0, "round \(round): verify right after kill -9: \(crashed.stdout)")

            // Replaying the whole stream: acknowledged ones answer exactly as first; the log then
            // holds each request's events once.
            var replay = Script()
            for l in lines { replay.add(l) }
            replay.add(Q.status("end"), tag: "end")
            let r = try trial.run(replay, now: Self.now)
            var problems: [String] = []
            for (k, first) in ackedResps.enumerated() where r[k].withoutID != first.withoutID {
                problems.append("line \(k): replay \(r[k].line), first \(first.line)")
            }
            for k in 0..<n where !r[k].ok { problems.append("line \(k): \(r[k].line)") }
            expectNone(problems, "round \(round): replays differ from the first answers")
            let expected =
                base.events
                + (0..<n).reduce(0) { sum, k in
                    sum + (isRun[k] ? 2 * (r[k].strings("selected")?.count ?? 0) + (r[k].strings("not_selected")?.count ?? 0) : 1)
                }
            let end = try #require(LogHead(r[replay.index("end")]))
            #expect(end.events == expected, "round \(round): \(end.events) events after the replay, expected \(expected)")
            let v = try trial.verify()
            #expect(v.status == 0, "round \(round): verify after kill -9: \(v.stdout)")
        }
    }
}
