import WHPCrypto
import WHPJSON
/// One entry of the log: `n`, its type and its flat string payload (ALLOCATION.md §7).
public struct Event: Sendable, Equatable {
    public var seq: Int
    public var type: String
    public var payload: [String: String]

    public init(seq: Int, type: String, payload: [String: String]) {
        self.seq = seq; self.type = type; self.payload = payload
    }

    public init(seq: Int, type: EventType, payload: [String: String]) {
        self.init(seq: seq, type: type.rawValue, payload: payload)
    }

    public var eventType: EventType? { EventType(rawValue: type) }

    public subscript(key: String) -> String? { payload[key] }

    /// Payload keys in the spec's order: by UTF-8 bytes.
    public var sortedKeys: [String] { payload.keys.sorted { $0.utf8Precedes($1) } }

    /// `E_n`, the bytes that are hashed into the chain.
    public var encoded: [UInt8] { encoded(sortedPairs: sortedPairs) }

    /// The payload's entries in the spec's key order, sorted once: the hashed
    /// encoding and the stored JSON both walk them, with no lookup per key.
    public var sortedPairs: [(key: String, value: String)] { payload.sorted { $0.key.utf8Precedes($1.key) } }

    /// `E_n` from `sortedPairs` (callers that also store the payload sort once).
    public func encoded(sortedPairs: [(key: String, value: String)]) -> [UInt8] {
        Event.encoded(seq: seq, type: type, sortedPairs: sortedPairs)
    }

    /// `E_n` of the event `seq` of `type` whose payload's entries, in key
    /// order, are `sortedPairs` (`TrialEvent.sortedPairs`): no map needed.
    public static func encoded(seq: Int, type: String, sortedPairs: [(key: String, value: String)]) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + sortedPairs.count * 48)
        w.enc("whp/event/v1")
        w.u64(UInt64(seq))
        w.enc(type)
        w.u32(UInt32(sortedPairs.count))
        for (k, v) in sortedPairs {
            w.enc(k)
            w.enc(v)
        }
        return w.bytes
    }
}

/// The hash chain of ALLOCATION.md §7.
public enum Chain {
    /// `h_n = H(h_{n−1} ‖ E_n)`.
    public static func next(previous: Bytes32, event: Event) -> Bytes32 {
        next(previous: previous, encoded: event.encoded)
    }

    /// `h_0` for a log whose first event is `event`: nil unless it is a
    /// `trial_started` carrying `trial_id` and a hex `commitment`.
    public static func genesis(of event: Event) -> Bytes32? {
        guard event.eventType == .trialStarted, let trialID = event.payload["trial_id"],
            let commitment = event.payload["commitment"].flatMap(Bytes32.init(hex:))
        else { return nil }
        return Derivation.genesis(trialID: trialID, commitment: commitment)
    }

    public static func next(previous: Bytes32, encoded: [UInt8]) -> Bytes32 {
        var bytes = previous.bytes
        bytes.append(contentsOf: encoded)
        return Crypto.sha256(bytes)
    }
}

/// The newest event's position: what a writer appends after and a checkpoint records.
public struct ChainHead: Sendable, Equatable {
    public var seq: Int
    public var hash: Bytes32
    public var recordedAt: Instant?
    public init(seq: Int, hash: Bytes32, recordedAt: Instant? = nil) {
        self.seq = seq; self.hash = hash; self.recordedAt = recordedAt
    }
}
