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
