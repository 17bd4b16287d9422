// Strict JSON (RFC 8259) parsing and compact, deterministic JSON writing for the
// whp JSON Lines wire protocol.
//
// Why a hand-written parser: the protocol requires rejecting inputs that common
// parsers silently accept (duplicate keys, a byte-order mark, invalid UTF-8,
// lone surrogates, over-deep nesting), and every such input must be reported
// as `bad_json` rather than being "repaired". Numbers are kept as their exact
// source text because the protocol only accepts integer literals where it
// accepts numbers; we must never round-trip through `Double`.
//
// Everything works over raw UTF-8 bytes; no Foundation.

// MARK: - Errors

/// A JSON parse failure. The protocol layer maps every one of these to `bad_json`;
/// `message` is a short human-readable reason suitable for the error response.
public struct JSONParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Short human-readable reason, e.g. `duplicate key "a"` or `unexpected character at byte 17`.
    public let message: String
    /// 0-based byte offset into the input where the problem was detected, when meaningful.
    public let offset: Int?

    public init(_ message: String, offset: Int? = nil) {
        self.message = message
        self.offset = offset
    }

    public var description: String { message }
}

// MARK: - Model

/// A JSON number, kept exactly as written.
///
/// The protocol accepts only integer literals for numeric fields (no fraction, no
/// exponent), so `1.0` and `1e2` are *not* integers even though they denote integral
/// values; callers use `intValue` and treat `nil` as a type error.
public struct JSONNumber: Hashable, Sendable, CustomStringConvertible {
    /// The number's source text (a valid RFC 8259 number).
    public let text: String
    /// True when the literal has no fraction part and no exponent (`-0` included).
    public let isInteger: Bool

    @usableFromInline
    init(unchecked text: String, isInteger: Bool) {
        self.text = text
        self.isInteger = isInteger
    }

    public init(_ value: Int) {
        self.text = String(value)
        self.isInteger = true
    }

    /// Creates a number from literal text; `nil` unless `text` is exactly one valid JSON number.
    public init?(text: String) {
        var t = text
        let r: (Bool, Bool) = t.withUTF8 { b in
            guard let base = b.baseAddress, !b.isEmpty else { return (false, false) }
            var p = _JSONParser(p: base, n: b.count, maxDepth: 0)
            do {
                let isInt = try p.scanNumber()
                return (p.i == b.count, isInt)
            } catch {
                return (false, false)
            }
        }
        guard r.0 else { return nil }
        self.text = text
        self.isInteger = r.1
    }

    /// The value, only for integer literals that fit in `Int` (64-bit); otherwise `nil`.
    /// `"1.0"`, `"1e2"` and `"99999999999999999999999"` all give `nil`; `"-0"` gives 0.
    public var intValue: Int? {
        isInteger ? Int(text) : nil
    }

    public var description: String { text }
}

/// A parsed JSON document.
///
/// Equality compares strings and keys by their UTF-8 bytes (not by Swift's
/// canonical-equivalence `String ==`), and objects as unordered key sets.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

/// A JSON object: keys in document order, unique by UTF-8 bytes.
///
/// Request objects are small, so lookup is a linear scan; that is faster than hashing
/// at these sizes and keeps document order for free.
public struct JSONObject: Sendable {
    /// Entries in document (or insertion) order. Keys are unique.
    public private(set) var entries: [(key: String, value: JSONValue)]

    public init() { entries = [] }

    /// Builds an object from pairs in order; a repeated key replaces the earlier value
    /// (in the earlier position), so the result never holds duplicate keys.
    public init(_ pairs: [(String, JSONValue)]) {
        entries = []
        entries.reserveCapacity(pairs.count)
        for (k, v) in pairs { self[k] = v }
    }

    @usableFromInline
    init(uncheckedEntries: [(key: String, value: JSONValue)]) {
        entries = uncheckedEntries
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }
    public var keys: [String] { entries.map { $0.key } }

    /// Position of `key` in `entries` (UTF-8 byte comparison).
    @inlinable
    public func index(forKey key: String) -> Int? {
        for j in entries.indices where _utf8Equal(entries[j].key, key) { return j }
        return nil
    }

    /// Value for `key`, or `nil` if absent. Setting `nil` removes the key; setting an
    /// existing key replaces its value in place; a new key is appended.
    public subscript(key: String) -> JSONValue? {
        get {
            guard let j = index(forKey: key) else { return nil }
            return entries[j].value
        }
        set {
            if let j = index(forKey: key) {
                if let v = newValue { entries[j].value = v } else { entries.remove(at: j) }
            } else if let v = newValue {
                entries.append((key: key, value: v))
            }
        }
    }
}

extension JSONObject: Equatable {
    /// Unordered comparison: same key set (by bytes) and equal values.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.entries.count == rhs.entries.count else { return false }
        for (j, e) in lhs.entries.enumerated() {
            // Fast path: same position.
            if _utf8Equal(rhs.entries[j].key, e.key) {
                if rhs.entries[j].value != e.value { return false }
                continue
            }
            guard let v = rhs[e.key], v == e.value else { return false }
        }
        return true
    }
}

extension JSONValue: Equatable {
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return _utf8Equal(a, b)
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)): return a == b
        default: return false
        }
    }
}

