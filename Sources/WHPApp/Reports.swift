import Foundation
import WHPDomain
import WHPEvaluation
import WHPJSON
import WHPStore

/// The evaluators' reports (`whp report …`).
public enum Reports {
    /// The trial's CONSORT flow, counted from every referral in the store, person by person, at one snapshot.
    public static func consortFlow(_ store: Store) throws -> ConsortFlow {
        var flow = ConsortFlow()
        try store.read { tx in
            try tx.forEachReferralFact { flow.add($0) }
            flow.finish(head: tx.head)
        }
        return flow
    }

    /// `report consort`: the table (or `--json`), and the SVG diagram written to `svg` when given.
    public static func consort(paths: TrialPaths, svg: String?, json: Bool = false) throws -> String {
        let config = try loadConfig(paths.config).config
        let flow = try consortFlow(try openStore(paths))
        var out = json ? String(decoding: JSON.encode(flow.json(config: config)), as: UTF8.self) : flow.table(config: config)
        if let svg {
            do { try writeDurably(svg, Array(flow.svg(config: config).utf8)) } catch { throw AppFailure.io(error.description) }
            if !json { out += "\ndiagram written to \(svg)" }
        }
        return out
    }

    /// The balance report's input from the store: every decided referral in
    /// referral order; with `publish`, without any referral of a person who
    /// opted out (RULES2 R12).
    public static func balanceReport(_ store: Store, config: TrialConfig, alpha: Double, publish: Bool) throws -> BalanceReport {
        var allocations: [AllocatedReferral] = []
        var notSelected: [String: Int] = [:]
        try store.read { tx in
            try tx.forEachDecisionRecord { r in
                if publish && r.optedOut { return }
                switch r.status {
                case .allocated(let arm):
                    allocations.append(AllocatedReferral(district: r.district, group: r.group, referralDate: r.referralDate, arm: arm))
                case .notSelected: notSelected[r.district, default: 0] += 1
                case .awaitingGatekeeper, .cancelled: break
                }
            }
        }
        return Balance.report(allocations, notSelected: notSelected, config: config, alpha: alpha, publish: publish)
    }

    /// `report balance`: the text (or `--json`), and whether every check passed.
    public static func balance(paths: TrialPaths, alpha: Double, publish: Bool, json: Bool = false) throws -> (text: String, ok: Bool) {
        let config = try loadConfig(paths.config).config
        let report = try balanceReport(try openStore(paths), config: config, alpha: alpha, publish: publish)
        let text =
            json ? String(decoding: JSON.encode(Balance.json(report, config: config)), as: UTF8.self) : Balance.text(report, config: config, publish: publish)
        return (text, report.ok)
    }
}
