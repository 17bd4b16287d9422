import WHPCrypto
import WHPDomain
import WHPJSON

public struct RunRecord: Sendable, Equatable {
    public var runID: String
    public var district: String
    public var gkDate: CivilDate
    public var rule: RunRule
    public var capacity: Int?
}

/// The trial's fixed facts, from `trial_started`.
public struct TrialRecord: Sendable, Equatable {
    public var trialID: String
    public var commitment: String
    public var configHash: String
    public var frontlineRCG: String
    public var rules: RulesVersion
    public var pseudonymKeyCheck: Bytes32?
    public var evaluationKeyCheck: Bytes32?
    /// The UTC date of `trial_started`: the default opening of recruitment (RULES2 R2).
    public var startedOn: CivilDate
}

/// One follow-up step as recorded (RULES2 R14).
public struct FollowUpRecord: Sendable, Equatable {
    public var step: FollowUpStep
    public var date: CivilDate
    public var reason: String?
}

/// Reads and appends inside one transaction.
public struct StoreTransaction {
    let s: any SQLSession
    /// The newest event, read inside the transaction; nil for an empty log.
    public private(set) var head: ChainHead?
    /// This transaction's strata, read once (see `StrataCache`).
    let cache = StrataCache()
    /// What a group's `refer`s read, fetched for the group at once (see `ReferReads`).
    let referReads = ReferReads()

    init(_ s: any SQLSession) throws {
        self.s = s
        self.head = try StoreTransaction.readHead(s)
    }

    static func readHead(_ s: any SQLSession) throws -> ChainHead? {
        let row = try s.first("SELECT seq, hash, payload FROM events ORDER BY seq DESC LIMIT 1") { r in
            (seq: r.int(0) ?? 0, hash: r.text(1) ?? "", payload: r.text(2) ?? "")
        }
        guard let row else { return nil }
        guard let hash = Bytes32(hex: row.hash) else { throw StoreError("the newest event's stored hash is malformed: run `whp verify`") }
        let payload = (try? PayloadJSON.decode(row.payload)) ?? [:]
        return ChainHead(seq: row.seq, hash: hash, recordedAt: payload.instant(.recordedAt))
    }

    /// The instant to record for a request read at `now`: never earlier than
    /// the newest event's, so `recorded_at` never goes backwards (PROTOCOL.md §6)
    /// even when another process with a slower clock wrote last.
    public func recordedAt(_ now: Instant) -> Instant {
        guard let last = head?.recordedAt, last > now else { return now }
        return last
    }

    /// Appends one event after the head: hashes its stored map into the
    /// chain, stores it and applies it to the derived tables.
    public mutating func append(_ event: TrialEvent) throws {
        let seq = (head?.seq ?? 0) + 1
        let type = event.type.rawValue
        guard let previous = head?.hash ?? Chain.genesis(of: Event(seq: seq, type: type, payload: event.payload)) else {
            throw StoreError("the first event must be trial_started")
        }
        // Entries are sorted once, for the hashed encoding and the stored JSON
        // alike, straight from the typed event (no map in between).
        let pairs = event.sortedPairs
        let hash = Chain.next(previous: previous, encoded: Event.encoded(seq: seq, type: type, sortedPairs: pairs))
        try s.insertRow(
            StoreTransaction.insertEvent,
            [.int(seq), .text(type), .text(PayloadJSON.encode(sortedPairs: pairs)), .text(hash.hex)])
        let person = event.referredClaimant.flatMap(referReads.person(of:))
        referReads.invalidate(after: event)
        try Projection.apply(event, seq: seq, s, cache: cache, person: person)
        head = ChainHead(seq: seq, hash: hash, recordedAt: event.recordedAt)
    }

    static let insertEvent = "INSERT INTO events(seq, type, payload, hash) VALUES (?, ?, ?, ?)"