extension JSONValue {
    /// Convenience: an integer number value.
    public static func int(_ i: Int) -> JSONValue { .number(JSONNumber(i)) }

    /// Member lookup when this is an object; `nil` otherwise or when absent.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var isNull: Bool { if case .null = self { return true }; return false }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var numberValue: JSONNumber? { if case .number(let n) = self { return n }; return nil }
    /// Non-nil only for an integer literal that fits in `Int` (see `JSONNumber.intValue`).
    public var intValue: Int? { if case .number(let n) = self { return n.intValue }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: JSONObject? { if case .object(let o) = self { return o }; return nil }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(JSONNumber(value)) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(JSONObject(elements))
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self.init(elements) }
}

extension JSONValue: CustomStringConvertible {
    /// Compact JSON text.
    public var description: String { String(decoding: JSON.encode(self), as: UTF8.self) }
}

/// Byte-wise string equality. Swift's `String ==` uses canonical equivalence
/// ("é" == "e\u{301}"), but JSON keys and values are distinct code-point sequences.
@inlinable @inline(__always)
func _utf8Equal(_ a: String, _ b: String) -> Bool {
    // `==` is a fast rejection (byte-equal strings are always canonically equal);
    // the byte comparison then rules out canonically-equal-but-different spellings.
    a.utf8.count == b.utf8.count && a == b && a.utf8.elementsEqual(b.utf8)
}

// MARK: - Entry points

/// Namespace for strict parsing and encoding.
public enum JSON {
    /// Default maximum nesting of arrays/objects accepted by the protocol.
    public static let defaultMaxDepth = 64
    /// Hard cap applied to any `maxDepth` argument. Parsing itself is iterative, but
    /// destroying, comparing or encoding a `JSONValue` tree recurses per level (a tree
    /// ~100k levels deep overflows the stack just being released). 256 levels fits a
    /// 512 KiB thread stack even in an unoptimised build (measured: ~1 KiB per level in
    /// `-Onone` encoding); the protocol itself only allows 64.
    public static let hardMaxDepth = 256

