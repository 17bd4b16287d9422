import Foundation
import WHPStore

/// Sorts export rows by a fixed-width key in bounded memory (RULES2 R11:
/// rows in `research_id` order, so the export cannot be lined up with the
/// log). Rows come in chunks that are sorted in memory; a chunk that grows
/// past `chunkBytes` is written to a run file in a private scratch folder,
/// and the runs are merged at the end. The sort is stable: rows with equal
/// keys keep the order they came in, which is how one person's rows stay in
/// referral order.
final class RowSorter {
    private struct Row { var key: [UInt8]; var bytes: [UInt8]; var order: Int }
    private var chunk: [Row] = []
    private var chunkBytes = 0
    private let limit: Int
    private var runs: [String] = []
    private var order = 0
    private let scratch: String

    init(scratchDir: String, chunkBytes: Int = 32 << 20) {
        self.scratch = scratchDir
        self.limit = chunkBytes
    }

    deinit {
        for r in runs { unlink(r) }
        rmdir(scratch)
    }

    func add(key: ArraySlice<UInt8>, row: ArraySlice<UInt8>) throws {
        chunk.append(Row(key: Array(key), bytes: Array(row), order: order))
        order += 1
        chunkBytes += key.count + row.count + 64
        if chunkBytes >= limit { try spill() }
    }

    private func sortChunk() {
        chunk.sort { a, b in
            a.key.lexicographicallyPrecedes(b.key) || (a.key == b.key && a.order < b.order)
        }
    }

    private func spill() throws {
        sortChunk()
        if runs.isEmpty {
            guard mkdir(scratch, 0o700) == 0 || errno == EEXIST else { throw AppFailure.io("\(scratch): cannot create (\(errnoString()))") }
        }
        let path = scratch + "/run-\(runs.count)"
        var out: [UInt8] = []
        out.reserveCapacity(chunkBytes)
        for r in chunk {
            append32(UInt32(r.key.count), &out); out += r.key
            append32(UInt32(r.bytes.count), &out); out += r.bytes
        }
        do { try writeDurably(path, out, mode: 0o600) } catch { throw AppFailure.io(error.description) }
        runs.append(path)
        chunk.removeAll(keepingCapacity: true)
        chunkBytes = 0
    }

    /// Emits every row in key order.
    func drain(_ emit: (ArraySlice<UInt8>) throws -> Void) throws {
        if runs.isEmpty {
            sortChunk()
            for r in chunk { try emit(r.bytes[...]) }
            chunk.removeAll()
            return
        }
        if !chunk.isEmpty { try spill() }
        var readers = try runs.map { try RunReader(path: $0) }
        var heads: [(key: [UInt8], row: [UInt8])?] = try readers.indices.map { try readers[$0].next() }
        while true {
            var best: Int?
            for i in heads.indices {
                guard let h = heads[i] else { continue }
                if let b = best, let hb = heads[b], !h.key.lexicographicallyPrecedes(hb.key) { continue }
                best = i  // ties go to the earlier run: rows came to earlier runs first
            }
            guard let b = best else { break }
            try emit(heads[b]!.row[...])
            heads[b] = try readers[b].next()
        }
    }

    private func append32(_ n: UInt32, _ out: inout [UInt8]) {
        out.append(UInt8(n >> 24)); out.append(UInt8(n >> 16 & 0xff)); out.append(UInt8(n >> 8 & 0xff)); out.append(UInt8(n & 0xff))
    }
}

/// Reads a run file's records back, a buffer at a time.
private struct RunReader {
    let handle: FileHandle
    var buffer: [UInt8] = []
    var start = 0
    var eof = false

    init(path: String) throws {
        guard let h = FileHandle(forReadingAtPath: path) else { throw AppFailure.io("\(path): cannot read back") }
        handle = h
    }

    private mutating func need(_ n: Int) -> Bool {
        while buffer.count - start < n && !eof {
            if start > 0 { buffer.removeSubrange(0..<start); start = 0 }
            let d = handle.readData(ofLength: 1 << 20)
            if d.isEmpty { eof = true } else { buffer += d }
        }
        return buffer.count - start >= n
    }

    private mutating func take(_ n: Int) -> [UInt8] {
        let out = Array(buffer[start..<start + n])
        start += n
        return out
    }

    private mutating func u32() -> Int? {
        guard need(4) else { return nil }
        let b = take(4)
        return Int(b[0]) << 24 | Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
    }

    mutating func next() throws -> (key: [UInt8], row: [UInt8])? {
        guard let k = u32() else { return nil }
        guard need(k) else { throw AppFailure.io("an export run file was cut short") }
        let key = take(k)
        guard let r = u32(), need(r) else { throw AppFailure.io("an export run file was cut short") }
        return (key, take(r))
    }
}

func errnoString() -> String { String(cString: strerror(errno)) }