    /// Copies one event exactly as stored (its payload text and hash) and
    /// applies it: `migrate-store`, which has checked the chain before calling.
    public mutating func copy(_ e: StoredEvent, parsed: TrialEvent, hash: Bytes32) throws {
        try s.insertRow(StoreTransaction.insertEvent, [.int(e.seq), .text(e.type), .text(e.payloadText), .text(e.hash)])
        referReads.forget()
        try Projection.apply(parsed, seq: e.seq, s, cache: cache)
        head = ChainHead(seq: e.seq, hash: hash, recordedAt: parsed.recordedAt)
    }

    // MARK: reads

    public func trial() throws -> TrialRecord? {
        try s.first(
            """
            SELECT trial_id, commitment, config_hash, frontline_rcg, rules, pseudonym_key_check, evaluation_key_check, started_on FROM trial
            """
        ) { r in
            TrialRecord(
                trialID: r.text(0) ?? "", commitment: r.text(1) ?? "", configHash: r.text(2) ?? "", frontlineRCG: r.text(3) ?? "",
                rules: RulesVersion(rawValue: r.int(4) ?? 1) ?? .one, pseudonymKeyCheck: r.text(5).flatMap(Bytes32.init(hex:)),
                evaluationKeyCheck: r.text(6).flatMap(Bytes32.init(hex:)),
                startedOn: r.text(7).flatMap(CivilDate.init) ?? CivilDate(year: 1970, month: 1, day: 1)!)
        }
    }

    /// The referral reads, each SQL text built once (not per request).
    enum ReferralSQL {
        static let columns = """
            referral_id, referred_seq, claimant, person, district, grp, referral_date, status, cancel_reason, run_id, gk_date, \
            decided_on, rule, stratum, alloc_index, flag, corrected_group, provider, disclosed
            """
        static let select = "SELECT \(columns) FROM referrals "
        static let byID = select + "WHERE referral_id = ?"
        static let byPerson = select + "WHERE person = ? ORDER BY referred_seq"
        static let pending = select + "WHERE district = ? AND status = 'awaiting_gatekeeper' AND referral_date <= ? ORDER BY referred_seq"
        static let byRun = select + "WHERE run_id = ? ORDER BY referred_seq"
        static let idAndPerson = """
            SELECT \(columns), 0 AS part, referred_seq AS o FROM referrals WHERE referral_id = ?
            UNION ALL
            SELECT \(columns), 1 AS part, referred_seq AS o FROM referrals WHERE person = ?
            ORDER BY part, o
            """
        static let partColumn = 19
    }

    /// A referral row as the domain's `Referral`; nil for a row whose stored
    /// values no longer parse (the store was edited: `verify` names it).
    static func referral(_ r: any SQLRow) throws -> Referral {
        guard let date = r.text(6).flatMap(CivilDate.init), let state = r.text(7).flatMap(ReferralState.init(storedName:)) else {
            throw StoreError("referral \(r.text(0) ?? "?") has a malformed stored row: run `whp verify`")
        }
        return Referral(
            referralID: r.text(0) ?? "", referredSeq: r.int(1) ?? 0, claimant: Pseudonym(hex: r.text(2) ?? ""),
            person: Pseudonym(hex: r.text(3) ?? ""), district: r.text(4) ?? "", group: r.text(5) ?? "", referralDate: date,
            state: state, cancelReason: r.text(8), runID: r.text(9), gkDate: r.text(10).flatMap(CivilDate.init),
            decidedOn: r.text(11).flatMap(CivilDate.init), rule: r.text(12).flatMap(RunRule.init(rawValue:)), stratum: r.text(13),
            allocIndex: r.int(14), flag: r.text(15).flatMap(FlagReason.init(rawValue:)), correctedGroup: r.text(16),
            provider: r.text(17), disclosed: r.int(18) == 1)
    }

    private func referralRows(_ sql: String, _ args: [SQLValue]) throws -> [Referral] {
        var out: [Referral] = []
        try s.query(sql, args) { out.append(try StoreTransaction.referral($0)) }
        return out
    }

    public func referral(_ id: String) throws -> Referral? {
        try referralRows(ReferralSQL.byID, [.text(id)]).first
    }

