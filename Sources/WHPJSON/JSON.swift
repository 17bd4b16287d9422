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

    /// Key order used for canonical output: unsigned byte-wise comparison of the UTF-8
    /// encodings, a proper prefix first. (Swift's `String <` is not byte order for all input.)
    @inlinable
    public static func utf8Precedes(_ a: String, _ b: String) -> Bool { a.utf8Precedes(b) }
}

extension String {
    /// Compare by UTF-8 bytes, unsigned, a proper prefix first: the spec's
    /// order for payload keys and config paths (Swift's `<` is not that order).
    public func utf8Precedes(_ other: String) -> Bool {
        // Over contiguous bytes: the generic `lexicographicallyPrecedes` of two
        // `UTF8View`s was 2 % of a pipelined refer (sorting each event's keys).
        var a = self, b = other
        return a.withUTF8 { x in
            b.withUTF8 { y in
                for i in 0..<Swift.min(x.count, y.count) where x[i] != y[i] { return x[i] < y[i] }
                return x.count < y.count
            }
        }
    }
}
