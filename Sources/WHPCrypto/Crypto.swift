internal import COpenSSL

/// A 32-byte value: a SHA-256 digest, an HMAC output or a key.
///
/// Kept as a fixed-size value type so hashes and keys never travel as
/// arbitrary-length arrays by mistake (ALLOCATION.md fixes every key at 32 bytes).
public struct Bytes32: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 32 bytes in order, held inline (no heap array per hash or key).
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    /// The bytes as an array (a copy).
    public var bytes: [UInt8] {
        get { withUnsafeBytes { Array($0) } }
        set {
            precondition(newValue.count == 32, "Bytes32 holds exactly 32 bytes")
            newValue.withUnsafeBytes { src in Swift.withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: src) } }
        }
    }

    public init?(_ bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    @inline(__always)
    public init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Fills the 32 bytes in place.
    @inline(__always)
    public init(filling body: (UnsafeMutableRawBufferPointer) -> Void) {
        Swift.withUnsafeMutableBytes(of: &words) { body($0) }
    }

    /// The 32 bytes, without copying them.
    @inline(__always)
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: words) { try body($0) }
    }

    /// Parses exactly 64 lower- or upper-case hex digits.
    public init?(hex: String) {
        var h = hex
        guard let v = h.withUTF8({ Bytes32(hexUTF8: $0) }) else { return nil }
        self = v
    }

    /// Exactly 64 hex digits, either case, as UTF-8 bytes (`init(hex:)` on bytes).
    public init?(hexUTF8 u: UnsafeBufferPointer<UInt8>) {
        guard u.count == 64 else { return nil }
        var ok = true
        Swift.withUnsafeMutableBytes(of: &words) { out in
            for i in 0..<32 {
                let hi = Hex.anyCaseNibble(u[2 * i]), lo = Hex.anyCaseNibble(u[2 * i + 1])
                if hi | lo > 0x0f { ok = false; return }
                out[i] = hi << 4 | lo
            }
        }
        if !ok { return nil }
    }

    /// Whether `u` is exactly this value's lower-case hex (`hex == String(u)`).
    public func isHex(_ u: UnsafeBufferPointer<UInt8>) -> Bool {
        guard u.count == 64 else { return false }
        let table: StaticString = "0123456789abcdef"
        let t = table.utf8Start
        return withUnsafeBytes { b in
            for i in 0..<32 {
                let x = b[i]
                if u[2 * i] != t[Int(x >> 4)] || u[2 * i + 1] != t[Int(x & 0x0f)] { return false }
            }
            return true
        }
    }

    public var hex: String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        withUnsafeBytes { Hex.append($0.assumingMemoryBound(to: UInt8.self), to: &out) }
        return String(decoding: out, as: UTF8.self)
    }
    public var description: String { hex }

    public static func == (a: Bytes32, b: Bytes32) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    public func hash(into h: inout Hasher) {
        h.combine(words.0); h.combine(words.1); h.combine(words.2); h.combine(words.3)
    }

    /// Byte order (unsigned, lexicographic): the order of gatekeeper lottery keys.
    public static func < (a: Bytes32, b: Bytes32) -> Bool {
        let x = (UInt64(bigEndian: a.words.0), UInt64(bigEndian: a.words.1), UInt64(bigEndian: a.words.2), UInt64(bigEndian: a.words.3))
        let y = (UInt64(bigEndian: b.words.0), UInt64(bigEndian: b.words.1), UInt64(bigEndian: b.words.2), UInt64(bigEndian: b.words.3))
        return x < y
    }
}

/// SHA-256, HMAC-SHA256 and random bytes from the system's libcrypto, as the
/// allocation spec requires (ALLOCATION.md, "All hashing ... come from the system OpenSSL").
///
/// `sha256` and `hmac` fetch each algorithm once per process and reuse one
/// context per thread (OpenSSL 3's one-shot calls look the algorithm up under a
/// lock and allocate a context every time); `oneShotSHA256` / `oneShotHMAC` are
/// the plain one-shot calls, kept as the reference the tests compare against.
public enum Crypto {
    public static func sha256(_ data: [UInt8]) -> Bytes32 {
        data.withUnsafeBytes { sha256($0) }
    }