    /// A referral id's row, if any, and every referral of a person, oldest
    /// first: what `refer` reads. One round trip on PostgreSQL (a UNION ALL,
    /// tagged); SQLite, in-process, runs the two indexed queries.
    public func referralAndHistory(_ id: String, person: Pseudonym) throws -> (Referral?, [Referral]) {
        if let known = referReads.referralAndHistory(id, person: person) { return known }
        if s.dialect == .sqlite { return (try referral(id), try referrals(person: person)) }
        var found: Referral?, history: [Referral] = []
        try s.query(ReferralSQL.idAndPerson, [.text(id), .text(person.hex)]) { r in
            if r.int(ReferralSQL.partColumn) == 0 { found = try StoreTransaction.referral(r) } else { history.append(try StoreTransaction.referral(r)) }
        }
        return (found, history)
    }

    /// Every referral of a person, whichever identifier each was made under, oldest first.
    public func referrals(person: Pseudonym) throws -> [Referral] {
        try referralRows(ReferralSQL.byPerson, [.text(person.hex)])
    }

    /// Referrals of a district awaiting the gatekeeper with `referral_date ≤ date`, in `referred` order.
    public func pending(district: String, upTo date: CivilDate) throws -> [Referral] {
        try referralRows(ReferralSQL.pending, [.text(district), .text(date.iso)])
    }

    public func referrals(run: String) throws -> [Referral] {
        try referralRows(ReferralSQL.byRun, [.text(run)])
    }

    public func run(_ id: String) throws -> RunRecord? {
        try s.first("SELECT run_id, district, gk_date, rule, capacity FROM runs WHERE run_id = ?", [.text(id)]) { r in
            guard let date = r.text(2).flatMap(CivilDate.init), let rule = r.text(3).flatMap(RunRule.init(rawValue:)) else {
                throw StoreError("run \(id) has a malformed stored row: run `whp verify`")
            }
            return RunRecord(runID: r.text(0) ?? "", district: r.text(1) ?? "", gkDate: date, rule: rule, capacity: r.int(4))
        }
    }

    /// The district's latest gatekeeper date: a new run may not be dated before it.
    public func lastGatekeeperDate(district: String) throws -> CivilDate? {
        try s.first("SELECT MAX(gk_date) FROM runs WHERE district = ?", [.text(district)]) { $0.text(0).flatMap(CivilDate.init) } ?? nil
    }

    public func stratum(_ name: String) throws -> StratumState {
        if let known = cache.strata[name] { return known }
        let state = try Projection.stratum(name, s)
        cache.strata[name] = state
        return state
    }

    public func providerStratum(_ name: String) throws -> ProviderStratumState {
        if let known = cache.providerStrata[name] { return known }
        let state = try Projection.providerStratum(name, s)
        cache.providerStrata[name] = state
        return state
    }

    /// When the trial started: `trial_started`'s `recorded_at`.
    public func trialStartedAt() throws -> Instant? {
        try s.first("SELECT payload FROM events WHERE seq = 1") { r in
            (try? PayloadJSON.decode(r.text(0) ?? "")).flatMap { $0.instant(.recordedAt) }
        } ?? nil
    }

    // MARK: persons (RULES2 R6)

    /// The NINO pseudonym a reference number's pseudonym is linked to, if any.
    public func linkedClaimant(alias: Pseudonym) throws -> Pseudonym? {
        try s.first("SELECT claimant FROM links WHERE alias = ?", [.text(alias.hex)]) { $0.text(0).map(Pseudonym.init(hex:)) } ?? nil
    }

    /// The person of an identifier's pseudonym: its linked NINO's, or its own.
    public func person(of pseudonym: Pseudonym) throws -> Pseudonym {
        if let known = referReads.person(of: pseudonym) { return known }
        // On SQLite, a trial with no link at all (every trial before its first
        // `link_claimant`) reads that once per transaction instead of one link
        // per request. Read inside the write transaction, so no other writer
        // can add a link before the commit; this transaction's own link
        // (any event but `referred`) forgets it (`ReferReads.invalidate`).
        // PostgreSQL reads a group's links in one query instead (`prefetchReferReads`).
        if s.dialect == .sqlite && referReads.noLinks == nil {
            referReads.noLinks = (try s.first("SELECT NOT EXISTS (SELECT 1 FROM links)", []) { $0.int(0) } ?? nil) == 1
        }
        let person = referReads.noLinks == true ? pseudonym : try linkedClaimant(alias: pseudonym) ?? pseudonym
        // Kept, so that the `referred` this read usually precedes stores the
        // person without looking the link up again.
        referReads.remember(pseudonym, person: person)
        return person
    }

