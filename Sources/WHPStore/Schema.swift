import Foundation

/// The store's tables. `events` is the log; every other table is derived from
/// it by `Projection`, and `verify` rebuilds and compares them (the
/// `derived_tables` check). One definition serves both engines: integers
/// widen to `BIGINT` on PostgreSQL and text compares bytewise (`COLLATE "C"`),
/// as SQLite's does, so dates order the same and ordered scans of the two
/// engines merge.
///
/// `referrals` is keyed by `referred_seq` (SQLite's rowid). The table is
/// stored in referral order, so the pending lists and the reports read it in
/// that order without sorting. `referral_id` is unique beside it.
enum Schema {
    /// The derived tables' layout. A store whose `store_meta.schema` differs
    /// has its derived tables rebuilt from its log when it is opened for
    /// writing (`upgrade`): the log is never touched, and the tables are
    /// whatever the projection makes of it.
    /// 3: no `referrals_by_claimant` (a link finds its alias's rows by person).
    static let version = 3

    /// Each derived table with its primary key.
    static let derivedTables: [(name: String, key: String)] = [
        ("trial", "one"), ("referrals", "referral_id"), ("runs", "run_id"), ("strata", "stratum"), ("opt_outs", "claimant"),
        ("links", "alias"), ("follow_ups", "step_key"), ("shares", "seq"), ("provider_strata", "stratum"),
    ]

    static let events = """
        CREATE TABLE IF NOT EXISTS events(
            seq INTEGER PRIMARY KEY,
            type TEXT NOT NULL,
            payload TEXT NOT NULL,
            hash TEXT NOT NULL)
        """

    static let meta = "CREATE TABLE IF NOT EXISTS store_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)"

    static let tables = [
        """
        CREATE TABLE IF NOT EXISTS trial(
            one INTEGER PRIMARY KEY CHECK (one = 1),
            trial_id TEXT NOT NULL, commitment TEXT NOT NULL, config_hash TEXT NOT NULL,
            method TEXT NOT NULL, block_multipliers TEXT NOT NULL,
            stratify_by_group TEXT NOT NULL, frontline_rcg TEXT NOT NULL,
            rules INTEGER NOT NULL, pseudonym_key_check TEXT, evaluation_key_check TEXT, started_on TEXT NOT NULL,
            last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS referrals(
            referral_id TEXT NOT NULL UNIQUE,
            referred_seq INTEGER PRIMARY KEY,
            claimant TEXT NOT NULL, person TEXT NOT NULL,
            district TEXT NOT NULL, grp TEXT NOT NULL, referral_date TEXT NOT NULL,
            status TEXT NOT NULL,
            cancel_reason TEXT, run_id TEXT, gk_date TEXT, decided_on TEXT, rule TEXT, lottery_key TEXT,
            stratum TEXT, alloc_index INTEGER, arm TEXT, provider TEXT,
            flag TEXT, corrected_group TEXT, disclosed INTEGER NOT NULL,
            last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS runs(
            run_id TEXT PRIMARY KEY, district TEXT NOT NULL, gk_date TEXT NOT NULL, rule TEXT NOT NULL,
            capacity INTEGER, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS strata(
            stratum TEXT PRIMARY KEY, next_index INTEGER NOT NULL, block INTEGER NOT NULL,
            block_start INTEGER NOT NULL, block_size INTEGER NOT NULL,
            dealt_whp INTEGER NOT NULL, dealt_psc INTEGER NOT NULL, dealt_rcg INTEGER NOT NULL,
            last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS opt_outs(
            claimant TEXT PRIMARY KEY, date TEXT NOT NULL, last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS links(
            alias TEXT PRIMARY KEY, claimant TEXT NOT NULL, last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS follow_ups(
            step_key TEXT PRIMARY KEY, referral_id TEXT NOT NULL, step TEXT NOT NULL, date TEXT NOT NULL, reason TEXT,
            last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS shares(
            seq INTEGER PRIMARY KEY, district TEXT NOT NULL, arm TEXT NOT NULL, effective TEXT NOT NULL,
            shares TEXT NOT NULL, last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS provider_strata(
            stratum TEXT PRIMARY KEY, next_index INTEGER NOT NULL, block INTEGER NOT NULL,
            block_start INTEGER NOT NULL, block_size INTEGER NOT NULL, shares TEXT NOT NULL, dealt TEXT NOT NULL,
            last_seq INTEGER NOT NULL)
        """,
    ]

    /// The secondary indexes the service's queries need. A scratch rebuild
    /// for `verify` only inserts and compares, so it skips them.
    static let serviceIndexes = [
        "CREATE INDEX IF NOT EXISTS referrals_by_person ON referrals(person, referred_seq)",
        "CREATE INDEX IF NOT EXISTS referrals_by_state ON referrals(district, status, referred_seq)",
        "CREATE INDEX IF NOT EXISTS referrals_by_run ON referrals(run_id, referred_seq) WHERE run_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS runs_by_district ON runs(district, gk_date)",
        "CREATE INDEX IF NOT EXISTS links_by_claimant ON links(claimant)",
        "CREATE INDEX IF NOT EXISTS follow_ups_by_referral ON follow_ups(referral_id)",
        "CREATE INDEX IF NOT EXISTS shares_by_arm ON shares(district, arm, effective)",
    ]

    static func dialected(_ sql: [String], _ dialect: SQLDialect) -> [String] {
        switch dialect {
        case .sqlite:
            return sql
        case .postgres:
            return sql.map {
                $0.replacingOccurrences(of: "INTEGER", with: "BIGINT")
                    .replacingOccurrences(of: "TEXT", with: "TEXT COLLATE \"C\"")
            }
        }
    }

    static func derivedStatements(_ dialect: SQLDialect, serviceIndexes withIndexes: Bool = true) -> [String] {
        dialected(tables + (withIndexes ? serviceIndexes : []), dialect)
    }

    static func create(_ s: any SQLSession, serviceIndexes: Bool = true) throws {
        for sql in dialected([events, meta], s.dialect) + derivedStatements(s.dialect, serviceIndexes: serviceIndexes) {
            try s.exec(sql, [])
        }
        try s.exec(
            "INSERT INTO store_meta(name, value) VALUES ('schema', ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [.text(String(version))])
    }

    /// The schema version a store's derived tables were built for: a store
    /// from before `store_meta` existed is 1.
    /// Asks the catalogue first: on PostgreSQL a failed statement would abort the transaction.
    static func storedVersion(_ s: any SQLSession) -> Int {
        let probe =
            s.dialect == .sqlite
            ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'store_meta'"
            : "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'store_meta'"
        let tables: Int? = (try? s.first(probe) { $0.int(0) ?? 0 }) ?? nil
        guard (tables ?? 0) > 0 else { return 1 }
        let stored: String? = (try? s.first("SELECT value FROM store_meta WHERE name = 'schema'") { $0.text(0) ?? "" }) ?? nil
        return stored.flatMap { Int($0) } ?? 1
    }

    /// Every derived table, every index and the old layout's leftovers, dropped.
    static func dropDerived(_ s: any SQLSession) throws {
        for t in derivedTables.map(\.name) + ["store_meta"] { try s.exec("DROP TABLE IF EXISTS \(t)", []) }
    }
}
