import WHPJSON

/// The events of an audit bundle (`events.jsonl`, CLI.md), read line by line
/// into an `AuditVerifier`. Pure: the bytes come from the caller (a file, a
/// fuzzer, a test), so the same reader judges every source.
///
/// It is total like the verifier: a line that is not one `{seq, type,
/// payload, hash}` object with a flat string payload, or that is longer than
/// `maxLineBytes`, is an event whose payload did not parse, at the next seq
/// (`chain` fails there), and reading goes on.
public struct BundleReader {
    /// The longest line read as an event. An honest event line is well under
    /// 4 KiB (the longest payload, `trial_started`, about 700 bytes); a longer
    /// one is judged unparsable without being held in memory.
    public static let maxLineBytes = 1 << 20

    public private(set) var verifier: AuditVerifier
    /// Events read (every non-empty line counts as one).
    public private(set) var events = 0
    /// The stored hash of the last line that parsed.
    public private(set) var head = ""
    /// The stored hash of the event at `checkpointSeq`, once read.
    public private(set) var checkpointHash: String?
    public let checkpointSeq: Int?

    public init(verifier: AuditVerifier, checkpointSeq: Int? = nil) {
        self.verifier = verifier
        self.checkpointSeq = checkpointSeq
    }

    /// One line, without its `\n` (an empty line is skipped).
    public mutating func line(_ bytes: ArraySlice<UInt8>) {
        guard !bytes.isEmpty else { return }
        guard bytes.count <= Self.maxLineBytes, let e = Self.parse(bytes) else {
            unparsable()
            return
        }
        verifier.consume(seq: e.seq, type: e.type, payload: e.payload, storedHash: e.hash)
        events += 1
        head = e.hash
        if e.seq == checkpointSeq { checkpointHash = e.hash }
    }

    /// A line that was too long to read (its bytes were skipped).
    public mutating func unparsable() {
        // `events` counts lines, so `events + 1` cannot overflow before memory runs out.
        verifier.consume(seq: events + 1, type: "", payload: nil, storedHash: "")
        events += 1
    }

    public mutating func finish() -> AuditReport {
        verifier.finish(events: events, head: head)
    }

    /// `{seq, type, payload, hash}`: nil unless the line is one JSON object
    /// with an integer `seq` and string `type` and `hash`. The payload is nil
    /// when it is not an object of strings (the verifier fails `chain` there).
    static func parse(_ bytes: ArraySlice<UInt8>) -> (seq: Int, type: String, payload: [String: String]?, hash: String)? {
        guard let obj = try? JSON.parse(bytes).objectValue, let seq = obj["seq"]?.intValue,
            let type = obj["type"]?.stringValue, let hash = obj["hash"]?.stringValue,
            let payloadObj = obj["payload"]?.objectValue
        else { return nil }
        var payload: [String: String]? = [:]
        payload?.reserveCapacity(payloadObj.count)
        for (k, v) in payloadObj.entries {
            guard let s = v.stringValue else {
                payload = nil
                break
            }
            payload?[k] = s
        }
        return (seq, type, payload, hash)
    }
}

/// Splits a byte stream into lines at `\n`, whatever the chunks it arrives
/// in, without holding more than `limit` bytes of any line: a longer line is
/// reported as `.overlong` and its bytes are dropped as they come. Each byte
/// is looked at once, so a line of any length costs linear time.
public struct BundleLineFramer {
    public enum Item: Equatable {
        case line(ArraySlice<UInt8>)
        case overlong
    }

    public let limit: Int
    private var pending: [UInt8] = []
    private var discarding = false

    public init(limit: Int = BundleReader.maxLineBytes) {
        self.limit = max(limit, 0)
    }

    /// Feeds the next chunk; `emit` gets each line completed in it.
    public mutating func feed(_ chunk: UnsafeBufferPointer<UInt8>, _ emit: (Item) -> Void) {
        var start = 0
        let n = chunk.count
        while start < n {
            var nl = start
            while nl < n && chunk[nl] != 0x0a { nl += 1 }
            let piece = UnsafeBufferPointer(rebasing: chunk[start..<nl])
            if !discarding {
                if pending.count + piece.count > limit {
                    discarding = true
                    pending.removeAll(keepingCapacity: false)
                } else {
                    pending.append(contentsOf: piece)
                }
            }
            guard nl < n else { return }
            // The line ends here.
            if discarding {
                emit(.overlong)
                discarding = false
            } else {
                emit(.line(pending[...]))
                pending.removeAll(keepingCapacity: true)
            }
            start = nl + 1
        }
    }

    public mutating func feed(_ chunk: [UInt8], _ emit: (Item) -> Void) {
        chunk.withUnsafeBufferPointer { feed($0, emit) }
    }

    /// The end of the stream: a last line without `\n` still counts.
    public mutating func end(_ emit: (Item) -> Void) {
        if discarding {
            emit(.overlong)
        } else if !pending.isEmpty {
            emit(.line(pending[...]))
        }
        discarding = false
        pending.removeAll()
    }
}

extension BundleReader {
    /// Reads a whole `events.jsonl` held in memory (the fuzzer's and the tests' door).
    public mutating func read(_ bytes: [UInt8]) {
        var framer = BundleLineFramer()
        framer.feed(bytes) { take($0) }
        framer.end { take($0) }
    }

    public mutating func take(_ item: BundleLineFramer.Item) {
        switch item {
        case .line(let bytes): line(bytes)
        case .overlong: unparsable()
        }
    }
}
