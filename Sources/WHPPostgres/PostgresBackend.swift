import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import WHPStore

/// A trial on PostgreSQL, shared by any number of `whp serve` instances.
///
/// Same schema and SQL as the SQLite default (`WHPStore` writes it once over
/// `SQLSession`); what differs is how writers serialise. Every write
/// transaction first takes one transaction-scoped advisory lock, the chain
/// lock, and only then reads the head; READ COMMITTED gives each later
/// statement a snapshot that includes the previous holder's commit. So the
/// instances append to one chain, one stratum sequence and one set of locks,
/// in turn, and no claimant can be randomised twice by a race. `events.seq`
/// is the primary key as a second line of defence: a writer that somehow
/// appended without the lock could not fork the chain, only fail and retry.
///
/// The service loop is synchronous (read a group, commit, answer), so each
/// statement waits for its round trip on the caller's thread; NIO's event
/// loop does the socket work.
public final class PostgresBackend: StoreBackend, @unchecked Sendable {
    public let location: String
    public var dialect: SQLDialect { .postgres }
    let configuration: PostgresConnection.Configuration
    let logger: Logger
    private var connection: PostgresConnection?
    private let lock = NSLock()
    private var inTransaction = false
    private var sqlCache: [String: String] = [:]

    /// The advisory lock every writer of a trial takes; one trial per database.
    static let chainLock = 0x7768_705F_6368_6169  // "whp_chai"

    /// How many times a write that lost a race the server detected runs again.
    public var retries = 8

    /// Whether writers take the chain lock. Always in service: the lock is
    /// what keeps a person's history from changing between its check and its
    /// referral. A test can turn it off through `connect(url:logger:writersLock:)`,
    /// so concurrent writers really race for the next seq and the retry path runs.
    let takesChainLock: Bool

    init(location: String, configuration: PostgresConnection.Configuration, logger: Logger, takesChainLock: Bool) {
        self.takesChainLock = takesChainLock
        self.location = location
        self.configuration = configuration
        self.logger = logger
    }

    deinit {
        if let c = connection { Self.dispose(c) }
    }

    /// Closes a connection without waiting for the close, and keeps it alive
    /// until the close completes. postgres-nio asserts that a connection is
    /// closed before it is released; a lost connection released while its
    /// close was still under way trapped a debug `serve` in the restart soak
    /// (issue 15). A close that never completes leaks one connection, not the
    /// process.
    static func dispose(_ c: PostgresConnection) {
        guard !c.isClosed else { return }
        c.close().whenComplete { _ in withExtendedLifetime(c) {} }
    }

    /// Connects to `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`.
    /// The password may instead come from `PGPASSWORD`; it is never printed.
    public static func connect(url: String, logger: Logger) throws -> PostgresBackend {
        try connect(url: url, logger: logger, writersLock: true)
    }

    /// `writersLock: false` is the seam for the test of the retry path only.
    public static func connect(url: String, logger: Logger, writersLock: Bool) throws -> PostgresBackend {
        let target = try PostgresURL(url)
        var tls: PostgresConnection.Configuration.TLS = .disable
        if target.sslmode != "disable" {
            let context: NIOSSLContext
            do { context = try NIOSSLContext(configuration: .makeClientConfiguration()) } catch {
                throw StoreError("cannot set up TLS for \(target.printable): \(error)")
            }
            tls = target.sslmode == "require" ? .require(context) : .prefer(context)
        }
        var c = PostgresConnection.Configuration(
            host: target.host, port: target.port, username: target.user,
            password: target.password ?? ProcessInfo.processInfo.environment["PGPASSWORD"],
            database: target.database, tls: tls)
        c.options.connectTimeout = .seconds(10)
        let backend = PostgresBackend(location: target.printable, configuration: c, logger: logger, takesChainLock: writersLock)
        _ = try backend.connected()
        return backend
    }

    /// The open connection, reconnecting if the last one was lost (a restarted
    /// server, a failover): the next group after an outage is served again.
    private func connected() throws -> PostgresConnection {
        if let c = connection, !c.isClosed { return c }
        connection = nil
        do {
            let c = try bounded(
                PostgresConnection.connect(
                    on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration,
                    id: 1, logger: logger),
                seconds: 30, what: "connecting")
            connection = c
            return c
        } catch {
            throw StoreError("cannot connect to \(location): \(PostgresSession.describe(error))")
        }
    }

