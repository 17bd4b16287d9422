import Foundation
import WHPAudit
import WHPDomain
import WHPEvaluation
import WHPJSON
import WHPService
import WHPStore

/// `whp report html`: gathers what the page shows — the flow, the balance
/// report, recruitment, the verify result with the head and checkpoint, the
/// overdue counts — and writes the page (mode 0600, like every report).
public enum HTMLReport {
    public static func page(paths: TrialPaths, publish: Bool, seedsDir: String, alpha: Double, clock: any ServiceClock) throws -> TrialReportPage {
        let config = try loadConfig(paths.config).config
        let store = try openStore(paths)
        let balance = try Reports.balanceReport(store, config: config, alpha: alpha, publish: publish)
        let audit = try Auditor.verifyStore(paths: paths, seedsDir: seedsDir, seed: nil, checkpoint: nil)
        let trial = try store.read { try $0.trial() }
        let now = clock.now()
        var flow = ConsortFlow()
        var recruitment = RecruitmentSeries()
        var waiting: [Overdue.Facts] = []
        // The checkpoint is the verified head, so the two cannot disagree however the trial moves on meanwhile.
        let checkpointObject: JSONObject = ["trial_id": .string(trial?.trialID ?? config.trialID), "seq": .int(audit.events), "head": .string(audit.head)]
        let checkpoint = String(decoding: JSON.encode(.object(checkpointObject)), as: UTF8.self)
        try store.read { tx in
            guard !publish else { return }
            try tx.forEachReferralFact { f in
                flow.add(f)
                recruitment.add(f)
            }
            flow.finish(head: tx.head)
            try tx.forEachOverdueCandidate { waiting.append($0) }
        }
        let verify = VerifySummary(
            ok: audit.ok, events: audit.events, head: audit.head, checks: audit.checks.map { ($0.name, $0.ok, $0.detail) }, checkpoint: checkpoint)
        let overdue =
            publish
            ? nil
            : Overdue.items(
                waiting, on: now.date, rules: trial?.rules ?? .current, deadlines: config.deadlines, days: WorkingDays(bankHolidays: config.bankHolidays))
        return TrialReportPage(
            config: config, publish: publish, generatedAt: now, balance: balance, verify: verify, consort: publish ? nil : flow,
            recruitment: publish ? nil : recruitment, overdue: overdue, overdueDate: now.date)
    }

    /// Writes the page to `out`; returns the summary line.
    public static func write(paths: TrialPaths, out: String, publish: Bool, seedsDir: String, alpha: Double, clock: any ServiceClock) throws -> String {
        let page = try page(paths: paths, publish: publish, seedsDir: seedsDir, alpha: alpha, clock: clock)
        let html = Array(page.html().utf8)
        do { try writeDurably(out, html) } catch { throw AppFailure.io(error.description) }
        return
            "report written to \(out) (\(html.count) bytes\(publish ? ", for publication" : "")); verify \(page.verify.ok ? "OK" : "FAILED") at event \(page.verify.events)"
    }
}
