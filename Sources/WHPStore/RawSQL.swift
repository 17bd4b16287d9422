import GRDB
import GRDBSQLite

/// The hot statements, bound and stepped through the SQLite C API on GRDB's
/// cached (prepared-once) statements: per request this skips GRDB's generic
/// argument and row machinery, which cost more than SQLite itself.
enum SQLArg {
    case text(String)
    case int(Int)
    case null

    init(_ s: String?) { self = s.map(SQLArg.text) ?? .null }
    init(_ i: Int?) { self = i.map(SQLArg.int) ?? .null }
}

nonisolated(unsafe) private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
nonisolated(unsafe) private let emptyCString: UnsafePointer<CChar> = {
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    p.pointee = 0
    return UnsafePointer(p)
}()

struct RawStatement {
    let db: Database
    let stmt: OpaquePointer

    init(_ db: Database, _ sql: String, _ args: [SQLArg]) throws {
        self.db = db
        stmt = try db.cachedStatement(sql: sql).sqliteStatement
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
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

    /// Runs a statement that returns no rows.
    func run() throws { while try step() {} }

    func text(_ i: Int32) -> String? {
        guard let p = sqlite3_column_text(stmt, i) else { return nil }
        return String(cString: p)
    }

    func int(_ i: Int32) -> Int? {
        sqlite3_column_type(stmt, i) == SQLITE_NULL ? nil : Int(sqlite3_column_int64(stmt, i))
    }

    static func exec(_ db: Database, _ sql: String, _ args: [SQLArg]) throws {
        try RawStatement(db, sql, args).run()
    }
}