    public func transaction<T>(_ kind: TransactionKind, retry: Bool, _ body: (any SQLSession) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        guard !inTransaction else { throw StoreError("a transaction is already open on \(location)") }
        inTransaction = true
        defer { inTransaction = false }
        var attempt = 0
        while true {
            let session = PostgresSession(connection: try connected(), backend: self)
            var commitSent = false
            do {
                switch kind {
                case .read:
                    try session.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", [])
                case .write:
                    try session.exec("BEGIN ISOLATION LEVEL READ COMMITTED", [])
                    if takesChainLock { _ = try session.query("SELECT pg_advisory_xact_lock(?)", [.int(Self.chainLock)]) { _ in } }
                }
                let result = try body(session)
                try session.drain()
                commitSent = true
                try session.execNow("COMMIT")
                return result
            } catch {
                session.abandon()
                // A connection that is closed, or cannot even roll back, is
                // lost (a restarted server, a dropped link): it is closed and
                // forgotten, so the next transaction connects afresh.
                let lost = session.connection.isClosed || (try? session.execNow("ROLLBACK")) == nil
                if lost { forget(session.connection) }
                // A transaction whose connection was lost before COMMIT was
                // sent did not commit (the server rolls it back), so it may
                // run again on a new connection, like one that lost a race.
                // After COMMIT was sent nobody can tell: the caller answers
                // `internal` and the client's retry finds the first answer.
                let again = PostgresSession.isLostRace(error) || (lost && !commitSent)
                if retry, attempt < retries, again {
                    attempt += 1
                    logger.warning(
                        "\(lost ? "lost the connection" : "write lost a race") (\(PostgresSession.describe(error))); retrying (\(attempt))")
                    continue
                }
                if error is StoreError { throw error }
                throw StoreError("PostgreSQL at \(location): \(PostgresSession.describe(error))")
            }
        }
    }

    /// Closes a lost connection and drops it, without waiting for the close:
    /// a connection the server hung up on half way may never finish closing.
    private func forget(_ c: PostgresConnection) {
        Self.dispose(c)
        if connection === c { connection = nil }
    }

    /// Waits for `f` at most `seconds`: a server that accepts a connection and
    /// then says nothing (one killed during start-up) must not hold `serve`
    /// for ever. A connection that arrives after the deadline is closed.
    private func bounded(_ f: EventLoopFuture<PostgresConnection>, seconds: Int, what: String) throws -> PostgresConnection {
        let woken = DispatchSemaphore(value: 0)
        let box = Handoff<PostgresConnection>()
        f.whenComplete { r in
            if box.set(r) == false, case .success(let late) = r { Self.dispose(late) }
            woken.signal()
        }
        if woken.wait(timeout: .now() + .seconds(seconds)) == .timedOut, box.expire() {
            throw StoreError("\(what): no answer from \(location) within \(seconds) s")
        }
        return try box.result!.get()
    }

    public func openForUpgrade() throws -> any StoreBackend { self }

    /// `?` placeholders become `$1…$n` (outside quoted literals), once per statement text.
    func numbered(_ sql: String) -> String {
        if let hit = sqlCache[sql] { return hit }
        var out = ""
        out.reserveCapacity(sql.utf8.count + 16)
        var n = 0, quoted = false
        for ch in sql {
            if ch == "'" { quoted.toggle() }
            if ch == "?" && !quoted {
                n += 1
                out += "$\(n)"
            } else {
                out.append(ch)
            }
        }
        sqlCache[sql] = out
        return out
    }
}

/// Statements on one connection inside one transaction.
final class PostgresSession: SQLSession {
    let connection: PostgresConnection
    unowned let backend: PostgresBackend
    var dialect: SQLDialect { .postgres }
    private var cursors = 0
    /// Statements sent but not yet waited for (see `exec`).
    private var inFlight: [EventLoopFuture<PostgresQueryResult>] = []

    init(connection: PostgresConnection, backend: PostgresBackend) {
        self.connection = connection
        self.backend = backend
    }