    /// Whether `prefetchReferReads` does anything here. SQLite reads
    /// in-process: two indexed reads per request cost less than the group's
    /// dictionaries (1,000,000 pipelined refers ran 18 % slower and 29 MiB
    /// larger with them).
    public var prefetchesReads: Bool { s.dialect == .postgres }

    /// Reads, for a whole group at once, what its `refer`s will read one by
    /// one: each identifier's link, each referral id's row and every
    /// referral of each person, on PostgreSQL. Three queries for the group
    /// instead of two per request: there every statement is an exchange
    /// with the server (docs/performance.md, issue 19). Read inside the write transaction,
    /// under the writers' lock, so no other writer can change them before
    /// the commit; this transaction's own appends invalidate what they
    /// touch (`ReferReads.invalidate`).
    public func prefetchReferReads(_ wanted: [(referralID: String, claimant: Pseudonym)]) throws {
        referReads.forget()
        guard wanted.count > 1, prefetchesReads else { return }
        let aliases = Array(Set(wanted.map(\.claimant)))
        var links: [Pseudonym: Pseudonym] = [:]
        for part in aliases.chunked(ReferReads.chunk) {
            try s.query(lookup("alias, claimant", from: "links", where: "alias", count: part.count), part.map { .text($0.hex) }) { r in
                if let a = r.text(0), let c = r.text(1) { links[Pseudonym(hex: a)] = Pseudonym(hex: c) }
            }
        }
        let persons = Array(Set(aliases.map { links[$0] ?? $0 }))
        let ids = Array(Set(wanted.map(\.referralID)))
        var byID: [String: Referral] = [:], byPerson: [Pseudonym: [Referral]] = [:]
        for part in ids.chunked(ReferReads.chunk) {
            try s.query(lookup(ReferralSQL.columns, from: "referrals", where: "referral_id", count: part.count), part.map { .text($0) }) {
                let r = try StoreTransaction.referral($0)
                byID[r.referralID] = r
            }
        }
        for part in persons.chunked(ReferReads.chunk) {
            try s.query(
                lookup(ReferralSQL.columns, from: "referrals", where: "person", count: part.count, orderBy: "referred_seq"), part.map { .text($0.hex) }
            ) {
                let r = try StoreTransaction.referral($0)
                byPerson[r.person, default: []].append(r)
            }
        }
        referReads.fill(aliases: aliases, links: links, ids: ids, byID: byID, persons: persons, byPerson: byPerson)
    }

    /// The rows of `table` whose `key` is one of `count` bound values, as one
    /// index lookup per value on either engine. PostgreSQL, given
    /// `key IN (…)` on a table that grew since it was last analysed, was seen
    /// to scan the whole table for every group (its estimate still thought
    /// the table small), and a plain join of the values became a hash join
    /// over a parallel scan. So there the values join the table laterally,
    /// and `OFFSET 0` keeps the planner from flattening that into a join:
    /// a nested loop of index lookups, whatever the statistics say.
    private func lookup(_ columns: String, from table: String, where key: String, count: Int, orderBy: String? = nil) -> String {
        let order = orderBy.map { " ORDER BY \($0)" } ?? ""
        switch s.dialect {
        case .sqlite:
            return "SELECT \(columns) FROM \(table) WHERE \(key) IN (\(ReferReads.placeholders(count)))" + order
        case .postgres:
            let values = String(repeating: "(?), ", count: max(count - 1, 0)) + "(?)"
            return "SELECT r.* FROM (VALUES \(values)) AS w(k) CROSS JOIN LATERAL (SELECT \(columns) FROM \(table) WHERE \(key) = w.k OFFSET 0) AS r"
                + order
        }
    }

