import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore

extension Engine {
    /// `pending`: what a capacity run on `gkDate` would decide, in referred order.
    func pending(district: String, gkDate: CivilDate, _ tx: inout StoreTransaction) throws -> Answer {
        let list = try tx.pending(district: district, upTo: gkDate).map { p -> JSONValue in
            .object(["referral_id": .string(p.referralID), "group": .string(p.group), "referral_date": .string(p.referralDate.iso)])
        }
        return .ok(.object(["district": .string(district), "referrals": .array(list)]))
    }

    func runAnswer(_ runID: String, district: String, gkDate: CivilDate, _ decided: [(id: String, selected: Bool)]) -> JSONValue {
        .object([
            "run_id": .string(runID), "district": .string(district), "gk_date": .string(gkDate.iso),
            "selected": .array(decided.filter(\.selected).map { .string($0.id) }),
            "not_selected": .array(decided.filter { !$0.selected }.map { .string($0.id) }),
        ])
    }

    /// A gatekeeper run: decide, then allocate every selected referral, all in
    /// the caller's commit (PROTOCOL.md §3, "Gatekeeper runs").
    func gatekeep(
        runID: String, district: String, gkDate: CivilDate, selection: GatekeeperSelectionInput,
        _ c: Context, _ tx: inout StoreTransaction
    ) throws -> Answer {
        // Idempotency (RULES2 R8): the same run again gets its first answer,
        // before any other check; a different one under a used run_id is
        // `conflict` only once the checks before it have passed.
        let used = try tx.run(runID)
        if let run = used {
            let decided = try tx.referrals(run: runID).map { (id: $0.referralID, selected: $0.state != .notSelected) }
            var same = run.district == district && run.gkDate == gkDate
            switch selection {
            case .capacity(let cap): same = same && run.rule != .manual && run.capacity == cap
            case .decisions(let list):
                same =
                    same && run.rule == .manual
                    && Set(list.map { "\($0.0)|\($0.1)" }) == Set(decided.map { "\($0.id)|\($0.selected)" })
            }
            if same { return .ok(runAnswer(runID, district: district, gkDate: gkDate, decided)) }
        }
        if let deferred = c.deferred { return .error(deferred) }
        // A run cannot be back-dated before the district's previous one (PROTOCOL.md §3).
        if let last = try tx.lastGatekeeperDate(district: district), gkDate < last {
            return .error(ProtocolError(.invalidField, field: "gk_date", detail: "gk_date is before the district's previous run (\(last.iso))"))
        }
        if used != nil { return .error(ProtocolError(.conflict, field: "run_id")) }
        guard let d = config.district(district) else { return .error(ProtocolError(.unknownDistrict, field: "district")) }

        // Decide: (referral, selected?, lottery key) in referred order.
        var decisions: [(Referral, Bool, Bytes32?)] = []
        let rule: RunRule
        var capacity: Int?
        switch selection {
        case .capacity(let cap):
            capacity = cap
            rule = RunRule(d.gatekeeperRule)
            let pending = try tx.pending(district: district, upTo: gkDate)
            guard !pending.isEmpty else { return .error(ProtocolError(.wrongState, field: "district")) }
            let candidates = pending.map { PendingReferral(referralID: $0.referralID, referralDate: $0.referralDate, referredSeq: $0.referredSeq) }
            let (chosen, keys) = GatekeeperSelection.select(candidates, capacity: cap, rule: d.gatekeeperRule) { rid in
                Derivation.lotteryKey(seed: self.keys.seed, trialID: self.config.trialID, runID: runID, referralID: rid)
            }
            decisions = pending.map { ($0, chosen.contains($0.referralID), keys[$0.referralID]) }
        case .decisions(let list):
            rule = .manual
            for (n, (rid, selected)) in list.enumerated() {
                let field = "decisions.\(n).referral_id"
                guard let ref = try tx.referral(rid) else { return .error(ProtocolError(.notFound, field: field)) }
                guard ref.district == district, ref.referralDate <= gkDate else { return .error(ProtocolError(.invalidField, field: field)) }
                guard ref.state == .awaitingGatekeeper else { return .error(ProtocolError(.wrongState, field: field)) }
                decisions.append((ref, selected, nil))
            }
            decisions.sort { $0.0.referredSeq < $1.0.referredSeq }
        }

        for (ref, selected, key) in decisions {
            try tx.append(
                .gatekeeperDecision(
                    GatekeeperDecision(
                        runID: runID, referralID: ref.referralID, decision: selected ? .selected : .notSelected, gkDate: gkDate,
                        rule: rule, lotteryKey: key, capacity: capacity, actor: c.actor, recordedAt: c.at)))
        }
        for (ref, selected, _) in decisions where selected {
            try tx.append(.allocated(try allocation(of: ref, in: d, runID: runID, gkDate: gkDate, at: c.at, &tx)))
        }
        return .ok(runAnswer(runID, district: district, gkDate: gkDate, decisions.map { ($0.0.referralID, $0.1) }))
    }

    /// The next draw of the referral's stratum (ALLOCATION.md §4).
    func allocation(
        of ref: Referral, in d: District, runID: String, gkDate: CivilDate, at: Instant,
        _ tx: inout StoreTransaction
    ) throws -> Allocated {
        let stratum = config.stratum(district: d.id, group: ref.group)
        let (draw, _) = Allocator.next(
            state: try tx.stratum(stratum), seed: keys.seed, trialID: config.trialID, stratum: stratum,
            weights: d.weights, method: config.method, multipliers: config.blockMultipliers)
        // RULES2 R15: an arm with providers in the district draws one in the
        // same event, so no event count depends on the arm.
        var provider: ProviderAllocation?
        if let configured = d.configuredShares(of: draw.arm) {
            let changes = try tx.sharesSet(district: d.id, arm: draw.arm).map {
                SharesInForce.Change(effective: $0.effective, shares: $0.shares, seq: $0.seq)
            }
            guard let shares = SharesInForce.on(at.date, changes: changes, configured: configured) else {
                throw StoreError("the shares in force for \(d.id) \(draw.arm.rawValue) do not parse: run `whp verify`")
            }
            let pi = ProviderDraw.stratum(stratum, arm: draw.arm)
            provider = ProviderDraw.next(
                state: try tx.providerStratum(pi), seed: keys.seed, trialID: config.trialID, stratum: pi,
                shares: shares, method: config.method, multipliers: config.blockMultipliers)
            guard provider != nil else { throw StoreError("no provider of \(d.id) \(draw.arm.rawValue) has a share") }
        }
        return Allocated(
            referralID: ref.referralID, claimant: ref.claimant, district: d.id, group: ref.group, stratum: stratum,
            index: draw.index, arm: draw.arm, allocSeed: draw.allocSeed, gkDate: gkDate, runID: runID,
            slot: draw.slot, provider: provider, recordedAt: at)
    }
}
