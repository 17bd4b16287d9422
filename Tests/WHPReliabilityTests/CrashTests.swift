import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore
import WHPTestSupport
#if canImport(Glibc)
    import Glibc
#endif

/// PROTOCOL.md §1: a response is written only after its events are durably
/// committed, and a group commits together or not at all. These tests kill
/// `whp serve` with SIGKILL at random moments of a pipelined stream (referrals,
/// cancellations, gatekeeper runs, flags, opt-outs, disclosures) and then, in a
/// new process, check that every acknowledged request is in the store (its
/// identical replay returns the first answer and appends nothing; the log holds
/// at least the events the read answers reported) and that `verify --seed` passes.
///
/// `scripts/crash-soak KILLS` runs `randomKills` with WHP_CRASH_KILLS=KILLS.
@Suite("kill -9 at random moments", .serialized)
struct CrashTests {
    @Test("serve killed at random moments: every acknowledged request survives, verify --seed passes")
    func randomKills() throws {
        let kills = Env.int("WHP_CRASH_KILLS") ?? 10
        let perTrial = Env.int("WHP_CRASH_PER_TRIAL") ?? 50
        let campaign = try CrashCampaign(seed: runSeed(), perTrial: perTrial, verbose: kills > 10)
        for _ in 0..<kills {
            let problems = try campaign.killOnce()
            for p in problems { Issue.record("\(p) [WHP_TEST_SEED=\(String(campaign.seed, radix: 16))]") }
        }
        let s = campaign.stats
        let summary = """
            crash-soak summary: kills=\(s.kills) failures=\(s.failures) acknowledged_checked=\(s.acknowledged) \
            replayed=\(s.replayed) requests_sent=\(s.sent) kills_mid_stream=\(s.midStream) \
            kills_with_committed_unacknowledged_work=\(s.unacknowledgedCommitted) kills_at_wal_growth=\(s.walKills) \
            partial_response_lines_at_kill=\(s.partialLines) verifies=\(s.verifies) trials=\(s.trials) \
            max_events=\(s.maxEvents) seconds=\(Int(Date().timeIntervalSince(s.started))) seed=\(String(campaign.seed, radix: 16))
            """
        Env.progress(summary)
        if let path = Env.vars["WHP_CRASH_SUMMARY"] { try (summary + "\n").write(toFile: path, atomically: true, encoding: .utf8) }
        #expect(s.failures == 0)
        #expect(s.kills == kills)
        if kills >= 10 {
            #expect(s.midStream > 0, "some kills landed mid-stream (answers were still owed)")
            #expect(s.acknowledged > 0, "some answers were read before a kill")
        }
    }

