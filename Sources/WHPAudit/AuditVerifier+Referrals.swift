import WHPCrypto
import WHPDomain

/// Referrals, cancellations, flags and gatekeeper runs.
extension AuditVerifier {
    mutating func referred(_ e: Referred, _ seq: Int) {
        guard CalendarRange.contains(e.referralDate) else {
            fail(.locks, seq, "event \(seq): referral_date \(e.referralDate.iso) is outside 1900–2999"); return
        }
        let existing = refIndex[e.referralID]
        if existing != nil { fail(.locks, seq, "event \(seq): referral \(e.referralID) was already referred") }
        // Rules 2 only (R2): a rules 1 trial is judged as revision 1 judged it.
        checkDates(referralDate: e.referralDate, recorded: e.recordedAt, seq)
        // RULES2 R6: the person's referrals, by the links recorded before this one.
        let history = self.history(of: person(of: e.claimant)).map { refs[$0].outcome(rules) }
        let eligibility = Locks.eligibility(history: history, on: e.referralDate, lengths: config.locks, policy: config.frontlineRCG)
        if !eligibility.eligible {
            fail(
                .locks, seq,
                "event \(seq): referral \(e.referralID) was accepted while the claimant \(eligibility.pending ? "had a referral awaiting the gatekeeper" : "was inside a re-referral lock")"
            )
        }
        count(.locks)
        if config.district(e.district) == nil { fail(.locks, seq, "event \(seq): district \(e.district) is not in district-config") }
        if !config.groups.contains(e.group) { fail(.locks, seq, "event \(seq): group \(e.group) is not in district-config") }
        let ref = Ref(claimant: e.claimant, district: e.district, group: e.group, date: e.referralDate, seq: seq)
        let i: Int
        if let existing {
            i = existing
            refs[i] = ref
        } else {
            i = refs.count
            refs.append(ref)
            refIndex[e.referralID] = i
        }
        byClaimant[e.claimant, default: []].append(i)
        pendingByDistrict[e.district, default: []].insert(i)
    }

    mutating func cancelled(_ e: Cancelled, _ seq: Int) {
        guard let i = refIndex[e.referralID], let next = refs[i].state.after(.cancelled(e)) else {
            fail(.locks, seq, "event \(seq): cancelled a referral that was not awaiting the gatekeeper"); return
        }
        refs[i].state = next
        pendingByDistrict[refs[i].district]?.remove(i)
    }

    mutating func flagged(_ e: FlaggedInError, _ seq: Int) {
        guard let i = refIndex[e.referralID], refs[i].state.after(.flaggedInError(e)) != nil, !refs[i].flagged else {
            fail(.gatekeeper, seq, "event \(seq): flag on a referral that was not decided, or flagged twice"); return
        }
        if let g = e.correctedGroup, e.reason != .wrongGroup || !config.groups.contains(g) {
            fail(.gatekeeper, seq, "event \(seq): corrected_group \(g) without reason wrong_group, or not a configured group")
        }
        refs[i].flagged = true
    }

