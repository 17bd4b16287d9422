import WHPDomain
import WHPJSON
import WHPStore

extension Engine {
    /// `set_shares` (RULES2 R15): a contract manager's market-share shift,
    /// in force from `effective` for allocations recorded on or after it.
    /// Not keyed: every success appends a `shares_set` event.
    func setShares(
        district: String, arm: Arm, effective: CivilDate, shares: ProviderShares,
        _ c: Context, _ tx: inout StoreTransaction
    ) throws -> Answer {
        try tx.append(
            .sharesSet(
                SharesSet(
                    district: district, arm: arm, effective: effective, shares: shares.text,
                    actor: c.actor, recordedAt: c.at)))
        var o = JSONObject()
        for e in shares.entries { o[e.id] = .int(e.share) }
        return .ok(
            .object([
                "district": .string(district), "arm": .string(arm.rawValue), "effective": .string(effective.iso),
                "shares": .object(o),
            ]))
    }
}