    private func send(_ sql: String, _ args: [SQLValue]) -> EventLoopFuture<PostgresQueryResult> {
        var binds = PostgresBindings(capacity: args.count)
        for a in args {
            switch a {
            case .text(let s): binds.append(s)
            case .int(let i): binds.append(i)
            case .null: binds.appendNull()
            }
        }
        return connection.query(PostgresQuery(unsafeSQL: backend.numbered(sql), binds: binds), logger: backend.logger)
    }

    /// Waits for a statement's result, or for its connection to close. A
    /// server killed while a new connection was starting up (it answered
    /// "not yet accepting connections" and hung up) was seen to leave the
    /// statements queued on that connection unanswered for ever, and `serve`
    /// with them. Now a closed connection fails the wait; the transaction is
    /// then lost, and runs again on a new connection if COMMIT was not sent.
    private func answer(_ f: EventLoopFuture<PostgresQueryResult>) throws -> PostgresQueryResult {
        let woken = DispatchSemaphore(value: 0)
        let box = Handoff<PostgresQueryResult>()
        f.whenComplete { r in
            box.set(r)
            woken.signal()
        }
        connection.closeFuture.whenComplete { _ in woken.signal() }
        woken.wait()
        if let r = box.result { return try r.get() }
        throw ConnectionClosed()
    }

    /// Sends the statement after everything in flight, waits for it, returns its rows.
    private func run(_ sql: String, _ args: [SQLValue]) throws -> PostgresQueryResult {
        let result = send(sql, args)
        try drain()
        return try answer(result)
    }

    /// A statement whose result nobody reads (the appends and the projection)
    /// is sent without waiting: the connection runs statements in order, so a
    /// later query sees its effect, and its error, if any, surfaces at the
    /// next wait, inside the same transaction, which then fails as a whole.
    /// A group of pipelined requests thus pays a round trip per read, not per
    /// statement.
    func exec(_ sql: String, _ args: [SQLValue]) throws {
        inFlight.append(send(sql, args))
        if inFlight.count >= 512 { try drain() }
    }

    /// Waits for every statement in flight; throws the first error.
    func drain() throws {
        let pending = inFlight
        inFlight = []
        var first: (any Error)?
        for f in pending {
            do { _ = try answer(f) } catch { if first == nil { first = error } }
        }
        if let first { throw first }
    }

    /// After a failure: waits out whatever is still in flight, ignoring its errors.
    func abandon() {
        for f in inFlight { _ = try? answer(f) }
        inFlight = []
    }

    /// Transaction control, always waited for.
    func execNow(_ sql: String) throws {
        _ = try run(sql, [])
    }

    func query(_ sql: String, _ args: [SQLValue], _ row: (any SQLRow) throws -> Void) throws {
        for r in try run(sql, args).rows { try row(PostgresResultRow(r.makeRandomAccess())) }
    }

    /// A server-side cursor, fetched in batches: the rows of a 1,000,000-referral
    /// export never sit in memory at once.
    func stream(_ sql: String, _ args: [SQLValue], _ row: (any SQLRow) throws -> Void) throws {
        cursors += 1
        let name = "whp_cursor_\(cursors)"
        _ = try run("DECLARE \(name) NO SCROLL CURSOR FOR " + sql, args)
        let batch = 5000
        while true {
            let rows = try run("FETCH FORWARD \(batch) FROM \(name)", []).rows
            for r in rows { try row(PostgresResultRow(r.makeRandomAccess())) }
            if rows.count < batch { break }
        }
        _ = try run("CLOSE \(name)", [])
    }

    /// A write that lost a race the server detected: serialisation failure,
    /// deadlock, or a chain seq another writer took first.
    static func isLostRace(_ error: any Error) -> Bool {
        guard let e = error as? PSQLError, let state = e.serverInfo?[.sqlState] else { return false }
        if state == "40001" || state == "40P01" { return true }
        return state == "23505" && e.serverInfo?[.constraintName] == "events_pkey"
    }

    /// The server's code and message, without the statement or its values
    /// (which hold pseudonyms): what an operator needs, nothing more.
    static func describe(_ error: any Error) -> String {
        guard let e = error as? PSQLError else { return "\(error)" }
        if let info = e.serverInfo {
            return "SQLSTATE \(info[.sqlState] ?? "?"): \(info[.message] ?? "")"
        }
        if let underlying = e.underlying { return "\(e.code): \(underlying)" }
        return "\(e.code)"
    }
}

