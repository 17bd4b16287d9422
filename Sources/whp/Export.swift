import ArgumentParser
import WHPApp
import WHPEvaluation
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the de-identified evaluation dataset, its codebook and manifest.",
        discussion: """
            DIR gets allocations.csv (RFC 4180, CRLF) or allocations.jsonl — one row per referral \
            that was not cancelled, in referral order, with research ids instead of any identifier \
            — plus codebook.md and manifest.json ({trial_id, rows, removed_opted_out, \
            date_precision, head_seq, head, config_hash, files: {name: sha256}}). Claimants who \
            opted out are left out. The export is itself logged: an export_made event records the \
            manifest's sha256. Rows stream, so memory stays flat; progress goes to stderr when it \
            is a terminal.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: ArgumentHelp("The folder to write (must not exist or be empty).", valueName: "DIR"))
    var out: String

    @Option(help: "The data file's format.")
    var format: ExportFormat = .csv

    @Option(name: .customLong("date-precision"), help: "How exact the dates are: day, week (ISO week) or month.")
    var datePrecision: DatePrecision = .month

    @Flag(name: .customLong("no-progress"), help: "No progress line on stderr.")
    var noProgress = false

    func run() throws {
        stdout(
            try EvaluationExport.run(
                paths: common.paths, format: format, precision: datePrecision, out: out,
                progress: !noProgress && isatty(2) == 1, clock: try serviceClock()))
    }
}

extension ExportFormat: ExpressibleByArgument {}
extension DatePrecision: ExpressibleByArgument {}
