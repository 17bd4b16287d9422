import Foundation

/// The store's tables. `events` is the log; every other table is derived from
/// it by `Projection` and is rebuilt and compared by `verify` (check `derived_tables`).
/// One definition serves both engines: integers widen to `BIGINT` on
/// PostgreSQL and text compares bytewise (`COLLATE "C"`), as SQLite's does,
/// so dates order the same and ordered scans of the two engines merge.
/// `referrals` is keyed by `referred_seq` (SQLite's rowid): the table is stored
/// in referral order, so the export, the pending lists and the reports read it
/// in that order without sorting; `referral_id` is unique beside it.
enum Schema {
    /// Each derived table with its primary key.
    static let derivedTables: [(name: String, key: String)] = [
        ("trial", "one"), ("referrals", "referral_id"), ("runs", "run_id"), ("strata", "stratum"), ("opt_outs", "claimant"),
    ]

    static let tables = [
        """
        CREATE TABLE IF NOT EXISTS events(
            seq INTEGER PRIMARY KEY,
            type TEXT NOT NULL,
            payload TEXT NOT NULL,
            hash TEXT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS trial(
            one INTEGER PRIMARY KEY CHECK (one = 1),
            trial_id TEXT NOT NULL, commitment TEXT NOT NULL, config_hash TEXT NOT NULL,
            method TEXT NOT NULL, block_multipliers TEXT NOT NULL,
            stratify_by_group TEXT NOT NULL, frontline_rcg TEXT NOT NULL, last_seq INTEGER NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS referrals(
            referral_id TEXT NOT NULL UNIQUE,
            referred_seq INTEGER PRIMARY KEY,
            claimant TEXT NOT NULL, district TEXT NOT NULL, grp TEXT NOT NULL, referral_date TEXT NOT NULL,
            status TEXT NOT NULL,
            cancel_reason TEXT, run_id TEXT, gk_date TEXT, rule TEXT, lottery_key TEXT,
            stratum TEXT, alloc_index INTEGER, arm TEXT, flag TEXT,
            last_seq INTEGER NOT NULL,
            claimant_n INTEGER NOT NULL)
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
    ]

    /// The secondary indexes the service's queries need; a scratch rebuild for
    /// `verify` only inserts and compares (it counts `claimant_n` itself), so
    /// it skips them.
    static let serviceIndexes = [
        "CREATE INDEX IF NOT EXISTS referrals_by_claimant ON referrals(claimant, referred_seq)",
        "CREATE INDEX IF NOT EXISTS referrals_by_state ON referrals(district, status, referred_seq)",
        "CREATE INDEX IF NOT EXISTS referrals_by_run ON referrals(run_id, referred_seq) WHERE run_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS runs_by_district ON runs(district, gk_date)",
    ]

    static func statements(_ dialect: SQLDialect, serviceIndexes withIndexes: Bool = true) -> [String] {
        let all = tables + (withIndexes ? serviceIndexes : [])
        switch dialect {
        case .sqlite:
            return all
        case .postgres:
            return all.map {
                $0.replacingOccurrences(of: "INTEGER", with: "BIGINT")
                    .replacingOccurrences(of: "TEXT", with: "TEXT COLLATE \"C\"")
            }
        }
    }

    static func create(_ s: any SQLSession, serviceIndexes: Bool = true) throws {
        for sql in statements(s.dialect, serviceIndexes: serviceIndexes) { try s.exec(sql, []) }
    }

    /// Brings a store made by an earlier whp up to this schema, in one write
    /// transaction; a no-op on a current store. So far one step: `referrals`
    /// gained `claimant_n` (the claimant's referral number, which the export
    /// used to count per row), back-filled here by the same count.
    static func upgrade(_ backend: any StoreBackend) throws {
        let current = (try? backend.transaction(.read, retry: false) { s -> Bool in
            try s.query("SELECT claimant_n FROM referrals LIMIT 0", []) { _ in }
            return true
        }) ?? false
        if current { return }
        try backend.transaction(.write, retry: false) { s in
            try s.exec("ALTER TABLE referrals ADD COLUMN claimant_n INTEGER NOT NULL DEFAULT 0", [])
            try s.exec("""
                UPDATE referrals SET claimant_n = (SELECT COUNT(*) FROM referrals p
                    WHERE p.claimant = referrals.claimant AND p.referred_seq <= referrals.referred_seq)
                """, [])
        }
    }
}
