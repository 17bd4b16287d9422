import WHPCrypto
import Synchronization

/// Every value derived from the trial's secrets, byte for byte as
/// ALLOCATION.md §1, §2, §5 and §7 fix them. Nothing here stores or logs a key.
public enum Derivation {
    /// §1: `C = H(enc("whp/seed-commitment/v1") ‖ enc(trial_id) ‖ S)`.
    public static func commitment(trialID: String, seed: Bytes32) -> Bytes32 {
        var w = ByteWriter()
        w.enc("whp/seed-commitment/v1")
        w.enc(trialID)
        w.raw(seed.bytes)
        return Crypto.sha256(w.bytes)
    }

    /// §2: allocation seed `a_i` of stratum σ.
    public static func allocationSeed(seed: Bytes32, trialID: String, stratum: String, index: Int) -> Bytes32 {
        var w = ByteWriter()
        w.enc("whp/alloc/v1"); w.enc(trialID); w.enc(stratum); w.u64(UInt64(index))
        return Crypto.hmac(key: seed, w.bytes)
    }

    /// §2: block seed `k_b` of stratum σ.
    public static func blockSeed(seed: Bytes32, trialID: String, stratum: String, block: Int) -> Bytes32 {
        var w = ByteWriter()
        w.enc("whp/block/v1"); w.enc(trialID); w.enc(stratum); w.u64(UInt64(block))
        return Crypto.hmac(key: seed, w.bytes)
    }

    /// §2: a referral's gatekeeper lottery key within one run.
    public static func lotteryKey(seed: Bytes32, trialID: String, runID: String, referralID: String) -> Bytes32 {
        var w = ByteWriter()
        w.enc("whp/gatekeeper/v1"); w.enc(trialID); w.enc(runID); w.enc(referralID)
        return Crypto.hmac(key: seed, w.bytes)
    }

    /// RULES2 R15: provider seed `p_j` of provider stratum π.
    public static func providerSeed(seed: Bytes32, trialID: String, providerStratum: String, index: Int) -> Bytes32 {
        var w = ByteWriter()
        w.enc("whp/provider/v1"); w.enc(trialID); w.enc(providerStratum); w.u64(UInt64(index))
        return Crypto.hmac(key: seed, w.bytes)
    }

    /// RULES2 R15: provider block seed `q_b` of provider stratum π.
    public static func providerBlockSeed(seed: Bytes32, trialID: String, providerStratum: String, block: Int) -> Bytes32 {
        var w = ByteWriter()
        w.enc("whp/provider-block/v1"); w.enc(trialID); w.enc(providerStratum); w.u64(UInt64(block))
        return Crypto.hmac(key: seed, w.bytes)
    }

    /// RULES2 R4: the key check `HMAC(K, enc("whp/key-check/v1"))` that binds a
    /// pseudonym or evaluation key to its trial without revealing it.
    public static func keyCheck(_ key: Bytes32) -> Bytes32 {
        var w = ByteWriter()
        w.enc("whp/key-check/v1")
        return Crypto.hmac(key: key, w.bytes)
    }

    /// §5: the claimant pseudonym, under the deployment's pseudonym key `Kp`.
    public static func pseudonym(key: Bytes32, claimant: ClaimantID) -> Pseudonym {
        pseudonym(key: key, normalisedID: claimant.normalised)
    }

    public static func pseudonym(key: Bytes32, normalisedID: String) -> Pseudonym {
        var w = ByteWriter()
        w.enc("whp/claimant/v1"); w.enc(normalisedID)
        return Pseudonym(hex: Crypto.hmac(key: key, w.bytes).hex)
    }

    /// §5 pseudonyms under `Kp` with its key schedule computed once, for the
    /// service, which pseudonymises every claimant it is sent: the same bytes
    /// as `pseudonym(key:normalisedID:)`, several times faster. Safe to share
    /// between threads (the libcrypto context sits behind a mutex).
    public final class PseudonymKey: Sendable {
        private let key: Mutex<HMACKey>
        private let prefix = ByteWriter.enc("whp/claimant/v1")

