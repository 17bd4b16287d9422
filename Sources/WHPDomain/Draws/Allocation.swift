import WHPCrypto
/// One allocation: everything an `allocated` event records about the draw.
public struct AllocationDraw: Sendable, Equatable {
    public var stratum: String
    public var index: Int
    public var arm: Arm
    public var allocSeed: Bytes32
    /// Present under `permuted_block` only.
    public var slot: BlockSlot?
    public var block: Int? { slot?.block }
    public var blockSize: Int? { slot?.size }
    public var position: Int? { slot?.position }
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
    public static func blockSize(
        seed: Bytes32, trialID: String, stratum: String, block: Int,
        weights: Weights, multipliers: [Int]
    ) -> Int {
        let k = Derivation.blockSeed(seed: seed, trialID: trialID, stratum: stratum, block: block)
        return weights.total * multipliers[Int(Uniform.draw(k, UInt64(multipliers.count))!)]
    }

    /// The arm at position `p` of a block of `size`, given the arms dealt before it.
    /// Used by the service and, without the seed, by `verify` from stored facts.
    /// Nil when the block's facts cannot come from the weights (a size that
    /// is not a multiple of W, a position past the end, an arm dealt more
    /// often than the block holds): a tampered log, never a trap.
    public static func permutedBlockArm(
        allocSeed: Bytes32, weights: Weights, blockSize: Int,
        position: Int, dealt: ArmCounts
    ) -> Arm? {
        guard weights.total > 0, blockSize > 0, blockSize <= Uniform.maxN, blockSize % weights.total == 0,
            position >= 0, position < blockSize
        else { return nil }
        let m = blockSize / weights.total
        var remaining = 0
        for arm in Arm.allCases {
            let r = weights[arm] * m - dealt[arm]
            guard r >= 0 else { return nil }
            remaining += r
        }
        guard remaining == blockSize - position, let t = Uniform.draw(allocSeed, UInt64(blockSize - position)) else { return nil }
        return walk(t) { weights[$0] * m - dealt[$0] }
    }

    public static func simpleArm(allocSeed: Bytes32, weights: Weights) -> Arm {
        walk(Uniform.draw(allocSeed, UInt64(weights.total))!) { weights[$0] }
    }

    /// The next allocation of a stratum, and the state after it.
    public static func next(
        state: StratumState, seed: Bytes32, trialID: String, stratum: String,
        weights: Weights, method: AllocationMethod, multipliers: [Int]
    ) -> (AllocationDraw, StratumState) {
        let i = state.nextIndex
        let a = Derivation.allocationSeed(seed: seed, trialID: trialID, stratum: stratum, index: i)
        var s = state
        switch method {
        case .simple:
            let arm = simpleArm(allocSeed: a, weights: weights)
            s.apply(index: i, arm: arm, slot: nil)
            return (AllocationDraw(stratum: stratum, index: i, arm: arm, allocSeed: a), s)
        case .permutedBlock:
            let next = state.nextSlot
            let size =
                next.opensBlock
                ? blockSize(seed: seed, trialID: trialID, stratum: stratum, block: next.block, weights: weights, multipliers: multipliers)
                : state.blockSize
            let dealt = next.opensBlock ? ArmCounts() : state.dealt
            let arm = permutedBlockArm(allocSeed: a, weights: weights, blockSize: size, position: next.position, dealt: dealt)!
            let slot = BlockSlot(block: next.block, size: size, position: next.position)
            s.apply(index: i, arm: arm, slot: slot)
            return (AllocationDraw(stratum: stratum, index: i, arm: arm, allocSeed: a, slot: slot), s)
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
    public static func select(
        _ pending: [PendingReferral], capacity: Int, rule: GatekeeperRule,
        lotteryKey: (String) -> Bytes32
    ) -> (selected: Set<String>, keys: [String: Bytes32]) {
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
