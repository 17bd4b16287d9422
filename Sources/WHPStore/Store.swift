import Foundation
import GRDB
import Logging
import WHPCore

public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The trial's durable state: SQLite through GRDB in WAL mode with
/// `synchronous = FULL`, so a commit that returned survives a crash or power cut.
///
/// All writes go through `write`, one `BEGIN IMMEDIATE` transaction per group of
/// requests: the chain head is read inside the write lock, so several processes
/// on one file serialise and never fork the chain (PROTOCOL.md §1).
public final class Store: @unchecked Sendable {
    let queue: DatabaseQueue
    public let path: String

    private init(queue: DatabaseQueue, path: String) {
        self.queue = queue
        self.path = path
    }

    static func configuration(readonly: Bool = false) -> Configuration {
        var c = Configuration()
        c.journalMode = .wal
        c.busyMode = .timeout(60)
        c.readonly = readonly
        c.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // 32 MiB of page cache (the default is 2 MiB): the referral indexes stay
            // in memory for large trials, within the service's 100 MiB budget.
            try db.execute(sql: "PRAGMA cache_size = -32768")
        }
        return c
    }

    /// Opens an existing store. Fails with a clear message if there is none.
    public static func open(path: String, readonly: Bool = false) throws -> Store {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError("no store at \(path): run `whp init` first (or pass --data DIR)")
        }
        let q = try DatabaseQueue(path: path, configuration: configuration(readonly: readonly))
        let store = Store(queue: q, path: path)
        // Only whether the log has begun: a tampered head must still open, so verify can report it.
        guard try q.read({ db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM events)") }) == true else {
            throw StoreError("the store at \(path) has no trial_started event: it was not initialised by `whp init`")
        }
        return store
    }

    /// Creates a new store file with the schema and no events.
    public static func create(path: String) throws -> Store {
        let q = try DatabaseQueue(path: path, configuration: configuration())
        try q.write { db in try Schema.create(db) }
        return Store(queue: q, path: path)
    }

    /// A throw-away store in memory: `verify` replays the log into one to
    /// rebuild the derived tables.
    public static func scratch() throws -> Store {
        var c = Configuration()
        c.prepareDatabase { db in try db.execute(sql: "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF") }
        let q = try DatabaseQueue(configuration: c)
        try q.write { db in try Schema.create(db, serviceIndexes: false) }
        return Store(queue: q, path: ":memory:")
    }

    /// One write transaction (`BEGIN IMMEDIATE`). `body` reads state and appends
    /// events; they are committed together, or, if anything throws, not at all.
    public func write<T>(_ body: (inout StoreTransaction) throws -> T) throws -> T {
        var result: T?
        try queue.inTransaction(.immediate) { db in
            var tx = try StoreTransaction(db: db)
            result = try body(&tx)
            return .commit
        }
        return result!
    }

    /// A consistent read of the state (no events are appended).
    public func read<T>(_ body: (StoreTransaction) throws -> T) throws -> T {
        try queue.read { db in try body(StoreTransaction(db: db)) }
    }

    public func head() throws -> ChainHead? {
        try queue.read { db in try StoreTransaction.readHead(db) }
    }

    /// The newest event's seq and hash exactly as stored, unchecked (what a checkpoint records).
    public func storedHead() throws -> (seq: Int, hash: String)? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").map { ($0[0], $0[1]) }
        }
    }

    /// Streams the log in `seq` order without holding it in memory.
    public func forEachEvent(_ body: (StoredEvent) throws -> Void) throws {
        try queue.read { db in
            let rows = try Row.fetchCursor(db, sql: "SELECT seq, type, payload, hash FROM events ORDER BY seq")
            while let row = try rows.next() {
                try body(StoredEvent(seq: row[0], type: row[1], payloadText: row[2], hash: row[3]))
            }
        }
    }

    /// Runs raw SQL; for tests that tamper with a store the way an insider would.
    public func unsafeExecute(_ sql: String) throws {
        try queue.writeWithoutTransaction { db in try db.execute(sql: sql) }
    }

    /// Rows of a derived table that differ between this store and `other`: how
    /// many keys differ, and the first bad event. For one key the later of the
    /// two sides' `last_seq` is to blame (a row the log no longer explains was
    /// last touched by the missing or altered event); over all keys, the earliest.
    func firstDifference(in table: String, key: String, against other: Store) throws -> (seq: Int?, rows: Int)? {
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "ATTACH DATABASE ? AS other", arguments: [other.path])
            defer { try? db.execute(sql: "DETACH DATABASE other") }
            let sql = """
                SELECT MIN(bad), COUNT(*) FROM (
                  SELECT k, MAX(last_seq) AS bad FROM (
                    SELECT \(key) AS k, last_seq FROM (SELECT * FROM main.\(table) EXCEPT SELECT * FROM other.\(table))
                    UNION ALL
                    SELECT \(key) AS k, last_seq FROM (SELECT * FROM other.\(table) EXCEPT SELECT * FROM main.\(table)))
                  GROUP BY k)
                """
            let row = try Row.fetchOne(db, sql: sql)!
            let count: Int = row[1]
            return count == 0 ? nil : (row[0], count)
        }
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

    /// Columns of `referralColumns`, in order.
    init(_ r: RawStatement) {
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
    let db: Database
    /// The newest event, read inside the transaction; nil for an empty log.
    public private(set) var head: ChainHead?
    private var genesisCache: Bytes32?

    init(db: Database) throws {
        self.db = db
        self.head = try StoreTransaction.readHead(db)
    }

    static func readHead(_ db: Database) throws -> ChainHead? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash, payload FROM events ORDER BY seq DESC LIMIT 1")) else {
            return nil
        }
        let hashText: String = row[1]
        guard let hash = Bytes32(hex: hashText) else { throw StoreError("the newest event's stored hash is malformed: run `whp verify`") }
        let payload = (try? PayloadJSON.decode(row[2] as String)) ?? [:]
        return ChainHead(seq: row[0], hash: hash, recordedAt: payload["recorded_at"].flatMap(Instant.init))
    }

    /// The instant to record for a request read at `now`: never earlier than
    /// the newest event's, so `recorded_at` never goes backwards (PROTOCOL.md §6)
    /// even when another process with a slower clock wrote last.
    public func recordedAt(_ now: Instant) -> Instant {
        guard let last = head?.recordedAt, last > now else { return now }
        return last
    }

    /// Appends one event after the head: hashes it into the chain, stores it
    /// and applies it to the derived tables.
    @discardableResult
    public mutating func append(_ type: EventType, _ payload: [String: String]) throws -> Event {
        let seq = (head?.seq ?? 0) + 1
        let event = Event(seq: seq, type: type, payload: payload)
        let previous: Bytes32
        if let head {
            previous = head.hash
        } else {
            guard type == .trialStarted, let trialID = payload["trial_id"],
                  let c = payload["commitment"].flatMap(Bytes32.init(hex:)) else {
                throw StoreError("the first event must be trial_started")
            }
            previous = Derivation.genesis(trialID: trialID, commitment: c)
        }
        // Keys are sorted once, for the hashed encoding and the stored JSON alike.
        let keys = event.sortedKeys
        let hash = Chain.next(previous: previous, encoded: event.encoded(sortedKeys: keys))
        try RawStatement.exec(db, "INSERT INTO events(seq, type, payload, hash) VALUES (?, ?, ?, ?)",
                              [.int(seq), .text(type.rawValue), .text(PayloadJSON.encode(payload, sortedKeys: keys)), .text(hash.hex)])
        try Projection.apply(event, db)
        head = ChainHead(seq: seq, hash: hash, recordedAt: payload["recorded_at"].flatMap(Instant.init) ?? head?.recordedAt)
        return event
    }

    // MARK: reads

    public func trial() throws -> TrialRecord? {
        guard let r = try Row.fetchOne(db.cachedStatement(sql: "SELECT trial_id, commitment, config_hash, frontline_rcg FROM trial")) else { return nil }
        return TrialRecord(trialID: r[0], commitment: r[1], configHash: r[2], frontlineRCG: r[3])
    }

    private func referralRows(_ sql: String, _ args: [SQLArg]) throws -> [ReferralRecord] {
        let r = try RawStatement(db, "SELECT \(ReferralRecord.columns) FROM referrals " + sql, args)
        var out: [ReferralRecord] = []
        while try r.step() { out.append(ReferralRecord(r)) }
        return out
    }

    public func referral(_ id: String) throws -> ReferralRecord? {
        try referralRows("WHERE referral_id = ?", [.text(id)]).first
    }

    /// Every referral of a claimant, oldest first.
    public func referrals(claimant: String) throws -> [ReferralRecord] {
        try referralRows("WHERE claimant = ? ORDER BY referred_seq", [.text(claimant)])
    }

    /// Referrals of a district awaiting the gatekeeper with `referral_date ≤ date`, in `referred` order.
    public func pending(district: String, upTo date: String) throws -> [ReferralRecord] {
        try referralRows("WHERE district = ? AND status = 'awaiting_gatekeeper' AND referral_date <= ? ORDER BY referred_seq",
                         [.text(district), .text(date)])
    }

    public func referrals(run: String) throws -> [ReferralRecord] {
        try referralRows("WHERE run_id = ? ORDER BY referred_seq", [.text(run)])
    }

    public func run(_ id: String) throws -> RunRecord? {
        guard let r = try Row.fetchOne(db.cachedStatement(sql: "SELECT run_id, district, gk_date, rule, capacity FROM runs WHERE run_id = ?"), arguments: [id]) else { return nil }
        return RunRecord(runID: r[0], district: r[1], gkDate: r[2], rule: r[3], capacity: r[4])
    }

    /// The district's latest gatekeeper date: a new run may not be dated before it.
    public func lastGatekeeperDate(district: String) throws -> String? {
        try String.fetchOne(db.cachedStatement(sql: "SELECT MAX(gk_date) FROM runs WHERE district = ?"), arguments: [district])
    }

    public func stratum(_ name: String) throws -> StratumState {
        try Projection.stratum(name, db)
    }

    /// Every referral's evaluation facts in `referred` order, streamed from a
    /// cursor so memory stays flat however many rows there are. The claimant's
    /// referral number is computed by SQLite (a window over the claimant index).
    public func forEachReferralFact(_ body: (ReferralFacts) throws -> Void) throws {
        let rows = try Row.fetchCursor(db, sql: """
            SELECT r.claimant, r.district, r.grp, r.referral_date, r.status, r.gk_date, r.rule, r.arm, r.flag,
                   ROW_NUMBER() OVER (PARTITION BY r.claimant ORDER BY r.referred_seq) AS n,
                   o.claimant IS NOT NULL AS opted
            FROM referrals r LEFT JOIN opt_outs o ON o.claimant = r.claimant
            ORDER BY r.referred_seq
            """)
        while let r = try rows.next() {
            let status: ReferralStatus = switch r[4] as String {
            case "cancelled": .cancelled
            case "not_selected": .notSelected
            case "awaiting_gatekeeper", "selected": .awaitingGatekeeper
            default: .allocated(Arm(rawValue: r[7] ?? "") ?? .rcg)
            }
            guard let date = CivilDate(r[3] as String) else { throw StoreError("referral with a malformed date: run `whp verify`") }
            try body(ReferralFacts(claimant: Pseudonym(hex: r[0]), district: r[1], group: r[2], referralDate: date, status: status,
                                   gkDate: (r[5] as String?).flatMap(CivilDate.init), rule: r[6], flag: r[8],
                                   claimantReferralNumber: r[9], optedOut: r[10]))
        }
    }

    /// Every allocation in `referred` order, for the balance checks.
    public func allocations() throws -> [AllocatedReferral] {
        try Row.fetchAll(db, sql: "SELECT district, grp, referral_date, arm FROM referrals WHERE arm IS NOT NULL ORDER BY referred_seq").compactMap { r in
            guard let d = CivilDate(r[2] as String), let arm = Arm(rawValue: r[3]) else { return nil }
            return AllocatedReferral(district: r[0], group: r[1], referralDate: d, arm: arm)
        }
    }

    /// Allocations per district and arm.
    public func allocationCounts() throws -> [String: [String: Int]] {
        var out: [String: [String: Int]] = [:]
        for r in try Row.fetchAll(db, sql: "SELECT district, arm, COUNT(*) FROM referrals WHERE arm IS NOT NULL GROUP BY district, arm") {
            out[r[0], default: [:]][r[1]] = r[2]
        }
        return out
    }

    public func isOptedOut(claimant: String) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM opt_outs WHERE claimant = ?"), arguments: [claimant]) ?? false
    }
}

