import Foundation
import Testing

@testable import WHPStore

/// `verify`'s derived-table comparison works on bytes (`TablePager`): each
/// key is written so that its bytes sort as the engines sort keys, and each
/// row's other columns so that equal values, and only they, give equal
/// bytes. These tests hold that encoding to the values it stands for, and
/// run the merge over pages cut small enough that every kind of difference
/// falls on a page edge.
struct DerivedTablesCompareTests {
    /// A key's bytes, as `TablePager.appendKey` writes them from a row.
    static func keyBytes(_ v: SQLValue) throws -> [UInt8] {
        let store = try Store.scratch()
        var out: [UInt8] = []
        try store.backend.transaction(.read, retry: false) { s in
            try s.query("SELECT ?", [v]) { r in TablePager.appendKey(r, to: &out) }
        }
        return out
    }

    static func valueBytes(_ v: SQLValue) -> [UInt8] {
        var out: [UInt8] = []
        v.append(to: &out)
        return out
    }

    /// The order both engines give keys: NULL first, integers by value, text bytewise.
    static func precedes(_ a: SQLValue, _ b: SQLValue) -> Bool {
        switch (a, b) {
        case (.null, .null): false
        case (.null, _): true
        case (_, .null): false
        case let (.int(x), .int(y)): x < y
        case (.int, .text): true
        case (.text, .int): false
        case let (.text(x), .text(y)): x.utf8.lexicographicallyPrecedes(y.utf8)
        }
    }

    static let hostileValues: [SQLValue] = [
        .null, .int(Int.min), .int(-256), .int(-1), .int(0), .int(1), .int(255), .int(256), .int(Int.max),
        .text(""), .text("a"), .text("ab"), .text("abc"), .text("b"), .text("a\u{0}"), .text("a\u{0}b"), .text("\u{7F}"),
        .text("é"), .text("z\u{1F600}"), .text("1"), .text("0000"), .text(String(repeating: "x", count: 300)),
    ]

    @Test("key bytes sort as the engines sort keys, read back as the same key, and SQLite's own row gives the same bytes")
    func keyOrder() throws {
        var bytes: [SQLValue: [UInt8]] = [:]
        for v in Self.hostileValues { bytes[v] = try Self.keyBytes(v) }
        for a in Self.hostileValues {
            for b in Self.hostileValues {
                let order = TablePager.order(bytes[a]![...], bytes[b]![...])
                #expect((order < 0) == Self.precedes(a, b), "\(a) against \(b)")
                #expect((order == 0) == (a == b), "\(a) against \(b)")
            }
            if a != .null { #expect(TablePager.keyValue(bytes[a]![...]) == a) }
        }
    }

    @Test("two values give the same bytes exactly when they are equal, read from SQLite or not")
    func valueEquality() throws {
        let store = try Store.scratch()
        for a in Self.hostileValues {
            var fromSQLite: [UInt8] = []
            try store.backend.transaction(.read, retry: false) { s in
                try s.query("SELECT ?", [a]) { r in r.appendValue(0, to: &fromSQLite) }
            }
            #expect(fromSQLite == Self.valueBytes(a), "\(a)")
            for b in Self.hostileValues {
                #expect((Self.valueBytes(a) == Self.valueBytes(b)) == (a == b), "\(a) against \(b)")
            }
        }
        // Two columns' bytes next to each other cannot pass for two others: ("ab", "c") is not ("a", "bc").
        var x: [UInt8] = [], y: [UInt8] = []
        SQLValue.text("ab").append(to: &x); SQLValue.text("c").append(to: &x)
        SQLValue.text("a").append(to: &y); SQLValue.text("bc").append(to: &y)
        #expect(x != y)
    }

    @Test("the merge over pages of two rows finds each changed, missing and extra row, and blames the right event")
    func mergeAcrossPages() throws {
        let stored = try Store.scratch(), rebuilt = try Store.scratch()
        func fill(_ store: Store, _ rows: [(key: String, reason: String?, seq: Int)]) throws {
            try store.backend.transaction(.write, retry: false) { s in
                for r in rows {
                    try s.exec(
                        "INSERT INTO follow_ups(step_key, referral_id, step, date, reason, last_seq) VALUES (?, 'R1', 'start', '2018-01-01', ?, ?)",
                        [.text(r.key), SQLValue(r.reason), .int(r.seq)])
                }
            }
        }
        // Keys that are prefixes of each other, a NUL inside one, a byte above ASCII.
        let common: [(key: String, reason: String?, seq: Int)] = [
            ("a", "p", 10), ("ab", "q", 11), ("abc", "r", 12), ("a\u{0}b", "s", 13), ("é", "t", 14), ("zz", "u", 15),
        ]
        try fill(rebuilt, common)
        // The same rows, with: "ab" changed (reason ""), "abc" missing, "abd" extra, "zz" changed to NULL.
        try fill(
            stored,
            [("a", "p", 10), ("ab", "", 11), ("a\u{0}b", "s", 13), ("abd", "v", 9), ("é", "t", 14), ("zz", nil, 15)])
        for pageSize in [1, 2, 3, 20_000] {
            let d = try stored.snapshot { try $0.firstDifference(in: "follow_ups", key: "step_key", against: rebuilt, pageSize: pageSize) }
            #expect(d?.rows == 4, "page size \(pageSize): \(String(describing: d))")
            #expect(d?.seq == 9, "page size \(pageSize): the earliest event to blame is the extra row's")
        }
        let copy = try Store.scratch()
        try fill(copy, common.reversed())
        let same = try copy.snapshot { try $0.firstDifference(in: "follow_ups", key: "step_key", against: rebuilt, pageSize: 2) }
        #expect(same == nil, "the same rows, inserted in another order")
    }
}
