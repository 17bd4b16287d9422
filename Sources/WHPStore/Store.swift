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

    /// Opens the trial on `backend`. Fails with a clear message if it was
    /// never initialised. A store whose derived tables were laid out by an
    /// earlier whp is brought up to this one's first (`upgrade`).
    public static func open(backend: any StoreBackend, logger: Logger? = nil) throws -> Store {
        // Only whether the log has begun: a tampered head must still open, so verify can report it.
        let begun = try? backend.transaction(.read, retry: false) { s in try s.first("SELECT seq FROM events LIMIT 1") { _ in true } }
        guard begun == true else {
            throw StoreError("the store at \(backend.location) has no trial_started event: it was not initialised by `whp init`")
        }
        let version = (try? backend.transaction(.read, retry: false) { s in Schema.storedVersion(s) }) ?? 1
        if version != Schema.version {
            let writable: any StoreBackend
            do { writable = try backend.openForUpgrade() } catch {
                throw StoreError(
                    "the store at \(backend.location) was laid out by another whp (schema \(version), this one is \(Schema.version)) and cannot be opened for writing to upgrade it (\(error)); open it once with write access, e.g. `whp serve`"
                )
            }
            try upgrade(writable, from: version, logger: logger)
        }
        return Store(backend: backend)
    }

    /// Rebuilds every derived table from the log, in one write transaction:
    /// the log is not touched, and the new tables are exactly what the
    /// projection makes of it, as for any new store.
    static func upgrade(_ backend: any StoreBackend, from version: Int, logger: Logger?) throws {
        logger?.notice("upgrading the store's derived tables from schema \(version) to \(Schema.version) (the log is not changed)")
        try backend.transaction(.write, retry: false) { s in
            guard Schema.storedVersion(s) != Schema.version else { return }  // another process did it first
            try Schema.dropDerived(s)
            try Schema.create(s)
            // A page of the log at a time (keyset paging): memory stays flat,
            // and no cursor is open while the projection writes.
            var after = 0
            while true {
                var events: [StoredEvent] = []
                try s.query("SELECT seq, type, payload, hash FROM events WHERE seq > ? ORDER BY seq LIMIT 4096", [.int(after)]) { r in
                    events.append(StoredEvent(seq: r.int(0) ?? 0, type: r.text(1) ?? "", payloadText: r.text(2) ?? "", hash: r.text(3) ?? ""))
                }
                guard let last = events.last else { break }
                after = last.seq
                try project(&events, s)
            }
        }
    }

    private static func project(_ events: inout [StoredEvent], _ s: any SQLSession) throws {
        for e in events {
            guard let map = try? PayloadJSON.decode(e.payloadText), let event = try? TrialEvent.decode(type: e.type, map) else {
                throw StoreError("event \(e.seq) of the log is malformed, so the store cannot be upgraded: run `whp verify`")
            }
            try Projection.apply(event, seq: e.seq, s)
        }
        events.removeAll(keepingCapacity: true)
    }

    /// Opens an existing SQLite store.
    public static func open(path: String, readonly: Bool = false) throws -> Store {
        try open(backend: SQLiteBackend.open(path: path, readonly: readonly))
    }

    /// Creates the schema on `backend`, which must hold no events yet.
    public static func create(backend: any StoreBackend) throws -> Store {
        try backend.transaction(.write, retry: false) { s in
            if (try? s.first("SELECT seq FROM events LIMIT 1", [], { _ in true })) == true {
                throw StoreError("\(backend.location) already holds a trial; init runs once per store")
            }
        }
        try backend.transaction(.write, retry: false) { s in try Schema.create(s) }
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
}

/// An event as stored: its payload still as text, its hash as stored (either
/// may have been tampered with, so neither is trusted until `verify` checks it).
public struct StoredEvent: Sendable {
    public var seq: Int
    public var type: String
    public var payloadText: String
    public var hash: String
}
