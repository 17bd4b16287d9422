import WHPCrypto
import WHPDomain
import WHPJSON

/// The verifier's byte-level payload reader as a `PayloadSource`: typed
/// reads straight from the stored bytes, without a dictionary.
extension PayloadFields: PayloadSource {
    public func text(_ key: PayloadKey) -> String? { self[key.text] }
    public func has(_ key: PayloadKey) -> Bool { has(key.text) }
    public func date(_ key: PayloadKey) -> CivilDate? { withValue(key.text) { CivilDate(utf8: $0) } ?? nil }
    public func instant(_ key: PayloadKey) -> Instant? { withValue(key.text) { Instant(utf8: $0) } ?? nil }
    public func bytes32(_ key: PayloadKey) -> Bytes32? { withValue(key.text) { Bytes32(hexUTF8: $0) } ?? nil }
    public func decimal(_ key: PayloadKey) -> Int? { withValue(key.text) { PayloadDecimal.parse($0) } ?? nil }
}
