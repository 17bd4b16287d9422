import Foundation
import Testing
import WHPApp
import WHPDomain
import WHPTestSupport

/// The example DCAMS session's answers, byte for byte: the demo seed, the
/// session's own moving clock (`SessionSchedule`, as `whp demo` plays it),
/// the service driven in-process. A change to any answer shows here, with the
/// line that changed; regenerate the transcript only for a change meant to
/// change the wire (`whp demo --dir D && cp D/responses.jsonl examples/dcams-session.responses.jsonl`).
@Suite(.serialized)
struct GoldenTranscriptTests {
    @Test("examples/dcams-session.jsonl answers exactly as examples/dcams-session.responses.jsonl says")
    func transcript() throws {
        let root = WHPBinary.repoRoot
        let session = try String(contentsOf: root.appendingPathComponent("examples/dcams-session.jsonl"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let golden = try String(contentsOf: root.appendingPathComponent("examples/dcams-session.responses.jsonl"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let schedule = SessionSchedule.steps(session)
        let first = try #require(schedule.first)
        let t = try TrialFolder(sqliteOnly: true)
        let start = Instant(seconds: first.at.seconds - 3_600)
        let seed = try String(contentsOf: root.appendingPathComponent("seeds/whp-demo.seed.hex"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(try t.initialise(now: start.iso, seedHex: seed).status == 0)
        let door = try InProcessService(t, now: start.iso)
        var answers: [String] = []
        for step in schedule {
            door.clock.set(step.at)
            answers += door.send(step.lines)
        }
        #expect(answers.count == golden.count, "\(answers.count) answers, the transcript has \(golden.count)")
        for (k, (answer, expected)) in zip(answers, golden).enumerated() where answer != expected {
            Issue.record("line \(k + 1): \(session[k])\n  now:  \(answer)\n  then: \(expected)")
        }
    }
}