/// How each event changes the derived tables. The service's writes and
/// `verify`'s rebuild both go through here, so the two cannot drift apart.
enum Projection {
    static func apply(_ e: Event, _ db: Database) throws {
        let p = e.payload
        func t(_ k: String) -> SQLArg { SQLArg(p[k]) }
        switch e.eventType {
        case .trialStarted:
            try RawStatement.exec(db, """
                INSERT INTO trial(one, trial_id, commitment, config_hash, method, block_multipliers, stratify_by_group, frontline_rcg, last_seq)
                VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [t("trial_id"), t("commitment"), t("config_hash"), t("method"), t("block_multipliers"),
                      t("stratify_by_group"), t("frontline_rcg"), .int(e.seq)])
        case .referred:
            try RawStatement.exec(db, """
                INSERT INTO referrals(referral_id, referred_seq, claimant, district, grp, referral_date, status, last_seq)
                VALUES (?, ?, ?, ?, ?, ?, 'awaiting_gatekeeper', ?)
                """, [t("referral_id"), .int(e.seq), t("claimant"), t("district"), t("group"), t("referral_date"), .int(e.seq)])
        case .cancelled:
            try RawStatement.exec(db, "UPDATE referrals SET status = 'cancelled', cancel_reason = ?, last_seq = ? WHERE referral_id = ?",
                                  [t("reason"), .int(e.seq), t("referral_id")])
        case .gatekeeperDecision:
            let status = p["decision"] == "selected" ? "selected" : "not_selected"
            try RawStatement.exec(db, """
                UPDATE referrals SET status = ?, run_id = ?, gk_date = ?, rule = ?, lottery_key = ?, last_seq = ? WHERE referral_id = ?
                """, [.text(status), t("run_id"), t("gk_date"), t("rule"), t("lottery_key"), .int(e.seq), t("referral_id")])
            try RawStatement.exec(db, """
                INSERT INTO runs(run_id, district, gk_date, rule, capacity, first_seq, last_seq)
                SELECT ?, district, ?, ?, ?, ?, ? FROM referrals WHERE referral_id = ?
                ON CONFLICT(run_id) DO UPDATE SET last_seq = excluded.last_seq
                """, [t("run_id"), t("gk_date"), t("rule"), SQLArg(p["capacity"].flatMap { Int($0) }), .int(e.seq), .int(e.seq), t("referral_id")])
        case .allocated:
            let arm = p["arm"] ?? ""
            try RawStatement.exec(db, """
                UPDATE referrals SET status = ?, stratum = ?, alloc_index = ?, arm = ?, last_seq = ? WHERE referral_id = ?
                """, [.text("allocated_" + arm.lowercased()), t("stratum"), SQLArg(p["index"].flatMap { Int($0) }), .text(arm), .int(e.seq), t("referral_id")])
            guard let stratum = p["stratum"], let index = p["index"].flatMap({ Int($0) }) else { return }
            var s = try self.stratum(stratum, db)
            s.nextIndex = index + 1
            if let block = p["block"].flatMap({ Int($0) }), let size = p["block_size"].flatMap({ Int($0) }),
               let position = p["position"].flatMap({ Int($0) }) {
                if block != s.block {
                    s.block = block; s.blockStart = index - position; s.blockSize = size; s.dealt = [:]
                }
            }
            if let a = Arm(rawValue: arm) { s.dealt[a, default: 0] += 1 }
            try RawStatement.exec(db, """
                INSERT OR REPLACE INTO strata(stratum, next_index, block, block_start, block_size, dealt_whp, dealt_psc, dealt_rcg, last_seq)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.text(stratum), .int(s.nextIndex), .int(s.block), .int(s.blockStart), .int(s.blockSize),
                      .int(s.dealt[.whp, default: 0]), .int(s.dealt[.psc, default: 0]), .int(s.dealt[.rcg, default: 0]), .int(e.seq)])
        case .optedOut:
            try RawStatement.exec(db, "INSERT OR IGNORE INTO opt_outs(claimant, date, last_seq) VALUES (?, ?, ?)",
                                  [t("claimant"), t("date"), .int(e.seq)])
        case .flaggedInError:
            try RawStatement.exec(db, "UPDATE referrals SET flag = ?, last_seq = ? WHERE referral_id = ?",
                                  [t("reason"), .int(e.seq), t("referral_id")])
        case .disclosed, .exportMade, .none:
            break
        }
    }

    static func stratum(_ name: String, _ db: Database) throws -> StratumState {
        let r = try RawStatement(db, "SELECT next_index, block, block_start, block_size, dealt_whp, dealt_psc, dealt_rcg FROM strata WHERE stratum = ?",
                                 [.text(name)])
        guard try r.step() else { return StratumState() }
        let state = StratumState(nextIndex: r.int(0) ?? 0, block: r.int(1) ?? -1, blockStart: r.int(2) ?? 0, blockSize: r.int(3) ?? 0,
                                 dealt: [.whp: r.int(4) ?? 0, .psc: r.int(5) ?? 0, .rcg: r.int(6) ?? 0].filter { $0.value > 0 })
        while try r.step() {}
        return state
    }
}

extension Store {
    /// Replays events into this (scratch) store's derived tables, in one
    /// transaction: `body` gets the function that applies one event.
    public func rebuild(_ body: (_ project: (Event) throws -> Void) throws -> Void) throws {
        try queue.inTransaction { db in
            try body { event in try Projection.apply(event, db) }
            return .commit
        }
    }

    /// The derived-table part of `verify`: rebuild from the log into a scratch
    /// store (done by the caller through `project`) and compare row by row.
    /// Returns the first failing table and the smallest `last_seq` involved.
    public func compareDerivedTables(with rebuilt: Store) throws -> (table: String, seq: Int?, rows: Int)? {
        var worst: (table: String, seq: Int?, rows: Int)?
        for t in Schema.derivedTables {
            if let d = try rebuilt.firstDifference(in: t.name, key: t.key, against: self) {
                if worst == nil || (d.seq ?? Int.max) < (worst!.seq ?? Int.max) { worst = (t.name, d.seq, d.rows) }
            }
        }
        return worst
    }
}