/// One row of a result, read by column index.
struct PostgresResultRow: SQLRow {
    let row: PostgresRandomAccessRow
    init(_ row: PostgresRandomAccessRow) { self.row = row }

    var columnCount: Int { row.count }

    func text(_ i: Int) -> String? {
        let cell = row[i]
        guard cell.bytes != nil else { return nil }
        switch cell.dataType {
        case .int2, .int4, .int8: return int(i).map(String.init)
        default: return try? cell.decode(String.self)
        }
    }

    func int(_ i: Int) -> Int? {
        let cell = row[i]
        guard cell.bytes != nil else { return nil }
        switch cell.dataType {
        case .int2, .int4, .int8: return try? cell.decode(Int.self)
        default: return (try? cell.decode(String.self)).flatMap { Int($0) }
        }
    }

    func value(_ i: Int) -> SQLValue {
        let cell = row[i]
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return SQLValue(int(i))
        default: return SQLValue(text(i))
        }
    }
}

/// A `postgres://` URL, parsed without Foundation's URL quirks.
struct PostgresURL {
    var user: String
    var password: String?
    var host: String
    var port: Int
    var database: String
    var sslmode: String

    var printable: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    init(_ text: String) throws {
        let bad = StoreError("--store must look like postgres://user@host:port/database (got a malformed URL)")
        var rest: Substring
        if text.hasPrefix("postgres://") {
            rest = text.dropFirst("postgres://".count)
        } else if text.hasPrefix("postgresql://") {
            rest = text.dropFirst("postgresql://".count)
        } else {
            throw bad
        }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") { query = rest[rest.index(after: q)...]; rest = rest[..<q] }
        guard let slash = rest.firstIndex(of: "/") else { throw bad }
        database = String(rest[rest.index(after: slash)...]).removingPercentEncoding ?? ""
        var authority = rest[..<slash]
        user = ProcessInfo.processInfo.environment["USER"] ?? "postgres"
        password = nil
        if let at = authority.lastIndex(of: "@") {
            let credentials = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = String(credentials[..<colon]).removingPercentEncoding ?? ""
                password = String(credentials[credentials.index(after: colon)...]).removingPercentEncoding
            } else {
                user = String(credentials).removingPercentEncoding ?? ""
            }
        }
        port = 5432
        if let colon = authority.lastIndex(of: ":") {
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { throw bad }
            port = p
            authority = authority[..<colon]
        }
        host = authority.isEmpty ? "localhost" : String(authority)
        sslmode = "prefer"
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { throw bad }
            switch kv[0] {
            case "sslmode":
                guard ["disable", "prefer", "require"].contains(kv[1]) else {
                    throw StoreError("sslmode must be disable, prefer or require (got \(kv[1]))")
                }
                sslmode = String(kv[1])
            default:
                throw StoreError("unknown option \(kv[0]) in the PostgreSQL URL (only sslmode is understood)")
            }
        }
        guard !database.isEmpty, !user.isEmpty else { throw bad }
    }
}

extension PostgresBackend {
    /// The URL as it may be printed: without its password.
    public static func printable(_ url: String) throws -> String { try PostgresURL(url).printable }
}

/// The connection closed with a statement unanswered (see `PostgresSession.answer`).
struct ConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the connection to PostgreSQL closed with a statement unanswered" }
}

/// A result handed from NIO's event loop to the thread waiting for it, or
/// the waiter's giving up, whichever comes first: a statement's answer, or a
/// connection attempt under a deadline.
private final class Handoff<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var expired = false
    private var stored: Result<Value, any Error>?
    var result: Result<Value, any Error>? { lock.withLock { stored } }
    /// False when the waiter has already given up (the caller then disposes of the value).
    @discardableResult
    func set(_ r: Result<Value, any Error>) -> Bool {
        lock.withLock {
            if expired { return false }
            stored = r
            return true
        }
    }
    /// True when no result arrived first (the waiter gives up).
    func expire() -> Bool {
        lock.withLock {
            if stored != nil { return false }
            expired = true
            return true
        }
    }
}
