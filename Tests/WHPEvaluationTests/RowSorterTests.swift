import Foundation
import Testing
import WHPApp

/// The export's external sort (RULES2 R11): the rows come out in key order,
/// equal keys in the order they went in, whether they stayed in memory or
/// went through many run files and the merge.
struct RowSorterTests {
    /// A reproducible stream of rows: few distinct keys (so ties are common and
    /// stability is tested), rows of varying length numbered by arrival.
    static func rows(_ n: Int, seed: UInt64) -> [(key: [UInt8], row: [UInt8])] {
        var s = seed
        func next() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        return (0..<n).map { i in
            let k = Int(next() % 37)
            let key = Array(String(format: "%016x", k * 0x1234_5678_9ab).utf8)
            let row = Array("row \(i) of key \(k) \(String(repeating: "x", count: Int(next() % 40)))\n".utf8)
            return (key, row)
        }
    }

    static func sorted(_ chunkBytes: Int, _ input: [(key: [UInt8], row: [UInt8])], scratch: String) throws -> ([[UInt8]], Int) {
        let sorter = RowSorter(scratchDir: scratch, chunkBytes: chunkBytes)
        for r in input { try sorter.add(key: r.key[...], row: r.row[...]) }
        var out: [[UInt8]] = []
        try sorter.drain { key, row in
            #expect(row.starts(with: Array("row ".utf8)) && key.count == 16)
            out.append(Array(row))
        }
        return (out, sorter.runCount)
    }

    /// The reference: Swift's sort over (key, arrival), which is stable by construction.
    static func expected(_ input: [(key: [UInt8], row: [UInt8])]) -> [[UInt8]] {
        input.enumerated().sorted { a, b in
            a.element.key != b.element.key ? a.element.key.lexicographicallyPrecedes(b.element.key) : a.offset < b.offset
        }.map(\.element.row)
    }

    @Test(arguments: [1 << 30, 4096, 700, 1])
    func rowsComeOutInKeyOrderStably(chunkBytes: Int) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("whp-sort-\(UUID().uuidString)").path
        let input = Self.rows(3000, seed: UInt64(chunkBytes))
        let (out, runs) = try Self.sorted(chunkBytes, input, scratch: scratch)
        #expect(out == Self.expected(input))
        if chunkBytes == 1 << 30 { #expect(runs == 0) } else { #expect(runs > 10, "a small chunk spills to many run files") }
        // The scratch folder and its run files are gone once the sorter is.
        #expect(!FileManager.default.fileExists(atPath: scratch))
    }

    /// A run file is read back through a 64 KiB buffer: rows larger than it,
    /// and rows that straddle its refills, come back whole and in order.
    @Test func rowsLongerThanTheReadBufferComeBackWhole() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("whp-sort-\(UUID().uuidString)").path
        let input: [(key: [UInt8], row: [UInt8])] = (0..<40).map { i in
            let key = Array(String(format: "%016x", (i * 7) % 5).utf8)
            let row = Array("row \(i) ".utf8) + [UInt8](repeating: UInt8(0x41 + i % 26), count: i % 3 == 0 ? 200_000 : 30_001 + i)
            return (key, row)
        }
        let (out, runs) = try Self.sorted(150_000, input, scratch: scratch)
        #expect(runs > 5)
        #expect(out == Self.expected(input))
    }

    @Test func emptyInputGivesNoRows() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("whp-sort-\(UUID().uuidString)").path
        let (out, runs) = try Self.sorted(1, [], scratch: scratch)
        #expect(out.isEmpty && runs == 0)
    }
}
