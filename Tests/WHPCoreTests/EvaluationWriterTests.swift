import Testing
@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

/// `EvaluationRowWriter` against `Evaluation.row` + `csv(into:)` / `jsonl(into:)`,
/// byte for byte, over generated facts with hostile strings and edge dates.
@Suite struct EvaluationWriterTests {
    static let strings = [
        "", "devon-cornwall", "a,b", "say \"hi\"", "line\nbreak", "cr\rlf\r\n", "\u{2028}\u{2029}", "é", "e\u{301}",
        "tab\there", "\u{1}\u{1F}", "back\\slash", "|", "x|y", "\u{E2}", String(repeating: "long,", count: 40), "💡", "null",
    ]
    static let dates = [
        "0001-01-01", "0999-12-31", "2015-12-31", "2016-01-01", "2016-01-03", "2016-01-04", "2017-11-01", "2018-12-31",
        "2020-12-31", "2021-01-03", "2026-12-28", "9999-12-01", "2017-02-28", "2016-02-29",
    ]

    static func facts(_ rng: inout TestRNG) -> ReferralFacts {
        let statuses: [ReferralStatus] = [.awaitingGatekeeper, .cancelled, .notSelected, .allocated(.whp), .allocated(.psc), .allocated(.rcg)]
        let hex = hexString(rng.bytes(32))
        return ReferralFacts(
            claimant: Pseudonym(hex: rng.below(10) == 0 ? strings[rng.below(strings.count)] : hex),
            district: strings[rng.below(strings.count)], group: strings[rng.below(strings.count)],
            referralDate: CivilDate(dates[rng.below(dates.count)])!, status: statuses[rng.below(statuses.count)],
            gkDate: rng.below(3) == 0 ? nil : CivilDate(dates[rng.below(dates.count)])!,
            rule: rng.below(4) == 0 ? nil : ["fifo", "lottery", "manual", "", "a,\"b\""][rng.below(5)],
            flag: rng.below(2) == 0 ? nil : ["ineligible", "duplicate", "", "x\ny"][rng.below(4)],
            claimantReferralNumber: [1, 2, 3, 9, 10, 99, 100, 12345, 0, -1, -42, Int.max, Int.min][rng.below(13)],
            optedOut: rng.below(8) == 0)
    }

    @Test(arguments: [DatePrecision.day, .week, .month])
    func matchesTheRowPath(_ precision: DatePrecision) {
        var rng = TestRNG(21)
        let key = rng.key()
        for stratify in [false, true] {
            let config = TrialConfig(
                trialID: "whp-test", stratifyByGroup: stratify, groups: ["disability"],
                districts: [
                    District(id: "devon-cornwall", name: "D", psc: true, gatekeeperRule: .lottery, weights: Weights(whp: 1, psc: 1, rcg: 1))
                ])
            for format in ExportFormat.allCases {
                let writer = EvaluationRowWriter(config: config, evaluationKey: key, precision: precision, format: format)
                var fast: [UInt8] = [], slow: [UInt8] = []
                writer.header(into: &fast)
                if format == .csv { EvaluationRow.csvHeader(into: &slow) }
                for _ in 0..<1500 {
                    let f = Self.facts(&rng)
                    let row = Evaluation.row(f, config: config, evaluationKey: key, precision: precision)
                    let before = fast.count
                    #expect(writer.append(f, to: &fast) == (row != nil))
                    if let row { if format == .csv { row.csv(into: &slow) } else { row.jsonl(into: &slow) } }
                    if fast != slow {
                        Issue.record("\(format) \(precision) stratify \(stratify): \(String(decoding: fast[before...], as: UTF8.self).debugDescription)")
                        return
                    }
                }
            }
        }
    }
}
