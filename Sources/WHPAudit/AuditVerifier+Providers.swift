import WHPCrypto
import WHPDomain

/// Provider draws (RULES2 R15): every provider re-derived from its stored
/// seed, its block and the shares in force; with the seed, every provider
/// seed and block size derived again.
extension AuditVerifier {
    mutating func sharesSet(_ e: SharesSet, _ seq: Int) {
        sawProviderEvent = true
        guard let configured = config.district(e.district)?.configuredShares(of: e.arm) else {
            fail(.providers, seq, "event \(seq): shares_set for \(e.district) \(e.arm.rawValue), which has no providers"); return
        }
        guard let shares = ProviderShares(text: e.shares), shares.ids == configured.ids, shares.total > 0 else {
            fail(.providers, seq, "event \(seq): shares \(e.shares) do not name exactly the providers \(configured.ids), with a share above 0"); return
        }
        guard CalendarRange.contains(e.effective) else {
            fail(.providers, seq, "event \(seq): effective \(e.effective.iso) is outside 1900–2999"); return
        }
        if let day = recordedDay(e.recordedAt), e.effective < day {
            fail(.providers, seq, "event \(seq): effective \(e.effective.iso) is before the day it was recorded")
        }
        shareChanges[e.district + "|" + e.arm.rawValue, default: []].append(
            SharesInForce.Change(effective: e.effective, shares: e.shares, seq: seq))
    }

    /// The provider part of an allocation, after its arm was judged.
    mutating func providerDraw(_ e: Allocated, district: District, _ seq: Int) {
        let configured = district.configuredShares(of: e.arm)
        guard let configured else {
            if e.provider != nil {
                sawProviderEvent = true
                fail(.providers, seq, "event \(seq): a provider draw for \(e.arm.rawValue) in \(district.id), which has no providers")
            }
            return
        }
        guard let p = e.provider else {
            fail(.providers, seq, "event \(seq): an allocation to \(e.arm.rawValue) in \(district.id) without its provider draw"); return
        }
        count(.providers)
        let pi = ProviderDraw.stratum(e.stratum, arm: e.arm)
        if p.stratum != pi { fail(.providers, seq, "event \(seq): provider_stratum \(p.stratum), expected \(pi)") }
        // Which shares are in force hangs on the recorded day; with an
        // out-of-range one (`recorded_at` fails) the draw is judged by the shares it records.
        if let day = recordedDay(e.recordedAt) {
            let changes = shareChanges[district.id + "|" + e.arm.rawValue] ?? []
            guard let inForce = SharesInForce.on(day, changes: changes, configured: configured) else {
                fail(.providers, seq, "event \(seq): the shares in force do not parse"); return
            }
            if p.shares != inForce.text { fail(.providers, seq, "event \(seq): provider_shares \(p.shares), but \(inForce.text) are in force") }
        }
        var s = providerStrata[pi] ?? ProviderStratumState()
        if p.index != s.nextIndex { fail(.providers, seq, "event \(seq): provider_index \(p.index) in \(pi), expected \(s.nextIndex)") }
        if let derivation {
            // Derived from the event's own provider_stratum, as alloc_seed is from its own
            // stratum: a provider_stratum that is wrong fails `providers` above, not this too.
            if derivation.providerSeed(providerStratum: p.stratum, index: p.index) != p.seed {
                fail(.derivedSeeds, seq, "event \(seq): provider_seed is not the one the seed derives")
            }
        }
        guard let shares = ProviderShares(text: p.shares) else {
            fail(.providers, seq, "event \(seq): provider_shares \(p.shares) do not parse"); return
        }
        let derived: String?
        switch config.method {
        case .simple:
            if p.slot != nil { fail(.providers, seq, "event \(seq): provider block fields under method simple") }
            derived = ProviderDraw.simple(seed: p.seed, shares: shares)
        case .permutedBlock:
            guard let slot = p.slot else {
                fail(.providers, seq, "event \(seq): a provider draw without provider_block, provider_block_size or provider_position"); return
            }
            let next = s.nextSlot(shares: p.shares)
            let opening = next.opensBlock || slot.block != s.block
            if opening {
                if slot.block != next.block || slot.position != 0 || !next.opensBlock {
                    fail(.providers, seq, "event \(seq): provider block \(slot.block) position \(slot.position) does not continue \(pi)'s blocks")
                }
                let w = shares.drawable.reduce(0) { $0 + $1.share }
                if w == 0 || slot.size % w != 0 || !config.blockMultipliers.contains(slot.size / w) {
                    fail(.providers, seq, "event \(seq): provider block size \(slot.size) is not W × a configured multiplier")
                }
                if let derivation {
                    let q = derivation.providerBlockSeed(providerStratum: p.stratum, block: slot.block)
                    let expected = ProviderDraw.blockSize(blockSeed: q, shares: shares, multipliers: config.blockMultipliers)
                    if expected != slot.size {
                        fail(.derivedSeeds, seq, "event \(seq): provider block size \(slot.size) is not the one the seed derives")
                    }
                }
            } else if slot.size != s.blockSize || slot.position != p.index - s.blockStart {
                fail(.providers, seq, "event \(seq): provider block facts do not continue the open block")
            }
            derived = ProviderDraw.permutedBlock(
                seed: p.seed, shares: shares, blockSize: opening ? slot.size : s.blockSize,
                position: opening ? slot.position : p.index - s.blockStart, dealt: opening ? [:] : s.dealt)
        }
        if derived != p.provider {
            fail(.providers, seq, "event \(seq): provider \(p.provider) does not follow from provider_seed and the block (expected \(derived ?? "none"))")
        }
        s.apply(p)
        providerStrata[pi] = s
    }
}
