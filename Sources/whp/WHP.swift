import ArgumentParser
import Foundation
import Logging
import WHPCore
import WHPService
import WHPStore

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
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let f as Failure {
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

/// An operation that failed (exit 1) or an I/O or usage problem (exit 2), with the message for the operator.
struct Failure: Error {
    var code: Int32
    var message: String
    static func failed(_ m: String) -> Failure { Failure(code: 1, message: m) }
    static func io(_ m: String) -> Failure { Failure(code: 2, message: m) }
}

struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The district-config folder.", valueName: "DIR"))
    var config: String = "district-config"

    @Option(name: .long, help: ArgumentHelp("The trial's data folder: the store and keys/.", valueName: "DIR"))
    var data: String = ".whp"

    @Option(name: .long, help: ArgumentHelp(
        "Where the trial's events live: postgres://user@host:port/database for a PostgreSQL trial shared by several instances (password in PGPASSWORD or the URL; ?sslmode=disable|prefer|require). Default: the SQLite file DATA/whp.sqlite. Keys stay in DATA/keys either way.",
        valueName: "URL"))
    var store: String?

    var storeLocation: StoreLocation { store.map(StoreLocation.init) ?? .sqlite(data + "/whp.sqlite") }
    var keysDir: String { data + "/keys" }
    var seedPath: String { keysDir + "/seed.hex" }
    var pseudonymKeyPath: String { keysDir + "/pseudonym.key" }
    var evaluationKeyPath: String { keysDir + "/evaluation.key" }
}

/// The service clock: `WHP_NOW` when set, else the system's UTC clock.
func serviceClock() throws -> any ServiceClock {
    guard let text = ProcessInfo.processInfo.environment["WHP_NOW"], !text.isEmpty else { return SystemClock() }
    guard let instant = Instant(text) else { throw Failure.io("WHP_NOW must be YYYY-MM-DDTHH:MM:SSZ, got \"\(text)\"") }
    return FixedClock(instant)
}

func loadConfig(_ dir: String) throws -> (TrialConfig, Bytes32, [ConfigFile]) {
    do {
        let files = try ConfigFolder.read(dir)
        do {
            return (try TrialConfig.parse(files: files), TrialConfig.hash(of: files), files)
        } catch {
            throw Failure.failed("invalid district-config: \(dir)/\(error.description)")
        }
    } catch let e as FileError {
        throw e.isConfigError ? Failure.failed("invalid district-config: \(e.description)") : Failure.io(e.description)
    }
}

/// Opens the trial's store for a command; a missing or unreachable store is an I/O error (exit 2).
func openStore(_ common: CommonOptions, readonly: Bool = true) throws -> Store {
    do { return try Store.open(backend: common.storeLocation.backend(readonly: readonly)) } catch { throw Failure.io("\(error)") }
}

func readKey(_ path: String) throws -> Bytes32 {
    do { return try KeyFile.read(path) } catch { throw Failure.failed(error.description) }
}

func stdout(_ s: String) {
    FileHandle.standardOutput.write(Data((s + "\n").utf8))
}
