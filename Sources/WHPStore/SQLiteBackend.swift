import Foundation
import GRDB
import GRDBSQLite

/// The embedded default: one SQLite file through GRDB, WAL with
/// `synchronous = FULL`, so a commit that returned survives a crash or power cut.
/// Writers take `BEGIN IMMEDIATE`, SQLite's file lock, before reading the
/// head: processes sharing the file serialise and never fork the chain.
public final class SQLiteBackend: StoreBackend, @unchecked Sendable {
    let queue: DatabaseQueue
    /// Used only inside `queue`'s closures, which GRDB serialises.
    let statements = StatementCache()
    public let path: String
    public var location: String { path }
    public var dialect: SQLDialect { .sqlite }

    let readonly: Bool

    init(queue: DatabaseQueue, path: String, readonly: Bool = false) {
        self.queue = queue
        self.path = path
        self.readonly = readonly
    }

    /// The cached statements go before the connection they were prepared on.
    deinit { statements.removeAll() }

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
            // Checkpoint the WAL every 8,192 pages (32 MiB) rather than SQLite's
            // 1,000: each checkpoint fsyncs the database file, and a referral
            // dirties several pages (the event, the referral row, its indexes),
            // so the default checkpointed every couple of hundred commits.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 8192")
            // Readers (verify, reports, checkpoint) map the file instead of copying
            // every page through read(2): verify reads the whole log and every table.
            if readonly { try db.execute(sql: "PRAGMA mmap_size = 4294967296") }
        }
        return c
    }

    /// Opens (or, with `create`, creates) the file.
    public static func open(path: String, readonly: Bool = false, create: Bool = false) throws -> SQLiteBackend {
        guard create || FileManager.default.fileExists(atPath: path) else {
            throw StoreError("no store at \(path): run `whp init` first (or pass --data DIR or --store)")
        }
        if create && !FileManager.default.fileExists(atPath: path) {
            // The file exists, mode 0600, before SQLite opens it: its WAL and
            // shared-memory files take the database's mode (RULES2 R13).
            do {
                try makeDirectory(parentFolder(of: path))
                close(try openPrivately(path))
            } catch { throw StoreError(error.description) }
        }
        return SQLiteBackend(
            queue: try DatabaseQueue(path: path, configuration: configuration(readonly: readonly)), path: path,
            readonly: readonly)
    }

    /// A throw-away database in memory, for `verify`'s rebuild.
    static func memory() throws -> SQLiteBackend {
        var c = Configuration()
        c.prepareDatabase { db in try db.execute(sql: "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF") }
        return SQLiteBackend(queue: try DatabaseQueue(configuration: c), path: ":memory:")
    }

    /// Sets this connection's page cache, which also bounds SQLite's in-memory
    /// sorter: a one-pass reader (export) trades the service's 32 MiB of
    /// cached index pages for a flat, small footprint.
    public func setPageCache(kibibytes: Int) throws {
        try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA cache_size = -\(kibibytes)") }
    }

    public func transaction<T>(_ kind: TransactionKind, retry: Bool, _ body: (any SQLSession) throws -> T) throws -> T {
        switch kind {
        case .read:
            return try queue.read { db in try body(SQLiteSession(db: db, statements: statements)) }
        case .write:
            // BEGIN IMMEDIATE waits (busy timeout) for the lock instead of failing
            // mid-transaction, so there is no lost race to retry.
            var result: T?
            try queue.inTransaction(.immediate) { db in
                result = try body(SQLiteSession(db: db, statements: statements))
                return .commit
            }
            return result!
        }
    }

    public func openForUpgrade() throws -> any StoreBackend {
        readonly ? try SQLiteBackend.open(path: path) : self
    }
}

/// Statements on GRDB's connection, prepared once and cached, bound and
/// stepped through the C API: per request this skips GRDB's generic argument
/// and row machinery, which cost more than SQLite itself.
final class SQLiteSession: SQLSession {
    let db: Database
    let statements: StatementCache
    var dialect: SQLDialect { .sqlite }
    init(db: Database, statements: StatementCache) { self.db = db; self.statements = statements }

    func exec(_ sql: String, _ args: [SQLValue]) throws {
        let s = try RawStatement(db, statements.statement(db, sql), args)
        while try s.step() {}
    }

    func query(_ sql: String, _ args: [SQLValue], _ row: (any SQLRow) throws -> Void) throws {
        let s = try RawStatement(db, statements.statement(db, sql), args)
        do {
            while try s.step() { try row(s) }
        } catch {
            sqlite3_reset(s.stmt)
            throw error
        }
    }

