import Foundation
import GRDB
import Logging
import WHPCrypto
import WHPDomain
import WHPJSON

public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The trial's durable state, on whichever engine holds it: the SQLite file
/// (the embedded default) or PostgreSQL (several instances, one trial).
///
/// All writes go through `write`, one transaction per group of requests, in
/// which the backend first serialises with every other writer and only then
/// is the chain head read: any number of processes on one trial append to one
/// chain and never fork it (PROTOCOL.md §1).
public final class Store: @unchecked Sendable {
    public let backend: any StoreBackend
    public var location: String { backend.location }

    public init(backend: any StoreBackend) { self.backend = backend }

    /// Opens the trial on `backend`. Fails with a clear message if it was never initialised.
    public static func open(backend: any StoreBackend) throws -> Store {
        let store = Store(backend: backend)
        // Only whether the log has begun: a tampered head must still open, so verify can report it.
        let begun = try? backend.transaction(.read, retry: false) { s in try s.first("SELECT seq FROM events LIMIT 1") { _ in true } }
        guard begun == true else {
            throw StoreError("the store at \(backend.location) has no trial_started event: it was not initialised by `whp init`")
        }
        do { try Schema.upgrade(backend) } catch {
            throw StoreError("the store at \(backend.location) predates this whp's schema and could not be upgraded (\(error)); open it once with write access, e.g. `whp serve`")
        }
        return store
    }

    /// Opens an existing SQLite store.
    public static func open(path: String, readonly: Bool = false) throws -> Store {
        try open(backend: SQLiteBackend.open(path: path, readonly: readonly))
    }

    /// Creates the schema on `backend`, which must hold no events yet.
    public static func create(backend: any StoreBackend) throws -> Store {
        try backend.transaction(.write, retry: false) { s in
            try Schema.create(s)
            if try s.first("SELECT seq FROM events LIMIT 1", [], { _ in true }) == true {
                throw StoreError("\(backend.location) already holds a trial; init runs once per store")
            }
        }
        return Store(backend: backend)
    }

    /// Creates a new SQLite store file with the schema and no events.
    public static func create(path: String) throws -> Store {
        try create(backend: SQLiteBackend.open(path: path, create: true))
    }

    /// A throw-away store in memory: `verify` replays the log into one to
    /// rebuild the derived tables.
    public static func scratch() throws -> Store {
        let b = try SQLiteBackend.memory()
        try b.transaction(.write, retry: false) { s in try Schema.create(s, serviceIndexes: false) }
        return Store(backend: b)
    }

    /// One write transaction. `body` reads state and appends events; they are
    /// committed together, or, if anything throws, not at all. With `retry`,
    /// `body` may run again after a lost race (it must have no outside effects).
    public func write<T>(retry: Bool = false, _ body: (inout StoreTransaction) throws -> T) throws -> T {
        try backend.transaction(.write, retry: retry) { s in
            var tx = try StoreTransaction(s)
            return try body(&tx)
        }
    }

    /// A consistent read of the state (no events are appended).
    public func read<T>(_ body: (StoreTransaction) throws -> T) throws -> T {
        try backend.transaction(.read, retry: false) { s in try body(StoreTransaction(s)) }
    }

    public func head() throws -> ChainHead? {
        try backend.transaction(.read, retry: false) { s in try StoreTransaction.readHead(s) }
    }

    /// The newest event's seq and hash exactly as stored, unchecked (what a checkpoint records).
    public func storedHead() throws -> (seq: Int, hash: String)? {
        try snapshot { try $0.storedHead() }
    }

    /// Streams the log in `seq` order without holding it in memory.
    public func forEachEvent(_ body: (StoredEvent) throws -> Void) throws {
        try snapshot { try $0.forEachEvent(body) }
    }

    /// Runs raw SQL; for tests that tamper with a store the way an insider would.
    public func unsafeExecute(_ sql: String) throws {
        try backend.executeScript(sql)
    }
}

/// An event as stored: its payload still as text, its hash as stored (either
/// may have been tampered with, so neither is trusted until `verify` checks it).
public struct StoredEvent: Sendable {
    public var seq: Int
    public var type: String
    public var payloadText: String
    public var hash: String
}

