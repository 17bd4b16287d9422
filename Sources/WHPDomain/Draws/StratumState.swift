/// Counts per arm, inline (no dictionary to copy on every allocation).
public struct ArmCounts: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public var whp = 0, psc = 0, rcg = 0
    public init() {}
    public init(whp: Int, psc: Int, rcg: Int) { self.whp = whp; self.psc = psc; self.rcg = rcg }
    public init(dictionaryLiteral elements: (Arm, Int)...) {
        for (arm, n) in elements { self[arm] += n }
    }
    public subscript(arm: Arm) -> Int {
        get {
            switch arm {
            case .whp: whp;
            case .psc: psc;
            case .rcg: rcg
            }
        }
        set {
            switch arm {
            case .whp: whp = newValue;
            case .psc: psc = newValue;
            case .rcg: rcg = newValue
            }
        }
    }
}

/// Where a stratum's allocation sequence stands: the next index, and under
/// `permuted_block` the open block and what it has dealt so far.
///
/// This is the only state a draw needs, and `apply` is the one rule of how
/// it moves (ALLOCATION.md §4: block 0 starts at index 0, block b+1 where
/// block b ends). The engine draws from it, the store's projection keeps it
/// per stratum, and `verify` replays it, all through the same functions.
public struct StratumState: Sendable, Equatable {
    /// `i` of the next allocation.
    public var nextIndex: Int = 0
    /// Index of the open block, or -1 before the first.
    public var block: Int = -1
    public var blockStart: Int = 0
    public var blockSize: Int = 0
    /// Arms dealt at earlier positions of the open block.
    public var dealt = ArmCounts()

    public init() {}

    public init(nextIndex: Int, block: Int, blockStart: Int, blockSize: Int, dealt: ArmCounts) {
        self.nextIndex = nextIndex; self.block = block; self.blockStart = blockStart
        self.blockSize = blockSize; self.dealt = dealt
    }

    /// Where the next allocation falls under `permuted_block`: in the open
    /// block, or at position 0 of a new one when none is open or it is full.
    public var nextSlot: (block: Int, position: Int, opensBlock: Bool) {
        if block < 0 || nextIndex >= blockStart + blockSize { return (block + 1, 0, true) }
        return (block, nextIndex - blockStart, false)
    }

    /// Applies an allocation of this stratum: its index becomes the last one
    /// made, a new block number opens that block (starting at `index −
    /// position`), and the arm is dealt.
    public mutating func apply(index: Int, arm: Arm, slot: BlockSlot?) {
        nextIndex = index + 1
        if let slot {
            if slot.block != block {
                block = slot.block
                blockStart = index - slot.position
                blockSize = slot.size
                dealt = ArmCounts()
            }
        }
        // Counted under `simple` too (what the store has always kept); only blocks read it.
        dealt[arm] += 1
    }

    public mutating func apply(_ a: Allocated) { apply(index: a.index, arm: a.arm, slot: a.slot) }
}
