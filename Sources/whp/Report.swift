import ArgumentParser
import WHPApp
import Foundation

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reports on the trial for evaluators.",
        subcommands: [Consort.self, BalanceCommand.self, OverdueCommand.self])

    struct Consort: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The trial's flow: referred → gatekeeper → arms → removed by opt-out → in the dataset.",
            discussion: """
                Prints the CONSORT-style flow as a table (every box is the sum of the boxes it \
                splits into); with --svg also writes it as a diagram of boxes and arrows.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: ArgumentHelp("Also write the flow as an SVG diagram.", valueName: "FILE"))
        var svg: String?

        func run() throws {
            stdout(try Reports.consort(paths: common.paths, svg: svg))
        }
    }

    struct BalanceCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "balance",
            abstract: "Arm counts by district, group and month, and checks that allocation is balanced and independent.",
            discussion: """
                Per district: a chi-square test of the arm shares against the configured weights, \
                and chi-square tests of arm against referral order (deciles) and against referral \
                weekday. A check fails when p < --alpha (default 0.001); districts with fewer than 30 \
                allocations are reported as not tested. Exit 1 if any check fails. With --publish, \
                counts from 1 to 9 are suppressed as <10.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: "Significance level of each check.")
        var alpha: Double = 0.001

        @Flag(help: "Mark the output for publication and suppress small cells (< 10).")
        var publish = false

        func run() throws {
            guard alpha > 0, alpha < 1 else { throw ValidationError("--alpha must be between 0 and 1") }
            let (text, ok) = try Reports.balance(paths: common.paths, alpha: alpha, publish: publish)
            stdout(text)
            if !ok { throw ExitCode(1) }
        }
    }
}