        public init(_ key: Bytes32) { self.key = Mutex(HMACKey(key)) }

        public func pseudonym(normalisedID: String) -> Pseudonym {
            var message = prefix
            var id = normalisedID
            id.withUTF8 { u in
                ByteWriter.appendU32(UInt32(u.count), to: &message)
                message.append(contentsOf: u)
            }
            let mac = key.withLock { k in message.withUnsafeBytes { k.mac($0) } }
            return Pseudonym(hex: mac.hex)
        }

        public func pseudonym(_ claimant: ClaimantID) -> Pseudonym { pseudonym(normalisedID: claimant.normalised) }
    }

    /// §5: the research id in an evaluation export, under the evaluation key `Ke`.
    public static func researchID(key: Bytes32, pseudonym: Pseudonym) -> String {
        var w = ByteWriter()
        w.enc("whp/research-id/v1"); w.enc(pseudonym.hex)
        return Crypto.hmac(key: key, w.bytes).hex
    }

    /// §7: `h_0`, the hash the chain starts from.
    public static func genesis(trialID: String, commitment: Bytes32) -> Bytes32 {
        var w = ByteWriter()
        w.enc("whp/genesis/v1"); w.enc(trialID); w.raw(commitment.bytes)
        return Crypto.sha256(w.bytes)
    }
}

/// The derivations of ALLOCATION.md §2 under one trial's seed `S`, with the
/// HMAC key schedule computed once and the constant message prefixes built
/// once: what `verify --seed` re-derives for every allocation and lottery key.
/// Same bytes as the `Derivation` functions. One thread at a time.
public final class SeedDerivation {
    private let key: HMACKey
    private var alloc: [UInt8], block: [UInt8], lottery: [UInt8]
    private var scratch: [UInt8] = []

    private let seed: Bytes32
    private let trialID: String

    public init(seed: Bytes32, trialID: String) {
        self.seed = seed
        self.trialID = trialID
        key = HMACKey(seed)
        alloc = ByteWriter.enc("whp/alloc/v1") + ByteWriter.enc(trialID)
        block = ByteWriter.enc("whp/block/v1") + ByteWriter.enc(trialID)
        lottery = ByteWriter.enc("whp/gatekeeper/v1") + ByteWriter.enc(trialID)
        scratch.reserveCapacity(128)
    }

    private func mac(_ prefix: [UInt8]) -> Bytes32 {
        prefix.withUnsafeBytes { p in scratch.withUnsafeBytes { key.mac(p, $0) } }
    }

    private func encScratch(_ s: String) {
        var s = s
        s.withUTF8 { u in
            ByteWriter.appendU32(UInt32(u.count), to: &scratch)
            scratch.append(contentsOf: u)
        }
    }

    private func u64Scratch(_ n: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { scratch.append(UInt8(truncatingIfNeeded: n >> UInt64(shift))) }
    }

    /// `a_i` of stratum σ.
    public func allocationSeed(stratum: String, index: Int) -> Bytes32 {
        scratch.removeAll(keepingCapacity: true)
        encScratch(stratum); u64Scratch(UInt64(index))
        return mac(alloc)
    }

    /// `k_b` of stratum σ.
    public func blockSeed(stratum: String, block b: Int) -> Bytes32 {
        scratch.removeAll(keepingCapacity: true)
        encScratch(stratum); u64Scratch(UInt64(b))
        return mac(block)
    }

    /// RULES2 R15: `p_j` and `q_b` of provider stratum π (not on the hot path: the one-shot forms).
    public func providerSeed(providerStratum: String, index: Int) -> Bytes32 {
        Derivation.providerSeed(seed: seed, trialID: trialID, providerStratum: providerStratum, index: index)
    }

    public func providerBlockSeed(providerStratum: String, block: Int) -> Bytes32 {
        Derivation.providerBlockSeed(seed: seed, trialID: trialID, providerStratum: providerStratum, block: block)
    }

