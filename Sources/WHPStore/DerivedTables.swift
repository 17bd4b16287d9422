/// A consistent view of the whole store, for `verify`: the log it streams and
/// the derived tables it compares are read in one snapshot, so a trial that is
/// being served while it is verified is judged as of one head.
public struct StoreSnapshot {
    let s: any SQLSession

    /// The newest event's seq and hash exactly as stored.
    public func storedHead() throws -> (seq: Int, hash: String)? {
        try s.first("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1") { r in (r.int(0) ?? 0, r.text(1) ?? "") }
    }

    /// Streams the log in `seq` order as the store holds it, lending each
    /// payload and hash as bytes valid only inside `body` (no string is made
    /// per event; a type is made once per run of equal types).
    public func forEachEventBytes(
        _ body: (_ seq: Int, _ type: String, _ payload: UnsafeBufferPointer<UInt8>, _ hash: UnsafeBufferPointer<UInt8>) throws -> Void
    ) throws {
        var type: String?
        let empty: [UInt8] = []
        try empty.withUnsafeBufferPointer { none in
            try s.stream("SELECT seq, type, payload, hash FROM events ORDER BY seq", []) { r in
                // A NULL (which the schema forbids) is read as empty text, as `forEachEvent` reads it.
                func lend(_ i: Int, _ f: (UnsafeBufferPointer<UInt8>) throws -> Void) throws { try r.withBytes(i, f) ?? f(none) }
                let seq = r.int(0) ?? 0, t = r.text(1, reusing: &type) ?? ""
                try lend(2) { payload in try lend(3) { hash in try body(seq, t, payload, hash) } }
            }
        }
    }

    /// Streams the log in `seq` order without holding it in memory.
    public func forEachEvent(_ body: (StoredEvent) throws -> Void) throws {
        try forEachEventBytes { seq, type, payload, hash in
            try body(StoredEvent(seq: seq, type: type, payloadText: String(decoding: payload, as: UTF8.self), hash: String(decoding: hash, as: UTF8.self)))
        }
    }
}

extension Store {
    /// Runs `body` on one read snapshot of the store.
    public func snapshot<T>(_ body: (StoreSnapshot) throws -> T) throws -> T {
        try backend.transaction(.read, retry: false) { s in try body(StoreSnapshot(s: s)) }
    }
}

/// The derived-table part of `verify`: the caller rebuilds the tables from the
/// log into a scratch store; here each table of the trial's store is compared
/// with its rebuild, row by row, by merging the two in key order a page at a
/// time. It works across engines (a PostgreSQL trial against a SQLite scratch)
/// because both order text bytewise (see `Schema`), and memory stays flat.
extension StoreSnapshot {
    /// The first failing table, how many keys differ, and the event to blame:
    /// for one key the later of the two sides' `last_seq` (a row the log no
    /// longer explains was last touched by the missing or altered event); over
    /// all keys, the earliest.
    public func compareDerivedTables(with rebuilt: Store) throws -> (table: String, seq: Int?, rows: Int)? {
        var worst: (table: String, seq: Int?, rows: Int)?
        for t in Schema.derivedTables {
            if let d = try firstDifference(in: t.name, key: t.key, against: rebuilt) {
                if worst == nil || (d.seq ?? Int.max) < (worst!.seq ?? Int.max) { worst = (t.name, d.seq, d.rows) }
            }
        }
        return worst
    }

    func firstDifference(in table: String, key: String, against other: Store, pageSize: Int = 20_000) throws -> (seq: Int?, rows: Int)? {
        let session = self.s
        var mine = TablePager(table: table, key: key, pageSize: pageSize) { body in try body(session) }
        var theirs = TablePager(table: table, key: key, pageSize: pageSize) { body in
            try other.backend.transaction(.read, retry: false) { try body($0) }
        }
        var bad: Int?
        var rows = 0
        func blame(_ seq: Int?) {
            rows += 1
            if let seq, seq < (bad ?? Int.max) { bad = seq }
        }
        while true {
            let a = try mine.peek(), b = try theirs.peek()
            switch (a, b) {
            case (nil, nil):
                return rows == 0 ? nil : (bad, rows)
            case let (a?, nil):
                blame(a.lastSeq); mine.advance()
            case let (nil, b?):
                blame(b.lastSeq); theirs.advance()
            case let (a?, b?):
                if a.key == b.key {
                    if a.values != b.values { blame(max(a.lastSeq ?? Int.min, b.lastSeq ?? Int.min)) }
                    mine.advance(); theirs.advance()
                } else if TablePager.precedes(a.key, b.key) {
                    blame(a.lastSeq); mine.advance()
                } else {
                    blame(b.lastSeq); theirs.advance()
                }
            }
        }
    }
}

/// One table read in primary-key order, a page at a time (keyset paging, so
/// each page is an index range scan on either engine).
struct TablePager {
    struct Row {
        var key: SQLValue
        var lastSeq: Int?
        var values: [SQLValue]
    }

    let table: String
    let key: String
    let pageSize: Int
    private var page: [Row] = []
    private var index = 0
    private var done = false

    /// Runs a body in a read transaction of the table's store.
    let read: ((any SQLSession) throws -> Void) throws -> Void

    init(table: String, key: String, pageSize: Int, read: @escaping ((any SQLSession) throws -> Void) throws -> Void) {
        self.table = table; self.key = key; self.pageSize = pageSize; self.read = read
    }

    mutating func peek() throws -> Row? {
        if index < page.count { return page[index] }
        if done { return nil }
        let after = page.last?.key
        page = []
        index = 0
        let sql = "SELECT \(key), last_seq, * FROM \(table)" + (after == nil ? "" : " WHERE \(key) > ?") + " ORDER BY \(key) LIMIT \(pageSize)"
        var fetched: [Row] = []
        try read { s in
            try s.query(sql, after.map { [$0] } ?? []) { r in
                var values: [SQLValue] = []
                values.reserveCapacity(r.columnCount - 2)
                for i in 2..<r.columnCount { values.append(r.value(i)) }
                fetched.append(Row(key: r.value(0), lastSeq: r.int(1), values: values))
            }
        }
        page = fetched
        if page.count < pageSize { done = true }
        return page.first
    }

    mutating func advance() { index += 1 }

    /// Key order as both engines sort it: integers numerically, text bytewise.
    static func precedes(_ a: SQLValue, _ b: SQLValue) -> Bool {
        switch (a, b) {
        case let (.int(x), .int(y)): x < y
        case let (.text(x), .text(y)): x.utf8.lexicographicallyPrecedes(y.utf8)
        case (.null, _): true
        default: false
        }
    }
}
