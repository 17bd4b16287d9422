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