    func stream(_ sql: String, _ args: [SQLValue], _ row: (any SQLRow) throws -> Void) throws {
        try query(sql, args, row)
    }
}

nonisolated(unsafe) private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
nonisolated(unsafe) private let emptyCString: UnsafePointer<CChar> = {
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    p.pointee = 0
    return UnsafePointer(p)
}()

/// Prepared statements by the address of their SQL text. The store's SQL
/// texts are string constants, so the address finds the statement without
/// hashing the whole text, as GRDB's own cache (behind this one) does for
/// every call. An entry keeps its text alive, so no other text can take its
/// address while it is cached; equality is checked all the same.
final class StatementCache {
    private var byAddress: [UInt: (sql: String, statement: Statement)] = [:]
    private static let limit = 512

    func removeAll() { byAddress.removeAll() }

    func statement(_ db: Database, _ sql: String) throws -> OpaquePointer {
        // Small strings (15 bytes or fewer) live inline and have no stable address.
        let address = sql.utf8.count > 15 ? sql.utf8.withContiguousStorageIfAvailable { UInt(bitPattern: $0.baseAddress) } : nil
        if let address, let hit = byAddress[address], hit.sql == sql { return hit.statement.sqliteStatement }
        let statement = try db.cachedStatement(sql: sql)
        if let address, byAddress.count < Self.limit { byAddress[address] = (sql, statement) }
        return statement.sqliteStatement
    }
}

/// One cached statement, bound and stepped; it is also the current row.
struct RawStatement: SQLRow {
    let db: Database
    let stmt: OpaquePointer

    init(_ db: Database, _ stmt: OpaquePointer, _ args: [SQLValue]) throws {
        self.db = db
        self.stmt = stmt
        sqlite3_reset(stmt)
        // Every parameter is bound below; only a short argument list leaves old values to clear.
        if args.count < Int(sqlite3_bind_parameter_count(stmt)) { sqlite3_clear_bindings(stmt) }
        for (i, a) in args.enumerated() {
            let n = Int32(i + 1)
            let rc: Int32
            switch a {
            case .text(var s):
                rc = s.withUTF8 { u in
                    u.withMemoryRebound(to: CChar.self) { c in sqlite3_bind_text(stmt, n, c.baseAddress ?? emptyCString, Int32(c.count), transient) }
                }
            case .int(let v): rc = sqlite3_bind_int64(stmt, n, Int64(v))
            case .null: rc = sqlite3_bind_null(stmt, n)
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
    }

    func error(_ rc: Int32) -> StoreError {
        StoreError("SQLite error \(rc): \(String(cString: sqlite3_errmsg(db.sqliteConnection)))")
    }

    /// Steps to the next row; false when done.
    func step() throws -> Bool {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return true }
        sqlite3_reset(stmt)
        guard rc == SQLITE_DONE else { throw error(rc) }
        return false
    }

    var columnCount: Int { Int(sqlite3_column_count(stmt)) }

    func text(_ i: Int) -> String? {
        withBytes(i) { String(decoding: $0, as: UTF8.self) }
    }

    func text(_ i: Int, reusing known: inout String?) -> String? {
        let old = known
        return withBytes(i) { b in
            let same = old?.utf8.withContiguousStorageIfAvailable { k in
                k.count == b.count && (b.isEmpty || memcmp(k.baseAddress!, b.baseAddress!, b.count) == 0)
            }
            if same == true { return old! }
            let t = String(decoding: b, as: UTF8.self)
            known = t
            return t
        }
    }

    func int(_ i: Int) -> Int? {
        sqlite3_column_type(stmt, Int32(i)) == SQLITE_NULL ? nil : Int(sqlite3_column_int64(stmt, Int32(i)))
    }

    /// The column's bytes, all of them: a text that holds a NUL (which only a
    /// tampered store can) is read whole rather than cut at the NUL.
    func withBytes<T>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T? {
        guard let p = sqlite3_column_text(stmt, Int32(i)) else { return nil }
        return try body(UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(stmt, Int32(i)))))
    }

    func value(_ i: Int) -> SQLValue {
        switch sqlite3_column_type(stmt, Int32(i)) {
        case SQLITE_NULL: .null
        case SQLITE_INTEGER: .int(Int(sqlite3_column_int64(stmt, Int32(i))))
        default: SQLValue(text(i))
        }
    }
}
