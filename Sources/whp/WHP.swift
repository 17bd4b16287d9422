import ArgumentParser
import WHPApp
import Foundation
import Logging

/// `whp`: the executable of CLI.md. Exit codes: 0 success, 1 a check or an
/// operation failed, 2 usage or I/O error.
@main
struct WHP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whp",
        abstract: "Random allocation for the Work and Health Programme trial, auditable to the byte.",
        discussion: """
            A trial lives in a data folder (--data, default .whp) beside its district-config \
            (--config, default district-config). Start with `whp demo` to see the whole flow, \
            or `whp init` to start a trial of your own. Set WHP_NOW=YYYY-MM-DDTHH:MM:SSZ to \
            replay a session against a fixed clock.
            Specs: ALLOCATION.md (seeds, draws, chain), PROTOCOL.md (serve), CLI.md (this tool).
            """,
        subcommands: [Init.self, Serve.self, Verify.self, Checkpoint.self, AuditBundle.self, Export.self, Report.self, MigrateStore.self, Demo.self]
    )

    /// Maps argument-parser's usage errors to exit code 2 (CLI.md) instead of its default 64.
    static func main() {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = ProcessInfo.processInfo.environment["WHP_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .info
            return h
        }
        signal(SIGPIPE, SIG_IGN)
        // Trial data is private whatever the caller's umask (RULES2 R13); each
        // file is also created with its own mode, this covers SQLite's own files.
        umask(0o077)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let f as AppFailure {
            FileHandle.standardError.write(Data(("whp: " + f.message + "\n").utf8))
            Foundation.exit(f.code)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The district-config folder.", valueName: "DIR"))
    var config: String = "district-config"

    @Option(name: .long, help: ArgumentHelp("The trial's data folder: the store and keys/.", valueName: "DIR"))
    var data: String = ".whp"

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Where the trial's events live: postgres://user@host:port/database for a PostgreSQL trial shared by several instances (password in PGPASSWORD or the URL; ?sslmode=disable|prefer|require). Default: the SQLite file DATA/whp.sqlite. Keys stay in DATA/keys either way.",
            valueName: "URL"))
    var store: String?

    var paths: TrialPaths { TrialPaths(config: config, data: data, store: store) }
}

/// One line on stdout.
func stdout(_ s: String) {
    print(s)
}