    /// Every identifier of a person: the person's own pseudonym and its linked aliases.
    public func identifiers(of person: Pseudonym) throws -> [Pseudonym] {
        var out = [person]
        try s.query("SELECT alias FROM links WHERE claimant = ? ORDER BY alias", [.text(person.hex)]) { r in
            if let a = r.text(0) { out.append(Pseudonym(hex: a)) }
        }
        return out
    }

    /// Whether any identifier of the person has opted out (RULES2 R6).
    public func isOptedOut(person: Pseudonym) throws -> Bool {
        try s.first(
            """
            SELECT 1 FROM opt_outs WHERE claimant = ? OR claimant IN (SELECT alias FROM links WHERE claimant = ?) LIMIT 1
            """, [.text(person.hex), .text(person.hex)]
        ) { _ in true } ?? false
    }

    // MARK: follow-up (RULES2 R14)

    public func followUps(referral id: String) throws -> [FollowUpRecord] {
        var out: [FollowUpRecord] = []
        try s.query("SELECT step, date, reason, last_seq FROM follow_ups WHERE referral_id = ? ORDER BY last_seq", [.text(id)]) { r in
            guard let step = r.text(0).flatMap(FollowUpStep.init(rawValue:)), let date = r.text(1).flatMap(CivilDate.init) else { return }
            out.append(FollowUpRecord(step: step, date: date, reason: r.text(2)))
        }
        return out
    }

    // MARK: providers (RULES2 R15)

    /// The `shares_set` events of a district and arm, oldest first: (effective, shares, seq).
    /// Read once per district and arm in a transaction (`StrataCache`): a
    /// gatekeeper run asks for every allocation, and on PostgreSQL each read
    /// waits for every write before it.
    public func sharesSet(district: String, arm: Arm) throws -> [(effective: CivilDate, shares: String, seq: Int)] {
        let key = district + "|" + arm.rawValue
        if let known = cache.shares[key] { return known }
        var out: [(effective: CivilDate, shares: String, seq: Int)] = []
        try s.query(
            "SELECT effective, shares, seq FROM shares WHERE district = ? AND arm = ? ORDER BY seq",
            [.text(district), .text(arm.rawValue)]
        ) { r in
            if let d = r.text(0).flatMap(CivilDate.init), let sh = r.text(1), let seq = r.int(2) { out.append((d, sh, seq)) }
        }
        cache.shares[key] = out
        return out
    }

    // MARK: evaluation

    /// The order `forEachReferralFact` delivers referrals in.
    public enum ReferralFactOrder: Sendable {
        /// Person by person, each person's in `referred` order (CONSORT's flow counts people).
        case byPerson
        /// In `referred` order: the table's own order, a sequential read. The
        /// person-ordered walk reads the table through the person index, a
        /// random page read per row; the export sorts its rows itself (RULES2 R11).
        case asReferred
    }

