/// The seam between the trial's store logic and a database engine.
///
/// Everything that gives the store its meaning — the chain append, the
/// projection into derived tables, the queries the ops and views run — is
/// written once, over `SQLSession`, in the SQL both engines accept. A backend
/// only supplies transactions with the right locking and a way to run a
/// statement. So the SQLite default and PostgreSQL pass the same suites by
/// construction rather than by parallel maintenance.

/// A bound value: the only types the schema uses.
public enum SQLValue: Sendable, Hashable {
    case text(String)
    case int(Int)
    case null

    public init(_ s: String?) { self = s.map(SQLValue.text) ?? .null }
    public init(_ i: Int?) { self = i.map(SQLValue.int) ?? .null }
}

/// One result row, valid only inside the callback that receives it (SQLite
/// hands out its statement's current row without copying).
public protocol SQLRow {
    var columnCount: Int { get }
    func text(_ i: Int) -> String?
    /// The column's text, and `known` when its bytes are the same: a column
    /// of few distinct values (a district, a status) read over a million
    /// rows then makes a string only when the value changes. `known` becomes
    /// the column's text.
    func text(_ i: Int, reusing known: inout String?) -> String?
    func int(_ i: Int) -> Int?
    func value(_ i: Int) -> SQLValue
    /// The column's text as bytes, valid only inside `body`; nil for NULL.
    /// SQLite lends its own buffer, so `verify` reads a million payloads and
    /// hashes without making a string of any.
    func withBytes<T>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T?
}

extension SQLRow {
    public func withBytes<T>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T? {
        guard var t = text(i) else { return nil }
        return try t.withUTF8(body)
    }

    public func text(_ i: Int, reusing known: inout String?) -> String? {
        let t = text(i)
        if let t, t == known { return known }
        if t != nil { known = t }
        return t
    }
}

/// The few dialect differences the shared SQL has to know about.
public enum SQLDialect: Sendable {
    case sqlite
    case postgres
}

/// Statements inside one transaction. Placeholders are `?`, in order.
public protocol SQLSession: AnyObject {
    var dialect: SQLDialect { get }
    func exec(_ sql: String, _ args: [SQLValue]) throws
    /// Runs a query whose result is small; `row` sees each row in order.
    func query(_ sql: String, _ args: [SQLValue], _ row: (any SQLRow) throws -> Void) throws
    /// Runs a query whose result may be larger than memory, delivering rows in
    /// order without holding them all (a cursor on either engine).
    func stream(_ sql: String, _ args: [SQLValue], _ row: (any SQLRow) throws -> Void) throws
    /// A single-row `INSERT … VALUES (…)` with nothing after its row, whose
    /// result nobody reads. A backend may hold it and send it later with the
    /// rows of the same statement as one multi-row `INSERT`, in order, before
    /// any query or statement naming its table, and before the commit: so
    /// every later statement still sees it. Callers promise that no other
    /// statement reads or changes the table's rows behind its name (through a
    /// view or trigger). On PostgreSQL that turns a group's hundreds of
    /// statements, each a message exchange, into a few (issue 19).
    func insertRow(_ sql: String, _ args: [SQLValue]) throws
    /// Like `insertRow`, for an `INSERT … VALUES (…) ON CONFLICT(first
    /// column) DO UPDATE` that sets every column from its row: a backend
    /// holding rows may keep only the last row of each key, which leaves
    /// what running them all would.
    func upsertRow(_ sql: String, _ args: [SQLValue]) throws
    /// An `UPDATE t SET c = ?, … WHERE key = ?` (placeholders only, the key
    /// last) whose result nobody reads: held like `insertRow`. A backend may
    /// hold the updates of one table by one key together, whatever columns
    /// each sets: a later one sets its columns on the held row, which leaves
    /// what running them in order would, since each sets constants.
    func updateRow(_ sql: String, _ args: [SQLValue]) throws
}

extension SQLSession {
    public func insertRow(_ sql: String, _ args: [SQLValue]) throws { try exec(sql, args) }
    public func upsertRow(_ sql: String, _ args: [SQLValue]) throws { try exec(sql, args) }
    public func updateRow(_ sql: String, _ args: [SQLValue]) throws { try exec(sql, args) }
}

/// What a transaction is for; the backend picks its isolation and locking.
public enum TransactionKind: Sendable {
    /// A consistent snapshot; nothing is written.
    case read
    /// Appends to the chain: serialised with every other writer of the trial,
    /// from any process or instance, before the head is read.
    case write
}

/// A database engine holding one trial.
public protocol StoreBackend: AnyObject, Sendable {
    /// Where the trial lives, printable (never with a password).
    var location: String { get }
    var dialect: SQLDialect { get }
    /// Runs `body` in one transaction and commits it, or rolls back if it throws.
    /// With `retry`, a write that loses a race the engine detects (serialisation
    /// failure, deadlock) is rolled back and `body` runs again on fresh state; a
    /// body with effects outside the transaction must not ask for it.
    func transaction<T>(_ kind: TransactionKind, retry: Bool, _ body: (any SQLSession) throws -> T) throws -> T
    /// The same store opened for writing, to upgrade its derived tables
    /// (`Store.open`): itself when it already writes.
    func openForUpgrade() throws -> any StoreBackend
}

extension SQLSession {
    /// The first row's values, or nil when the query returns none.
    public func first<T>(_ sql: String, _ args: [SQLValue] = [], _ read: (any SQLRow) throws -> T) throws -> T? {
        var out: T?
        try query(sql, args) { r in if out == nil { out = try read(r) } }
        return out
    }
}