    /// A capacity run over 5,000 pending referrals commits 5,000 decisions and
    /// 2,500 allocations in one transaction. Killed while it runs, it must be
    /// all or nothing: no event of the run, or every pending referral decided
    /// and every selected one allocated.
    @Test("kill during a 5,000-referral gatekeeper run: all or nothing")
    func killDuringLargeGatekeep() throws {
        let t = try RelTrial.make()
        let district = "devon-cornwall"  // lottery rule
        let n = 5000, capacity = 2500
        // A batch of n pending referrals; another batch is referred when a run
        // committed before any kill had landed inside one (see the end).
        func refer(batch: Int) throws {
            var lines: [String] = []
            for i in 0..<n {
                let k = batch * n + i
                lines.append(
                    R.refer(
                        "big-\(k)", "BIG-R\(k)", claimant: R.nino(900_000 + k), district: district,
                        group: RelTrial.groups[i % 2], date: "2019-01-\(String(format: "%02d", 1 + i % 28))"))
            }
            let setup = try t.session(lines)
            try #require(setup.status == 0 && setup.responses.count == n)
            try #require(setup.responses.allSatisfy { Reply($0).ok })
        }
        try refer(batch: 0)
        var baseEvents = 1 + n, batches = 1

        var rng = SplitMix(runSeed())
        var outcomes: [String] = []
        var committed = false
        var sawNothingAfterWALGrowth = false
        var sawNothing = false
        for attempt in 0..<6 where !(committed && sawNothing) {
            // The run committed before any kill landed inside it: a fresh batch, so
            // that a later attempt can still show one (a fast machine may finish
            // a run before its WAL grows).
            if committed {
                try refer(batch: batches)
                batches += 1
                baseEvents += n + capacity + n
                committed = false
            }
            let run = "BIG-RUN-\(attempt)"
            let walBefore = fileSize(t.walPath)
            let serve = try t.serveChild()
            serve.write(R.capacity("g\(attempt)", run: run, district: district, date: "2019-02-01", capacity))
            // Half the attempts kill at a random delay; the others as soon as the WAL
            // grows (pages of the run's transaction being written) plus 0–20 ms.
            let byWAL = attempt % 2 == 0
            let delay = rng.double(0.3..<1.2)
            let start = Date()
            var walGrew = false
            var answered: [String] = []
            while Date().timeIntervalSince(start) < 20 {
                serve.pump(timeout: 0)
                answered += serve.takeLines()
                if !answered.isEmpty { break }
                if byWAL {
                    if fileSize(t.walPath) != walBefore {
                        walGrew = true
                        usleep(UInt32(rng.int(0...20_000)))
                        break
                    }
                } else if Date().timeIntervalSince(start) >= delay {
                    break
                }
                usleep(200)
            }
            if fileSize(t.walPath) != walBefore { walGrew = true }
            serve.kill9()
            answered += serve.drainAfterDeath()

            // A new process opens the store (recovering the WAL) and reports the head.
            let status = try t.session([R.status("after-\(attempt)"), R.pending("p-\(attempt)", district: district, date: "2019-02-01")])
            try #require(status.status == 0 && status.responses.count == 2, "\(status.stderr)")
            let events = try #require(Reply(status.responses[0]).events)
            let stillPending = (Reply(status.responses[1]).result["referrals"] as? [Any])?.count ?? -1
            let log = try readLog(t)
            let decisions = log.filter { $0.type == "gatekeeper_decision" && $0.payload["run_id"] == run }
            let allocations = log.filter { $0.type == "allocated" && $0.payload["run_id"] == run }
            let outcome =
                "attempt \(attempt) (\(byWAL ? "at WAL growth" : String(format: "after %.0f ms", delay * 1000))): "
                + "\(decisions.count) decisions, \(allocations.count) allocations, \(stillPending) pending, answered \(answered.count)"
            outcomes.append(outcome)
            if decisions.isEmpty {
                #expect(allocations.isEmpty, "\(outcome)")
                #expect(events == baseEvents, "nothing of the run: \(outcome)")
                #expect(stillPending == n, "\(outcome)")
                #expect(answered.isEmpty, "an answer was read, so the run must be there: \(outcome)")
                sawNothing = true
                if walGrew { sawNothingAfterWALGrowth = true }
            } else {
                committed = true
                #expect(decisions.count == n, "every pending referral decided: \(outcome)")
                #expect(allocations.count == capacity, "every selected referral allocated: \(outcome)")
                #expect(
                    Set(decisions.filter { $0.payload["decision"] == "selected" }.compactMap { $0.payload["referral_id"] })
                        == Set(allocations.compactMap { $0.payload["referral_id"] }), "\(outcome)")
                #expect(stillPending == 0, "\(outcome)")
                #expect(events == baseEvents + n + capacity, "\(outcome)")
            }
            let v = try t.verifyReport(["--seed", t.seedFile.path])
            #expect(v.status == 0 && v.ok, "verify after \(outcome): \(v)")
        }
        if !committed {
            // Never committed under the kills: run it to the end once, it must be whole.
            let s = try t.session([R.capacity("final", run: "BIG-RUN-final", district: district, date: "2019-02-01", capacity)])
            let r = Reply(try #require(s.responses.first))
            #expect(r.ok && r.strings("selected").count == capacity && r.strings("not_selected").count == n - capacity)
            let v = try t.verifyReport(["--seed", t.seedFile.path])
            #expect(v.status == 0 && v.ok, "\(v)")
        }
        Env.progress("large gatekeep kills: " + outcomes.joined(separator: "; "))
        // Evidence that at least one kill landed inside the run's transaction:
        // the WAL had grown, yet nothing of the run was committed.
        #expect(sawNothingAfterWALGrowth || sawNothing, "no kill landed before the commit: \(outcomes)")
    }
}

