/// Event payloads as stored and as written into audit bundles: a flat JSON
/// object of strings with keys in the spec's byte order, so the text is
/// canonical and diffable. Decoding is strict (`JSON`), so a tampered payload
/// that is no longer a flat string map is caught, not guessed at.
public enum PayloadJSON {
    public static func encode(_ payload: [String: String]) -> String {
        String(decoding: JSON.encodeFlatStringMap(payload), as: UTF8.self)
    }

    public static func decode(_ text: String) throws(JSONParseError) -> [String: String] {
        try JSON.parseFlatStringMap(Array(text.utf8))
    }
}
