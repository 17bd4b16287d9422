/* The machine's own limit for durable SQLite writes, measured in the same run
 * as whp: WAL, synchronous=FULL, one row per commit and many rows per commit.
 * Usage: bare_sqlite DBPATH SINGLE_COMMITS ROWS_IN_ONE_COMMIT */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static void must(int rc, sqlite3 *db, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) { fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db)); exit(2); }
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: bare_sqlite DB SINGLE ROWS\n"); return 2; }
    int single = atoi(argv[2]), rows = atoi(argv[3]);
    sqlite3 *db;
    must(sqlite3_open(argv[1], &db), db, "open");
    must(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                          "CREATE TABLE t(seq INTEGER PRIMARY KEY, type TEXT, payload TEXT, hash TEXT);", 0, 0, 0), db, "setup");
    sqlite3_stmt *ins;
    must(sqlite3_prepare_v2(db, "INSERT INTO t(type, payload, hash) VALUES ('referred', ?, ?)", -1, &ins, 0), db, "prepare");
    const char *payload = "{\"actor\":\"work_coach:WC1\",\"claimant\":\"5343e0cf0f9086b1d75fa17758850a72a8add5aae4c94e506c909bcd5ade65ab\",\"district\":\"devon-cornwall\",\"group\":\"disability\",\"recorded_at\":\"2018-01-01T00:00:00Z\",\"referral_date\":\"2017-11-01\",\"referral_id\":\"R1\"}";
    const char *hash = "1d481dd40e45ac5d1550da1626434ddb9a22a8007f29085fb46d8417a6887688";
    double t0 = now();
    for (int i = 0; i < single; i++) {
        must(sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), db, "begin");
        sqlite3_bind_text(ins, 1, payload, -1, SQLITE_STATIC); sqlite3_bind_text(ins, 2, hash, -1, SQLITE_STATIC);
        must(sqlite3_step(ins), db, "insert"); sqlite3_reset(ins);
        must(sqlite3_exec(db, "COMMIT", 0, 0, 0), db, "commit");
    }
    double t1 = now();
    must(sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), db, "begin");
    for (int i = 0; i < rows; i++) {
        sqlite3_bind_text(ins, 1, payload, -1, SQLITE_STATIC); sqlite3_bind_text(ins, 2, hash, -1, SQLITE_STATIC);
        must(sqlite3_step(ins), db, "insert"); sqlite3_reset(ins);
    }
    must(sqlite3_exec(db, "COMMIT", 0, 0, 0), db, "commit");
    double t2 = now();
    printf("%.1f %.1f\n", single / (t1 - t0), rows / (t2 - t1));
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return 0;
}
