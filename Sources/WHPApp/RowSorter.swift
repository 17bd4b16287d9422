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
    /// A row's place in `packed`: its key, then its bytes. `prefix` is the
    /// key's first 8 bytes, big-endian and zero-padded: it orders two keys as
    /// their bytes do whenever the two prefixes differ, so most comparisons
    /// of a sort over random research ids are one integer comparison.
    private struct Entry { var prefix: UInt64; var start: Int; var keyCount: Int; var rowCount: Int }
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
        entries.append(Entry(prefix: keyPrefix(key), start: packed.count, keyCount: key.count, rowCount: row.count))
        packed += key
        packed += row
        if packed.count + entries.count * MemoryLayout<Entry>.stride >= limit { try spill() }
    }

    /// The chunk's entries in key order; equal keys by position (stable).
    private func sortedEntries() -> [Entry] {
        packed.withUnsafeBufferPointer { p in
            entries.sorted { a, b in
                if a.prefix != b.prefix { return a.prefix < b.prefix }
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
        // Each run's next record stays in its reader's buffer; the heap holds
        // run numbers, so the merge copies a row only into `emit`'s output.
        let readers = try runs.map { try RunReader(path: $0) }
        var heap = MergeHeap(readers: readers)
        for i in readers.indices where try readers[i].advance() { heap.push(i, prefix: keyPrefix(readers[i].key)) }
        while let top = heap.pop() {
            let r = readers[top]
            try emit(r.key, r.row)
            if try r.advance() { heap.push(top, prefix: keyPrefix(r.key)) }
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

/// A key's first 8 bytes, big-endian, zero-padded: when two keys' prefixes
/// differ, they order the keys as the keys' bytes do (a zero pad sorts before
/// any byte, as a shorter key does); when they are equal, the bytes decide.
private func keyPrefix(_ key: ArraySlice<UInt8>) -> UInt64 {
    var prefix: UInt64 = 0
    for (i, b) in key.prefix(8).enumerated() { prefix |= UInt64(b) << (56 - 8 * i) }
    return prefix
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

/// A binary min-heap of run numbers, ordered by each run's current record:
/// each row of a merge of many runs costs O(log runs), not a scan of every
/// run. Each entry carries its record's key prefix, so the readers' buffers
/// are compared only when two prefixes tie.
private struct MergeHeap {
    private struct Item { var prefix: UInt64; var run: Int }
    private let readers: [RunReader]
    private var items: [Item] = []

    init(readers: [RunReader]) {
        self.readers = readers
        items.reserveCapacity(readers.count)
    }

    /// Key order; equal keys go to the earlier run, whose rows came first.
    private func precedes(_ a: Item, _ b: Item) -> Bool {
        if a.prefix != b.prefix { return a.prefix < b.prefix }
        let c = readers[a.run].compareKey(with: readers[b.run])
        return c != 0 ? c < 0 : a.run < b.run
    }

    mutating func push(_ run: Int, prefix: UInt64) {
        items.append(Item(prefix: prefix, run: run))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard precedes(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Int? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && precedes(items[l], items[m]) { m = l }
            if r < items.count && precedes(items[r], items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top.run
    }
}

/// Reads a run file's records back through a 64 KiB buffer (larger only for
/// a record that needs it). The current record (`key`, `row`) is a slice of
/// that buffer, valid until `advance`.
private final class RunReader {
    private let fd: Int32
    private let path: String
    /// Bytes `start..<end` are read and not yet consumed.
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)
    private var start = 0
    private var end = 0
    private var eof = false
    private var keyRange = 0..<0
    private var rowRange = 0..<0

    init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AppFailure.io("\(path): cannot read back (\(errnoString()))") }
        self.path = path
    }

    deinit { if !eof { close(fd) } }

    var key: ArraySlice<UInt8> { buffer[keyRange] }
    var row: ArraySlice<UInt8> { buffer[rowRange] }

    func compareKey(with other: RunReader) -> Int {
        buffer.withUnsafeBufferPointer { a in
            other.buffer.withUnsafeBufferPointer { b in
                compareBytes(a, keyRange.lowerBound, keyRange.count, b, other.keyRange.lowerBound, other.keyRange.count)
            }
        }
    }

    /// Whether `n` bytes from `start` are in the buffer, moving what is left
    /// to the front and reading more as needed; false at the end of the file.
    private func need(_ n: Int) throws -> Bool {
        while end - start < n && !eof {
            if start > 0 {
                let (s, e) = (start, end)
                buffer.withUnsafeMutableBufferPointer { b in
                    if e > s { _ = memmove(b.baseAddress!, b.baseAddress! + s, e - s) }
                }
                end -= start
                start = 0
            }
            if buffer.count < n { buffer += [UInt8](repeating: 0, count: n - buffer.count) }
            let at = end
            var got = 0
            repeat {
                got = buffer.withUnsafeMutableBytes { b in read(fd, b.baseAddress! + at, b.count - at) }
            } while got < 0 && errno == EINTR
            guard got >= 0 else { throw AppFailure.io("\(path): cannot read back (\(errnoString()))") }
            if got == 0 { eof = true; close(fd) }
            end += got
        }
        return end - start >= n
    }

    /// Moves to the next record; false (and no current record) at the end.
    func advance() throws -> Bool {
        guard try need(4) else { return false }
        let k = BigEndian32.read(buffer[start..<start + 4])
        guard try need(8 + k) else { throw AppFailure.io("\(path): an export run file was cut short") }
        let r = BigEndian32.read(buffer[(start + 4 + k)..<(start + 8 + k)])
        guard try need(8 + k + r) else { throw AppFailure.io("\(path): an export run file was cut short") }
        keyRange = (start + 4)..<(start + 4 + k)
        rowRange = (start + 8 + k)..<(start + 8 + k + r)
        start += 8 + k + r
        return true
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
