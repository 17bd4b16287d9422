import WHPCrypto
/// A claimant as the service knows them: a NINO or a 12-digit DCAMS reference.
///
/// The two are different claimants to the service (PROTOCOL.md §3), so the
/// normalised form carries its kind: `NINO:AB123456C` or `REF:123456789012`.
public enum ClaimantID: Hashable, Sendable {
    case nino(String)
    case reference(String)

    /// The normalised id that the pseudonym is computed over (ALLOCATION.md §5).
    public var normalised: String {
        switch self {
        case .nino(let n): return "NINO:" + n
        case .reference(let r): return "REF:" + r
        }
    }

    /// Accepts a NINO with spaces and any case, as work coaches type it; nil if invalid.
    public static func nino(parsing raw: String) -> ClaimantID? {
        var u = [UInt8]()
        u.reserveCapacity(9)
        for c in raw.utf8 where c != 0x20 {
            guard u.count < 9 else { return nil }
            u.append((0x61...0x7a).contains(c) ? c - 0x20 : c)
        }
        guard isValidNINO(u) else { return nil }
        return .nino(String(decoding: u, as: UTF8.self))
    }

    /// Exactly 12 ASCII digits.
    public static func reference(parsing raw: String) -> ClaimantID? {
        let u = raw.utf8
        guard u.count == 12, u.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return .reference(raw)
    }

    /// HMRC's format: two prefix letters (D, F, I, Q, U, V never; O never second;
    /// BG, GB, KN, NK, NT, TN, ZZ not allocated), six digits, suffix A–D.
    static func isValidNINO(_ u: [UInt8]) -> Bool {
        guard u.count == 9 else { return false }
        guard (0x41...0x5a).contains(u[0]), (0x41...0x5a).contains(u[1]),
            ninoFirst[Int(u[0] - 0x41)], ninoSecond[Int(u[1] - 0x41)]
        else { return false }
        let prefix = UInt16(u[0]) << 8 | UInt16(u[1])
        guard !ninoUnallocatedPrefixes.contains(prefix) else { return false }
        guard u[2..<8].allSatisfy({ (0x30...0x39).contains($0) }) else { return false }
        return (0x41...0x44).contains(u[8])
    }
}

/// A claimant's pseudonym: what the store keeps instead of any raw identifier.
public struct Pseudonym: Hashable, Sendable, Comparable {
    public let hex: String
    public init(hex: String) { self.hex = hex }
    public static func < (a: Pseudonym, b: Pseudonym) -> Bool { a.hex < b.hex }
}

/// Letters allowed first and second in a NINO prefix, indexed by letter (A = 0).
private let ninoFirst: [Bool] = (0..<26).map { Array("ABCEGHJKLMNOPRSTWXYZ".utf8).contains(UInt8(0x41 + $0)) }
private let ninoSecond: [Bool] = (0..<26).map { Array("ABCEGHJKLMNPRSTWXYZ".utf8).contains(UInt8(0x41 + $0)) }
/// Prefixes HMRC never allocates.
private let ninoUnallocatedPrefixes: [UInt16] = ["BG", "GB", "KN", "NK", "NT", "TN", "ZZ"].map { p in
    let u = Array(p.utf8)
    return UInt16(u[0]) << 8 | UInt16(u[1])
}
