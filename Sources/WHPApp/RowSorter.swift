import Foundation
import WHPStore

/// Sorts export rows by key in bounded memory (RULES2 R11: rows in
/// `research_id` order, so the export cannot be lined up with the log).
///
/// Rows are packed into one byte buffer with a small index beside it (an
/// array per row cost more in headers than the rows themselves). When the
/// buffer reaches `chunkBytes` its rows are sorted and written to a run file
/// in a private scratch folder; at the end the runs are merged through a
/// heap, each run read back through a small buffer. Memory is about
/// `chunkBytes` plus 64 KiB per run, whatever the export's size.
///
/// The sort is stable: rows with equal keys keep the order they came in
/// (within a chunk by position, across runs by run number), which is how one
/// person's rows stay in referral order.
package final class RowSorter {
    /// A row's place in `packed`: its key, then its bytes.
    private struct Entry { var start: Int; var keyCount: Int; var rowCount: Int }
    private var packed: [UInt8] = []
    private var entries: [Entry] = []
    private let limit: Int
    private var runs: [String] = []
    private let scratch: String

    /// The default chunk keeps an export of a million rows under a few tens of MiB.
    package init(scratchDir: String, chunkBytes: Int = 8 << 20) {
        self.scratch = scratchDir
        self.limit = max(chunkBytes, 1)
        packed.reserveCapacity(min(self.limit, 8 << 20) + (64 << 10))
    }

    deinit {
        for r in runs { unlink(r) }
        rmdir(scratch)
    }

    /// How many run files the rows so far were spilled to.
    package var runCount: Int { runs.count }

    package func add(key: ArraySlice<UInt8>, row: ArraySlice<UInt8>) throws {
        entries.append(Entry(start: packed.count, keyCount: key.count, rowCount: row.count))
        packed += key
        packed += row
        if packed.count + entries.count * MemoryLayout<Entry>.stride >= limit { try spill() }
    }

    /// The chunk's entries in key order; equal keys by position (stable).
    private func sortedEntries() -> [Entry] {
        packed.withUnsafeBufferPointer { p in
            entries.sorted { a, b in
                let c = compareBytes(p, a.start, a.keyCount, p, b.start, b.keyCount)
                return c != 0 ? c < 0 : a.start < b.start
            }
        }
    }

    private func spill() throws {
        let sorted = sortedEntries()
        if runs.isEmpty {
            guard mkdir(scratch, 0o700) == 0 || errno == EEXIST else { throw AppFailure.io("\(scratch): cannot create (\(errnoString()))") }
        }
        // A scratch file, deleted when the export ends: it needs no fsync.
        let path = scratch + "/run-\(runs.count)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AppFailure.io("\(path): cannot create (\(errnoString()))") }
        defer { close(fd) }
        runs.append(path)
        var out: [UInt8] = []
        out.reserveCapacity(1 << 20)
        for e in sorted {
            append32(e.keyCount, &out)
            out += packed[e.start..<e.start + e.keyCount]
            append32(e.rowCount, &out)
            out += packed[e.start + e.keyCount..<e.start + e.keyCount + e.rowCount]
            if out.count >= 1 << 20 { try writeAll(fd, out, path); out.removeAll(keepingCapacity: true) }
        }
        try writeAll(fd, out, path)
        packed.removeAll(keepingCapacity: true)
        entries.removeAll(keepingCapacity: true)
    }

    /// Emits every row, with its key, in key order.
    package func drain(_ emit: (_ key: ArraySlice<UInt8>, _ row: ArraySlice<UInt8>) throws -> Void) throws {
        if runs.isEmpty {
            for e in sortedEntries() {
                try emit(packed[e.start..<e.start + e.keyCount], packed[e.start + e.keyCount..<e.start + e.keyCount + e.rowCount])
            }
            packed.removeAll()
            entries.removeAll()
            return
        }
        if !entries.isEmpty { try spill() }
        var readers = try runs.map { try RunReader(path: $0) }
        var heap = MergeHeap()
        for i in readers.indices { if let r = try readers[i].next() { heap.push(MergeHead(key: r.key, row: r.row, run: i)) } }
        while let top = heap.pop() {
            try emit(top.key[...], top.row[...])
            if let r = try readers[top.run].next() { heap.push(MergeHead(key: r.key, row: r.row, run: top.run)) }
        }
    }

    private func append32(_ n: Int, _ out: inout [UInt8]) {
        out += [0, 0, 0, 0]
        BigEndian32.put(n, into: &out, at: out.count - 4)
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws {
        var done = 0
        try bytes.withUnsafeBytes { b in
            while done < b.count {
                let n = write(fd, b.baseAddress! + done, b.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw AppFailure.io("\(path): cannot write (\(errnoString()))") }
                done += n
            }
        }
    }
}

/// Three-way comparison of two byte ranges, shorter first on a common prefix.
private func compareBytes(
    _ a: UnsafeBufferPointer<UInt8>, _ aStart: Int, _ aCount: Int, _ b: UnsafeBufferPointer<UInt8>, _ bStart: Int, _ bCount: Int
) -> Int {
    let n = min(aCount, bCount)
    if n > 0 {
        let c = memcmp(a.baseAddress! + aStart, b.baseAddress! + bStart, n)
        if c != 0 { return Int(c) }
    }
    return aCount - bCount
}

/// A run's next row during the merge.
private struct MergeHead {
    var key: [UInt8]
    var row: [UInt8]
    var run: Int

    /// Key order; equal keys go to the earlier run, whose rows came first.
    func precedes(_ o: MergeHead) -> Bool {
        let c = key.withUnsafeBufferPointer { a in o.key.withUnsafeBufferPointer { b in compareBytes(a, 0, a.count, b, 0, b.count) } }
        return c != 0 ? c < 0 : run < o.run
    }
}

/// A binary min-heap of the runs' heads: each row of a merge of many runs costs
/// O(log runs), not a scan of every run.
private struct MergeHeap {
    private var items: [MergeHead] = []

    mutating func push(_ h: MergeHead) {
        items.append(h)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].precedes(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> MergeHead? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && items[l].precedes(items[m]) { m = l }
            if r < items.count && items[r].precedes(items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }
}

/// Reads a run file's records back through a 64 KiB buffer.
private struct RunReader {
    private let fd: Int32
    private let path: String
    private var buffer: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 64 << 10)
    private var start = 0
    private var eof = false

    init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AppFailure.io("\(path): cannot read back (\(errnoString()))") }
        self.path = path
    }

    private mutating func need(_ n: Int) throws -> Bool {
        while buffer.count - start < n && !eof {
            if start > 0 { buffer.removeSubrange(0..<start); start = 0 }
            let got = chunk.withUnsafeMutableBytes { b in read(fd, b.baseAddress!, b.count) }
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else { throw AppFailure.io("\(path): cannot read back (\(errnoString()))") }
            if got == 0 { eof = true; close(fd) } else { buffer += chunk[0..<got] }
        }
        return buffer.count - start >= n
    }

    private mutating func take(_ n: Int) -> [UInt8] {
        let out = Array(buffer[start..<start + n])
        start += n
        return out
    }

    private mutating func u32() throws -> Int? {
        guard try need(4) else { return nil }
        return BigEndian32.read(take(4)[...])
    }

    mutating func next() throws -> (key: [UInt8], row: [UInt8])? {
        guard let k = try u32() else { return nil }
        guard try need(k) else { throw AppFailure.io("\(path): an export run file was cut short") }
        let key = take(k)
        guard let r = try u32(), try need(r) else { throw AppFailure.io("\(path): an export run file was cut short") }
        return (key, take(r))
    }
}

func errnoString() -> String { String(cString: strerror(errno)) }

/// The 4-byte big-endian length or offset that run files and the export's
/// sorted rows carry: written and read here only.
package enum BigEndian32 {
    /// Writes `n`'s low 32 bits at `at…at+3`.
    package static func put(_ n: Int, into bytes: inout [UInt8], at: Int) {
        let v = UInt32(truncatingIfNeeded: n)
        bytes[at] = UInt8(v >> 24); bytes[at + 1] = UInt8(v >> 16 & 0xff); bytes[at + 2] = UInt8(v >> 8 & 0xff); bytes[at + 3] = UInt8(v & 0xff)
    }

    /// The value of the first four bytes of `bytes`.
    package static func read(_ bytes: ArraySlice<UInt8>) -> Int {
        let s = bytes.startIndex
        return Int(bytes[s]) << 24 | Int(bytes[s + 1]) << 16 | Int(bytes[s + 2]) << 8 | Int(bytes[s + 3])
    }
}
