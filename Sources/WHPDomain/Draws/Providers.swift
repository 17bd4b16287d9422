import WHPCrypto

/// The providers' shares of one district and arm (RULES2 R15): every
/// provider of that district and arm, zero shares included, sorted by id
/// (UTF-8 bytes). `text` is the `provider_shares` string an allocation
/// records, and two shares are the same exactly when their texts are.
public struct ProviderShares: Sendable, Equatable, Hashable, CustomStringConvertible {
    public private(set) var entries: [(id: String, share: Int)]

    public init(_ shares: [String: Int]) {
        entries = shares.map { (id: $0.key, share: $0.value) }.sorted { $0.id.utf8.lexicographicallyPrecedes($1.id.utf8) }
    }

    /// Parses `id=share,…`; nil unless it is exactly such a list (ids
    /// strictly increasing, shares decimals of at most 1000).
    public init?(text: String) {
        var out: [(id: String, share: Int)] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, !kv[0].isEmpty, let n = PayloadDecimal.parse(String(kv[1])), n <= 1000 else { return nil }
            let id = String(kv[0])
            if let last = out.last, !last.id.utf8.lexicographicallyPrecedes(id.utf8) { return nil }
            out.append((id, n))
        }
        guard !out.isEmpty else { return nil }
        entries = out
    }

    public var text: String { entries.map { "\($0.id)=\($0.share)" }.joined(separator: ",") }
    public var description: String { text }
    public var ids: [String] { entries.map(\.id) }
    /// The providers a draw can land on: share > 0, in id order.
    public var drawable: [(id: String, share: Int)] { entries.filter { $0.share > 0 } }
    /// `W` of the provider urn.
    public var total: Int { entries.reduce(0) { $0 + $1.share } }
    public func share(of id: String) -> Int? { entries.first { $0.id == id }?.share }

    public static func == (a: Self, b: Self) -> Bool { a.text == b.text }
    public func hash(into h: inout Hasher) { h.combine(text) }
}

/// Where a provider stratum π's sequence stands: the same block machinery as
/// a stratum's arms, over providers, and a block also ends when the shares in
/// force change (RULES2 R15: the open block is abandoned).
public struct ProviderStratumState: Sendable, Equatable {
    public var nextIndex = 0
    public var block = -1
    public var blockStart = 0
    public var blockSize = 0
    /// The shares text the open block was opened with.
    public var shares = ""
    /// Providers dealt at earlier positions of the open block.
    public var dealt: [String: Int] = [:]

    public init() {}

    public init(nextIndex: Int, block: Int, blockStart: Int, blockSize: Int, shares: String, dealtText: String) {
        self.nextIndex = nextIndex; self.block = block; self.blockStart = blockStart; self.blockSize = blockSize
        self.shares = shares
        for part in dealtText.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 2, let n = Int(kv[1]) { dealt[String(kv[0])] = n }
        }
    }

    /// `id=count,…` sorted by id, as the store keeps `dealt`.
    public var dealtText: String {
        dealt.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.map { "\($0)=\(dealt[$0]!)" }.joined(separator: ",")
    }

    /// Where the next draw under `shares` falls: a new block at position 0
    /// when none is open, it is full, or the shares changed.
    public func nextSlot(shares current: String) -> (block: Int, position: Int, opensBlock: Bool) {
        if block < 0 || nextIndex >= blockStart + blockSize || current != shares { return (block + 1, 0, true) }
        return (block, nextIndex - blockStart, false)
    }

    public mutating func apply(_ p: ProviderAllocation) {
        nextIndex = p.index + 1
        if let slot = p.slot {
            if slot.block != block || p.shares != shares {
                block = slot.block
                blockStart = p.index - slot.position
                blockSize = slot.size
                dealt = [:]
            }
        }
        shares = p.shares
        dealt[p.provider, default: 0] += 1
    }
}

/// The provider draw of RULES2 R15: ALLOCATION.md §4's method over the
/// providers with a share, using the provider seeds.
public enum ProviderDraw {
    /// π = σ + "|" + arm.
    public static func stratum(_ sigma: String, arm: Arm) -> String { sigma + "|" + arm.rawValue }