/// One referral's derived row: everything the ops and views read.
public struct ReferralRecord: Sendable, Equatable {
    public var referralID: String
    public var referredSeq: Int
    public var claimant: String
    public var district: String
    public var group: String
    public var referralDate: String
    public var status: String
    public var cancelReason: String?
    public var runID: String?
    public var gkDate: String?
    public var rule: String?
    public var stratum: String?
    public var arm: String?
    public var flag: String?

    /// Columns of `columns`, in order.
    init(_ r: any SQLRow) {
        referralID = r.text(0) ?? ""; referredSeq = r.int(1) ?? 0; claimant = r.text(2) ?? ""
        district = r.text(3) ?? ""; group = r.text(4) ?? ""; referralDate = r.text(5) ?? ""; status = r.text(6) ?? ""
        cancelReason = r.text(7); runID = r.text(8); gkDate = r.text(9); rule = r.text(10)
        stratum = r.text(11); arm = r.text(12); flag = r.text(13)
    }

    static let columns = "referral_id, referred_seq, claimant, district, grp, referral_date, status, cancel_reason, run_id, gk_date, rule, stratum, arm, flag"

    /// The true status as the domain knows it.
    public var trueStatus: ReferralStatus {
        switch status {
        case "awaiting_gatekeeper", "selected": .awaitingGatekeeper
        case "cancelled": .cancelled
        case "not_selected": .notSelected
        default: .allocated(Arm(rawValue: arm ?? "") ?? .rcg)
        }
    }

    public var outcome: ReferralOutcome {
        ReferralOutcome(status: trueStatus, gkDate: gkDate.flatMap(CivilDate.init))
    }
}

public struct RunRecord: Sendable, Equatable {
    public var runID: String
    public var district: String
    public var gkDate: String
    public var rule: String
    public var capacity: Int?
}

/// The trial's fixed facts, from `trial_started`.
public struct TrialRecord: Sendable, Equatable {
    public var trialID: String
    public var commitment: String
    public var configHash: String
    public var frontlineRCG: String
}