    /// Parses one JSON text (one protocol line, without or with trailing whitespace).
    ///
    /// Rejects: empty/whitespace-only input, a leading BOM, invalid UTF-8 anywhere,
    /// any deviation from RFC 8259, duplicate keys at any depth (compared after
    /// unescaping), nesting deeper than `maxDepth`, and trailing non-whitespace.
    /// The parser is iterative, so hostile nesting cannot exhaust the stack; `maxDepth`
    /// is clamped to `hardMaxDepth`.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (b) throws(JSONParseError) -> JSONValue in
            try parse(buffer: b, maxDepth: maxDepth)
        }
    }

    public static func parse(_ bytes: ArraySlice<UInt8>, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (b) throws(JSONParseError) -> JSONValue in
            try parse(buffer: b, maxDepth: maxDepth)
        }
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try parse(buffer: bytes.assumingMemoryBound(to: UInt8.self), maxDepth: maxDepth)
    }

    /// Convenience for tests and tools. (A Swift `String` is always valid UTF-8.)
    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        var t = text
        let r = t.withUTF8 { b -> Result<JSONValue, JSONParseError> in
            do throws(JSONParseError) { return .success(try parse(buffer: b, maxDepth: maxDepth)) } catch {
                return .failure(error)
            }
        }
        return try r.get()
    }

    /// Any byte collection; uses contiguous storage when available, otherwise copies.
    public static func parse<C: Collection>(bytes: C, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue
    where C.Element == UInt8 {
        let r: Result<JSONValue, JSONParseError>? = bytes.withContiguousStorageIfAvailable { b in
            do throws(JSONParseError) { return .success(try parse(buffer: b, maxDepth: maxDepth)) } catch {
                return .failure(error)
            }
        }
        if let r { return try r.get() }
        return try parse(Array(bytes), maxDepth: maxDepth)
    }

    /// Parses an object whose values are all strings (e.g. a stored flat map).
    /// Errors on any non-string value, nesting, or a duplicate key. Because the result is a
    /// Swift dictionary, keys that are canonically equivalent (e.g. "é" vs "e\u0301") are
    /// also reported as duplicates rather than silently merged.
    public static func parseFlatStringMap(_ bytes: [UInt8]) throws(JSONParseError) -> [String: String] {
        try bytes.withUnsafeBufferPointer { (b) throws(JSONParseError) -> [String: String] in
            try parseFlatStringMap(buffer: b)
        }
    }

    public static func parseFlatStringMap(_ bytes: ArraySlice<UInt8>) throws(JSONParseError) -> [String: String] {
        try bytes.withUnsafeBufferPointer { (b) throws(JSONParseError) -> [String: String] in
            try parseFlatStringMap(buffer: b)
        }
    }

    /// Compact encoding. `sortKeys` orders every object's keys by UTF-8 bytes (canonical
    /// form, e.g. for hashing); otherwise document/insertion order is kept.
    public static func encode(_ value: JSONValue, sortKeys: Bool = false) -> [UInt8] {
        var w = JSONWriter()
        w.value(value, sortKeys: sortKeys)
        return w.bytes
    }

    /// Encodes a flat string map as an object with keys sorted by UTF-8 bytes.
    public static func encodeFlatStringMap(_ map: [String: String]) -> [UInt8] {
        let sorted = map.sorted { utf8Precedes($0.key, $1.key) }
        var w = JSONWriter(capacity: 16 + map.count * 32)
        w.beginObject()
        for (k, v) in sorted {
            w.key(k)
            w.string(v)
        }
        w.endObject()
        return w.bytes
    }

    /// Encodes pairs as an object with keys sorted by UTF-8 bytes. Keys should be unique;
    /// if a key repeats (byte-equal), the last occurrence wins so the output stays valid.
    public static func encodeFlatStringMap(_ pairs: [(String, String)]) -> [UInt8] {
        // Stable sort by key bytes, keeping original order among equal keys.
        let order = pairs.indices.sorted { a, b in
            if utf8Precedes(pairs[a].0, pairs[b].0) { return true }
            if utf8Precedes(pairs[b].0, pairs[a].0) { return false }
            return a < b
        }
        var w = JSONWriter(capacity: 16 + pairs.count * 32)
        w.beginObject()
        var k = 0
        while k < order.count {
            var last = order[k]
            while k + 1 < order.count, _utf8Equal(pairs[order[k + 1]].0, pairs[last].0) {
                k += 1
                last = order[k]
            }
            w.key(pairs[last].0)
            w.string(pairs[last].1)
            k += 1
        }
        w.endObject()
        return w.bytes
    }

    /// Key order used for canonical output: unsigned byte-wise comparison of the UTF-8
    /// encodings, a proper prefix first. (Swift's `String <` is not byte order for all input.)
    @inlinable
    public static func utf8Precedes(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    // MARK: internals

    @usableFromInline
    static func preflight(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> UnsafePointer<UInt8> {
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            throw JSONParseError("empty input", offset: 0)
        }
        let n = buffer.count
        // A BOM is valid UTF-8 but not valid JSON text for the protocol (RFC 8259 §8.1).
        if n >= 3 && base[0] == 0xEF && base[1] == 0xBB && base[2] == 0xBF {
            throw JSONParseError("byte-order mark", offset: 0)
        }
        if let bad = _validateUTF8(base, n) {
            throw JSONParseError("invalid UTF-8 at byte \(bad)", offset: bad)
        }
        return base
    }

    @usableFromInline
    static func parse(buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int) throws(JSONParseError) -> JSONValue {
        let base = try preflight(buffer)
        var p = _JSONParser(p: base, n: buffer.count, maxDepth: maxDepth)
        return try p.parseDocument()
    }

    @usableFromInline
    static func parseFlatStringMap(buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> [String: String] {
        let base = try preflight(buffer)
        var p = _JSONParser(p: base, n: buffer.count, maxDepth: 1)
        return try p.parseFlatStringMap()
    }
}

// MARK: - UTF-8 validation

/// Returns the offset of the first byte of the first ill-formed sequence, or nil.
/// Follows Unicode Table 3-7 (well-formed byte sequences): rejects overlongs (C0, C1,
/// E0 80..9F, F0 80..8F), UTF-8-encoded surrogates (ED A0..BF), > U+10FFFF (F4 90.., F5..FF),
/// stray continuation bytes and truncated sequences.
@usableFromInline
func _validateUTF8(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int? {
    var i = 0
    let raw = UnsafeRawPointer(p)
    while i < n {
        // ASCII fast path, 8 bytes at a time.
        if i &+ 8 <= n {
            let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if w & 0x8080_8080_8080_8080 == 0 { i &+= 8; continue }
        }
        let b0 = p[i]
        if b0 < 0x80 { i &+= 1; continue }
        if b0 < 0xC2 { return i }
        if b0 < 0xE0 {
            guard i &+ 1 < n, p[i &+ 1] & 0xC0 == 0x80 else { return i }
            i &+= 2
            continue
        }
        if b0 < 0xF0 {
            guard i &+ 2 < n else { return i }
            let b1 = p[i &+ 1], b2 = p[i &+ 2]
            let lo: UInt8 = b0 == 0xE0 ? 0xA0 : 0x80
            let hi: UInt8 = b0 == 0xED ? 0x9F : 0xBF
            guard b1 >= lo, b1 <= hi, b2 & 0xC0 == 0x80 else { return i }
            i &+= 3
            continue
        }
        if b0 < 0xF5 {
            guard i &+ 3 < n else { return i }
            let b1 = p[i &+ 1], b2 = p[i &+ 2], b3 = p[i &+ 3]
            let lo: UInt8 = b0 == 0xF0 ? 0x90 : 0x80
            let hi: UInt8 = b0 == 0xF4 ? 0x8F : 0xBF
            guard b1 >= lo, b1 <= hi, b2 & 0xC0 == 0x80, b3 & 0xC0 == 0x80 else { return i }
            i &+= 4
            continue
        }
        return i
    }
    return nil
}

// MARK: - Parser

/// Iterative (explicit-stack) parser over a validated UTF-8 buffer.
///
/// Container members accumulate on one shared stack and are moved out once per
/// container, so each array/object costs exactly one allocation and no extra
/// retain/release. For objects, an entry is pushed when its key is read (value
/// `.null` as a placeholder) and its value is filled in when complete; nested
/// containers push and pop above it, so the pending entry is always the last one.
@usableFromInline
struct _JSONParser {
    let p: UnsafePointer<UInt8>
    let n: Int
    var i: Int = 0
    let maxDepth: Int

    struct Frame {
        var isObject: Bool
        var start: Int
    }
    struct Entry {
        var key: String
        /// Cheap key fingerprint (length, first 4 and last 2 bytes) so the duplicate-key
        /// check compares integers and only compares strings on a fingerprint match.
        var fp: UInt64
        var value: JSONValue
    }
    var frames: [Frame] = []
    var stack: [Entry] = []
    var scratch: [UInt8] = []
    /// Whether the last `parseString` saw an escape (its raw bytes differ from its value).
    var lastStringEscaped = false

    @usableFromInline
    init(p: UnsafePointer<UInt8>, n: Int, maxDepth: Int) {
        self.p = p
        self.n = n
        self.maxDepth = Swift.min(Swift.max(maxDepth, 0), JSON.hardMaxDepth)
    }

    // Byte constants.
    static var quote: UInt8 { 0x22 }
    static var backslash: UInt8 { 0x5C }
    static var comma: UInt8 { 0x2C }
    static var colon: UInt8 { 0x3A }
    static var lbrace: UInt8 { 0x7B }
    static var rbrace: UInt8 { 0x7D }
    static var lbracket: UInt8 { 0x5B }
    static var rbracket: UInt8 { 0x5D }

    @inline(__always)
    mutating func skipWS() {
        while i < n {
            let c = p[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i &+= 1 } else { return }
        }
    }

    func unexpected() -> JSONParseError {
        if i >= n { return JSONParseError("unexpected end of input", offset: n) }
        return JSONParseError("unexpected character at byte \(i)", offset: i)
    }

    func depthError() -> JSONParseError {
        JSONParseError("nesting deeper than \(maxDepth)", offset: i)
    }

    @inline(__always)
    mutating func openContainer(isObject: Bool) throws(JSONParseError) {
        if frames.count >= maxDepth { throw depthError() }
        if frames.capacity == 0 {
            frames.reserveCapacity(8)
            stack.reserveCapacity(32)
        }
        frames.append(Frame(isObject: isObject, start: stack.count))
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWS()
        if i == n { throw JSONParseError("empty input", offset: 0) }
        var v: JSONValue
        parseValue: while true {
            guard i < n else { throw unexpected() }
            switch p[i] {
            case 0x7B:  // {
                if frames.count >= maxDepth { throw depthError() }
                i &+= 1
                skipWS()
                if i < n && p[i] == Self.rbrace {
                    i &+= 1
                    v = .object(JSONObject())
                } else {
                    try openContainer(isObject: true)
                    try parseKeyAndColon()
                    continue parseValue
                }
            case 0x5B:  // [
                if frames.count >= maxDepth { throw depthError() }
                i &+= 1
                skipWS()
                if i < n && p[i] == Self.rbracket {
                    i &+= 1
                    v = .array([])
                } else {
                    try openContainer(isObject: false)
                    continue parseValue
                }
            case 0x22:  // "
                v = .string(try parseString())
            case 0x74:  // t
                try literal(0x74, 0x72, 0x75, 0x65)
                v = .bool(true)
            case 0x66:  // f
                try literal5()
                v = .bool(false)
            case 0x6E:  // n
                try literal(0x6E, 0x75, 0x6C, 0x6C)
                v = .null
            case 0x2D, 0x30...0x39:
                let start = i
                let isInt = try scanNumber()
                let text = String(decoding: UnsafeBufferPointer(start: p + start, count: i &- start), as: UTF8.self)
                v = .number(JSONNumber(unchecked: text, isInteger: isInt))
            default:
                throw unexpected()
            }

            // Attach `v` to the enclosing container, closing containers as needed.
            while true {
                guard let top = frames.last else {
                    skipWS()
                    if i != n { throw JSONParseError("trailing characters at byte \(i)", offset: i) }
                    return v
                }
                if top.isObject {
                    stack[stack.count &- 1].value = v
                } else {
                    stack.append(Entry(key: "", fp: 0, value: v))
                }
                skipWS()
                guard i < n else { throw unexpected() }
                let d = p[i]
                if d == Self.comma {
                    i &+= 1
                    skipWS()
                    if top.isObject { try parseKeyAndColon() }
                    continue parseValue
                }
                if top.isObject {
                    guard d == Self.rbrace else { throw unexpected() }
                    i &+= 1
                    frames.removeLast()
                    v = .object(try closeObject(start: top.start))
                } else {
                    guard d == Self.rbracket else { throw unexpected() }
                    i &+= 1
                    frames.removeLast()
                    v = .array(closeArray(start: top.start))
                }
            }
        }
    }

    /// Reads `"key" ws : ws` and pushes a pending entry for it.
    @inline(__always)
    mutating func parseKeyAndColon() throws(JSONParseError) {
        guard i < n, p[i] == Self.quote else { throw unexpected() }
        let keyStart = i &+ 1
        let key = try parseString()
        // Fingerprint from the raw bytes when the key had no escapes (the common case).
        let fp = lastStringEscaped ? Self.fingerprint(key) : Self.fingerprint(p + keyStart, i &- 1 &- keyStart)
        stack.append(Entry(key: key, fp: fp, value: .null))
        skipWS()
        guard i < n, p[i] == Self.colon else { throw unexpected() }
        i &+= 1
        skipWS()
    }

    @inline(__always)
    static func fingerprint(_ q: UnsafePointer<UInt8>, _ len: Int) -> UInt64 {
        var f = UInt64(truncatingIfNeeded: len) << 48
        if len > 0 {
            f |= UInt64(q[0]) | UInt64(q[len &- 1]) << 8
            if len > 1 { f |= UInt64(q[1]) << 16 | UInt64(q[len &- 2]) << 24 }
            if len > 2 { f |= UInt64(q[2]) << 32 }
        }
        return f
    }

    @inline(__always)
    static func fingerprint(_ s: String) -> UInt64 {
        var s = s
        return s.withUTF8 { b in b.isEmpty ? 0 : fingerprint(b.baseAddress!, b.count) }
    }

    /// Moves the top `stack.count - start` entries out into a fresh array; the vacated
    /// slots are refilled with trivial placeholders before being dropped.
    mutating func closeObject(start: Int) throws(JSONParseError) -> JSONObject {
        let cnt = stack.count &- start
        if cnt > 1 { try checkDuplicates(start: start) }
        let entries = [(key: String, value: JSONValue)](unsafeUninitializedCapacity: cnt) { out, initialized in
            stack.withUnsafeMutableBufferPointer { s in
                let src = s.baseAddress! + start
                for j in 0..<cnt {
                    let e = (src + j).move()
                    (out.baseAddress! + j).initialize(to: (key: e.key, value: e.value))
                }
                src.initialize(repeating: Entry(key: "", fp: 0, value: .null), count: cnt)
            }
            initialized = cnt
        }
        stack.removeLast(cnt)
        return JSONObject(uncheckedEntries: entries)
    }

    mutating func closeArray(start: Int) -> [JSONValue] {
        let cnt = stack.count &- start
        let values = [JSONValue](unsafeUninitializedCapacity: cnt) { out, initialized in
            stack.withUnsafeMutableBufferPointer { s in
                let src = s.baseAddress! + start
                for j in 0..<cnt {
                    (out.baseAddress! + j).initialize(to: (src + j).move().value)
                }
                src.initialize(repeating: Entry(key: "", fp: 0, value: .null), count: cnt)
            }
            initialized = cnt
        }
        stack.removeLast(cnt)
        return values
    }

    /// Duplicate keys are `bad_json` under the protocol (different parsers would pick
    /// different values). Keys are compared as unescaped UTF-8 bytes.
    func checkDuplicates(start: Int) throws(JSONParseError) {
        let end = stack.count
        if end &- start <= 16 {
            for a in (start &+ 1)..<end {
                let fa = stack[a].fp
                for b in start..<a where stack[b].fp == fa && _utf8Equal(stack[a].key, stack[b].key) {
                    throw Self.duplicateKey(stack[a].key)
                }
            }
        } else {
            var seen = Set<_ByteKey>(minimumCapacity: end &- start)
            for j in start..<end where !seen.insert(_ByteKey(stack[j].key)).inserted {
                throw Self.duplicateKey(stack[j].key)
            }
        }
    }

    static func duplicateKey(_ k: String) -> JSONParseError {
        var w = JSONWriter(capacity: 80)
        w.string(k.count > 64 ? String(k.prefix(64)) + "…" : k)
        return JSONParseError("duplicate key \(String(decoding: w.bytes, as: UTF8.self))")
    }

    @inline(__always)
    mutating func literal(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) throws(JSONParseError) {
        guard i &+ 4 <= n, p[i] == a else { throw JSONParseError("invalid literal at byte \(i)", offset: i) }
        guard p[i &+ 1] == b, p[i &+ 2] == c, p[i &+ 3] == d else {
            throw JSONParseError("invalid literal at byte \(i)", offset: i)
        }
        i &+= 4
    }

    @inline(__always)
    mutating func literal5() throws(JSONParseError) {  // false
        guard i &+ 5 <= n, p[i &+ 1] == 0x61, p[i &+ 2] == 0x6C, p[i &+ 3] == 0x73, p[i &+ 4] == 0x65 else {
            throw JSONParseError("invalid literal at byte \(i)", offset: i)
        }
        i &+= 5
    }

    @inline(__always)
    static func isDigit(_ c: UInt8) -> Bool { c &- 0x30 < 10 }

    /// Scans `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` at `i`.
    /// Returns whether it is an integer literal (no fraction, no exponent).
    @usableFromInline
    mutating func scanNumber() throws(JSONParseError) -> Bool {
        let start = i
        var isInt = true
        if i < n && p[i] == 0x2D { i &+= 1 }
        guard i < n else { throw JSONParseError("invalid number at byte \(start)", offset: start) }
        if p[i] == 0x30 {
            i &+= 1
            if i < n && Self.isDigit(p[i]) {
                throw JSONParseError("invalid number at byte \(start) (leading zero)", offset: start)
            }
        } else if Self.isDigit(p[i]) {
            i &+= 1
            while i < n && Self.isDigit(p[i]) { i &+= 1 }
        } else {
            throw JSONParseError("invalid number at byte \(start)", offset: start)
        }
        if i < n && p[i] == 0x2E {
            isInt = false
            i &+= 1
            guard i < n && Self.isDigit(p[i]) else {
                throw JSONParseError("invalid number at byte \(start)", offset: start)
            }
            while i < n && Self.isDigit(p[i]) { i &+= 1 }
        }
        if i < n && (p[i] | 0x20) == 0x65 {  // e or E
            isInt = false
            i &+= 1
            if i < n && (p[i] == 0x2B || p[i] == 0x2D) { i &+= 1 }
            guard i < n && Self.isDigit(p[i]) else {
                throw JSONParseError("invalid number at byte \(start)", offset: start)
            }
            while i < n && Self.isDigit(p[i]) { i &+= 1 }
        }
        return isInt
    }

    /// Parses a string starting at the opening quote. The buffer is already known to be
    /// valid UTF-8, so unescaped runs are copied verbatim.
    @inline(__always)
    mutating func parseString() throws(JSONParseError) -> String {
        i &+= 1
        let start = i
        let raw = UnsafeRawPointer(p)
        while i < n {
            // SWAR: skip 8 bytes at a time while none is '"', '\\' or < 0x20.
            // The lowest flagged byte is exact; higher flags may be spurious (borrows).
            if i &+ 8 <= n {
                let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let q = w ^ 0x2222_2222_2222_2222
                let b = w ^ 0x5C5C_5C5C_5C5C_5C5C
                let m = ((q &- 0x0101_0101_0101_0101) & ~q)
                    | ((b &- 0x0101_0101_0101_0101) & ~b)
                    | ((w &- 0x2020_2020_2020_2020) & ~w)
                let hits = m & 0x8080_8080_8080_8080
                if hits == 0 {
                    i &+= 8
                    continue
                }
                i &+= hits.trailingZeroBitCount >> 3
            }
            let c = p[i]
            if c == Self.quote {
                let s = String(decoding: UnsafeBufferPointer(start: p + start, count: i &- start), as: UTF8.self)
                i &+= 1
                lastStringEscaped = false
                return s
            }
            if c == Self.backslash {
                lastStringEscaped = true
                return try parseEscapedString(start: start)
            }
            if c < 0x20 { throw JSONParseError("control character in string at byte \(i)", offset: i) }
            i &+= 1
        }
        throw JSONParseError("unterminated string", offset: n)
    }

    mutating func parseEscapedString(start: Int) throws(JSONParseError) -> String {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(start: p + start, count: i &- start))
        while i < n {
            let c = p[i]
            if c == Self.quote {
                i &+= 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if c < 0x20 { throw JSONParseError("control character in string at byte \(i)", offset: i) }
            if c != Self.backslash {
                scratch.append(c)
                i &+= 1
                continue
            }
            let escAt = i
            i &+= 1
            guard i < n else { break }
            switch p[i] {
            case 0x22: scratch.append(0x22)
            case 0x5C: scratch.append(0x5C)
            case 0x2F: scratch.append(0x2F)
            case 0x62: scratch.append(0x08)
            case 0x66: scratch.append(0x0C)
            case 0x6E: scratch.append(0x0A)
            case 0x72: scratch.append(0x0D)
            case 0x74: scratch.append(0x09)
            case 0x75:
                i &+= 1
                var cp = try hex4()
                if cp >= 0xDC00 && cp <= 0xDFFF {
                    throw JSONParseError("unpaired surrogate at byte \(escAt)", offset: escAt)
                }
                if cp >= 0xD800 && cp <= 0xDBFF {
                    guard i &+ 1 < n, p[i] == Self.backslash, p[i &+ 1] == 0x75 else {
                        throw JSONParseError("unpaired surrogate at byte \(escAt)", offset: escAt)
                    }
                    i &+= 2
                    let lo = try hex4()
                    guard lo >= 0xDC00 && lo <= 0xDFFF else {
                        throw JSONParseError("unpaired surrogate at byte \(escAt)", offset: escAt)
                    }
                    cp = 0x10000 &+ ((cp &- 0xD800) << 10) &+ (lo &- 0xDC00)
                }
                appendScalar(cp)
                continue  // hex4 advanced i
            default:
                throw JSONParseError("invalid escape at byte \(escAt)", offset: escAt)
            }
            i &+= 1
        }
        throw JSONParseError("unterminated string", offset: n)
    }

    @inline(__always)
    mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard i &+ 4 <= n else { throw JSONParseError("invalid \\u escape at byte \(i)", offset: i) }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = p[i &+ k]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c &- 0x30)
            case 0x41...0x46: d = UInt32(c &- 0x41 &+ 10)
            case 0x61...0x66: d = UInt32(c &- 0x61 &+ 10)
            default: throw JSONParseError("invalid \\u escape at byte \(i &+ k)", offset: i &+ k)
            }
            v = v << 4 | d
        }
        i &+= 4
        return v
    }

    @inline(__always)
    mutating func appendScalar(_ cp: UInt32) {
        if cp < 0x80 {
            scratch.append(UInt8(cp))
        } else if cp < 0x800 {
            scratch.append(UInt8(0xC0 | (cp >> 6)))
            scratch.append(UInt8(0x80 | (cp & 0x3F)))
        } else if cp < 0x10000 {
            scratch.append(UInt8(0xE0 | (cp >> 12)))
            scratch.append(UInt8(0x80 | ((cp >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (cp & 0x3F)))
        } else {
            scratch.append(UInt8(0xF0 | (cp >> 18)))
            scratch.append(UInt8(0x80 | ((cp >> 12) & 0x3F)))
            scratch.append(UInt8(0x80 | ((cp >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (cp & 0x3F)))
        }
    }

    mutating func parseFlatStringMap() throws(JSONParseError) -> [String: String] {
        skipWS()
        if i == n { throw JSONParseError("empty input", offset: 0) }
        guard p[i] == Self.lbrace else { throw JSONParseError("expected object at byte \(i)", offset: i) }
        i &+= 1
        skipWS()
        var dict: [String: String] = [:]
        if i < n && p[i] == Self.rbrace {
            i &+= 1
        } else {
            while true {
                guard i < n, p[i] == Self.quote else { throw unexpected() }
                let k = try parseString()
                skipWS()
                guard i < n, p[i] == Self.colon else { throw unexpected() }
                i &+= 1
                skipWS()
                guard i < n else { throw unexpected() }
                guard p[i] == Self.quote else {
                    throw JSONParseError("expected string value at byte \(i)", offset: i)
                }
                let v = try parseString()
                if dict.updateValue(v, forKey: k) != nil { throw Self.duplicateKey(k) }
                skipWS()
                guard i < n else { throw unexpected() }
                if p[i] == Self.comma {
                    i &+= 1
                    skipWS()
                    continue
                }
                guard p[i] == Self.rbrace else { throw unexpected() }
                i &+= 1
                break
            }
        }
        skipWS()
        if i != n { throw JSONParseError("trailing characters at byte \(i)", offset: i) }
        return dict
    }
}

/// Hashes/compares a string by its UTF-8 bytes (Swift's String hashing is by canonical
/// equivalence, which would conflate distinct JSON keys).
struct _ByteKey: Hashable {
    let s: String
    init(_ s: String) { self.s = s }
    static func == (a: _ByteKey, b: _ByteKey) -> Bool { _utf8Equal(a.s, b.s) }
    func hash(into h: inout Hasher) {
        h.combine(s.utf8.count)
        for b in s.utf8 { h.combine(b) }
    }
}

// MARK: - Writer

/// Compact, deterministic JSON writer appending UTF-8 to `bytes`.
///
/// Commas and colons are inserted automatically: after `{`, `[` or a key no comma is
/// needed; after any complete value one is. Callers are responsible for well-formed
/// call sequences (a value after every key, balanced begin/end, unique keys).
///
/// Strings escape `"`, `\`, control characters (shorthand `\b \f \n \r \t`, else `\u00XX`)
/// and U+2028/U+2029 (which break JavaScript line-oriented consumers); everything else is
/// raw UTF-8. Numbers are written as their exact source text.
public struct JSONWriter: Sendable {
    public var bytes: [UInt8]
    @usableFromInline var needsComma = false

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Ends a JSON Lines record: a newline, after which a new top-level value starts.
    public mutating func newline() {
        bytes.append(0x0A)
        needsComma = false
    }

    /// Clears the output, keeping its capacity for reuse.
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        needsComma = false
    }

    @inlinable @inline(__always)
    mutating func separate() {
        if needsComma { bytes.append(0x2C) }
    }

    @inlinable @inline(__always)
    mutating func appendStatic(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public mutating func beginObject() {
        separate()
        bytes.append(0x7B)
        needsComma = false
    }

    public mutating func endObject() {
        bytes.append(0x7D)
        needsComma = true
    }

    public mutating func beginArray() {
        separate()
        bytes.append(0x5B)
        needsComma = false
    }

    public mutating func endArray() {
        bytes.append(0x5D)
        needsComma = true
    }

    /// Writes `"k":` (preceded by a comma when needed).
    public mutating func key(_ k: String) {
        writeQuoted(k, comma: needsComma, colon: true)
        needsComma = false
    }

    public mutating func string(_ s: String) {
        writeQuoted(s, comma: needsComma, colon: false)
        needsComma = true
    }

    public mutating func int(_ v: Int) {
        var m = v.magnitude
        var digits = 1
        var t = m
        while t >= 10 { t /= 10; digits &+= 1 }
        let comma = needsComma
        let neg = v < 0
        let total = digits &+ (comma ? 1 : 0) &+ (neg ? 1 : 0)
        extend(by: total) { d in
            var k = 0
            if comma { d[0] = 0x2C; k = 1 }
            if neg { d[k] = 0x2D }
            k = total &- 1
            repeat {
                d[k] = 0x30 &+ UInt8(truncatingIfNeeded: m % 10)
                m /= 10
                k &-= 1
            } while m > 0
        }
        needsComma = true
    }

    public mutating func bool(_ b: Bool) {
        separate()
        if b { appendStatic("true") } else { appendStatic("false") }
        needsComma = true
    }

    public mutating func null() {
        separate()
        appendStatic("null")
        needsComma = true
    }

    /// Writes a number's exact text.
    public mutating func number(_ n: JSONNumber) {
        separate()
        var t = n.text
        t.withUTF8 { bytes.append(contentsOf: $0) }
        needsComma = true
    }

    /// Inserts an already-encoded JSON value verbatim (e.g. a stored payload).
    /// The caller guarantees `json` is one valid compact JSON value.
    public mutating func raw(_ json: some Sequence<UInt8>) {
        separate()
        bytes.append(contentsOf: json)
        needsComma = true
    }

    /// Serialises any value. `sortKeys` orders object keys by UTF-8 bytes at every level.
    public mutating func value(_ v: JSONValue, sortKeys: Bool = false) {
        switch v {
        case .null: null()
        case .bool(let b): bool(b)
        case .number(let n): number(n)
        case .string(let s): string(s)
        case .array(let a):
            beginArray()
            for e in a { value(e, sortKeys: sortKeys) }
            endArray()
        case .object(let o):
            beginObject()
            if sortKeys {
                for e in o.entries.sorted(by: { JSON.utf8Precedes($0.key, $1.key) }) {
                    key(e.key)
                    value(e.value, sortKeys: true)
                }
            } else {
                for e in o.entries {
                    key(e.key)
                    value(e.value, sortKeys: false)
                }
            }
            endObject()
        }
    }

    // Convenience: key + value in one call.
    public mutating func field(_ k: String, _ v: String) { key(k); string(v) }
    public mutating func field(_ k: String, _ v: Int) { key(k); int(v) }
    public mutating func field(_ k: String, _ v: Bool) { key(k); bool(v) }
    public mutating func field(_ k: String, _ v: JSONValue) { key(k); value(v) }

    mutating func writeEscaped(_ s: String) {
        writeQuoted(s, comma: false, colon: false)
    }

    /// Appends `count` bytes written by `fill`: one capacity/uniqueness check in total
    /// rather than one per `append`.
    @inline(__always)
    mutating func extend(by count: Int, _ fill: (UnsafeMutablePointer<UInt8>) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count) { tmp in
            fill(tmp.baseAddress!)
            bytes.append(contentsOf: UnsafeBufferPointer(tmp))
        }
    }

    /// `[,]"escaped"[:]`. Strings needing no escapes (the usual case) are copied in one go.
    @inline(__always)
    mutating func writeQuoted(_ s: String, comma: Bool, colon: Bool) {
        var s = s
        s.withUTF8 { src in
            if Self.needsNoEscape(src) {
                let len = src.count
                let total = len &+ 2 &+ (comma ? 1 : 0) &+ (colon ? 1 : 0)
                extend(by: total) { d in
                    var k = 0
                    if comma { d[0] = 0x2C; k = 1 }
                    d[k] = 0x22
                    k &+= 1
                    if len > 0 { (d + k).update(from: src.baseAddress!, count: len) }
                    k &+= len
                    d[k] = 0x22
                    if colon { d[k &+ 1] = 0x3A }
                }
            } else {
                if comma { bytes.append(0x2C) }
                bytes.append(0x22)
                appendEscaped(src)
                bytes.append(0x22)
                if colon { bytes.append(0x3A) }
            }
        }
    }

    /// True when no byte is '"', '\\', < 0x20 or 0xE2 (lead byte of U+2028/U+2029; a
    /// conservative test, the slow path checks the full sequence).
    @inline(__always)
    static func needsNoEscape(_ src: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = src.count
        guard let base = src.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        var j = 0
        var acc: UInt64 = 0
        while j &+ 8 <= n {
            let w = raw.loadUnaligned(fromByteOffset: j, as: UInt64.self)
            let q = w ^ 0x2222_2222_2222_2222
            let b = w ^ 0x5C5C_5C5C_5C5C_5C5C
            let e = w ^ 0xE2E2_E2E2_E2E2_E2E2
            acc |= ((q &- 0x0101_0101_0101_0101) & ~q) | ((b &- 0x0101_0101_0101_0101) & ~b)
                | ((e &- 0x0101_0101_0101_0101) & ~e) | ((w &- 0x2020_2020_2020_2020) & ~w)
            j &+= 8
        }
        if acc & 0x8080_8080_8080_8080 != 0 { return false }
        while j < n {
            let c = base[j]
            if c < 0x20 || c == 0x22 || c == 0x5C || c == 0xE2 { return false }
            j &+= 1
        }
        return true
    }

    mutating func appendEscaped(_ buf: UnsafeBufferPointer<UInt8>) {
        let n = buf.count
        var run = 0
        var j = 0
        while j < n {
            let c = buf[j]
            if c >= 0x20 && c != 0x22 && c != 0x5C && c != 0xE2 {
                j &+= 1
                continue
            }
            if c == 0xE2 {
                // U+2028 = E2 80 A8, U+2029 = E2 80 A9
                if j &+ 2 < n && buf[j &+ 1] == 0x80 && (buf[j &+ 2] == 0xA8 || buf[j &+ 2] == 0xA9) {
                    if j > run { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buf[run..<j])) }
                    appendStatic("\\u202")
                    bytes.append(buf[j &+ 2] == 0xA8 ? 0x38 : 0x39)
                    j &+= 3
                    run = j
                } else {
                    j &+= 1
                }
                continue
            }
            if j > run { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buf[run..<j])) }
            switch c {
            case 0x22: appendStatic("\\\"")
            case 0x5C: appendStatic("\\\\")
            case 0x08: appendStatic("\\b")
            case 0x0C: appendStatic("\\f")
            case 0x0A: appendStatic("\\n")
            case 0x0D: appendStatic("\\r")
            case 0x09: appendStatic("\\t")
            default:
                appendStatic("\\u00")
                let hex: StaticString = "0123456789abcdef"
                bytes.append(hex.utf8Start[Int(c >> 4)])
                bytes.append(hex.utf8Start[Int(c & 0x0F)])
            }
            j &+= 1
            run = j
        }
        if n > run { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buf[run..<n])) }
    }
}
