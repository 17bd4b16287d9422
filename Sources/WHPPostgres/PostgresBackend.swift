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
        // Set before the signal, and `expire` lost to it: a result is there.
        guard let result = box.result else { throw StoreError("\(what): \(location) gave no result") }
        return try result.get()
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
    /// Rows held by `insertRow` and `upsertRow`, by statement, in the order
    /// each statement was first held (see `HeldRows`).
    private var held: [HeldRows] = []
    /// Most rows in one multi-row `INSERT`: well under the protocol's 65,535 bound values.
    static let rowsPerInsert = 1000
    /// Most keys of one table's updates held at once (about 100 bytes each).
    static let updatesHeld = 200_000
    /// Whether this transaction has asked for index joins (`sendHeld`).
    private var joinsByIndex = false
    /// Held updates go out as `UPDATE t … FROM (VALUES …) WHERE t.key = v.k`.
    /// For a thousand rows against a table of tens of thousands, the planner
    /// prices a hash join over a scan of the whole table below a thousand
    /// index probes. It is not: the scan also reads every dead version the
    /// transaction's own updates left, so a gatekeeper run's statements
    /// scanned the referrals table once each, and its time grew with the
    /// square of its size (52,000 pending took 11 times as long as 5,200).
    /// Hash and merge joins are turned off for the rest of the transaction
    /// (`set_config(…, true)` is `SET LOCAL`: the commit or rollback undoes
    /// it), so each row is found through the key's index. No other write
    /// statement joins: the group reads already join laterally (`lookup`).
    static let indexJoins = "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"

    init(connection: PostgresConnection, backend: PostgresBackend) {
        self.connection = connection
        self.backend = backend
    }

    private func send(_ sql: String, _ args: [SQLValue]) -> EventLoopFuture<PostgresQueryResult> {
        send(prenumbered: backend.numbered(sql), args)
    }

    private func send(prenumbered sql: String, _ args: [SQLValue]) -> EventLoopFuture<PostgresQueryResult> {
        var binds = PostgresBindings(capacity: args.count)
        for a in args {
            switch a {
            case .text(let s): binds.append(s)
            case .int(let i): binds.append(i)
            case .null: binds.appendNull()
            }
        }
        return connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: backend.logger)
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

    /// Holds the row. The rows of each held statement go out later as one
    /// multi-row statement (`INSERT … VALUES (…), (…)`, or an `UPDATE … FROM
    /// (VALUES …)`): before any query that names their table, before any
    /// other statement that touches a held table, and before the commit.
    /// Held statements go out in the order they were first held, and a row
    /// joins its statement's rows
    /// only if no statement held after it touches the same tables; otherwise
    /// the held rows go out first. So every statement that could see a held
    /// row still runs after it, and rows of one table keep their order. A
    /// statement "touches" a table it names; the schema has no triggers or
    /// views that would touch one behind its name.
    func insertRow(_ sql: String, _ args: [SQLValue]) throws {
        try hold(sql, args, keyed: false)
    }

    /// Like `insertRow`, for an upsert that sets every column from its row:
    /// a later row with the same key (its first value) replaces the held
    /// one, which is what running both would leave. A gatekeeper run's
    /// stratum row is thus written once per transaction, not per allocation.
    func upsertRow(_ sql: String, _ args: [SQLValue]) throws {
        try hold(sql, args, keyed: true)
    }

    /// An `UPDATE t SET c = ?, … WHERE key = ?`: held like `insertRow`; a
    /// later row for the same key sets its columns on the held one, whether
    /// it comes from this statement or another update of the same table by
    /// the same key (`HeldRows.absorb`). A gatekeeper run's decisions and
    /// allocations go out as one update per referral, a thousand referrals a
    /// statement, instead of two updates each.
    func updateRow(_ sql: String, _ args: [SQLValue]) throws {
        try hold(sql, args, keyed: true)
    }

    private func hold(_ sql: String, _ args: [SQLValue], keyed: Bool) throws {
        if let i = held.firstIndex(where: { $0.holds(sql) }) {
            if held[i].followedByATouch {
                try sendHeld()
                return try hold(sql, args, keyed: keyed)
            }
            try held[i].add(sql, args)
            if held[i].isFull { try sendHeld(including: i) }
        } else if var h = HeldRows(sql: sql, numbered: backend.numbered(sql), keyed: keyed) {
            // An update of a table whose updates are already held, by the same
            // key, joins them: a later statement's columns set on the same key
            // replace or add to the held ones, which is what running both would
            // leave (each sets constants). Nothing held after them touches the
            // table, so nothing can see the difference. A gatekeeper run's
            // decision and allocation of one referral become one row version.
            if h.isUpdate, let i = held.firstIndex(where: { $0.canAbsorb(h) }) {
                held[i].absorb(h)
                try held[i].add(sql, args)
                if held[i].isFull { try sendHeld(including: i) }
                return
            }
            // Whether two statements touch depends on their texts alone, so it is
            // judged once, as a statement is held, not again for each row (a
            // gatekeeper run holds a hundred thousand rows under four statements).
            for j in held.indices where h.touches(held[j]) { held[j].followedByATouch = true }
            try h.add(sql, args)
            held.append(h)
        } else {
            try sendHeld()
            inFlight.append(send(sql, args))
            try settleOldest()
        }
    }

    /// Sends every held row, each statement's as one multi-row statement.
    private func sendHeld() throws {
        try sendHeld { _ in true }
    }

    /// Sends the held statements `pick` chooses, and any held before one of
    /// them that touches it (so rows that could see each other keep their
    /// order); the rest stay held, in order.
    private func sendHeld(_ pick: (HeldRows) -> Bool) throws {
        try sendHeld(chosen: held.map(pick))
    }

    private func sendHeld(chosen picked: [Bool]) throws {
        guard !held.isEmpty else { return }
        var chosen = picked
        var grew = true
        while grew {
            grew = false
            for a in held.indices where !chosen[a] && held.indices.contains(where: { $0 > a && chosen[$0] && held[a].touches(held[$0]) }) {
                chosen[a] = true; grew = true
            }
        }
        let statements = held.indices.filter { chosen[$0] }.map { held[$0] }
        held = held.indices.filter { !chosen[$0] }.map { held[$0] }
        for a in held.indices { held[a].followedByATouch = held.indices.contains { $0 > a && held[$0].touches(held[a]) } }
        if !joinsByIndex, statements.contains(where: \.isUpdate) {
            joinsByIndex = true
            inFlight.append(send(Self.indexJoins, []))
        }
        for h in statements {
            for (sql, args) in h.statements() { inFlight.append(send(prenumbered: sql, args)) }
        }
        try settleOldest()
    }

    /// Sends the held statement at `index` (full), and what must go before it.
    private func sendHeld(including index: Int) throws {
        try sendHeld(chosen: held.indices.map { $0 == index })
    }

    /// Sends the held rows `sql` could see or change: the statements whose
    /// table it names, and, when it writes, those that name its table (the
    /// others cannot see its rows nor it theirs, so their order does not
    /// matter). Any other statement sends everything first.
    private func sendHeld(before sql: String) throws {
        guard !held.isEmpty else { return }
        let target = HeldRows.target(of: sql)
        let reads = sql.hasPrefix("SELECT ")
        guard target != nil || reads else { return try sendHeld() }
        try sendHeld { h in HeldRows.names(sql, h.table) || target.map { h.names($0) } == true }
    }

    /// Sends the statement after everything in flight, waits for it, returns
    /// its rows. A query goes after the held rows it could see; transaction
    /// control after all of them.
    private func run(_ sql: String, _ args: [SQLValue]) throws -> PostgresQueryResult {
        try sendHeld(before: sql)
        let result = send(sql, args)
        try settleAll()
        return try answer(result)
    }

    /// A statement whose result nobody reads (the appends and the projection)
    /// is sent without waiting: the connection runs statements in order, so a
    /// later query sees its effect, and its error, if any, surfaces at the
    /// next wait, inside the same transaction, which then fails as a whole.
    /// postgres-nio still sends queued statements one at a time, each after
    /// the answer to the one before, so what costs is the number of
    /// statements, not of waits: hence the held rows above.
    func exec(_ sql: String, _ args: [SQLValue]) throws {
        try sendHeld(before: sql)
        inFlight.append(send(sql, args))
        try settleOldest()
    }

    /// Most statements in flight; past it the older half is waited for while
    /// the newer half keeps the server busy (waiting for all of them let the
    /// server idle while whp made the next ones: a gatekeeper run alternated).
    static let maxInFlight = 2048

    private func settleOldest() throws {
        guard inFlight.count >= Self.maxInFlight else { return }
        let oldest = inFlight.prefix(Self.maxInFlight / 2)
        inFlight.removeFirst(oldest.count)
        var first: (any Error)?
        for f in oldest {
            do { _ = try answer(f) } catch { if first == nil { first = error } }
        }
        if let first { throw first }
    }

    /// Sends the held rows, waits for every statement in flight; throws the first error.
    func drain() throws {
        try sendHeld()
        try settleAll()
    }

    /// Waits for every statement in flight (rows still held stay held); throws the first error.
    private func settleAll() throws {
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
        held = []
        for f in inFlight { _ = try? answer(f) }
        inFlight = []
    }

    /// Transaction control, always waited for.
    func execNow(_ sql: String) throws {
        try sendHeld()
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

/// The held rows of one single-row statement: an `INSERT INTO t(…) VALUES
/// (…) [ON CONFLICT …]`, or an `UPDATE t SET c = ?, … WHERE key = ?`.
struct HeldRows {
    let sql: String
    /// The table the statement writes.
    let table: String
    private enum Shape {
        /// The numbered statement cut around its one row: `head (row) tail`.
        case insert(head: [UInt8], row: [UInt8], tail: [UInt8])
        /// The columns set, in placeholder order, then the key column.
        case update(columns: [String], key: String)
    }
    private let shape: Shape
    /// Upserts and updates: a later row of the same key replaces the held one.
    private let keyed: Bool
    /// Inserts and upserts: each row's values, in placeholder order.
    private(set) var rows: [[SQLValue]] = []
    private var byKey: [SQLValue: Int] = [:]
    /// Updates: every column a held statement sets, each key's value for
    /// each (nil: not set), and each statement text held here with its
    /// columns' places among them. Updates of one table by one key from
    /// several statements are held together (`absorb`).
    private var setColumns: [String] = []
    private var updates: [(key: SQLValue, values: [SQLValue?])] = []
    private var texts: [(sql: String, places: [Int])] = []

    /// The table a writing statement names first (`INSERT INTO t`, `UPDATE t`, `DELETE FROM t`).
    static func target(of sql: String) -> String? {
        for lead in ["INSERT INTO ", "UPDATE ", "DELETE FROM "] where sql.hasPrefix(lead) {
            let name = sql.dropFirst(lead.count).prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            return name.isEmpty ? nil : String(name)
        }
        return nil
    }

    /// Nil for a statement of neither shape (it is then sent as it is).
    /// `keyed`: a later row of the same key replaces the held one (an
    /// update's key is its last value, an upsert's its first).
    init?(sql: String, numbered: String, keyed: Bool) {
        guard let table = Self.target(of: sql) else { return nil }
        self.sql = sql
        self.table = table
        if sql.hasPrefix("UPDATE ") {
            guard let (columns, key) = Self.updateShape(numbered) else { return nil }
            shape = .update(columns: columns, key: key)
            self.keyed = true
            setColumns = columns
            texts = [(sql, Array(columns.indices))]
            return
        }
        let u = Array(numbered.utf8)
        guard numbered.hasPrefix("INSERT INTO "), let values = numbered.range(of: "VALUES") else { return nil }
        var i = numbered.utf8.distance(from: numbered.utf8.startIndex, to: values.upperBound)
        while i < u.count, u[i] == UInt8(ascii: " ") || u[i] == UInt8(ascii: "\n") { i += 1 }
        guard i < u.count, u[i] == UInt8(ascii: "(") else { return nil }
        var depth = 0, j = i
        repeat {
            if u[j] == UInt8(ascii: "(") { depth += 1 } else if u[j] == UInt8(ascii: ")") { depth -= 1 }
            j += 1
        } while depth > 0 && j < u.count
        // Only the row's placeholders are renumbered per row: one outside it would be bound wrong.
        guard depth == 0, !u[..<i].contains(UInt8(ascii: "$")), !u[j...].contains(UInt8(ascii: "$")) else { return nil }
        shape = .insert(head: Array(u[..<i]), row: Array(u[i..<j]), tail: Array(u[j...]))
        self.keyed = keyed
    }

    /// `UPDATE t SET a = $1, b = $2 WHERE k = $3`, placeholders in order and
    /// nothing else: the columns and the key; nil for any other form.
    private static func updateShape(_ numbered: String) -> (columns: [String], key: String)? {
        let words = numbered.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        guard words.count >= 8, words[0] == "UPDATE", words[2] == "SET" else { return nil }
        var columns: [String] = [], k = 3, n = 0
        func isColumn(_ w: String) -> Bool { !w.isEmpty && w.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } }
        while k + 2 < words.count, words[k] != "WHERE" {
            n += 1
            let value = words[k + 2]
            let last = !value.hasSuffix(",")
            guard isColumn(words[k]), words[k + 1] == "=", (last ? value : String(value.dropLast())) == "$\(n)" else { return nil }
            columns.append(words[k])
            k += 3
            if last { break }
        }
        n += 1
        guard !columns.isEmpty, k + 4 == words.count, words[k] == "WHERE", isColumn(words[k + 1]), words[k + 2] == "=", words[k + 3] == "$\(n)"
        else { return nil }
        return (columns, words[k + 1])
    }

    /// Whether a statement held after this one touches it: this one's rows
    /// must then go out before any more join them.
    var followedByATouch = false

    /// Whether either statement names the table the other writes.
    func touches(_ other: HeldRows) -> Bool { names(other.table) || other.names(table) }

    /// Whether any statement text held here names `table`.
    func names(_ table: String) -> Bool { Self.names(sql, table) || texts.contains { Self.names($0.sql, table) } }

    /// Whether `table` occurs in `sql`, compared as bytes (Foundation's
    /// `contains` goes through a locale-aware search).
    static func names(_ sql: String, _ table: String) -> Bool {
        let text = Array(sql.utf8), name = Array(table.utf8)
        guard !name.isEmpty, name.count <= text.count else { return name.isEmpty }
        for start in 0...(text.count - name.count) where text[start] == name[0] {
            if text[start..<start + name.count].elementsEqual(name) { return true }
        }
        return false
    }

    /// Held rows (updates: keys).
    var count: Int { isUpdate ? updates.count : rows.count }

    /// Inserts go out a thousand rows at a time. Updates are held until
    /// something could see them, so that a later statement's update of the
    /// same key joins the held row; a bound keeps memory flat all the same.
    var isFull: Bool { count >= (isUpdate ? PostgresSession.updatesHeld : PostgresSession.rowsPerInsert) }

    /// Whether rows of `sql` are held here.
    func holds(_ sql: String) -> Bool { sql == self.sql || texts.contains { $0.sql == sql } }

    /// Whether `other`, an update, can be held with this statement's rows:
    /// an update of the same table by the same key, not followed by a
    /// statement that touches it.
    func canAbsorb(_ other: HeldRows) -> Bool {
        guard case .update(_, let key) = shape, case .update(_, let otherKey) = other.shape else { return false }
        return !followedByATouch && table == other.table && key == otherKey
    }

    /// Takes `other`'s statement text, and any column it sets that is new here.
    mutating func absorb(_ other: HeldRows) {
        guard case .update(let columns, _) = other.shape else { return }
        var places: [Int] = []
        for c in columns {
            if let k = setColumns.firstIndex(of: c) {
                places.append(k)
            } else {
                places.append(setColumns.count)
                setColumns.append(c)
            }
        }
        texts.append((other.sql, places))
    }

    mutating func add(_ sql: String, _ args: [SQLValue]) throws {
        guard isUpdate else {
            if keyed, let key = args.first {
                if let k = byKey[key] { rows[k] = args; return }
                byKey[key] = rows.count
            }
            rows.append(args)
            return
        }
        // Never dropped quietly: a row this statement cannot place fails its transaction.
        guard let places = texts.first(where: { $0.sql == sql })?.places, let key = args.last, args.count == places.count + 1 else {
            throw StoreError("internal: an update held with the wrong statement or values (\(sql.prefix(60)))")
        }
        let k: Int
        if let found = byKey[key] {
            k = found
        } else {
            k = updates.count
            byKey[key] = k
            updates.append((key, []))
        }
        if updates[k].values.count < setColumns.count {
            updates[k].values += Array(repeating: nil, count: setColumns.count - updates[k].values.count)
        }
        for (i, place) in places.enumerated() { updates[k].values[place] = args[i] }
    }

    /// Whether the held statement is an update (sent as a join with its rows).
    var isUpdate: Bool { if case .update = shape { true } else { false } }

    /// The multi-row statements and their values: one for inserts; for
    /// updates, one per set of columns its keys set, a thousand keys at most.
    func statements() -> [(sql: String, args: [SQLValue])] {
        switch shape {
        case .insert: return [(statement(), rows.flatMap { $0 })]
        case .update(_, let key):
            var groups: [[Bool]: [Int]] = [:], order: [[Bool]] = []
            for (k, u) in updates.enumerated() {
                let set = setColumns.indices.map { $0 < u.values.count && u.values[$0] != nil }
                if groups[set] == nil { order.append(set) }
                groups[set, default: []].append(k)
            }
            var out: [(sql: String, args: [SQLValue])] = []
            for set in order {
                let columns = setColumns.indices.filter { set[$0] }
                let keys = groups[set]!
                for start in stride(from: 0, to: keys.count, by: PostgresSession.rowsPerInsert) {
                    let chunk = keys[start..<min(start + PostgresSession.rowsPerInsert, keys.count)]
                    var args: [SQLValue] = []
                    args.reserveCapacity(chunk.count * (columns.count + 1))
                    for k in chunk {
                        for c in columns { args.append(updates[k].values[c]!) }
                        args.append(updates[k].key)
                    }
                    out.append((Self.update(table, columns.map { setColumns[$0] }, key: key, rows: chunk.count), args))
                }
            }
            return out
        }
    }

    /// UPDATE t SET a = v.c1, … FROM (VALUES ($1, …), …) AS v(c1, …, k) WHERE t.key = v.k
    static func update(_ table: String, _ columns: [String], key: String, rows: Int) -> String {
        let perRow = columns.count + 1
        var out = "UPDATE \(table) SET "
        out += columns.enumerated().map { "\($0.element) = v.c\($0.offset + 1)" }.joined(separator: ", ")
        out += " FROM (VALUES "
        for r in 0..<rows {
            if r > 0 { out += ", " }
            out += "(" + (1...perRow).map { "$\(r * perRow + $0)" }.joined(separator: ", ") + ")"
        }
        out += ") AS v(" + (1...columns.count).map { "c\($0)" }.joined(separator: ", ") + ", k) WHERE \(table).\(key) = v.k"
        return out
    }

    /// An insert's multi-row statement, its placeholders numbered `$1…$n` across the rows.
    private func statement() -> String {
        guard case let .insert(head, row, tail) = shape else { return "" }
        let perRow = rows.first?.count ?? 0
        var bytes = head
        bytes.reserveCapacity(head.count + tail.count + rows.count * (row.count + perRow * 2))
        for r in rows.indices {
            if r > 0 { bytes.append(UInt8(ascii: ",")) }
            // The row's own `$k` become `$(r·perRow + k)`.
            var i = 0
            while i < row.count {
                if row[i] == UInt8(ascii: "$") {
                    var j = i + 1, k = 0
                    while j < row.count, row[j] >= 48, row[j] <= 57 { k = k * 10 + Int(row[j] - 48); j += 1 }
                    bytes.append(UInt8(ascii: "$"))
                    bytes.append(contentsOf: String(r * perRow + k).utf8)
                    i = j
                } else {
                    bytes.append(row[i]); i += 1
                }
            }
        }
        bytes.append(contentsOf: tail)
        return String(decoding: bytes, as: UTF8.self)
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
