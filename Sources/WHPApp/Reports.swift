import Foundation
import WHPDomain
import WHPEvaluation
import WHPStore

/// The evaluators' reports (`whp report …`).
public enum Reports {
    /// The trial's CONSORT flow, counted from every referral in the store.
    public static func consortFlow(_ store: Store) throws -> ConsortFlow {
        var flow = ConsortFlow()
        try store.read { tx in try tx.forEachReferralFact { flow.add($0) } }
        return flow
    }

    /// `report consort`: the table, and the SVG diagram written to `svg` when given.
    public static func consort(paths: TrialPaths, svg: String?) throws -> String {
        let config = try loadConfig(paths.config).config
        let flow = try consortFlow(try openStore(paths))
        var out = flow.table(config: config)
        if let svg {
            do { try writeDurably(svg, Array(flow.svg(config: config).utf8)) } catch { throw AppFailure.io(error.description) }
            out += "\ndiagram written to \(svg)"
        }
        return out
    }

    /// `report balance`: the text, and whether every check passed.
    public static func balance(paths: TrialPaths, alpha: Double, publish: Bool) throws -> (text: String, ok: Bool) {
        let config = try loadConfig(paths.config).config
        let store = try openStore(paths)
        let report = Balance.report(try store.read { try $0.allocations() }, config: config, alpha: alpha)
        return (Balance.text(report, config: config, publish: publish), report.ok)
    }
}
