import WHPCrypto
import WHPDomain

/// Persons and links (RULES2 R6), the recruitment window (R2), follow-up (R14).
extension AuditVerifier {
    /// The person of a pseudonym, by the links recorded so far.
    func person(of p: Pseudonym) -> Pseudonym { aliasOf[p] ?? p }

    /// Every identifier of a person: the person and their aliases.
    func identifiers(of person: Pseudonym) -> [Pseudonym] { [person] + (aliasesOf[person] ?? []) }

    /// Every referral of the person, in referral order.
    func history(of person: Pseudonym) -> [Int] {
        let found = identifiers(of: person).flatMap { byClaimant[$0] ?? [] }
        guard found.count > 1 else { return found }
        // The sort's closure holds the array, not `self`: capturing the verifier
        // copied the whole struct for every referral (4 % of a verify).
        let refs = self.refs
        return found.sorted { refs[$0].seq < refs[$1].seq }
    }

    mutating func linked(_ e: ClaimantLinked, _ seq: Int) {
        count(.links)
        if linkPairs.contains([e.claimant, e.alias]) {
            fail(.links, seq, "event \(seq): the same link was recorded twice"); return
        }
        if aliasOf[e.alias] != nil {
            fail(.links, seq, "event \(seq): a reference number linked to a second NINO"); return
        }
        if aliasOf[e.claimant] != nil || aliasesOf[e.alias] != nil || e.claimant == e.alias {
            fail(.links, seq, "event \(seq): a pseudonym used both as an alias and as a claimant"); return
        }
        linkPairs.insert([e.claimant, e.alias])
        aliasOf[e.alias] = e.claimant
        aliasesOf[e.claimant, default: []].append(e.alias)
        let pending = history(of: e.claimant).filter { refs[$0].state.status == .awaitingGatekeeper }
        if pending.count > 1 {
            fail(.links, seq, "event \(seq): the link gave the person two referrals awaiting the gatekeeper")
        }
    }

    /// RULES2 R2's `dates` check for a `referred` event (rules 2 only).
    /// An event whose recorded day is out of range is judged against
    /// `opens` and `closes` only: the bounds that hang on its day are not
    /// computed from a day the verifier does not trust.
    mutating func checkDates(referralDate d: CivilDate, recorded: Instant, _ seq: Int) {
        guard let window else { return }
        count(.dates)
        let day = recordedDay(recorded)
        if let day, d > day { fail(.dates, seq, "event \(seq): referral_date \(d.iso) is after the day it was recorded (\(day.iso))") }
        if let crossing = window.check(referralDate: d, today: day ?? d) { fail(.dates, seq, "event \(seq): \(crossing.detail)") }
    }

    mutating func checkDates(gkDate d: CivilDate, recorded: Instant, _ seq: Int) {
        guard let window else { return }
        count(.dates)
        let day = recordedDay(recorded)
        if let day, d > day { fail(.dates, seq, "event \(seq): gk_date \(d.iso) is after the day it was recorded (\(day.iso))") }
        if let crossing = window.check(gkDate: d, today: day ?? d) { fail(.dates, seq, "event \(seq): \(crossing.detail)") }
    }

    mutating func followedUp(_ e: FollowedUp, _ seq: Int) {
        count(.followUp)
        guard CalendarRange.contains(e.date) else { fail(.followUp, seq, "event \(seq): date \(e.date.iso) is outside 1900–2999"); return }
        if let day = recordedDay(e.recordedAt), e.date > day {
            // On rules 2 this is the `dates` check's (R2); follow-ups are new, so a rules 1 trial's are judged here.
            fail(window != nil ? .dates : .followUp, seq, "event \(seq): a follow-up dated \(e.date.iso), after the day it was recorded")
        }
        guard let i = refIndex[e.referralID], refs[i].state.after(.followedUp(e)) != nil else {
            fail(.followUp, seq, "event \(seq): a follow-up of a referral that is not allocated WHP or PSC"); return
        }
        switch (e.step.reasons, e.reason) {
        case (nil, nil): break
        case (let allowed?, let r?) where allowed.contains(r): break
        default: fail(.followUp, seq, "event \(seq): \(e.step.rawValue) with a reason it does not take, or without one it needs")
        }
        let taken = steps[i] ?? []
        guard let previous = FollowUpOrder.previous(of: e.step, after: taken.map(\.step)) else {
            fail(.followUp, seq, "event \(seq): \(e.step.rawValue) out of order (after \(taken.map(\.step.rawValue)))"); return
        }
        let notBefore = previous.flatMap { p in taken.first { $0.step == p }?.date } ?? refs[i].decidedOn
        if let notBefore, e.date < notBefore {
            fail(.followUp, seq, "event \(seq): \(e.step.rawValue) dated \(e.date.iso), before \(notBefore.iso)")
        }
        steps[i, default: []].append((e.step, e.date))
    }
}
