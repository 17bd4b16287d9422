import WHPCrypto
import WHPDomain

/// How each event changes the derived tables. The service's writes, the
/// upgrade of an old store and `verify`'s rebuild all go through here, so
/// they cannot drift apart; the states come from `ReferralState` and the
/// strata from `StratumState.apply`, the domain's one copy of each rule.
enum Projection {
    /// `person` is the referred claimant's person when the caller already
    /// read it in this transaction (`ReferReads`); otherwise the insert looks
    /// it up itself. A subquery per row would cost PostgreSQL a plan of
    /// hundreds of sublinks for a group's one multi-row insert.
    static func apply(_ event: TrialEvent, seq: Int, _ s: any SQLSession, cache: StrataCache? = nil, person: Pseudonym? = nil) throws {
        switch event {
        case .trialStarted(let e):
            try s.exec(
                """
                INSERT INTO trial(one, trial_id, commitment, config_hash, method, block_multipliers, stratify_by_group,
                                  frontline_rcg, rules, pseudonym_key_check, evaluation_key_check, started_on, last_seq)
                VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(e.trialID), .text(e.commitment.hex), .text(e.configHash.hex), .text(e.method.rawValue),
                    .text(e.blockMultipliers.map(String.init).joined(separator: ",")), .text(e.stratifyByGroup ? "true" : "false"),
                    .text(e.frontlineRCG.rawValue), .int(e.rules.rawValue), SQLValue(e.pseudonymKeyCheck?.hex),
                    SQLValue(e.evaluationKeyCheck?.hex), .text(e.recordedAt.date.iso), .int(seq),
                ])
        case .referred(let e):
            // The person is the claimant's linked NINO, if a link is already recorded (RULES2 R6).
            let tail: [SQLValue] = [.text(e.district), .text(e.group), .text(e.referralDate.iso), .text(ReferralState.initial.storedName), .int(seq)]
            if let person {
                try s.insertRow(SQL.insertReferralOfPerson, [.text(e.referralID), .int(seq), .text(e.claimant.hex), .text(person.hex)] + tail)
            } else {
                try s.insertRow(
                    SQL.insertReferral, [.text(e.referralID), .int(seq), .text(e.claimant.hex), .text(e.claimant.hex), .text(e.claimant.hex)] + tail)
            }
        case .cancelled(let e):
            try s.updateRow(
                "UPDATE referrals SET status = ?, cancel_reason = ?, last_seq = ? WHERE referral_id = ?",
                [.text(ReferralState.cancelled.storedName), .text(e.reason), .int(seq), .text(e.referralID)])
        case .gatekeeperDecision(let e):
            let state = ReferralState.resulting(from: event)!
            try s.updateRow(
                """
                UPDATE referrals SET status = ?, run_id = ?, gk_date = ?, decided_on = ?, rule = ?, lottery_key = ?, last_seq = ?
                WHERE referral_id = ?
                """,
                [
                    .text(state.storedName), .text(e.runID), .text(e.gkDate.iso), .text(e.recordedAt.date.iso), .text(e.rule.rawValue),
                    SQLValue(e.lotteryKey?.hex), .int(seq), .text(e.referralID),
                ])
            // The run's row is made by its first decision; in the same
            // transaction, later decisions only move its last_seq (held, so
            // a run of many decisions writes it once on PostgreSQL).
            if let cache, cache.runs.contains(e.runID) {
                try s.updateRow("UPDATE runs SET last_seq = ? WHERE run_id = ?", [.int(seq), .text(e.runID)])
                break
            }
            cache?.runs.insert(e.runID)
            try s.exec(
                """
                INSERT INTO runs(run_id, district, gk_date, rule, capacity, first_seq, last_seq)
                SELECT ?, district, ?, ?, ?, ?, ? FROM referrals WHERE referral_id = ?
                ON CONFLICT(run_id) DO UPDATE SET last_seq = excluded.last_seq
                """,
                [
                    .text(e.runID), .text(e.gkDate.iso), .text(e.rule.rawValue), SQLValue(e.capacity), .int(seq), .int(seq),
                    .text(e.referralID),
                ])
        case .allocated(let e):
            try s.updateRow(
                """
                UPDATE referrals SET status = ?, stratum = ?, alloc_index = ?, arm = ?, provider = ?, last_seq = ? WHERE referral_id = ?
                """,
                [
                    .text(ReferralState.allocated(e.arm).storedName), .text(e.stratum), .int(e.index), .text(e.arm.rawValue),
                    SQLValue(e.provider?.provider), .int(seq), .text(e.referralID),
                ])
            var st = try cache?.strata[e.stratum] ?? stratum(e.stratum, s)
            st.apply(e)
            try s.upsertRow(
                """
                INSERT INTO strata(stratum, next_index, block, block_start, block_size, dealt_whp, dealt_psc, dealt_rcg, last_seq)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(stratum) DO UPDATE SET next_index = excluded.next_index, block = excluded.block,
                  block_start = excluded.block_start, block_size = excluded.block_size, dealt_whp = excluded.dealt_whp,
                  dealt_psc = excluded.dealt_psc, dealt_rcg = excluded.dealt_rcg, last_seq = excluded.last_seq
                """,
                [
                    .text(e.stratum), .int(st.nextIndex), .int(st.block), .int(st.blockStart), .int(st.blockSize),
                    .int(st.dealt.whp), .int(st.dealt.psc), .int(st.dealt.rcg), .int(seq),
                ])
            cache?.strata[e.stratum] = st
            if let p = e.provider {
                var ps = try cache?.providerStrata[p.stratum] ?? providerStratum(p.stratum, s)
                ps.apply(p)
                try s.upsertRow(
                    """
                    INSERT INTO provider_strata(stratum, next_index, block, block_start, block_size, shares, dealt, last_seq)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(stratum) DO UPDATE SET next_index = excluded.next_index, block = excluded.block,
                      block_start = excluded.block_start, block_size = excluded.block_size, shares = excluded.shares,
                      dealt = excluded.dealt, last_seq = excluded.last_seq
                    """,
                    [
                        .text(p.stratum), .int(ps.nextIndex), .int(ps.block), .int(ps.blockStart), .int(ps.blockSize),
                        .text(ps.shares), .text(ps.dealtText), .int(seq),
                    ])
                cache?.providerStrata[p.stratum] = ps
            }
        case .disclosed(let e):
            try s.exec("UPDATE referrals SET disclosed = 1, last_seq = ? WHERE referral_id = ?", [.int(seq), .text(e.referralID)])
        case .optedOut(let e):
            try s.exec(
                "INSERT INTO opt_outs(claimant, date, last_seq) VALUES (?, ?, ?) ON CONFLICT(claimant) DO NOTHING",
                [.text(e.claimant.hex), .text(e.date.iso), .int(seq)])
        case .flaggedInError(let e):
            try s.updateRow(
                "UPDATE referrals SET flag = ?, corrected_group = ?, last_seq = ? WHERE referral_id = ?",
                [.text(e.reason.rawValue), SQLValue(e.correctedGroup), .int(seq), .text(e.referralID)])
        case .claimantLinked(let e):
            try s.exec(
                "INSERT INTO links(alias, claimant, last_seq) VALUES (?, ?, ?) ON CONFLICT(alias) DO NOTHING",
                [.text(e.alias.hex), .text(e.claimant.hex), .int(seq)])
            // An alias is linked once, and until then it is its own person
            // (RULES2 R6), so its referrals are exactly the rows whose person
            // it is: found through the person index, which `refer` needs
            // anyway (a claimant index cost every referral an insert).
            try s.exec(
                "UPDATE referrals SET person = ?, last_seq = ? WHERE person = ? AND claimant = ?",
                [.text(e.claimant.hex), .int(seq), .text(e.alias.hex), .text(e.alias.hex)])
        case .followedUp(let e):
            try s.exec(
                """
                INSERT INTO follow_ups(step_key, referral_id, step, date, reason, last_seq) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(step_key) DO NOTHING
                """,
                [
                    .text(e.referralID + "|" + e.step.rawValue), .text(e.referralID), .text(e.step.rawValue), .text(e.date.iso),
                    SQLValue(e.reason), .int(seq),
                ])
        case .sharesSet(let e):
            cache?.shares = [:]
            try s.exec(
                "INSERT INTO shares(seq, district, arm, effective, shares, last_seq) VALUES (?, ?, ?, ?, ?, ?)",
                [.int(seq), .text(e.district), .text(e.arm.rawValue), .text(e.effective.iso), .text(e.shares), .int(seq)])
        case .exportMade:
            break
        }
    }

    enum SQL {
        static let insertReferral = """
            INSERT INTO referrals(referral_id, referred_seq, claimant, person, district, grp, referral_date, status, disclosed, last_seq)
            VALUES (?, ?, ?, COALESCE((SELECT claimant FROM links WHERE alias = ?), ?), ?, ?, ?, ?, 0, ?)
            """
        static let insertReferralOfPerson = """
            INSERT INTO referrals(referral_id, referred_seq, claimant, person, district, grp, referral_date, status, disclosed, last_seq)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)
            """
    }

    static func stratum(_ name: String, _ s: any SQLSession) throws -> StratumState {
        try s.first(
            "SELECT next_index, block, block_start, block_size, dealt_whp, dealt_psc, dealt_rcg FROM strata WHERE stratum = ?",
            [.text(name)]
        ) { r in
            StratumState(
                nextIndex: r.int(0) ?? 0, block: r.int(1) ?? -1, blockStart: r.int(2) ?? 0, blockSize: r.int(3) ?? 0,
                dealt: ArmCounts(whp: r.int(4) ?? 0, psc: r.int(5) ?? 0, rcg: r.int(6) ?? 0))
        } ?? StratumState()
    }

    static func providerStratum(_ name: String, _ s: any SQLSession) throws -> ProviderStratumState {
        try s.first(
            "SELECT next_index, block, block_start, block_size, shares, dealt FROM provider_strata WHERE stratum = ?",
            [.text(name)]
        ) { r in
            ProviderStratumState(
                nextIndex: r.int(0) ?? 0, block: r.int(1) ?? -1, blockStart: r.int(2) ?? 0, blockSize: r.int(3) ?? 0,
                shares: r.text(4) ?? "", dealtText: r.text(5) ?? "")
        } ?? ProviderStratumState()
    }
}

/// The strata rows one transaction has read or written, so that a gatekeeper
/// run allocating thousands of referrals reads each stratum once, not twice
/// per allocation (on PostgreSQL each read is a round trip that also waits
/// for every pipelined write before it). It lives exactly as long as its
/// transaction: the writers' lock (SQLite's, or the advisory lock) keeps
/// every other writer out meanwhile, a retried transaction starts with a new
/// one, and a request that fails rolls back the transaction it was read in.
final class StrataCache {
    var strata: [String: StratumState] = [:]
    var providerStrata: [String: ProviderStratumState] = [:]
    /// Runs whose row this transaction has made.
    var runs: Set<String> = []
    /// `shares_set` rows by "district|arm"; a `shares_set` event empties it.
    var shares: [String: [(effective: CivilDate, shares: String, seq: Int)]] = [:]
}

/// A group's `refer` reads, fetched together by
/// `StoreTransaction.prefetchReferReads` and answered from memory while
/// they still hold. Each answer is exactly what the query would return:
/// an entry is dropped as soon as this transaction appends anything that
/// could change it, and then the read goes to the store as before.
///
/// Only `referred` keeps the rest: it adds one referral row, under its id
/// and its person, so just those two entries go. Any other event (a link,
/// a decision, a cancellation…) can change a person or a status anywhere
/// and drops everything.
final class ReferReads {
    /// Values per `IN (…)` list: under SQLite's and PostgreSQL's bound-parameter limits.
    static let chunk = 500
    private var aliases: [Pseudonym: Pseudonym] = [:]
    private var byID: [String: Referral?] = [:]
    private var byPerson: [Pseudonym: [Referral]] = [:]
    /// The last identifier whose person was read from the store, on either
    /// engine: the `referred` that usually follows stores that person without
    /// looking the link up again. One slot, not a dictionary: hashing two
    /// 64-character pseudonyms per request cost more than the link read saved.
    private var lastRead: (pseudonym: Pseudonym, person: Pseudonym)?
    /// Whether the trial has no link at all, read once in this transaction
    /// (`StoreTransaction.person(of:)`); nil when not read, or forgotten.
    var noLinks: Bool?

    static func placeholders(_ n: Int) -> String {
        String(repeating: "?, ", count: max(n - 1, 0)) + "?"
    }

    func fill(
        aliases wanted: [Pseudonym], links: [Pseudonym: Pseudonym], ids: [String], byID found: [String: Referral], persons: [Pseudonym],
        byPerson history: [Pseudonym: [Referral]]
    ) {
        for a in wanted { aliases[a] = links[a] ?? a }
        for id in ids { byID[id] = .some(found[id]) }
        for p in persons { byPerson[p] = history[p] ?? [] }
    }

    func forget() {
        aliases = [:]; byID = [:]; byPerson = [:]; lastRead = nil; noLinks = nil
    }

    func person(of pseudonym: Pseudonym) -> Pseudonym? {
        if let last = lastRead, last.pseudonym == pseudonym { return last.person }
        return aliases.isEmpty ? nil : aliases[pseudonym]
    }

    /// One identifier's person, read from the store by `StoreTransaction.person(of:)`.
    func remember(_ pseudonym: Pseudonym, person: Pseudonym) { lastRead = (pseudonym, person) }

    func referralAndHistory(_ id: String, person: Pseudonym) -> (Referral?, [Referral])? {
        guard !byID.isEmpty, let found = byID[id], let history = byPerson[person] else { return nil }
        return (found, history)
    }

    func invalidate(after event: TrialEvent) {
        guard case .referred(let e) = event else { return forget() }
        guard !byID.isEmpty || !aliases.isEmpty else { return }
        guard let person = aliases[e.claimant] else { return forget() }
        byID[e.referralID] = nil
        byPerson[person] = nil
    }
}

extension TrialEvent {
    /// A `referred` event's claimant; nil for any other event.
    var referredClaimant: Pseudonym? {
        if case .referred(let e) = self { return e.claimant }
        return nil
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
