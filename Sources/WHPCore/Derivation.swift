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

    /// §5: the claimant pseudonym, under the deployment's pseudonym key `Kp`.
    public static func pseudonym(key: Bytes32, claimant: ClaimantID) -> Pseudonym {
        pseudonym(key: key, normalisedID: claimant.normalised)
    }

    public static func pseudonym(key: Bytes32, normalisedID: String) -> Pseudonym {
        var w = ByteWriter()
        w.enc("whp/claimant/v1"); w.enc(normalisedID)
        return Pseudonym(hex: Crypto.hmac(key: key, w.bytes).hex)
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

/// ALLOCATION.md §3: an unbiased integer in `[0, n)` from a 32-byte seed.
public enum Uniform {
    /// The j-th 64-bit word of a seed's stream. A parameter so the rejection
    /// branch (probability < 2^-32) can be tested with a substituted source.
    public typealias WordSource = @Sendable (_ seed: Bytes32, _ j: UInt64) -> UInt64

    public static let hmacWords: WordSource = { seed, j in
        var w = ByteWriter(capacity: 26)
        w.enc("whp/uniform/v1"); w.u64(j)
        let h = Crypto.hmac(key: seed, w.bytes).bytes
        var x: UInt64 = 0
        for k in 0..<8 { x = x << 8 | UInt64(h[k]) }
        return x
    }

    /// `uniform(seed, n)` for `1 ≤ n ≤ 2^32`.
    public static func draw(_ seed: Bytes32, _ n: UInt64, words: WordSource = hmacWords) -> UInt64 {
        precondition(n >= 1 && n <= 1 << 32, "uniform: n out of range")
        let r = (0 &- n) % n
        var j: UInt64 = 0
        while true {
            let x = words(seed, j)
            if x <= UInt64.max - r { return x % n }
            j += 1
        }
    }
}