/// PROTOCOL.md §1: "If a commit fails (disk full, I/O error), every request of
/// that group gets `internal` and had no effect; the server goes on."
@Suite("failed commits")
struct FailedCommitTests {
    @Test("a commit that cannot be written answers internal for its whole group, has no effect, and serve goes on")
    func fileSizeLimit() throws {
        let t = try RelTrial.make()
        // The serve process may not grow any file past ~300 KB (ulimit -f; SIGXFSZ is
        // ignored, and stays ignored across exec), so its WAL soon cannot grow:
        // commits fail as on a full disk.
        signal(SIGXFSZ, SIG_IGN)
        let serve = try Child(["serve"] + t.common, env: ["WHP_NOW": RelTrial.now], shellPrefix: "ulimit -f 600")
        var batches: [[String]] = []
        var answers: [[Reply]] = []
        for b in 0..<60 {
            // 10 lines in one write (< PIPE_BUF, so one read, so one group), then wait for their answers.
            let lines = (0..<10).map { i -> String in
                let n = b * 10 + i
                return R.refer("f\(n)", "F-\(n)", claimant: R.nino(300_000 + n), district: RelTrial.districts[n % 6], date: "2019-01-12")
            }
            batches.append(lines)
            try #require(serve.write(Array((lines.joined(separator: "\n") + "\n").utf8)), "serve died at batch \(b)")
            var got: [String] = []
            while got.count < 10, serve.pump(timeout: 10) { got += serve.takeLines() }
            try #require(got.count == 10, "batch \(b): \(got.count) answers; serve exited \(serve.wait())")
            answers.append(got.map(Reply.init))
        }
        serve.write(R.status("still-alive"))
        var last: [String] = []
        while last.isEmpty, serve.pump(timeout: 10) { last = serve.takeLines() }
        serve.closeStdin()
        #expect(serve.wait() == 0, "serve exits 0 at EOF after failed commits")
        #expect(last.count == 1 && Reply(last[0]).ok, "serve still answers after failed commits: \(last)")

        var okCount = 0, failedBatches = 0
        for (b, group) in answers.enumerated() {
            let codes = Set(group.map { $0.ok ? "ok" : ($0.code ?? "?") })
            #expect(codes == ["ok"] || codes == ["internal"], "batch \(b): a group is all ok or all internal, got \(codes)")
            if codes == ["ok"] { okCount += group.count } else { failedBatches += 1 }
        }
        #expect(failedBatches > 0, "the limit made some commits fail")
        #expect(okCount > 0, "commits succeeded before the limit")

        // Without the limit: exactly the acknowledged referrals are there; the ones
        // answered internal had no effect and now succeed as new.
        let before = try t.session([R.status("s")])
        #expect(Reply(before.responses[0]).events == 1 + okCount)
        let all = batches.flatMap { $0 }
        let replay = try t.session(all + [R.status("end")])
        try #require(replay.responses.count == all.count + 1)
        let firstAnswers = answers.flatMap { $0 }
        for (k, r) in replay.responses.prefix(all.count).enumerated() {
            #expect(Reply(r).ok, "\(all[k]) → \(r)")
            if firstAnswers[k].ok { #expect(r == firstAnswers[k].line, "an acknowledged referral replays to its first answer") }
        }
        #expect(Reply(replay.responses.last!).events == 1 + all.count)
        let v = try t.verifyReport(["--seed", t.seedFile.path])
        #expect(v.status == 0 && v.ok, "\(v)")
        Env.progress("failed commits: \(okCount) referrals committed, \(failedBatches) groups answered internal; serve went on")
    }
}

func fileSize(_ path: String) -> Int64 {
    var st = stat()
    return stat(path, &st) == 0 ? Int64(st.st_size) : -1
}

/// The state of a crash campaign: one trial (renewed every `perTrial` kills),
/// the referrals decided so far (to flag), the counters for the summary.
final class CrashCampaign {
    struct Stats {
        var kills = 0, failures = 0, acknowledged = 0, replayed = 0, sent = 0, midStream = 0
        var unacknowledgedCommitted = 0, walKills = 0, partialLines = 0, verifies = 0, trials = 0, maxEvents = 0
        let started = Date()
    }

    enum Trigger: CustomStringConvertible {
        case delay(Double)
        case answers(Int, spinMicros: Int)
        case walGrowth(afterAnswers: Int)
        var description: String {
            switch self {
            case .delay(let d): String(format: "after %.0f ms", d * 1000)
            case .answers(let k, let s): "after \(k) answers + \(s) µs"
            case .walGrowth(let k): "at WAL growth after \(k) answers"
            }
        }
    }

