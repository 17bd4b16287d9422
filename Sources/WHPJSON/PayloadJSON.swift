/// Event payloads as stored and as written into audit bundles: a flat JSON
/// object of strings with keys in the spec's byte order, so the text is
/// canonical and diffable. Decoding is strict (`JSON`), so a tampered payload
/// that is no longer a flat string map is caught, not guessed at.
public enum PayloadJSON {
    public static func encode(_ payload: [String: String]) -> String {
        encode(sortedPairs: payload.sorted { JSON.utf8Precedes($0.key, $1.key) })
    }

    /// The same, from the entries already sorted by UTF-8 bytes of their keys.
    public static func encode(sortedPairs: [(key: String, value: String)]) -> String {
        var w = JSONWriter(capacity: 16 + sortedPairs.count * 40)
        w.beginObject()
        for (k, v) in sortedPairs { w.key(k); w.string(v) }
        w.endObject()
        return String(decoding: w.bytes, as: UTF8.self)
    }

    public static func decode(_ text: String) throws(JSONParseError) -> [String: String] {
        try JSON.parseFlatStringMap(Array(text.utf8))
    }
}