    /// A referral's gatekeeper lottery key within one run.
    public func lotteryKey(runID: String, referralID: String) -> Bytes32 {
        scratch.removeAll(keepingCapacity: true)
        encScratch(runID); encScratch(referralID)
        return mac(lottery)
    }
}

/// Research ids (ALLOCATION.md §5) under the evaluation key `Ke`, with its key
/// schedule computed once; writes the hex straight into an output buffer.
/// Same bytes as `Derivation.researchID`. One thread at a time.
public final class ResearchIDs {
    private let key: HMACKey
    private var message: [UInt8]
    private let prefixCount: Int

    public init(key: Bytes32) {
        self.key = HMACKey(key)
        message = ByteWriter.enc("whp/research-id/v1")
        prefixCount = message.count
        message.reserveCapacity(prefixCount + 4 + 64)
    }

    /// Appends the 64 hex digits of the research id of `pseudonymHex` to `out`.
    public func appendHex(pseudonymHex: String, to out: inout [UInt8]) {
        withMAC(pseudonymHex) { Hex.append($0, to: &out) }
    }

    /// Appends the research id's 32 bytes themselves. They sort as their hex
    /// digits do (lower-case hex is order-preserving), so the export sorts on
    /// half the bytes (RULES2 R11).
    public func appendRaw(pseudonymHex: String, to out: inout [UInt8]) {
        withMAC(pseudonymHex) { out.append(contentsOf: $0) }
    }

    private func withMAC(_ pseudonymHex: String, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        message.removeSubrange(prefixCount...)
        var p = pseudonymHex
        p.withUTF8 { u in
            ByteWriter.appendU32(UInt32(u.count), to: &message)
            message.append(contentsOf: u)
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { h in
            message.withUnsafeBytes { key.mac($0, into: UnsafeMutableRawBufferPointer(h)) }
            body(UnsafeBufferPointer(h))
        }
    }

    public func researchID(pseudonymHex: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        appendHex(pseudonymHex: pseudonymHex, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

/// ALLOCATION.md §3: an unbiased integer in `[0, n)` from a 32-byte seed.
public enum Uniform {
    /// The j-th 64-bit word of a seed's stream. A parameter so the rejection
    /// branch (probability < 2^-32) can be tested with a substituted source.
    public typealias WordSource = @Sendable (_ seed: Bytes32, _ j: UInt64) -> UInt64

    public static let hmacWords: WordSource = { seed, j in
        // enc("whp/uniform/v1") ‖ u64(j): 4 + 14 + 8 bytes.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 26) { m in
            let label: StaticString = "whp/uniform/v1"
            m[0] = 0; m[1] = 0; m[2] = 0; m[3] = 14
            UnsafeMutableRawPointer(m.baseAddress! + 4).copyMemory(from: label.utf8Start, byteCount: 14)
            for k in 0..<8 { m[18 + k] = UInt8(truncatingIfNeeded: j >> UInt64(56 - 8 * k)) }
            return Crypto.hmac(key: seed, UnsafeRawBufferPointer(m)).withUnsafeBytes { h in
                var x: UInt64 = 0
                for k in 0..<8 { x = x << 8 | UInt64(h[k]) }
                return x
            }
        }
    }

    /// The largest `n` of `uniform` (ALLOCATION.md §3).
    public static let maxN = 1 << 32

    /// `uniform(seed, n)` for `1 ≤ n ≤ 2^32`; nil for any other `n`, so a
    /// block size read from a crafted log can never trap the verifier.
    public static func draw(_ seed: Bytes32, _ n: UInt64, words: WordSource = hmacWords) -> UInt64? {
        guard n >= 1 && n <= UInt64(maxN) else { return nil }
        let r = (0 &- n) % n
        var j: UInt64 = 0
        while true {
            let x = words(seed, j)
            if x <= UInt64.max - r { return x % n }
            j += 1
        }
    }
}