    struct Planned {
        var kind: Kind
        var id: String
        var line: String
        /// Error codes this request may get (a success is always fine).
        var mayFail: Set<String>
        /// The claimant number of a fresh referral.
        var claimant: Int? = nil
    }

    let seed: UInt64
    let perTrial: Int
    let verbose: Bool
    var rng: SplitMix
    var stats = Stats()
    var trial: TrialFolder
    var baseEvents = 1
    var killsOnTrial = 0
    var counter = 0
    var decided: [String] = []
    var referredClaimants: [Int] = []
    var round = 0

    init(seed: UInt64, perTrial: Int, verbose: Bool) throws {
        self.seed = seed
        self.perTrial = max(1, perTrial)
        self.verbose = verbose
        rng = SplitMix(seed)
        trial = try RelTrial.make()
        stats.trials = 1
    }

    private func renewTrial() throws {
        trial = try RelTrial.make()
        stats.trials += 1
        baseEvents = 1
        killsOnTrial = 0
        decided = []
        referredClaimants = []
    }

    func plan() -> [Planned] {
        let m = rng.int(100...500)
        var out: [Planned] = []
        var freshRefers: [String] = []
        for i in 0..<m {
            let id = "k\(round)-\(i)"
            counter += 1
            let roll = rng.int(0...99)
            let date = "2019-01-\(String(format: "%02d", rng.int(1...31)))"
            let district = rng.pick(RelTrial.districts)
            if i % 60 == 59 || roll < 2 {
                let run = "run-\(round)-\(i)"
                out.append(
                    Planned(
                        kind: .gatekeep, id: id, line: R.capacity(id, run: run, district: district, date: "2019-02-01", rng.int(0...8)),
                        mayFail: ["wrong_state"]))
            } else if roll < 6, !freshRefers.isEmpty {
                let rid = rng.pick(freshRefers)
                freshRefers.removeAll { $0 == rid }
                out.append(Planned(kind: .cancel, id: id, line: R.cancel(id, rid), mayFail: ["wrong_state"]))
            } else if roll < 9, !referredClaimants.isEmpty {
                // A claimant referred before: pending, locked, or free again after a cancellation.
                out.append(
                    Planned(
                        kind: .refer, id: id,
                        line: R.refer(
                            id, "x\(round)-\(i)", claimant: R.nino(rng.pick(referredClaimants)),
                            district: district, group: rng.pick(RelTrial.groups), date: date),
                        mayFail: ["duplicate_referral", "not_eligible"]))
            } else if roll < 11, !decided.isEmpty {
                let rid = decided.remove(at: rng.int(0...decided.count - 1))
                out.append(
                    Planned(kind: .flag, id: id, line: R.flag(id, rid, reason: rng.pick(["ineligible", "duplicate", "wrong_group", "other"])), mayFail: []))
            } else if roll < 12 {
                out.append(
                    Planned(kind: .optOut, id: id, line: R.optOut(id, claimant: ["ref": String(100_000_000_000 + counter)], date: "2019-03-01"), mayFail: []))
            } else if roll < 13, let rid = freshRefers.last {
                out.append(Planned(kind: .disclose, id: id, line: R.disclose(id, rid), mayFail: []))
            } else if roll < 15 {
                out.append(Planned(kind: .readOnly, id: id, line: R.status(id), mayFail: []))
            } else {
                let rid = "r\(round)-\(i)"
                freshRefers.append(rid)
                out.append(
                    Planned(
                        kind: .refer, id: id,
                        line: R.refer(
                            id, rid, claimant: R.nino(counter), district: district,
                            group: rng.pick(RelTrial.groups), date: date), mayFail: [], claimant: counter))
            }
        }
        return out
    }

