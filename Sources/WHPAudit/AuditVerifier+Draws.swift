import WHPCrypto
import WHPDomain

/// Allocations: every arm re-derived from its stored seed and block, and
/// with the seed every seed and block size derived again.
extension AuditVerifier {
    mutating func allocation(_ e: Allocated, _ seq: Int) {
        guard let i = refIndex[e.referralID], refs[i].state.after(.allocated(e)) != nil,
            e.runID == refs[i].runID, let gk = refs[i].gkDate, e.gkDate == gk
        else {
            fail(.draws, seq, "event \(seq): allocation without a selection in the same run"); return
        }
        let r = refs[i]
        if e.claimant != r.claimant || e.district != r.district || e.group != r.group
            || e.stratum != config.stratum(district: r.district, group: r.group)
        {
            fail(.draws, seq, "event \(seq): allocation facts differ from the referral (claimant, district, group or stratum)")
        }
        guard let district = config.district(r.district) else {
            fail(.draws, seq, "event \(seq): its referral's district \(r.district) is not in district-config"); return
        }
        if e.arm == .psc && !district.psc { fail(.psc, seq, "event \(seq): PSC allocation in \(r.district), which is not a PSC district") }
        count(.psc)
        if district.weights[e.arm] == 0 { fail(.draws, seq, "event \(seq): arm \(e.arm.rawValue) has weight 0 in \(r.district)") }
        var s = strata[e.stratum] ?? StratumState()
        if e.index != s.nextIndex { fail(.draws, seq, "event \(seq): index \(e.index) in \(e.stratum), expected \(s.nextIndex)") }
        if let derivation {
            if derivation.allocationSeed(stratum: e.stratum, index: e.index) != e.allocSeed {
                fail(.derivedSeeds, seq, "event \(seq): alloc_seed is not the one the seed derives")
            }
            count(.derivedSeeds)
        }
        let derivedArm: Arm?
        switch config.method {
        case .simple:
            derivedArm = Allocator.simpleArm(allocSeed: e.allocSeed, weights: district.weights)
        case .permutedBlock:
            guard let slot = e.slot else {
                fail(.draws, seq, "event \(seq): permuted_block allocation without block, block_size or position"); return
            }
            let next = s.nextSlot
            if next.opensBlock || slot.block != s.block {
                if slot.block != next.block || slot.position != 0 || !next.opensBlock {
                    fail(.draws, seq, "event \(seq): block \(slot.block) position \(slot.position) does not continue the stratum's blocks")
                }
                let w = district.weights.total
                if w == 0 || slot.size % w != 0 || !config.blockMultipliers.contains(slot.size / w) {
                    fail(.draws, seq, "event \(seq): block size \(slot.size) is not W × a configured multiplier")
                }
                if let derivation {
                    let k = derivation.blockSeed(stratum: e.stratum, block: slot.block)
                    let expected = Uniform.draw(k, UInt64(config.blockMultipliers.count)).map { w * config.blockMultipliers[Int($0)] }
                    if expected != slot.size {
                        fail(
                            .derivedSeeds, seq,
                            "event \(seq): block size \(slot.size) of block \(slot.block) is not the one the seed derives (\(expected.map(String.init) ?? "none"))"
                        )
                    }
                }
            } else if slot.size != s.blockSize || slot.position != e.index - s.blockStart {
                fail(.draws, seq, "event \(seq): block facts do not continue the open block")
            }
            // The arm follows from the stored seed, the block as stored and the
            // arms dealt before it in this log.
            let opening = slot.block != s.block
            let position = opening ? slot.position : e.index - s.blockStart
            derivedArm = Allocator.permutedBlockArm(
                allocSeed: e.allocSeed, weights: district.weights,
                blockSize: opening ? slot.size : s.blockSize, position: position,
                dealt: opening ? ArmCounts() : s.dealt)
        }
        if derivedArm != e.arm {
            fail(.draws, seq, "event \(seq): arm \(e.arm.rawValue) does not follow from alloc_seed and the block (expected \(derivedArm?.rawValue ?? "none"))")
        }
        count(.draws)
        providerDraw(e, district: district, seq)
        s.apply(e)
        strata[e.stratum] = s
        refs[i].state = .allocated(e.arm)
    }
}
