/// A stored event payload (a flat JSON object of strings) read without building
/// a dictionary: its keys and values as UTF-8 byte ranges over one reusable
/// buffer, in the spec's key order (by UTF-8 bytes). What the audit verifier
/// reads per event.
///
/// `parse` accepts exactly what `PayloadJSON.decode` accepts and yields the
/// same keys and values: text that is all printable ASCII without a backslash
/// (every payload the service writes) is scanned here; anything else (escapes,
/// non-ASCII, where Swift's canonical equivalence could make two spellings one
/// dictionary key) goes through `PayloadJSON.decode` itself.
public struct PayloadFields {
    /// Key and value bytes, back to back.
    public private(set) var storage: [UInt8] = []
    struct Field {
        var key: Int32, keyEnd: Int32, value: Int32, valueEnd: Int32
    }
    var fields: [Field] = []

    public init() {
        storage.reserveCapacity(512)
        fields.reserveCapacity(16)
    }

    public var count: Int { fields.count }

    /// Key and value of field `i` (in key byte order), as raw bytes; valid until the next parse.
    public func withField<R>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) -> R) -> R {
        let f = fields[i]
        return storage.withUnsafeBufferPointer { s in
            body(
                UnsafeBufferPointer(rebasing: s[Int(f.key)..<Int(f.keyEnd)]),
                UnsafeBufferPointer(rebasing: s[Int(f.value)..<Int(f.valueEnd)]))
        }
    }

    /// The parsed payload as a dictionary: what `PayloadJSON.decode` returns
    /// for the same text (verify's rebuild projects it).
    public func dictionary() -> [String: String] {
        var out: [String: String] = [:]
        out.reserveCapacity(fields.count)
        for i in 0..<fields.count {
            withField(i) { k, v in out[String(decoding: k, as: UTF8.self)] = String(decoding: v, as: UTF8.self) }
        }
        return out
    }

    // MARK: parsing

    /// Reads a stored payload text (UTF-8). Returns false, leaving the fields
    /// empty, exactly when `PayloadJSON.decode(String(decoding: text, as: UTF8.self))` would throw.
    public mutating func parse(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        storage.removeAll(keepingCapacity: true)
        fields.removeAll(keepingCapacity: true)
        if PayloadFields.isPlainASCII(text) {
            if parsePlain(text) { return true }
            storage.removeAll(keepingCapacity: true)
            fields.removeAll(keepingCapacity: true)
            return false
        }
        // As `PayloadJSON.decode(String(decoding: text, as: UTF8.self))`: bytes that
        // are not UTF-8 are read the way a String of them reads (repaired), as before.
        guard let dict = try? PayloadJSON.decode(String(decoding: text, as: UTF8.self)) else { return false }
        set(dict)
        return true
    }

    public mutating func parse(_ text: String) -> Bool {
        var t = text
        return t.withUTF8 { parse($0) }
    }

    /// Takes an already-decoded payload (e.g. from an audit bundle's JSON).
    public mutating func set(_ payload: [String: String]) {
        storage.removeAll(keepingCapacity: true)
        fields.removeAll(keepingCapacity: true)
        for k in payload.keys.sorted(by: JSON.utf8Precedes) {
            var k = k, v = payload[k]!
            let ks = Int32(storage.count)
            k.withUTF8 { storage.append(contentsOf: $0) }
            let ke = Int32(storage.count)
            v.withUTF8 { storage.append(contentsOf: $0) }
            fields.append(Field(key: ks, keyEnd: ke, value: ke, valueEnd: Int32(storage.count)))
        }
    }

    /// True when every byte is below 0x80 and none is a backslash: then a JSON
    /// string's bytes are its value and canonical equivalence is byte equality.
    @inline(__always)
    static func isPlainASCII(_ t: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = t.count
        guard let base = t.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        var i = 0, acc: UInt64 = 0
        while i &+ 8 <= n {
            let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let b = w ^ 0x5C5C_5C5C_5C5C_5C5C
            acc |= w | ((b &- 0x0101_0101_0101_0101) & ~b)
            i &+= 8
        }
        if acc & 0x8080_8080_8080_8080 != 0 { return false }
        while i < n {
            let c = base[i]
            if c >= 0x80 || c == 0x5C { return false }
            i &+= 1
        }
        return true
    }

    /// RFC 8259 for a flat object of strings, over text known to be ASCII
    /// without escapes (the grammar `_JSONParser.parseFlatStringMap` applies).
    private mutating func parsePlain(_ t: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = t.count
        guard n > 0, let p = t.baseAddress else { return false }
        var i = 0
        @inline(__always) func skipWS() {
            while i < n {
                let c = p[i]
                if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i &+= 1 } else { return }
            }
        }
        /// At an opening quote: the string's end (index of the closing quote), or -1.
        @inline(__always) func scanString() -> Int {
            var j = i &+ 1
            let raw = UnsafeRawPointer(p)
            // 8 bytes at a time while none is '"' or < 0x20 (the lowest flagged byte is exact).
            while j &+ 8 <= n {
                let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: j, as: UInt64.self))
                let q = w ^ 0x2222_2222_2222_2222
                let hits = (((q &- 0x0101_0101_0101_0101) & ~q) | ((w &- 0x2020_2020_2020_2020) & ~w)) & 0x8080_8080_8080_8080
                if hits == 0 { j &+= 8; continue }
                j &+= hits.trailingZeroBitCount >> 3
                break
            }
            while j < n {
                let c = p[j]
                if c == 0x22 { return j }
                if c < 0x20 { return -1 }
                j &+= 1
            }
            return -1
        }
        storage.append(contentsOf: t)  // ranges below index the copied text
        skipWS()
        guard i < n, p[i] == 0x7B else { return false }
        i &+= 1
        skipWS()
        var sorted = true
        if i < n && p[i] == 0x7D {
            i &+= 1
        } else {
            while true {
                guard i < n, p[i] == 0x22 else { return false }
                let kEnd = scanString()
                guard kEnd >= 0 else { return false }
                let kStart = i &+ 1
                i = kEnd &+ 1
                skipWS()
                guard i < n, p[i] == 0x3A else { return false }
                i &+= 1
                skipWS()
                guard i < n, p[i] == 0x22 else { return false }
                let vEnd = scanString()
                guard vEnd >= 0 else { return false }
                let vStart = i &+ 1
                i = vEnd &+ 1
                let f = Field(key: Int32(kStart), keyEnd: Int32(kEnd), value: Int32(vStart), valueEnd: Int32(vEnd))
                if let last = fields.last, sorted, !PayloadFields.precedes(p, last, f) { sorted = false }
                fields.append(f)
                skipWS()
                guard i < n else { return false }
                if p[i] == 0x2C {
                    i &+= 1
                    skipWS()
                    continue
                }
                guard p[i] == 0x7D else { return false }
                i &+= 1
                break
            }
        }
        skipWS()
        guard i == n else { return false }
        if !sorted {
            // Keys out of byte order (not how the store writes them): sort, and a
            // repeated key is a duplicate, which the strict parser refuses.
            fields.sort { PayloadFields.precedes(p, $0, $1) }
            for j in fields.indices.dropFirst() where !PayloadFields.precedes(p, fields[j &- 1], fields[j]) { return false }
        }
        return true
    }

    /// Key of `a` strictly before key of `b` by bytes (a proper prefix first).
    @inline(__always)
    static func precedes(_ p: UnsafePointer<UInt8>, _ a: Field, _ b: Field) -> Bool {
        let la = Int(a.keyEnd &- a.key), lb = Int(b.keyEnd &- b.key)
        let c = memcmpBytes(p + Int(a.key), p + Int(b.key), min(la, lb))
        return c < 0 || (c == 0 && la < lb)
    }

    @inline(__always)
    static func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var k = 0
        while k < n {
            let x = a[k], y = b[k]
            if x != y { return x < y ? -1 : 1 }
            k &+= 1
        }
        return 0
    }

    // MARK: reading

    /// Index of the field whose key is `key` (byte equality; for the ASCII keys
    /// of PROTOCOL.md §6 that is also canonical equivalence, as a dictionary lookup).
    public func index(of key: StaticString) -> Int? {
        let kp = key.utf8Start, kn = key.utf8CodeUnitCount
        return storage.withUnsafeBufferPointer { s -> Int? in
            let base = s.baseAddress!
            for (j, f) in fields.enumerated() where Int(f.keyEnd &- f.key) == kn {
                var k = 0
                let q = base + Int(f.key)
                while k < kn && q[k] == kp[k] { k &+= 1 }
                if k == kn { return j }
            }
            return nil
        }
    }

    /// The value of `key` as bytes, if present.
    public func withValue<R>(_ key: StaticString, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R? {
        guard !fields.isEmpty, let j = index(of: key) else { return nil }
        let f = fields[j]
        return storage.withUnsafeBufferPointer { s in body(UnsafeBufferPointer(rebasing: s[Int(f.value)..<Int(f.valueEnd)])) }
    }

    /// The value of `key`, as `payload[key]` reads it.
    public subscript(key: StaticString) -> String? {
        withValue(key) { String(decoding: $0, as: UTF8.self) }
    }

    public func has(_ key: StaticString) -> Bool { !fields.isEmpty && index(of: key) != nil }

    /// `payload[key] == s` (Swift's String equality: canonical equivalence).
    public func value(_ key: StaticString, equals s: String) -> Bool {
        withValue(key) { v -> Bool in
            var t = s
            return t.withUTF8 { u -> Bool in
                if u.count == v.count && (u.isEmpty || PayloadFields.memcmpBytes(u.baseAddress!, v.baseAddress!, u.count) == 0) { return true }
                // Different bytes: only a non-ASCII spelling can still be canonically equal.
                if PayloadFields.isASCII(u) && PayloadFields.isASCII(v) { return false }
                return String(decoding: v, as: UTF8.self) == s
            }
        } ?? false
    }

    static func isASCII(_ b: UnsafeBufferPointer<UInt8>) -> Bool { b.allSatisfy { $0 < 0x80 } }

    /// `payload[key].flatMap { Int($0) }`.
    public func int(_ key: StaticString) -> Int? {
        withValue(key) { v -> Int? in
            // Plain decimal digits (what the service writes) without the String round trip.
            if v.count > 0 && v.count <= 18 && v.allSatisfy({ $0 &- 0x30 < 10 }) {
                return v.reduce(0) { $0 &* 10 &+ Int($1 &- 0x30) }
            }
            return Int(String(decoding: v, as: UTF8.self))
        } ?? nil
    }
}
