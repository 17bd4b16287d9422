import ArgumentParser
import WHPApp
import WHPEvaluation
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the de-identified evaluation dataset, its codebook, Data Package and manifest.",
        discussion: """
            DIR gets allocations.csv (RFC 4180, CRLF) or allocations.jsonl — one row per referral \
            that was not cancelled, sorted by research id (then the person's referral number), with \
            research ids instead of any identifier — plus codebook.md (columns, caveats, loading \
            recipes for pandas, R and Stata), datapackage.json (a Frictionless Data Package: the \
            Table Schema of the data file) and manifest.json ({trial_id, rows, removed_opted_out, \
            date_precision, head_seq, head, config_hash, k_anonymity, files: {name: sha256}}). \
            People who opted out are left out. The export is itself logged: an export_made event \
            records the manifest's sha256. With --min-k K, an export whose smallest class of rows \
            sharing every quasi-identifier (k_min) is below K is refused (exit 1): nothing is \
            written and nothing logged. Rows stream, so memory stays flat; progress goes to stderr \
            when it is a terminal.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: ArgumentHelp("The folder to write (must not exist or be empty).", valueName: "DIR"))
    var out: String

    @Option(help: "The data file's format.")
    var format: ExportFormat = .csv

    @Option(name: .customLong("date-precision"), help: "How exact the dates are: day, week (ISO week) or month.")
    var datePrecision: DatePrecision = .month

    @Option(name: .customLong("min-k"), help: ArgumentHelp("Refuse the export when k_min is below K (RULES2 R11).", valueName: "K"))
    var minK: Int?

    @Flag(name: .customLong("no-progress"), help: "No progress line on stderr.")
    var noProgress = false

    func validate() throws {
        if let minK, minK < 1 { throw ValidationError("--min-k must be at least 1") }
    }

    func run() throws {
        stdout(
            try EvaluationExport.run(
                paths: common.paths, format: format, precision: datePrecision, out: out,
                progress: !noProgress && isatty(2) == 1, clock: try serviceClock(), minK: minK))
    }
}

extension ExportFormat: ExpressibleByArgument {}
extension DatePrecision: ExpressibleByArgument {}