    /// The provider at a block position, given those dealt before it; nil when
    /// the facts cannot come from the shares (a crafted log), never a trap.
    public static func permutedBlock(
        seed: Bytes32, shares: ProviderShares, blockSize: Int, position: Int,
        dealt: [String: Int]
    ) -> String? {
        let urn = shares.drawable
        let w = urn.reduce(0) { $0 + $1.share }
        guard w > 0, blockSize > 0, blockSize <= Uniform.maxN, blockSize % w == 0, position >= 0, position < blockSize else { return nil }
        let m = blockSize / w
        var remaining: [Int] = []
        for p in urn {
            let r = p.share * m - dealt[p.id, default: 0]
            guard r >= 0 else { return nil }
            remaining.append(r)
        }
        guard remaining.reduce(0, +) == blockSize - position,
            var t = Uniform.draw(seed, UInt64(blockSize - position))
        else { return nil }
        for (p, r) in zip(urn, remaining) {
            if t < UInt64(r) { return p.id }
            t -= UInt64(r)
        }
        return nil
    }

    public static func simple(seed: Bytes32, shares: ProviderShares) -> String? {
        let urn = shares.drawable
        let w = urn.reduce(0) { $0 + $1.share }
        guard w > 0, var t = Uniform.draw(seed, UInt64(w)) else { return nil }
        for p in urn {
            if t < UInt64(p.share) { return p.id }
            t -= UInt64(p.share)
        }
        return nil
    }

    /// Block `b`'s size: `W · M[uniform(q_b, len M)]`.
    public static func blockSize(blockSeed: Bytes32, shares: ProviderShares, multipliers: [Int]) -> Int? {
        let w = shares.drawable.reduce(0) { $0 + $1.share }
        guard w > 0, !multipliers.isEmpty, let k = Uniform.draw(blockSeed, UInt64(multipliers.count)) else { return nil }
        return w * multipliers[Int(k)]
    }

    /// The next provider draw of π under `shares`, from the seed (the service).
    public static func next(
        state: ProviderStratumState, seed: Bytes32, trialID: String, stratum: String,
        shares: ProviderShares, method: AllocationMethod, multipliers: [Int]
    ) -> ProviderAllocation? {
        let j = state.nextIndex
        let p = Derivation.providerSeed(seed: seed, trialID: trialID, providerStratum: stratum, index: j)
        switch method {
        case .simple:
            guard let id = simple(seed: p, shares: shares) else { return nil }
            return ProviderAllocation(provider: id, stratum: stratum, index: j, seed: p, shares: shares.text, slot: nil)
        case .permutedBlock:
            let slot = state.nextSlot(shares: shares.text)
            let size: Int
            if slot.opensBlock {
                let q = Derivation.providerBlockSeed(seed: seed, trialID: trialID, providerStratum: stratum, block: slot.block)
                guard let s = blockSize(blockSeed: q, shares: shares, multipliers: multipliers) else { return nil }
                size = s
            } else {
                size = state.blockSize
            }
            guard
                let id = permutedBlock(
                    seed: p, shares: shares, blockSize: size, position: slot.position,
                    dealt: slot.opensBlock ? [:] : state.dealt)
            else { return nil }
            return ProviderAllocation(
                provider: id, stratum: stratum, index: j, seed: p, shares: shares.text,
                slot: BlockSlot(block: slot.block, size: size, position: slot.position))
        }
    }
}

/// Which shares a provider draw uses (RULES2 R15): among the `shares_set`
/// events for its district and arm earlier in the log, the one with the
/// latest `effective` on or before the allocation's recorded date (ties: the
/// greatest seq); without one, the config's.
public enum SharesInForce {
    public struct Change: Sendable, Equatable {
        public var effective: CivilDate
        public var shares: String
        public var seq: Int
        public init(effective: CivilDate, shares: String, seq: Int) { self.effective = effective; self.shares = shares; self.seq = seq }
    }

    /// Nil only when the change in force does not parse (a crafted log).
    public static func on(_ date: CivilDate, changes: [Change], configured: ProviderShares) -> ProviderShares? {
        var best: Change?
        for c in changes where c.effective <= date {
            if let b = best, (c.effective, c.seq) < (b.effective, b.seq) { continue }
            best = c
        }
        guard let best else { return configured }
        return ProviderShares(text: best.shares)
    }
}
