import WHPCrypto
import WHPDomain
import WHPJSON

/// Typed reads of a stored payload's fields, without building strings.
extension PayloadFields {
    /// `payload[key].flatMap(CivilDate.init)`.
    public func date(_ key: StaticString) -> CivilDate? { withValue(key) { CivilDate(utf8: $0) } ?? nil }

    /// `payload[key].flatMap(Instant.init)`.
    public func instant(_ key: StaticString) -> Instant? { withValue(key) { Instant(utf8: $0) } ?? nil }

    /// `payload[key].flatMap(Bytes32.init(hex:))`.
    public func bytes32(_ key: StaticString) -> Bytes32? { withValue(key) { Bytes32(hexUTF8: $0) } ?? nil }

}
