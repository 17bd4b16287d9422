extension JSON {
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

    /// Parses an object whose values are all strings (e.g. a stored flat map).
    /// Errors on any non-string value, nesting, or a duplicate key. Because the result is a
    /// Swift dictionary, keys that are canonically equivalent (e.g. "é" vs "e\u0301") are
    /// also reported as duplicates rather than silently merged.
    public static func parseFlatStringMap(_ bytes: [UInt8]) throws(JSONParseError) -> [String: String] {
        try bytes.withUnsafeBufferPointer { (b) throws(JSONParseError) -> [String: String] in
            try parseFlatStringMap(buffer: b)
        }
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
                let m =
                    ((q &- 0x0101_0101_0101_0101) & ~q)
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
