import Foundation
import Testing
import WHPTestSupport

/// A group of pipelined requests reads what its `refer`s need once, up front
/// (issue 19), and on PostgreSQL sends its rows as multi-row inserts. Neither
/// may change a single answer: the same requests, sent as groups or one at a
/// time, must be answered alike and leave the same log. The scripts mix
/// what could make a group's early reads stale: the same person twice under
/// two identifiers, a link made between two of its referrals, a referral id
/// reused, cancellations and gatekeeper runs inside the group.
@Suite("Groups answer as single requests do", .serialized)
struct GroupedReadsTests {
    static let districts = ["devon-cornwall", "example-north"]

    /// A random script over a few people and referral ids, so that they collide.
    static func script(seed: UInt64, length: Int) -> [String] {
        var rng = SplitMix(seed)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        var out: [String] = []
        var runs = 0
        for i in 0..<length {
            let id = "q\(i)"
            let person = pick(5)
            let claimant = pick(2) == 0 ? Q.nino(person) : Q.ref(person)
            switch pick(21) {
            case 0..<12:
                let day = 6 + pick(10)
                out.append(
                    Q.refer(
                        id, "R-\(pick(12))", claimant: claimant, district: districts[pick(2)], group: pick(4) == 0 ? "early_access" : "disability",
                        date: "2017-11-\(String(format: "%02d", day))"))
            case 12..<14:
                out.append(Q.cancel(id, "R-\(pick(12))"))
            case 14..<16:
                out.append(LinkTests.link(id, nino: Q.nino(pick(5)), ref: Q.ref(pick(5))))
            case 16:
                runs += 1
                out.append(Q.capacity(id, run: "run-\(runs)", district: districts[pick(2)], date: "2017-11-20", 1 + pick(2)))
            case 17:
                runs += 1
                let a = "R-\(pick(12))", b = "R-\(pick(12))"
                out.append(Q.decide(id, run: "run-\(runs)", district: districts[pick(2)], date: "2017-11-20", a == b ? [(a, true)] : [(a, true), (b, false)]))
            case 18:
                out.append(Q.flag(id, "R-\(pick(12))", reason: ["ineligible", "duplicate", "other"][pick(3)]))
            default:
                out.append(Q.eligibility(id, claimant: claimant, date: "2017-11-20"))
            }
        }
        return out
    }

