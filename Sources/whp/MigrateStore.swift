import ArgumentParser
import Foundation
import WHPCore
import WHPStore

/// `whp migrate-store`: copies a trial between stores, e.g. from the embedded
/// SQLite file to the department's PostgreSQL when a second instance is
/// needed. The copy is only as good as its proof, so every event's hash is
/// recomputed on the way (a log that does not chain is refused, not carried
/// over), the target is written in one transaction (all or nothing), and at
/// the end both heads and every derived table must be equal.
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
        let sourceLocation = StoreLocation(from), targetLocation = StoreLocation(to)
        let source: Store
        do { source = try Store.open(backend: sourceLocation.backend(readonly: true)) } catch { throw Failure.io("\(error)") }
        let targetBackend: any StoreBackend
        switch targetLocation {
        case .sqlite(let path):
            guard !FileManager.default.fileExists(atPath: path) else {
                throw Failure.failed("\(path) already exists; migrate-store copies into a new store only")
            }
            do { targetBackend = try targetLocation.backend(create: true) } catch { throw Failure.io("\(error)") }
        case .postgres:
            do { targetBackend = try targetLocation.backend() } catch { throw Failure.io("\(error)") }
        }
        let target: Store
        do { target = try Store.create(backend: targetBackend) } catch { throw Failure.failed("\(error)") }

        let progress = !noProgress && isatty(2) == 1
        let head: (seq: Int, hash: String) = try source.snapshot { snapshot in
            guard let head = try snapshot.storedHead() else { throw Failure.failed("\(sourceLocation) holds no events") }
            try target.write { tx in
                var previous: Bytes32?
                try snapshot.forEachEvent { e in
                    let event = try Self.checked(e, after: previous, expectedSeq: (tx.head?.seq ?? 0) + 1)
                    previous = event.hash
                    try tx.copy(e, parsed: event.event, hash: event.hash)
                    if progress && e.seq % 100_000 == 0 {
                        FileHandle.standardError.write(Data("\rwhp migrate-store: \(e.seq) of \(head.seq) events".utf8))
                    }
                }
            }
            if progress { FileHandle.standardError.write(Data("\rwhp migrate-store: \(head.seq) of \(head.seq) events\n".utf8)) }
            return head
        }
        guard let copied = try target.storedHead(), copied.seq == head.seq, copied.hash == head.hash else {
            throw Failure.failed("the copy's head differs from the source's (seq \(head.seq), hash \(head.hash)): nothing can be trusted in \(targetLocation)")
        }
        if let diff = try target.snapshot({ try $0.compareDerivedTables(with: source) }) {
            throw Failure.failed("table \(diff.table) of the copy differs from the source in \(diff.rows) row(s): run `whp verify` on both")
        }
        stdout("""
            copied \(head.seq) events from \(sourceLocation) to \(targetLocation)
              both heads    seq \(head.seq), hash \(head.hash)
              derived tables equal (trial, referrals, runs, strata, opt_outs)
            """)
    }

    /// Recomputes one event's chain hash and refuses a log that does not chain.
    static func checked(_ e: StoredEvent, after previous: Bytes32?, expectedSeq: Int) throws -> (event: Event, hash: Bytes32) {
        guard e.seq == expectedSeq else {
            throw Failure.failed("the source log jumps from seq \(expectedSeq - 1) to \(e.seq): run `whp verify` on it; nothing was copied")
        }
        guard let payload = try? PayloadJSON.decode(e.payloadText) else {
            throw Failure.failed("event \(e.seq) of the source has an unreadable payload: run `whp verify` on it; nothing was copied")
        }
        let event = Event(seq: e.seq, type: e.type, payload: payload)
        guard let start = previous ?? Chain.genesis(of: event) else {
            throw Failure.failed("the source log does not begin with trial_started; nothing was copied")
        }
        let hash = Chain.next(previous: start, encoded: event.encoded)
        guard hash.hex == e.hash else {
            throw Failure.failed("the source's chain breaks at seq \(e.seq): run `whp verify` on it; nothing was copied")
        }
        return (event, hash)
    }
}
