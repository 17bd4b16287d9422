import Foundation
import Testing
import WHPTestSupport

/// The service driven through its API, in this process: the same start-up
/// guards and answers as `whp serve`, with a clock the test steps.
@Suite(.serialized)
struct InProcessTests {
    @Test("a refused key file says why, in the log and the error, naming the file and never its content")
    func refusedKeyFileIsLogged() throws {
        let t = try TrialFolder(sqliteOnly: true)
        try #require(t.initialise().status == 0)
        let key = t.data.appendingPathComponent("keys/pseudonym.key")
        let content = try String(contentsOf: key, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: key.path)
        let logs = InMemoryLogs()
        #expect(throws: (any Error).self) { _ = try InProcessService(t, logs: logs) }
        let refusal = try #require(logs.all.first { $0.level == .error }, "a refusal is logged: \(logs.messages)")
        #expect(refusal.message.contains("refusing to serve") && refusal.message.contains(key.path) && refusal.message.contains("chmod 600"))
        #expect(!logs.messages.joined().contains(content), "the key itself is never logged")
    }

    @Test("the clock moves when the test says: recorded_at follows it, and a date after today is refused until today comes")
    func steppedClock() throws {
        let t = try TrialFolder(sqliteOnly: true)
        try #require(t.initialise().status == 0)
        let door = try InProcessService(t, now: "2017-11-01T09:00:00Z")
        let early = door.send(Req.line(Req.refer("a", referral: "R-1", nino: Req.nino(1), district: "example-north", date: "2017-11-02")))
        #expect(early.contains("\"code\":\"invalid_field\"") && early.contains("\"field\":\"referral_date\""), "\(early)")
        door.clock.advance(days: 1)
        let onTheDay = door.send(Req.line(Req.refer("b", referral: "R-1", nino: Req.nino(1), district: "example-north", date: "2017-11-02")))
        #expect(onTheDay.contains("\"ok\":true"), "\(onTheDay)")
        let head = door.send(Q.status("s"))
        #expect(head.contains("\"events\":2"), "\(head)")
    }

    @Test("a failed commit is logged with how many requests it answered internal")
    func failedCommitIsLogged() throws {
        let t = try TrialFolder(sqliteOnly: true)
        try #require(t.initialise().status == 0)
        try t.openStore().unsafeExecute("CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END;")
        let door = try InProcessService(t, now: "2017-11-05T09:00:00Z")
        let answers = door.send([
            Req.line(Req.refer("a", referral: "R-1", nino: Req.nino(1), district: "example-north", date: "2017-11-02")),
            Req.line(Req.refer("b", referral: "R-2", nino: Req.nino(2), district: "example-north", date: "2017-11-02")),
        ])
        #expect(answers.allSatisfy { $0.contains("\"code\":\"internal\"") }, "\(answers)")
        #expect(door.logs.all.contains { $0.level == .error && $0.message.contains("2 requests answered internal") }, "\(door.logs.messages)")
    }
}
