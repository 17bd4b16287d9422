// The byte-level layer under the decoder: UTF-8 validation of a whole line
// before any token is read, and byte-exact key identity.

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