    public static func sha256(_ data: UnsafeRawBufferPointer) -> Bytes32 {
        sha256(data, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// `H(a ‖ b)` without concatenating.
    public static func sha256(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bytes32 {
        var ok: Int32 = 0
        let h = Bytes32 { o in
            ok = whp_sha256_fast2(
                a.baseAddress?.assumingMemoryBound(to: UInt8.self), a.count,
                b.baseAddress?.assumingMemoryBound(to: UInt8.self), b.count,
                o.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        precondition(ok == 1, "libcrypto SHA-256 failed")
        return h
    }

    public static func hmac(key: Bytes32, _ data: [UInt8]) -> Bytes32 {
        data.withUnsafeBytes { hmac(key: key, $0) }
    }

    public static func hmac(key: Bytes32, _ data: UnsafeRawBufferPointer) -> Bytes32 {
        var ok: Int32 = 0
        let h = key.withUnsafeBytes { k in
            Bytes32 { o in
                ok = whp_hmac_sha256_fast(
                    k.baseAddress!.assumingMemoryBound(to: UInt8.self), 32,
                    data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count,
                    o.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        precondition(ok == 1, "libcrypto HMAC-SHA256 failed")
        return h
    }

    /// The plain one-shot `EVP_Digest` (the reference for `sha256`).
    public static func oneShotSHA256(_ data: [UInt8]) -> Bytes32 {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = data.withUnsafeBufferPointer { d in
            out.withUnsafeMutableBufferPointer { o in
                whp_sha256(d.baseAddress, d.count, o.baseAddress)
            }
        }
        precondition(ok == 1, "libcrypto SHA-256 failed")
        return Bytes32(unchecked: out)
    }

    /// The plain one-shot `HMAC()` (the reference for `hmac` and `HMACKey`).
    public static func oneShotHMAC(key: Bytes32, _ data: [UInt8]) -> Bytes32 {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = key.bytes.withUnsafeBufferPointer { k in
            data.withUnsafeBufferPointer { d in
                out.withUnsafeMutableBufferPointer { o in
                    whp_hmac_sha256(k.baseAddress, k.count, d.baseAddress, d.count, o.baseAddress)
                }
            }
        }
        precondition(ok == 1, "libcrypto HMAC-SHA256 failed")
        return Bytes32(unchecked: out)
    }

    /// 32 bytes from `RAND_bytes`; nil only if the generator is not seeded,
    /// in which case no key may be made at all.
    public static func randomKey() -> Bytes32? {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = out.withUnsafeMutableBufferPointer { whp_rand_bytes($0.baseAddress, 32) }
        return ok == 1 ? Bytes32(out) : nil
    }
}

/// HMAC-SHA256 under one fixed key whose key schedule is computed once (the
/// libcrypto HMAC context is keyed at init and restarted per message): for the
/// many MACs under `S` that `verify --seed` re-derives, and the research ids of
/// an export under `Ke`. Same bytes as `Crypto.hmac(key:_:)`, about 5× faster.
///
/// Holds mutable libcrypto state: use one instance from one thread at a time.
public final class HMACKey {
    private let handle: UnsafeMutablePointer<whp_hmac_key>

    public init(_ key: Bytes32) {
        let h = key.withUnsafeBytes { whp_hmac_key_new($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 32) }
        precondition(h != nil, "libcrypto HMAC-SHA256 init failed")
        handle = h!
    }

    deinit { whp_hmac_key_free(handle) }

    /// `HMAC(key, data ‖ more)`, written into `out` (32 bytes).
    @inline(__always)
    public func mac(
        _ data: UnsafeRawBufferPointer, _ more: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        into out: UnsafeMutableRawBufferPointer
    ) {
        precondition(out.count >= 32)
        let ok = whp_hmac_key_mac2(
            handle, data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count,
            more.baseAddress?.assumingMemoryBound(to: UInt8.self), more.count,
            out.baseAddress!.assumingMemoryBound(to: UInt8.self))
        precondition(ok == 1, "libcrypto HMAC-SHA256 failed")
    }

    public func mac(_ data: UnsafeRawBufferPointer, _ more: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> Bytes32 {
        Bytes32 { mac(data, more, into: $0) }
    }

    public func mac(_ data: [UInt8]) -> Bytes32 {
        data.withUnsafeBytes { mac($0) }
    }
}

/// Incremental SHA-256, for files whose bytes should not all sit in memory
/// (exports, bundles).
public final class SHA256Stream {
    private var ctx: OpaquePointer?

    public init() {
        ctx = whp_sha256_new()
        precondition(ctx != nil, "libcrypto SHA-256 init failed")
    }

    deinit { if let ctx { whp_sha256_free(ctx) } }

    public func update(_ data: some ContiguousBytes) {
        data.withUnsafeBytes { p in
            _ = whp_sha256_update(ctx, p.baseAddress?.assumingMemoryBound(to: UInt8.self), p.count)
        }
    }

    public func finish() -> Bytes32 {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = out.withUnsafeMutableBufferPointer { whp_sha256_final(ctx, $0.baseAddress) }
        ctx = nil
        precondition(ok == 1, "libcrypto SHA-256 final failed")
        return Bytes32(out)!
    }
}

/// Anything that exposes contiguous bytes (Array, ArraySlice, UnsafeRawBufferPointer).
public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}
extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}

public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Appends the lower-case hex of `bytes` to `out`.
    @inline(__always)
    public static func append(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        let n = bytes.count
        let table: StaticString = "0123456789abcdef"
        let t = table.utf8Start
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 * n) { d in
            for i in 0..<n {
                let b = bytes[i]
                d[2 * i] = t[Int(b >> 4)]
                d[2 * i + 1] = t[Int(b & 0x0f)]
            }
            out.append(contentsOf: d)
        }
    }

    public static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses hex; with `lowercaseOnly` upper-case digits are refused (the spec's files and payloads are lower-case).
    public static func decode(_ s: String, lowercaseOnly: Bool = false) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i], lowercaseOnly), let lo = nibble(u[i + 1], lowercaseOnly) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    /// A hex digit's value, either case; 0xFF for any other byte.
    @inline(__always)
    static func anyCaseNibble(_ c: UInt8) -> UInt8 {
        let d = c &- 0x30
        if d < 10 { return d }
        let l = (c | 0x20) &- 0x61  // 'A'...'F' and 'a'...'f' only
        return l < 6 ? l &+ 10 : 0xFF
    }

    @inline(__always)
    static func nibble(_ c: UInt8, _ lowerOnly: Bool) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return lowerOnly ? nil : c - 0x41 + 10
        default: return nil
        }
    }

    /// True for exactly `count` lower-case hex digits.
    public static func isLowerHex(_ s: String, count: Int) -> Bool {
        let u = s.utf8
        return u.count == count && u.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// The spec's byte encodings: `enc`, `u32`, `u64` (ALLOCATION.md, Notation).
public struct ByteWriter {
    public var bytes: [UInt8]

    public init(capacity: Int = 128) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u32(_ n: UInt32) {
        ByteWriter.appendU32(n, to: &bytes)
    }

    @inline(__always)
    public static func appendU32(_ n: UInt32, to bytes: inout [UInt8]) {
        bytes.append(UInt8(truncatingIfNeeded: n >> 24))
        bytes.append(UInt8(truncatingIfNeeded: n >> 16))
        bytes.append(UInt8(truncatingIfNeeded: n >> 8))
        bytes.append(UInt8(truncatingIfNeeded: n))
    }

    public mutating func u64(_ n: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: n >> UInt64(shift)))
        }
    }

    /// `enc(s)`: u32 length then the UTF-8 bytes.
    public mutating func enc(_ s: String) {
        var s = s
        s.withUTF8 { u in
            u32(UInt32(u.count))
            bytes.append(contentsOf: u)
        }
    }

    public mutating func enc(bytes raw: [UInt8]) {
        u32(UInt32(raw.count))
        bytes.append(contentsOf: raw)
    }

    public mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    public static func enc(_ s: String) -> [UInt8] {
        var w = ByteWriter(capacity: s.utf8.count + 4)
        w.enc(s)
        return w.bytes
    }
}