/// Reads and appends inside one transaction.
public struct StoreTransaction {
    let s: any SQLSession
    /// The newest event, read inside the transaction; nil for an empty log.
    public private(set) var head: ChainHead?

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
        return ChainHead(seq: row.seq, hash: hash, recordedAt: payload["recorded_at"].flatMap(Instant.init))
    }

    /// The instant to record for a request read at `now`: never earlier than
    /// the newest event's, so `recorded_at` never goes backwards (PROTOCOL.md §6)
    /// even when another process with a slower clock wrote last.
    public func recordedAt(_ now: Instant) -> Instant {
        guard let last = head?.recordedAt, last > now else { return now }
        return last
    }

    /// Appends one event after the head: hashes it into the chain, stores it
    /// and applies it to the derived tables. A `referred` event's caller that
    /// has just read the claimant's referrals passes their count + 1 as
    /// `claimantReferralNumber`, which saves the projection counting them
    /// again; `verify`'s rebuild counts them from the log on its own and
    /// compares, so a wrong number is caught as a `derived_tables` failure.
    @discardableResult
    public mutating func append(_ type: EventType, _ payload: [String: String], claimantReferralNumber: Int? = nil) throws -> Event {
        let seq = (head?.seq ?? 0) + 1
        let event = Event(seq: seq, type: type, payload: payload)
        guard let previous = head?.hash ?? Chain.genesis(of: event) else {
            throw StoreError("the first event must be trial_started")
        }
        // Keys are sorted once, for the hashed encoding and the stored JSON alike.
        let keys = event.sortedKeys
        let hash = Chain.next(previous: previous, encoded: event.encoded(sortedKeys: keys))
        try s.exec("INSERT INTO events(seq, type, payload, hash) VALUES (?, ?, ?, ?)",
                   [.int(seq), .text(type.rawValue), .text(PayloadJSON.encode(payload, sortedKeys: keys)), .text(hash.hex)])
        try Projection.apply(event, s, claimantReferralNumber: claimantReferralNumber)
        head = ChainHead(seq: seq, hash: hash, recordedAt: payload["recorded_at"].flatMap(Instant.init) ?? head?.recordedAt)
        return event
    }

    /// Copies one event exactly as stored (its payload text and hash) and
    /// applies it: `migrate-store`, which has checked the chain before calling.
    public mutating func copy(_ e: StoredEvent, parsed: Event, hash: Bytes32) throws {
        try s.exec("INSERT INTO events(seq, type, payload, hash) VALUES (?, ?, ?, ?)",
                   [.int(e.seq), .text(e.type), .text(e.payloadText), .text(e.hash)])
        try Projection.apply(parsed, s)
        head = ChainHead(seq: e.seq, hash: hash, recordedAt: parsed.payload["recorded_at"].flatMap(Instant.init) ?? head?.recordedAt)
    }

    // MARK: reads

    public func trial() throws -> TrialRecord? {
        try s.first("SELECT trial_id, commitment, config_hash, frontline_rcg FROM trial") { r in
            TrialRecord(trialID: r.text(0) ?? "", commitment: r.text(1) ?? "", configHash: r.text(2) ?? "", frontlineRCG: r.text(3) ?? "")
        }
    }

    /// The referral reads, each SQL text built once (not per request).
    private enum ReferralSQL {
        static let select = "SELECT \(ReferralRecord.columns) FROM referrals "
        static let byID = select + "WHERE referral_id = ?"
        static let byClaimant = select + "WHERE claimant = ? ORDER BY referred_seq"
        static let pending = select + "WHERE district = ? AND status = 'awaiting_gatekeeper' AND referral_date <= ? ORDER BY referred_seq"
        static let byRun = select + "WHERE run_id = ? ORDER BY referred_seq"
        static let idAndClaimant = """
            SELECT \(ReferralRecord.columns), 0 AS part, referred_seq AS o FROM referrals WHERE referral_id = ?
            UNION ALL
            SELECT \(ReferralRecord.columns), 1 AS part, referred_seq AS o FROM referrals WHERE claimant = ?
            ORDER BY part, o
            """
    }

    private func referralRows(_ sql: String, _ args: [SQLValue]) throws -> [ReferralRecord] {
        var out: [ReferralRecord] = []
        try s.query(sql, args) { out.append(ReferralRecord($0)) }
        return out
    }

    public func referral(_ id: String) throws -> ReferralRecord? {
        try referralRows(ReferralSQL.byID, [.text(id)]).first
    }

    /// A referral id's row, if any, and every referral of a claimant, oldest
    /// first: what `refer` reads. One round trip on PostgreSQL (a UNION ALL,
    /// tagged); SQLite, in-process, runs the two indexed queries.
    public func referralAndHistory(_ id: String, claimant: String) throws -> (ReferralRecord?, [ReferralRecord]) {
        if s.dialect == .sqlite { return (try referral(id), try referrals(claimant: claimant)) }
        var found: ReferralRecord?, history: [ReferralRecord] = []
        try s.query(ReferralSQL.idAndClaimant, [.text(id), .text(claimant)]) { r in
            if r.int(14) == 0 { found = ReferralRecord(r) } else { history.append(ReferralRecord(r)) }
        }
        return (found, history)
    }

    /// Every referral of a claimant, oldest first.
    public func referrals(claimant: String) throws -> [ReferralRecord] {
        try referralRows(ReferralSQL.byClaimant, [.text(claimant)])
    }

    /// Referrals of a district awaiting the gatekeeper with `referral_date ≤ date`, in `referred` order.
    public func pending(district: String, upTo date: String) throws -> [ReferralRecord] {
        try referralRows(ReferralSQL.pending, [.text(district), .text(date)])
    }

    public func referrals(run: String) throws -> [ReferralRecord] {
        try referralRows(ReferralSQL.byRun, [.text(run)])
    }

    public func run(_ id: String) throws -> RunRecord? {
        try s.first("SELECT run_id, district, gk_date, rule, capacity FROM runs WHERE run_id = ?", [.text(id)]) { r in
            RunRecord(runID: r.text(0) ?? "", district: r.text(1) ?? "", gkDate: r.text(2) ?? "", rule: r.text(3) ?? "", capacity: r.int(4))
        }
    }

    /// The district's latest gatekeeper date: a new run may not be dated before it.
    public func lastGatekeeperDate(district: String) throws -> String? {
        try s.first("SELECT MAX(gk_date) FROM runs WHERE district = ?", [.text(district)]) { $0.text(0) } ?? nil
    }

    public func stratum(_ name: String) throws -> StratumState {
        try Projection.stratum(name, s)
    }

    /// Every referral's evaluation facts in `referred` order, streamed from a
    /// cursor so memory stays flat however many rows there are. One pass over
    /// the table in its stored order (no sort); the claimant's referral number
    /// was counted when the referral was projected (`claimant_n`), so no row
    /// costs an index probe here.
    public func forEachReferralFact(_ body: (ReferralFacts) throws -> Void) throws {
        try s.stream("""
            SELECT r.claimant, r.district, r.grp, r.referral_date, r.status, r.gk_date, r.rule, r.arm, r.flag,
                   r.claimant_n,
                   CASE WHEN EXISTS (SELECT 1 FROM opt_outs o WHERE o.claimant = r.claimant) THEN 1 ELSE 0 END AS opted
            FROM referrals r
            ORDER BY r.referred_seq
            """, []) { r in
            let status: ReferralStatus = switch r.text(4) ?? "" {
            case "cancelled": .cancelled
            case "not_selected": .notSelected
            case "awaiting_gatekeeper", "selected": .awaitingGatekeeper
            default: .allocated(Arm(rawValue: r.text(7) ?? "") ?? .rcg)
            }
            guard let date = CivilDate(r.text(3) ?? "") else { throw StoreError("referral with a malformed date: run `whp verify`") }
            try body(ReferralFacts(claimant: Pseudonym(hex: r.text(0) ?? ""), district: r.text(1) ?? "", group: r.text(2) ?? "",
                                   referralDate: date, status: status,
                                   gkDate: r.text(5).flatMap(CivilDate.init), rule: r.text(6), flag: r.text(8),
                                   claimantReferralNumber: r.int(9) ?? 0, optedOut: r.int(10) == 1))
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

    public func isOptedOut(claimant: String) throws -> Bool {
        try s.first("SELECT 1 FROM opt_outs WHERE claimant = ?", [.text(claimant)]) { _ in true } ?? false
    }
}

/// How each event changes the derived tables. The service's writes and
/// `verify`'s rebuild both go through here, so the two cannot drift apart.
enum Projection {
    static func apply(_ e: Event, _ s: any SQLSession, claimantReferralNumber: Int? = nil) throws {
        let p = e.payload
        func t(_ k: String) -> SQLValue { SQLValue(p[k]) }
        switch e.eventType {
        case .trialStarted:
            try s.exec("""
                INSERT INTO trial(one, trial_id, commitment, config_hash, method, block_multipliers, stratify_by_group, frontline_rcg, last_seq)
                VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [t("trial_id"), t("commitment"), t("config_hash"), t("method"), t("block_multipliers"),
                      t("stratify_by_group"), t("frontline_rcg"), .int(e.seq)])
        case .referred:
            // COALESCE evaluates the count only when the caller passed no number.
            try s.exec("""
                INSERT INTO referrals(referral_id, referred_seq, claimant, district, grp, referral_date, status, last_seq, claimant_n)
                VALUES (?, ?, ?, ?, ?, ?, 'awaiting_gatekeeper', ?, COALESCE(?, (SELECT COUNT(*) + 1 FROM referrals WHERE claimant = ?)))
                """, [t("referral_id"), .int(e.seq), t("claimant"), t("district"), t("group"), t("referral_date"), .int(e.seq),
                      SQLValue(claimantReferralNumber), t("claimant")])
        case .cancelled:
            try s.exec("UPDATE referrals SET status = 'cancelled', cancel_reason = ?, last_seq = ? WHERE referral_id = ?",
                       [t("reason"), .int(e.seq), t("referral_id")])
        case .gatekeeperDecision:
            let status = p["decision"] == "selected" ? "selected" : "not_selected"
            try s.exec("""
                UPDATE referrals SET status = ?, run_id = ?, gk_date = ?, rule = ?, lottery_key = ?, last_seq = ? WHERE referral_id = ?
                """, [.text(status), t("run_id"), t("gk_date"), t("rule"), t("lottery_key"), .int(e.seq), t("referral_id")])
            try s.exec("""
                INSERT INTO runs(run_id, district, gk_date, rule, capacity, first_seq, last_seq)
                SELECT ?, district, ?, ?, ?, ?, ? FROM referrals WHERE referral_id = ?
                ON CONFLICT(run_id) DO UPDATE SET last_seq = excluded.last_seq
                """, [t("run_id"), t("gk_date"), t("rule"), SQLValue(p["capacity"].flatMap { Int($0) }), .int(e.seq), .int(e.seq), t("referral_id")])
        case .allocated:
            let arm = p["arm"] ?? ""
            try s.exec("""
                UPDATE referrals SET status = ?, stratum = ?, alloc_index = ?, arm = ?, last_seq = ? WHERE referral_id = ?
                """, [.text("allocated_" + arm.lowercased()), t("stratum"), SQLValue(p["index"].flatMap { Int($0) }), .text(arm), .int(e.seq), t("referral_id")])
            guard let stratum = p["stratum"], let index = p["index"].flatMap({ Int($0) }) else { return }
            var st = try self.stratum(stratum, s)
            st.nextIndex = index + 1
            if let block = p["block"].flatMap({ Int($0) }), let size = p["block_size"].flatMap({ Int($0) }),
               let position = p["position"].flatMap({ Int($0) }) {
                if block != st.block {
                    st.block = block; st.blockStart = index - position; st.blockSize = size; st.dealt = [:]
                }
            }
            if let a = Arm(rawValue: arm) { st.dealt[a, default: 0] += 1 }
            try s.exec("""
                INSERT INTO strata(stratum, next_index, block, block_start, block_size, dealt_whp, dealt_psc, dealt_rcg, last_seq)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(stratum) DO UPDATE SET next_index = excluded.next_index, block = excluded.block,
                  block_start = excluded.block_start, block_size = excluded.block_size, dealt_whp = excluded.dealt_whp,
                  dealt_psc = excluded.dealt_psc, dealt_rcg = excluded.dealt_rcg, last_seq = excluded.last_seq
                """, [.text(stratum), .int(st.nextIndex), .int(st.block), .int(st.blockStart), .int(st.blockSize),
                      .int(st.dealt[.whp, default: 0]), .int(st.dealt[.psc, default: 0]), .int(st.dealt[.rcg, default: 0]), .int(e.seq)])
        case .optedOut:
            try s.exec("INSERT INTO opt_outs(claimant, date, last_seq) VALUES (?, ?, ?) ON CONFLICT(claimant) DO NOTHING",
                       [t("claimant"), t("date"), .int(e.seq)])
        case .flaggedInError:
            try s.exec("UPDATE referrals SET flag = ?, last_seq = ? WHERE referral_id = ?",
                       [t("reason"), .int(e.seq), t("referral_id")])
        case .disclosed, .exportMade, .none:
            break
        }
    }

    static func stratum(_ name: String, _ s: any SQLSession) throws -> StratumState {
        try s.first("SELECT next_index, block, block_start, block_size, dealt_whp, dealt_psc, dealt_rcg FROM strata WHERE stratum = ?",
                    [.text(name)]) { r in
            StratumState(nextIndex: r.int(0) ?? 0, block: r.int(1) ?? -1, blockStart: r.int(2) ?? 0, blockSize: r.int(3) ?? 0,
                         dealt: [.whp: r.int(4) ?? 0, .psc: r.int(5) ?? 0, .rcg: r.int(6) ?? 0].filter { $0.value > 0 })
        } ?? StratumState()
    }
}

extension Store {
    /// Replays events into this (scratch) store's derived tables, in one
    /// transaction: `body` gets the function that applies one event. The
    /// caller counts each claimant's referrals as it replays and passes the
    /// number with each `referred` event (the scratch has no claimant index).
    public func rebuild(_ body: (_ project: (Event, _ claimantReferralNumber: Int?) throws -> Void) throws -> Void) throws {
        try backend.transaction(.write, retry: false) { s in
            try body { event, n in try Projection.apply(event, s, claimantReferralNumber: n) }
        }
    }
}