    /// One serve, one kill, one check. Returns the problems found.
    func killOnce() throws -> [String] {
        if killsOnTrial >= perTrial { try renewTrial() }
        round += 1
        let planned = plan()
        let m = planned.count
        // How the client writes: chunks of 1–24 lines, mostly pausing up to 3 ms
        // after each, so the server commits many groups of varied sizes.
        var chunks: [(String, UInt32)] = []
        var i = 0
        while i < m {
            let n = min(m - i, rng.int(1...24))
            chunks.append((planned[i..<(i + n)].map(\.line).joined(separator: "\n") + "\n", rng.chance(0.9) ? UInt32(rng.int(200...3000)) : 0))
            i += n
        }
        let trigger: Trigger
        switch round % 3 {
        case 0: trigger = .delay(rng.double(0.005..<0.06))
        case 1: trigger = .answers(rng.int(0...m - 1), spinMicros: rng.int(0...1500))
        default: trigger = .walGrowth(afterAnswers: rng.int(0...m / 2))
        }

        let serve = try trial.serveChild()
        let plannedChunks = chunks
        let writer = onThread {
            for (text, pause) in plannedChunks {
                if !serve.write(Array(text.utf8)) { break }
                if pause > 0 { usleep(pause) }
            }
        }
        var lines: [String] = []
        let start = Date()
        var walSize = fileSize(trial.walPath)
        var killedAtWAL = false
        loop: while true {
            let alive = serve.pump(timeout: 0.0005)
            lines += serve.takeLines()
            if !alive || lines.count >= m || Date().timeIntervalSince(start) > 60 { break }
            switch trigger {
            case .delay(let d):
                if Date().timeIntervalSince(start) >= d { break loop }
            case .answers(let k, let spin):
                if lines.count >= k {
                    if spin > 0 { usleep(UInt32(spin)) }
                    break loop
                }
            case .walGrowth(let k):
                let size = fileSize(trial.walPath)
                if lines.count >= k && size != walSize && walSize >= 0 { killedAtWAL = true; break loop }
                walSize = size
            }
        }
        serve.kill9()
        lines += serve.drainAfterDeath()
        if serve.partialBytes > 0 { stats.partialLines += 1 }
        writer.wait()
        stats.kills += 1
        killsOnTrial += 1
        if killedAtWAL { stats.walKills += 1 }
        stats.sent += m
        if lines.count < m { stats.midStream += 1 }

        var problems: [String] = []
        let label = "kill \(stats.kills) (round \(round), \(trigger))"
        if lines.count > m { problems.append("\(label): \(lines.count) answers to \(m) requests") }
        var acked: [(kind: Kind, line: String, answer: Reply)] = []
        var reported = 0
        for (k, line) in lines.prefix(m).enumerated() {
            let p = planned[k]
            let a = Reply(line)
            if a.id != p.id { problems.append("\(label): answer \(k) has id \(a.id ?? "null"), expected \(p.id): \(line)"); continue }
            if !a.ok && !p.mayFail.contains(a.code ?? "?") { problems.append("\(label): \(p.line)\n   answered \(line)") }
            acked.append((p.kind, p.line, a))
            reported += appendedEvents(p.kind, a)
            if a.ok && p.kind == .gatekeep { decided += a.strings("selected") + a.strings("not_selected") }
        }
        // Claimants referred in this round can be referred again in later rounds.
        for p in planned.prefix(lines.count) where p.kind == .refer && p.mayFail.isEmpty {
            if let c = p.claimant { referredClaimants.append(c) }
        }
        if referredClaimants.count > 2000 { referredClaimants.removeFirst(referredClaimants.count - 2000) }
        stats.acknowledged += acked.count

        // verify first, on the store exactly as the kill left it (WAL not yet
        // recovered by a writer), as an auditor arriving after a crash would.
        let v = try trial.verifyReport(["--seed", trial.seedFile.path])
        stats.verifies += 1
        if !(v.status == 0 && v.ok) { problems.append("\(label): verify --seed failed (exit \(v.status)): \(v)") }

        let (replayProblems, events) = try replayAcknowledged(trial, acked, label: label)
        problems += replayProblems
        stats.replayed += acked.filter { $0.answer.ok && $0.kind != .readOnly && $0.kind != .disclose }.count
        if events < baseEvents + reported {
            problems.append("\(label): \(events) events after the kill; the \(acked.count) answers read report \(baseEvents) + \(reported)")
        }
        if events > baseEvents + reported { stats.unacknowledgedCommitted += 1 }
        baseEvents = events
        stats.maxEvents = max(stats.maxEvents, events)

        if v.events != events { problems.append("\(label): verify saw \(v.events) events, the replay serve \(events)") }
        if !problems.isEmpty { stats.failures += 1 }
        if verbose {
            Env.progress(
                "[kill \(stats.kills)] \(trigger): \(acked.count)/\(m) answered, log \(events) events, verify \(v.ok ? "ok" : "FAILED")\(problems.isEmpty ? "" : ", \(problems.count) problem(s)")"
            )
        }
        return problems
    }
}