    mutating func decision(_ e: GatekeeperDecision, _ seq: Int) {
        guard CalendarRange.contains(e.gkDate) else {
            fail(.gatekeeper, seq, "event \(seq): gk_date \(e.gkDate.iso) is outside 1900–2999"); return
        }
        checkDates(gkDate: e.gkDate, recorded: e.recordedAt, seq)
        if e.rule == .manual && e.capacity != nil { fail(.gatekeeper, seq, "event \(seq): a manual decision with a capacity") }
        guard let i = refIndex[e.referralID], let next = refs[i].state.after(.gatekeeperDecision(e)) else {
            fail(.gatekeeper, seq, "event \(seq): decision on referral \(e.referralID), which was not awaiting the gatekeeper"); return
        }
        let r = refs[i]
        if openRun?.id != e.runID {
            if seenRuns.contains(e.runID) { fail(.gatekeeper, seq, "event \(seq): run \(e.runID) continues after other events") }
            seenRuns.insert(e.runID)
            if let last = lastGkDate[r.district], e.gkDate < last {
                fail(.gatekeeper, seq, "event \(seq): run \(e.runID) is dated \(e.gkDate.iso), before the district's previous run (\(last.iso))")
            }
            let eligible = (pendingByDistrict[r.district] ?? []).filter { refs[$0].date <= e.gkDate }
            openRun = Run(
                id: e.runID, district: r.district, gkDate: e.gkDate, rule: e.rule, capacity: e.capacity,
                firstSeq: seq, eligible: eligible)
            lastGkDate[r.district] = max(lastGkDate[r.district] ?? e.gkDate, e.gkDate)
        }
        guard let run = openRun, run.district == r.district, run.gkDate == e.gkDate, run.rule == e.rule else {
            fail(.gatekeeper, seq, "event \(seq): decision does not match its run (district, gk_date, rule)"); return
        }
        if e.capacity != run.capacity {
            fail(
                .gatekeeper, seq,
                "event \(seq): capacity \(e.capacity.map(String.init) ?? "none") differs from run \(run.id)'s \(run.capacity.map(String.init) ?? "none")")
        }
        if r.date > e.gkDate { fail(.gatekeeper, seq, "event \(seq): referral \(e.referralID) is dated after the gatekeeper date") }
        if e.rule == .lottery {
            if e.lotteryKey == nil { fail(.gatekeeper, seq, "event \(seq): lottery decision without a lottery_key") }
            if let derivation, let key = e.lotteryKey {
                if derivation.lotteryKey(runID: e.runID, referralID: e.referralID) != key {
                    fail(.lottery, seq, "event \(seq): lottery_key of \(e.referralID) is not the one the seed derives")
                }
                count(.lottery)
            }
        }
        openRun!.decided.append((e.referralID, i, e.decision == .selected, e.lotteryKey, seq))
        refs[i].state = next
        refs[i].gkDate = e.gkDate
        // The rules 2 lock base; none from an out-of-range recorded_at (it fails `recorded_at`).
        refs[i].decidedOn = recordedDay(e.recordedAt)
        refs[i].runID = e.runID
        pendingByDistrict[r.district]?.remove(i)
        count(.gatekeeper)
    }

    /// Checks a finished run against its rule: a capacity run decides every
    /// eligible pending referral, selects min(capacity, n), in fifo or lottery order.
    mutating func closeRun() {
        guard let run = openRun else { return }
        openRun = nil
        let seq = run.firstSeq
        for d in run.decided where d.selected && refs[d.ref].state == .selected {
            fail(.draws, d.seq, "referral \(d.id) was selected in run \(run.id) but never allocated")
        }
        guard run.rule != .manual else { return }
        guard let district = config.district(run.district), RunRule(district.gatekeeperRule) == run.rule else {
            fail(.gatekeeper, seq, "run \(run.id) used rule \(run.rule.rawValue), not the district's configured rule"); return
        }
        if Set(run.decided.map(\.ref)) != run.eligible {
            fail(.gatekeeper, seq, "run \(run.id) did not decide exactly the district's pending referrals dated on or before \(run.gkDate.iso)")
        }
        let selected = run.decided.filter(\.selected), rejected = run.decided.filter { !$0.selected }
        if let c = run.capacity, selected.count != min(c, run.decided.count) {
            fail(.gatekeeper, seq, "run \(run.id) selected \(selected.count) with capacity \(c) and \(run.decided.count) pending")
        }
        switch run.rule {
        case .fifo:
            // Order key (referral day, referred seq) packed into one comparable integer.
            func order(_ i: Int) -> Int { refs[i].date.dayNumber << 40 | refs[i].seq }
            if let worstIn = selected.map({ order($0.ref) }).max(), let bestOut = rejected.map({ order($0.ref) }).min(), bestOut < worstIn {
                fail(.gatekeeper, seq, "fifo run \(run.id) passed over an older referral")
            }
        case .lottery:
            if let worstIn = selected.compactMap(\.key).max(), let bestOut = rejected.compactMap(\.key).min(), bestOut < worstIn {
                fail(.gatekeeper, seq, "lottery run \(run.id) did not select the smallest lottery keys")
            }
        case .manual:
            break
        }
    }
}
