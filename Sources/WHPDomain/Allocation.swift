import WHPCrypto
/// Where a stratum's allocation sequence stands: the next index, and under
/// `permuted_block` the open block and what it has dealt so far.
///
/// This is the only state a draw needs; the store keeps it per stratum and
/// `verify` rebuilds it from `allocated` events.
public struct StratumState: Sendable, Equatable {
    /// `i` of the next allocation.
    public var nextIndex: Int = 0
    /// Index of the open block, or -1 before the first.
    public var block: Int = -1
    public var blockStart: Int = 0
    public var blockSize: Int = 0
    /// Arms dealt at earlier positions of the open block.
    public var dealt: [Arm: Int] = [:]

    public init() {}

    public init(nextIndex: Int, block: Int, blockStart: Int, blockSize: Int, dealt: [Arm: Int]) {
        self.nextIndex = nextIndex; self.block = block; self.blockStart = blockStart
        self.blockSize = blockSize; self.dealt = dealt
    }
}

/// One allocation: everything an `allocated` event records about the draw.
public struct AllocationDraw: Sendable, Equatable {
    public var stratum: String
    public var index: Int
    public var arm: Arm
    public var allocSeed: Bytes32
    /// Present under `permuted_block` only.
    public var block: Int?
    public var blockSize: Int?
    public var position: Int?
}

/// The draws of ALLOCATION.md §4. Pure: the seed and the state go in, the
/// draw and the next state come out.
public enum Allocator {
    /// The arm a draw `t ∈ [0, Σ counts)` lands on, walking arms in canonical order.
    public static func walk(_ t: UInt64, counts: (Arm) -> Int) -> Arm {
        var t = t
        for arm in Arm.allCases {
            let c = UInt64(max(counts(arm), 0))
            if t < c { return arm }
            t -= c
        }
        preconditionFailure("draw outside the urn")
    }

    /// Block `b`'s size `W · M[uniform(k_b, len(M))]`.
    public static func blockSize(seed: Bytes32, trialID: String, stratum: String, block: Int,
                                 weights: Weights, multipliers: [Int]) -> Int {
        let k = Derivation.blockSeed(seed: seed, trialID: trialID, stratum: stratum, block: block)
        return weights.total * multipliers[Int(Uniform.draw(k, UInt64(multipliers.count)))]
    }

    /// The arm at position `p` of a block of `size`, given the arms dealt before it.
    /// Used by the service and, without the seed, by `verify` from stored facts.
    public static func permutedBlockArm(allocSeed: Bytes32, weights: Weights, blockSize: Int,
                                        position: Int, dealt: [Arm: Int]) -> Arm? {
        guard weights.total > 0, blockSize % weights.total == 0, position < blockSize else { return nil }
        let m = blockSize / weights.total
        let t = Uniform.draw(allocSeed, UInt64(blockSize - position))
        return walk(t) { weights[$0] * m - dealt[$0, default: 0] }
    }

    public static func simpleArm(allocSeed: Bytes32, weights: Weights) -> Arm {
        walk(Uniform.draw(allocSeed, UInt64(weights.total))) { weights[$0] }
    }

    /// The next allocation of a stratum.
    public static func next(state: StratumState, seed: Bytes32, trialID: String, stratum: String,
                            weights: Weights, method: AllocationMethod, multipliers: [Int]) -> (AllocationDraw, StratumState) {
        let i = state.nextIndex
        let a = Derivation.allocationSeed(seed: seed, trialID: trialID, stratum: stratum, index: i)
        var s = state
        s.nextIndex = i + 1
        switch method {
        case .simple:
            let arm = simpleArm(allocSeed: a, weights: weights)
            return (AllocationDraw(stratum: stratum, index: i, arm: arm, allocSeed: a), s)
        case .permutedBlock:
            if s.block < 0 || i >= s.blockStart + s.blockSize {
                s.blockStart = s.block < 0 ? 0 : s.blockStart + s.blockSize
                s.block += 1
                s.blockSize = blockSize(seed: seed, trialID: trialID, stratum: stratum, block: s.block,
                                        weights: weights, multipliers: multipliers)
                s.dealt = [:]
            }
            let p = i - s.blockStart
            let arm = permutedBlockArm(allocSeed: a, weights: weights, blockSize: s.blockSize, position: p, dealt: s.dealt)!
            s.dealt[arm, default: 0] += 1
            return (AllocationDraw(stratum: stratum, index: i, arm: arm, allocSeed: a,
                                   block: s.block, blockSize: s.blockSize, position: p), s)
        }
    }
}

/// A referral a gatekeeper run may decide, with what its ordering rules read.
public struct PendingReferral: Sendable, Equatable {
    public var referralID: String
    public var referralDate: CivilDate
    /// Sequence number of its `referred` event.
    public var referredSeq: Int
    public init(referralID: String, referralDate: CivilDate, referredSeq: Int) {
        self.referralID = referralID; self.referralDate = referralDate; self.referredSeq = referredSeq
    }
}

/// Which pending referrals a capacity run selects (ALLOCATION.md §4, "Gatekeeper lottery").
public enum GatekeeperSelection {
    /// Returns the selected ids; lottery keys are given for the `lottery` rule.
    public static func select(_ pending: [PendingReferral], capacity: Int, rule: GatekeeperRule,
                              lotteryKey: (String) -> Bytes32) -> (selected: Set<String>, keys: [String: Bytes32]) {
        switch rule {
        case .fifo:
            let order = pending.sorted { ($0.referralDate, $0.referredSeq) < ($1.referralDate, $1.referredSeq) }
            return (Set(order.prefix(capacity).map(\.referralID)), [:])
        case .lottery:
            var keys: [String: Bytes32] = [:]
            for p in pending { keys[p.referralID] = lotteryKey(p.referralID) }
            let order = pending.sorted { keys[$0.referralID]! < keys[$1.referralID]! }
            return (Set(order.prefix(capacity).map(\.referralID)), keys)
        }
    }
}