    /// Every referral's evaluation facts, streamed from a cursor so memory
    /// stays flat however many rows there are. `claimant` is the person (RULES2 R6).
    /// Opt-outs and follow-up steps come in by joins on a pass over each of
    /// those tables; eight correlated subqueries per row had made a
    /// 1,000,000-row export spend a third of its time opening and closing cursors.
    public func forEachReferralFact(_ order: ReferralFactOrder = .byPerson, _ body: (ReferralFacts) throws -> Void) throws {
        struct Seen {
            var statusText: String?, parsedStatusText: String?, state: ReferralState?
            var district: String?, group: String?, rule: String?, flag: String?, correctedGroup: String?, provider: String?
            var notStartedReason: String?, leftReason: String?
        }
        var seen = Seen()
        try s.stream(
            """
            SELECT r.person, r.district, r.grp, r.referral_date, r.status, r.gk_date, r.rule, r.flag,
                   CASE WHEN o.person IS NULL THEN 0 ELSE 1 END AS opted,
                   r.corrected_group, r.disclosed, r.provider,
                   f.provider_referral, f.started, f.did_not_start, f.did_not_start_reason, f.left_on, f.left_reason
            FROM referrals r
            LEFT JOIN (
                SELECT claimant AS person FROM opt_outs
                UNION SELECT l.claimant FROM opt_outs x JOIN links l ON l.alias = x.claimant
            ) o ON o.person = r.person
            LEFT JOIN (
                SELECT referral_id,
                       MAX(CASE WHEN step = 'provider_referral' THEN date END) AS provider_referral,
                       MAX(CASE WHEN step = 'started' THEN date END) AS started,
                       MAX(CASE WHEN step = 'did_not_start' THEN date END) AS did_not_start,
                       MAX(CASE WHEN step = 'did_not_start' THEN reason END) AS did_not_start_reason,
                       MAX(CASE WHEN step = 'left' THEN date END) AS left_on,
                       MAX(CASE WHEN step = 'left' THEN reason END) AS left_reason
                FROM follow_ups GROUP BY referral_id
            ) f ON f.referral_id = r.referral_id
            ORDER BY \(order == .byPerson ? "r.person, " : "")r.referred_seq
            """, []
        ) { r in
            // Columns of few values are read reusing the last row's string (one
            // allocation per change of value, not per row), and the status is
            // parsed only when it changes.
            let statusText = r.text(4, reusing: &seen.statusText)
            if statusText != seen.parsedStatusText {
                seen.state = statusText.flatMap(ReferralState.init(storedName:))
                seen.parsedStatusText = statusText
            }
            guard let date = CivilDate(r.text(3) ?? ""), let state = seen.state else {
                throw StoreError("referral with a malformed stored row: run `whp verify`")
            }
            try body(
                ReferralFacts(
                    claimant: Pseudonym(hex: r.text(0) ?? ""), district: r.text(1, reusing: &seen.district) ?? "",
                    group: r.text(2, reusing: &seen.group) ?? "", referralDate: date, status: state.status,
                    gkDate: r.text(5).flatMap(CivilDate.init), rule: r.text(6, reusing: &seen.rule), flag: r.text(7, reusing: &seen.flag),
                    claimantReferralNumber: 0, optedOut: r.int(8) == 1, correctedGroup: r.text(9, reusing: &seen.correctedGroup),
                    disclosed: r.int(10) == 1, provider: r.text(11, reusing: &seen.provider),
                    followUp: FollowUpFacts(
                        providerReferralDate: r.text(12).flatMap(CivilDate.init), startDate: r.text(13).flatMap(CivilDate.init),
                        notStartedDate: r.text(14).flatMap(CivilDate.init), notStartedReason: r.text(15, reusing: &seen.notStartedReason),
                        leftDate: r.text(16).flatMap(CivilDate.init), leftReason: r.text(17, reusing: &seen.leftReason))))
        }
    }

    /// Every allocation in `referred` order, for the balance checks.
    public func allocations() throws -> [AllocatedReferral] {
        var out: [AllocatedReferral] = []
        try s.stream("SELECT district, grp, referral_date, arm FROM referrals WHERE arm IS NOT NULL ORDER BY referred_seq", []) { r in
            guard let d = CivilDate(r.text(2) ?? ""), let arm = Arm(rawValue: r.text(3) ?? "") else { return }
            out.append(AllocatedReferral(district: r.text(0) ?? "", group: r.text(1) ?? "", referralDate: d, arm: arm))
        }
        return out
    }

    /// Allocations per district and arm.
    public func allocationCounts() throws -> [String: [String: Int]] {
        var out: [String: [String: Int]] = [:]
        try s.query("SELECT district, arm, COUNT(*) FROM referrals WHERE arm IS NOT NULL GROUP BY district, arm", []) { r in
            out[r.text(0) ?? "", default: [:]][r.text(1) ?? ""] = r.int(2)
        }
        return out
    }
}

extension Store {
    /// Replays events into this (scratch) store's derived tables, in one
    /// transaction: `body` gets the function that applies one event.
    public func rebuild(_ body: (_ project: (TrialEvent, _ seq: Int) throws -> Void) throws -> Void) throws {
        try backend.transaction(.write, retry: false) { s in
            let cache = StrataCache()
            try body { event, seq in try Projection.apply(event, seq: seq, s, cache: cache) }
        }
    }
}
