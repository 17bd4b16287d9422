import Foundation
import Logging
import Testing
import WHPPostgres
import WHPStore
import WHPTestSupport

/// The PostgreSQL session holds rows of single-row writes and sends each
/// statement's rows as one multi-row statement (issue 19). Whatever it holds,
/// the table must end as if every statement had run at once, in order; these
/// tests drive the session directly, on a scratch table, with orders the
/// service's own ops happen not to produce.
@Suite("PostgreSQL: held rows keep the meaning of the statements", .serialized)
struct HeldRowsTests {
    static let insert = "INSERT INTO t(k, a, n) VALUES (?, ?, ?)"
    static let upsert = "INSERT INTO t(k, a, n) VALUES (?, ?, ?) ON CONFLICT(k) DO UPDATE SET a = excluded.a, n = excluded.n"
    static let setBoth = "UPDATE t SET a = ?, n = ? WHERE k = ?"
    static let setN = "UPDATE t SET n = ? WHERE k = ?"

    /// A fresh database holding the empty table `t`, given to `body`, dropped afterwards.
    static func scratch<T>(_ body: (PostgresBackend) throws -> T) throws -> T {
        let url = try TestBackend.createDatabase()
        defer { TestBackend.dropDatabase(url) }
        let backend = try PostgresBackend.connect(url: url, logger: Logger(label: "whp.test.held"))
        try backend.transaction(.write, retry: false) { s in
            try s.exec("CREATE TABLE t(k TEXT PRIMARY KEY, a TEXT, n INTEGER NOT NULL)", [])
        }
        return try body(backend)
    }

    /// `t` as "k a n", in key order.
    static func rows(_ backend: PostgresBackend) throws -> [String] {
        var out: [String] = []
        try backend.transaction(.read, retry: false) { s in
            try s.query("SELECT k, a, n FROM t ORDER BY k", []) { r in out.append("\(r.text(0) ?? "-") \(r.text(1) ?? "null") \(r.int(2) ?? -1)") }
        }
        return out
    }

    /// Runs `body` in one write transaction on a scratch `t`; returns `t` afterwards.
    static func table(_ body: (any SQLSession) throws -> Void) throws -> [String] {
        try scratch { backend in
            try backend.transaction(.write, retry: false) { s in try body(s) }
            return try rows(backend)
        }
    }

    @Test("an update of one statement, another, then the first again on the same row: the last one wins")
    func updatesOfOneRowKeepTheirOrder() throws {
        let rows = try Self.table { s in
            try s.insertRow(Self.insert, [.text("x"), .text("0"), .int(0)])
            try s.updateRow(Self.setBoth, [.text("1"), .int(1), .text("x")])
            try s.updateRow(Self.setN, [.int(2), .text("x")])
            try s.updateRow(Self.setBoth, [.text("3"), .int(3), .text("x")])
        }
        #expect(rows == ["x 3 3"])
    }