    /// A fresh trial's in-process door (it keeps the trial's folder and store alive).
    static func door() throws -> InProcessService {
        let t = try TrialFolder()
        try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: Seeds.a).status == 0)
        return try InProcessService(t, now: "2017-11-20T09:00:00Z")
    }

    @Test("random scripts: answers in groups of 2 to 40 equal the answers one request at a time", arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func groupsMatchSingles(seed: UInt64) throws {
        let lines = Self.script(seed: seed, length: 160)
        let single = try Self.door(), grouped = try Self.door()
        let alone = lines.map { single.send($0) }
        var rng = SplitMix(seed &* 7919)
        var together: [String] = []
        var at = 0
        while at < lines.count {
            let n = min(2 + Int(rng.next() % 39), lines.count - at)
            together += grouped.send(Array(lines[at..<at + n]))
            at += n
        }
        #expect(!(alone + together).joined().contains("\"code\":\"internal\""), "no store fault: \(single.logs.messages) \(grouped.logs.messages)")
        #expect(together.count == alone.count)
        for (k, (a, b)) in zip(alone, together).enumerated() where a != b {
            Issue.record("request \(k) (\(lines[k])) answered\n  alone:   \(a)\n  grouped: \(b)")
        }
        // The scripts exercise what they claim to: refusals by person and reused ids occur.
        let all = alone.joined(separator: "\n")
        #expect(all.contains("\"code\":\"duplicate_referral\"") && all.contains("\"code\":\"conflict\""), "the script collides")
        #expect(all.contains("\"selected\":[\"R-"), "the script selects (and so allocates)")
        let events = { (d: InProcessService) in d.send(Q.status("s")).components(separatedBy: "\"events\":").last?.prefix { $0.isNumber } }
        #expect(events(single) == events(grouped), "the same number of events")
        // The derived tables the grouped writes left are what the log says (verify rebuilds and compares them).
        let check = try grouped.trial.verify()
        #expect(check.status == 0, "verify after the grouped run: \(check.stdout.suffix(600))")
    }

    @Test("one group: a referral, a link of its NINO to a reference, then a referral by that reference is the same person's")
    func linkInsideAGroupIsSeen() throws {
        let d = try Self.door()
        let answers = d.send([
            Q.refer("a", "G-1", claimant: Q.ref(1), district: "example-north", date: "2017-11-06"),
            Q.refer("b", "G-2", claimant: Q.nino(2), district: "example-north", date: "2017-11-06"),
            LinkTests.link("c", nino: Q.nino(1), ref: Q.ref(1)),
            Q.refer("d", "G-3", claimant: Q.nino(1), district: "example-north", date: "2017-11-07"),
            Q.refer("e", "G-2", claimant: Q.nino(2), district: "example-north", date: "2017-11-06"),
            Q.refer("f", "G-4", claimant: Q.nino(2), district: "example-north", date: "2017-11-07"),
        ])
        #expect(!answers.joined().contains("\"code\":\"internal\""), "no store fault: \(d.logs.messages)")
        #expect(answers[0].contains("\"ok\":true") && answers[1].contains("\"ok\":true") && answers[2].contains("\"ok\":true"), "\(answers)")
        #expect(answers[3].contains("\"code\":\"duplicate_referral\""), "the NINO's person already awaits the gatekeeper: \(answers[3])")
        #expect(answers[4].contains("\"ok\":true") && answers[4].contains("G-2"), "a replay inside the group: \(answers[4])")
        #expect(answers[5].contains("\"code\":\"duplicate_referral\""), "a second referral of a person in one group: \(answers[5])")
    }

    @Test("one group: a reference's eligibility, its link to a NINO, then a referral by the reference is the NINO's person's")
    func personReadBeforeALinkIsNotReused() throws {
        let d = try Self.door()
        let first = d.send([Q.refer("a", "P-1", claimant: Q.nino(3), district: "example-north", date: "2017-11-06")])
        #expect(first[0].contains("\"ok\":true"), "\(first)")
        // The eligibility read finds the reference its own person; the link
        // changes that, so the referral after it must not reuse the read.
        let answers = d.send([
            Q.eligibility("b", claimant: Q.ref(3), date: "2017-11-20"),
            LinkTests.link("c", nino: Q.nino(3), ref: Q.ref(3)),
            Q.refer("d", "P-2", claimant: Q.ref(3), district: "example-north", date: "2017-11-07"),
        ])
        #expect(answers[0].contains("\"eligible\":true") && answers[1].contains("\"ok\":true"), "\(answers)")
        #expect(answers[2].contains("\"code\":\"duplicate_referral\""), "the linked NINO's person awaits the gatekeeper: \(answers[2])")
        let check = try d.trial.verify()
        #expect(check.status == 0, "\(check.stdout.suffix(800))")
    }

    @Test("one group: flag A, allocate B, flag B: the rows of one table keep their order (each referral's last_seq is its last event)")
    func rowsOfOneTableKeepTheirOrder() throws {
        let d = try Self.door()
        let first = d.send([
            Q.refer("a", "K-A", claimant: Q.nino(1), district: "example-north", date: "2017-11-06"),
            Q.refer("b", "K-B", claimant: Q.nino(2), district: "devon-cornwall", date: "2017-11-06"),
            Q.capacity("c", run: "run-a", district: "example-north", date: "2017-11-20", 1),
        ])
        #expect(first.allSatisfy { $0.contains("\"ok\":true") }, "\(first)")
        let second = d.send([
            Q.flag("d", "K-A", reason: "duplicate"),
            Q.capacity("e", run: "run-b", district: "devon-cornwall", date: "2017-11-20", 1),
            Q.flag("f", "K-B", reason: "ineligible"),
        ])
        #expect(second.allSatisfy { $0.contains("\"ok\":true") }, "\(second)")
        // A flag sent before its referral's allocation would leave the allocation's last_seq: verify compares every derived row.
        let check = try d.trial.verify()
        #expect(check.status == 0, "\(check.stdout.suffix(800))")
    }
}
