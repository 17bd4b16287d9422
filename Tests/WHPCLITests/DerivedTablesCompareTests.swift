import Foundation
import Testing

@testable import WHPStore

/// `verify`'s derived-table comparison merges the store's table and its
/// rebuild in key order, a page at a time (`TablePager`). Here the pages are
/// cut small enough that every kind of difference falls on a page edge, with
/// keys that are prefixes of each other, hold a NUL, or a byte above ASCII.
struct DerivedTablesCompareTests {
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
