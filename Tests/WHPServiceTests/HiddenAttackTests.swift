import Foundation
import Testing
import WHPCrypto
import WHPDomain
import WHPTestSupport

/// RULES2 R3 as an attacker plays it: a work coach reads every outcome of one
/// gatekeeper run (WHP and PSC places show, RCG and not selected both read
/// "not allocated") and knows every referral's date. Under fifo, any "not
/// allocated" referral older than a visible place must have been selected,
/// so it is RCG. That is why whp refuses fifo under `hidden`; here the same
/// attack is played against what the shipped config allows (lottery, manual).
@Suite("The hidden policy against a combined-request attacker", .serialized)
struct HiddenAttackTests {
    struct Seen {
        var date: CivilDate
        var order: Int
        /// True when the work coach sees a place (WHP or PSC).
        var place: Bool
        /// The truth, for scoring only: RCG.
        var rcg: Bool
    }

    /// The attack: in one run, every "not allocated" referral older (by date,
    /// then referral order) than the youngest visible place is guessed RCG.
    static func guesses(_ run: [Seen]) -> [Seen] {
        guard let youngest = run.filter(\.place).max(by: { ($0.date, $0.order) < ($1.date, $1.order) }) else { return [] }
        return run.filter { !$0.place && ($0.date, $0.order) < (youngest.date, youngest.order) }
    }

    struct Score {
        var guessed = 0, right = 0, notAllocated = 0, rcg = 0
        var precision: Double { guessed == 0 ? 0 : Double(right) / Double(guessed) }
        var baseRate: Double { notAllocated == 0 ? 0 : Double(rcg) / Double(notAllocated) }
        mutating func add(_ run: [Seen]) {
            let g = Self.guesses(run)
            guessed += g.count
            right += g.filter(\.rcg).count
            notAllocated += run.filter { !$0.place }.count
            rcg += run.filter(\.rcg).count
        }
        static func guesses(_ run: [Seen]) -> [Seen] { HiddenAttackTests.guesses(run) }
    }

    /// The attack is real: on the domain's own fifo selection and draws it
    /// names RCG claimants without a single mistake.
    @Test("under fifo the attack is always right")
    func fifoLeaks() throws {
        var score = Score()
        var rng = SplitMix(0xF1F0)
        let weights = Weights(whp: 1, psc: 1, rcg: 1)
        var state = StratumState()
        let seed = Bytes32(hex: String(repeating: "5a", count: 32))!
        for run in 0..<200 {
            let pending = (0..<12).map { k in
                PendingReferral(
                    referralID: "\(run)-\(k)", referralDate: CivilDate(year: 2018, month: 1, day: 1 + Int.random(in: 0...20, using: &rng))!, referredSeq: k)
            }
            let (chosen, _) = GatekeeperSelection.select(pending, capacity: 6, rule: .fifo) { _ in seed }
            var seen: [Seen] = []
            for p in pending {
                var arm: Arm?
                if chosen.contains(p.referralID) {
                    let (draw, next) = Allocator.next(
                        state: state, seed: seed, trialID: "t", stratum: "s", weights: weights, method: .permutedBlock, multipliers: [1, 2])
                    state = next
                    arm = draw.arm
                }
                seen.append(Seen(date: p.referralDate, order: p.referredSeq, place: arm == .whp || arm == .psc, rcg: arm == .rcg))
            }
            score.add(seen)
        }
        #expect(score.guessed > 100 && score.precision == 1, "fifo: \(score.right) of \(score.guessed) guesses right")
    }

    /// Through the wire, against the shipped config (lottery everywhere) and
    /// random manual runs: over many runs, the attack guesses RCG no better
    /// than the base rate (the share of "not allocated" referrals that are RCG).
    @Test("under the shipped config the attack is no better than the base rate", arguments: ["lottery", "manual"])
    func shippedConfigHides(rule: String) throws {
        let t = try TrialFolder()
        try #require(try t.initialise(now: "2017-11-01T08:00:00Z", seedHex: Seeds.b).status == 0)
        var rng = SplitMix(rule == "lottery" ? 0xA77A : 0x3A2A)
        var lines: [String] = []
        var runs: [[(rid: String, date: String, order: Int)]] = []
        var claimant = 1
        var day = Day("2017-11-06")
        let districts = ["devon-cornwall", "leicestershire-northants", "lincolnshire-nottinghamshire-rutland", "dorset-wiltshire-hampshire-iow"]
        for k in 0..<120 {
            let district = districts[k % districts.count]
            if k % districts.count == 0 { day = day.plus(7) }
            var run: [(rid: String, date: String, order: Int)] = []
            for j in 0..<10 {
                let rid = "A-\(k)-\(j)"
                let date = day.plus(-rng.int(0...9)).iso
                lines.append(Q.refer("r-\(rid)", rid, claimant: Q.nino(claimant), district: district, date: date))
                claimant += 1
                run.append((rid, date, j))
            }
            if rule == "lottery" {
                lines.append(Q.capacity("g\(k)", run: "run-\(k)", district: district, date: day.iso, 5))
            } else {
                lines.append(Q.decide("g\(k)", run: "run-\(k)", district: district, date: day.iso, run.map { ($0.rid, rng.chance(0.5)) }))
            }
            runs.append(run)
        }
        // What the work coach sees, then the truth (disclose, for scoring only).
        for run in runs {
            for r in run { lines.append(Q.outcome("o-\(r.rid)", rid: r.rid)) }
        }
        for run in runs {
            for r in run { lines.append(Q.disclose("d-\(r.rid)", r.rid)) }
        }
        let (result, out) = try t.serve(lines)
        try #require(result.status == 0 && out.count == lines.count)
        let byID = Dictionary(uniqueKeysWithValues: out.map(Resp.init).compactMap { r in r.id.map { ($0, r) } })
        var score = Score()
        for run in runs {
            var seen: [Seen] = []
            for r in run {
                let view = try #require(byID["o-\(r.rid)"]).str("status") ?? ""
                let truth = try #require(byID["d-\(r.rid)"]).str("status") ?? ""
                #expect(["not_allocated", "allocated_whp", "allocated_psc"].contains(view), "\(view)")
                seen.append(Seen(date: CivilDate(r.date)!, order: r.order, place: view != "not_allocated", rcg: truth == "allocated_rcg"))
            }
            score.add(seen)
        }
        let n = Double(score.guessed)
        let sd = (score.baseRate * (1 - score.baseRate) / max(n, 1)).squareRoot()
        #expect(score.guessed >= 150, "the attack had something to guess: \(score.guessed)")
        #expect(
            score.precision <= score.baseRate + 3 * sd + 0.02,
            "\(rule): \(score.right) of \(score.guessed) guesses right (\(score.precision)), base rate \(score.baseRate)")
    }
}
