extension JSON {
    /// Compact encoding. `sortKeys` orders every object's keys by UTF-8 bytes (canonical
    /// form, e.g. for hashing); otherwise document/insertion order is kept.
    public static func encode(_ value: JSONValue, sortKeys: Bool = false) -> [UInt8] {
        var w = JSONWriter()
        w.value(value, sortKeys: sortKeys)
        return w.bytes
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
            acc |=
                ((q &- 0x0101_0101_0101_0101) & ~q) | ((b &- 0x0101_0101_0101_0101) & ~b)
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