    /// Held updates join their rows to the table by its key's index: hash and
    /// merge joins are turned off for the rest of the transaction that sends
    /// them, and for that transaction only (a rollback undoes it too).
    @Test("the index joins of held updates last exactly as long as their transaction, committed or rolled back")
    func indexJoinsAreLocalToTheTransaction() throws {
        try Self.scratch { backend in
            func setting(_ s: any SQLSession) throws -> String {
                try s.first("SELECT current_setting('enable_hashjoin') || current_setting('enable_mergejoin')") { $0.text(0) ?? "" } ?? ""
            }
            var during = "", plan = ""
            try backend.transaction(.write, retry: false) { s in
                let before = try setting(s)
                #expect(before == "onon", "no held update yet")
                try s.insertRow(Self.insert, [.text("x"), .text("0"), .int(0)])
                try s.updateRow(Self.setBoth, [.text("1"), .int(1), .text("x")])
                during = try setting(s)
                try s.query("EXPLAIN UPDATE t SET n = v.n FROM (VALUES ('x', 5)) AS v(k, n) WHERE t.k = v.k", []) { plan += ($0.text(0) ?? "") + "\n" }
            }
            #expect(during == "offoff")
            #expect(!plan.contains("Hash Join") && !plan.contains("Merge Join"), "\(plan)")
            let later = try backend.transaction(.read, retry: false) { s in try setting(s) }
            #expect(later == "onon", "a later transaction plans as usual")
            struct Stop: Error {}
            #expect(throws: (any Error).self) {
                try backend.transaction(.write, retry: false) { s in
                    try s.updateRow(Self.setN, [.int(2), .text("x")])
                    _ = try setting(s)
                    throw Stop()
                }
            }
            let afterRollback = try backend.transaction(.write, retry: false) { s in try setting(s) }
            #expect(afterRollback == "onon", "a rolled-back one is undone as well")
        }
    }

    @Test("a thousand and one rows, updates by key, upserts replacing upserts, nulls, and a query in between")
    func manyRows() throws {
        let rows = try Self.table { s in
            for i in 0..<1001 { try s.insertRow(Self.insert, [.text(String(format: "r%04d", i)), .text("v\(i)"), .int(i)]) }
            for i in stride(from: 0, to: 1001, by: 2) { try s.updateRow(Self.setBoth, [.null, .int(-i), .text(String(format: "r%04d", i))]) }
            var seen = 0
            try s.query("SELECT COUNT(*) FROM t WHERE a IS NULL", []) { seen = $0.int(0) ?? -1 }
            #expect(seen == 501, "a query sees every held row")
            try s.upsertRow(Self.upsert, [.text("u"), .text("first"), .int(1)])
            try s.upsertRow(Self.upsert, [.text("u"), .text("second"), .int(2)])
            try s.upsertRow(Self.upsert, [.text("r0001"), .text("upserted"), .int(7)])
        }
        #expect(rows.count == 1002)
        #expect(rows.first == "r0000 null 0" && rows.contains("r0001 upserted 7") && rows.contains("r0999 v999 999") && rows.contains("r1000 null -1000"))
        #expect(rows.last == "u second 2")
    }

    /// A gatekeeper run updates each referral twice, by two statements (its
    /// decision, then its allocation), with other tables written and read in
    /// between. Held together, the two become one new row version.
    @Test("updates of one table by one key from two statements are one row version; other tables' reads and writes in between do not part them")
    func updatesOfOneKeyJoin() throws {
        var updated = -1, uRows = -1, seen = ""
        let rows = try Self.table { s in
            try s.exec("CREATE TABLE u(k TEXT PRIMARY KEY)", [])
            try s.insertRow(Self.insert, [.text("x"), .text("0"), .int(0)])
            try s.insertRow(Self.insert, [.text("y"), .text("0"), .int(0)])
            try s.updateRow(Self.setBoth, [.text("1"), .int(1), .text("x")])
            try s.updateRow(Self.setBoth, [.text("2"), .int(2), .text("y")])
            try s.insertRow("INSERT INTO u(k) VALUES (?)", [.text("w")])
            try s.query("SELECT COUNT(*) FROM u", []) { uRows = $0.int(0) ?? -1 }
            try s.updateRow(Self.setN, [.int(5), .text("x")])
            try s.updateRow(Self.setBoth, [.null, .int(6), .text("y")])
            try s.query("SELECT a, n FROM t WHERE k = 'x'", []) { seen = "\($0.text(0) ?? "null") \($0.int(1) ?? -1)" }
            try s.query("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 't'", []) { updated = $0.int(0) ?? -1 }
        }
        #expect(uRows == 1, "a read of another table sees that table's held rows")
        #expect(seen == "1 5", "a read of the table sees both updates")
        #expect(updated == 2, "x and y were each updated once, not twice")
        #expect(rows == ["x 1 5", "y null 6"])
    }

    @Test("an exec naming a held table goes after the held rows")
    func execAfterHeldRows() throws {
        let rows = try Self.table { s in
            try s.insertRow(Self.insert, [.text("x"), .text("0"), .int(0)])
            try s.exec("UPDATE t SET n = n + 10 WHERE k = ?", [.text("x")])
        }
        #expect(rows == ["x 0 10"])
    }

    @Test("a held row that breaks a constraint fails the transaction, and nothing of it stays")
    func failureFailsTheTransaction() throws {
        let left = try Self.scratch { backend in
            #expect(throws: (any Error).self) {
                try backend.transaction(.write, retry: false) { s in
                    try s.insertRow(Self.insert, [.text("x"), .text("0"), .int(0)])
                    try s.insertRow(Self.insert, [.text("x"), .text("1"), .int(1)])
                }
            }
            return try Self.rows(backend)
        }
        #expect(left == [])
    }
}
