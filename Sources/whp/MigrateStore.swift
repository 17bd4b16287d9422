import ArgumentParser
import WHPApp
import Foundation

struct MigrateStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-store",
        abstract: "Copy a trial to another store (SQLite ⇄ PostgreSQL) and prove the copy.",
        discussion: """
            FROM and TO are each a postgres:// URL, a SQLite file, or a data folder holding whp.sqlite. \
            TO must be new: a missing SQLite file, or a PostgreSQL database without a trial. Events are \
            copied byte for byte in one transaction, each one's chain hash recomputed first; then the \
            two heads (seq and hash) and every derived table are compared. Exit 0 only if they are equal. \
            Keys are files and are not copied: point the new store's instances at the same DATA/keys. \
            Stop every `whp serve` on FROM first, or events served after the copy began stay behind.
            """)

    @Option(help: ArgumentHelp("The store to copy from.", valueName: "STORE"))
    var from: String

    @Option(help: ArgumentHelp("The new store to copy into.", valueName: "STORE"))
    var to: String

    @Flag(help: "No progress on stderr.")
    var noProgress = false

    func run() throws {
        stdout(try Migration.run(from: from, to: to, progress: !noProgress && isatty(2) == 1))
    }
}
