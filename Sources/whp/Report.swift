import ArgumentParser
import WHPApp
import Foundation

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reports on the trial for evaluators and trial managers.",
        subcommands: [Consort.self, BalanceCommand.self, OverdueCommand.self, HTML.self])

    struct Consort: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The trial's CONSORT 2025 flow: Enrollment, Allocation, Follow-up, Analysis.",
            discussion: """
                Prints the flow as text — referred, excluded (cancelled, awaiting the gatekeeper, not \
                selected, by gatekeeper rule), randomised, then per arm: allocated, follow-up \
                (provider referral, started, did not start and why, left and why, flagged in error, \
                disclosed) and analysis (in the dataset, removed by opt-out), each in referrals and \
                people — for the trial and for each district with its configured ratio, under the \
                data cut (the newest event, its head and the dates covered). With --svg also writes \
                the diagram; with --json prints the same figures as data.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: ArgumentHelp("Also write the flow as an SVG diagram.", valueName: "FILE"))
        var svg: String?

        @Flag(help: "Print the figures as JSON.")
        var json = false

        func run() throws {
            stdout(try Reports.consort(paths: common.paths, svg: svg, json: json))
        }
    }

    struct BalanceCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "balance",
            abstract: "Arm counts by district, group and month, and checks that allocation is balanced and independent.",
            discussion: """
                Tables of allocations by district, group and referral month (with totals), of \
                not-selected referrals by district, and the share of each district's not-allocated \
                referrals that are RCG (RULES2 R3). Per district: a chi-square test of the arm shares \
                against the configured weights, and chi-square tests of arm against referral order \
                (deciles) and against referral weekday. A check fails when p < --alpha (default \
                0.001); districts with fewer than 30 allocations are reported as not tested. Exit 1 \
                if any check fails. With --publish (RULES2 R12): referrals of people who opted out \
                are left out; counts from 1 to 9 are suppressed, then further figures until none \
                can be worked out from the rest; a district's statistics are withheld when any of \
                its counts is suppressed. --json prints the same figures as data (null = suppressed).
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: "Significance level of each check.")
        var alpha: Double = 0.001

        @Flag(help: "For publication: opted-out people left out, small counts and whatever would give them back suppressed.")
        var publish = false

        @Flag(help: "Print the report as JSON.")
        var json = false

        func run() throws {
            guard alpha > 0, alpha < 1 else { throw ValidationError("--alpha must be between 0 and 1") }
            let (text, ok) = try Reports.balance(paths: common.paths, alpha: alpha, publish: publish, json: json)
            stdout(text)
            if !ok { throw ExitCode(1) }
        }
    }

    struct HTML: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "html",
            abstract: "One self-contained HTML page for trial managers.",
            discussion: """
                Writes FILE: the CONSORT 2025 diagram, allocations by district against the \
                configured weights, recruitment over time, the balance checks, the result of \
                verifying the store now (with its head and checkpoint) and the overdue follow-up \
                counts. Everything is inline: the page fetches nothing. With --publish the tables \
                are those of `report balance --publish` (RULES2 R12), and the diagram, recruitment \
                and overdue counts are left out.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: ArgumentHelp("The page to write.", valueName: "FILE"))
        var out: String

        @Flag(help: "Only what may be published (RULES2 R12).")
        var publish = false

        @Option(help: ArgumentHelp("Where the published commitment file is, for verify's commitment_file check.", valueName: "DIR"))
        var seeds: String = "seeds"

        @Option(help: "Significance level of each balance check.")
        var alpha: Double = 0.001

        func run() throws {
            guard alpha > 0, alpha < 1 else { throw ValidationError("--alpha must be between 0 and 1") }
            stdout(try HTMLReport.write(paths: common.paths, out: out, publish: publish, seedsDir: seeds, alpha: alpha, clock: try serviceClock()))
        }
    }
}
