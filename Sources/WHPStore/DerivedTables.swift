import Foundation

/// A consistent view of the whole store, for `verify`: the log it streams and
/// the derived tables it compares are read in one snapshot, so a trial that is
/// being served while it is verified is judged as of one head.
public struct StoreSnapshot {
    let s: any SQLSession

    /// The newest event's seq and hash exactly as stored.
    public func storedHead() throws -> (seq: Int, hash: String)? {
        try s.first("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1") { r in (r.int(0) ?? 0, r.text(1) ?? "") }
    }

    /// Streams the log in `seq` order without holding it in memory.
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

    public func forEachEvent(_ body: (StoredEvent) throws -> Void) throws {
        try s.stream("SELECT seq, type, payload, hash FROM events ORDER BY seq", []) { r in
            try body(StoredEvent(seq: r.int(0) ?? 0, type: r.text(1) ?? "", payloadText: r.text(2) ?? "", hash: r.text(3) ?? ""))
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
                let order = TablePager.order(mine.bytes(a.key), theirs.bytes(b.key))
                if order == 0 {
                    if !TablePager.equal(mine.bytes(a.values), theirs.bytes(b.values)) { blame(max(a.lastSeq ?? Int.min, b.lastSeq ?? Int.min)) }
                    mine.advance(); theirs.advance()
                } else if order < 0 {
                    blame(a.lastSeq); mine.advance()
                } else {
                    blame(b.lastSeq); theirs.advance()
                }
            }
        }
    }
}

/// One table read in primary-key order, a page at a time (keyset paging, so
/// each page is an index range scan on either engine). A page is one byte
/// buffer: each row's key in an encoding whose byte order is the engines'
/// key order, and its other columns as `SQLRow.appendValue` writes them, so
/// rows are ordered and compared with `memcmp` and no value is made per cell.
struct TablePager {
    struct Row {
        var key: Range<Int>
        var lastSeq: Int?
        var values: Range<Int>
    }

    let table: String
    let key: String
    let pageSize: Int
    private var page: [Row] = []
    private var buffer: [UInt8] = []
    private var index = 0
    private var done = false

    /// Runs a body in a read transaction of the table's store.
    let read: ((any SQLSession) throws -> Void) throws -> Void

    init(table: String, key: String, pageSize: Int, read: @escaping ((any SQLSession) throws -> Void) throws -> Void) {
        self.table = table; self.key = key; self.pageSize = pageSize; self.read = read
    }

    func bytes(_ r: Range<Int>) -> ArraySlice<UInt8> { buffer[r] }

    mutating func peek() throws -> Row? {
        if index < page.count { return page[index] }
        if done { return nil }
        let after = page.last.map { TablePager.keyValue(buffer[$0.key]) }
        // The page's arrays are reused: moved out, emptied, filled, moved back.
        var fetched: [Row] = [], bytes: [UInt8] = []
        swap(&fetched, &page); swap(&bytes, &buffer)
        fetched.removeAll(keepingCapacity: true); bytes.removeAll(keepingCapacity: true)
        index = 0
        let sql = "SELECT \(key), last_seq, * FROM \(table)" + (after == nil ? "" : " WHERE \(key) > ?") + " ORDER BY \(key) LIMIT \(pageSize)"
        try read { s in
            try s.query(sql, after.map { [$0] } ?? []) { r in
                let k = bytes.count
                TablePager.appendKey(r, to: &bytes)
                let v = bytes.count
                for i in 2..<r.columnCount { r.appendValue(i, to: &bytes) }
                fetched.append(Row(key: k..<v, lastSeq: r.int(1), values: v..<bytes.count))
            }
        }
        page = fetched; buffer = bytes
        if page.count < pageSize { done = true }
        return page.first
    }

    mutating func advance() { index += 1 }

    /// A key as bytes that sort as both engines sort keys: NULL, then integers
    /// numerically, then text bytewise.
    static func appendKey(_ r: any SQLRow, to bytes: inout [UInt8]) {
        let start = bytes.count
        r.appendValue(0, to: &bytes)
        // A text's length would break byte order: the key keeps only its tag and bytes.
        if bytes[start] == SQLValue.textTag { bytes.removeSubrange(start + 1..<start + 5) }
    }

    /// The key back as a value, to page after it.
    static func keyValue(_ k: ArraySlice<UInt8>) -> SQLValue {
        switch k.first {
        case SQLValue.intTag?: .int(Int(Int64(bitPattern: k.dropFirst().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } ^ (1 << 63))))
        case SQLValue.textTag?: .text(String(decoding: k.dropFirst(), as: UTF8.self))
        default: .null
        }
    }

    /// Negative, zero or positive as `a` sorts before, with or after `b`.
    static func order(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Int {
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in
                let n = min(x.count, y.count)
                let c = n == 0 ? 0 : Int(memcmp(x.baseAddress!, y.baseAddress!, n))
                return c != 0 ? c : x.count - y.count
            }
        }
    }

    static func equal(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool { order(a, b) == 0 }
}
