import Foundation
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore

/// `whp migrate-store`: copies a trial between stores, e.g. from the embedded
/// SQLite file to the department's PostgreSQL when a second instance is
/// needed. The copy is only as good as its proof, so every event's hash is
/// recomputed on the way (a log that does not chain is refused, not carried
/// over), the target is written in one transaction (all or nothing), and at
/// the end both heads and every derived table must be equal.
public enum Migration {
    /// Copies `from` into the new store `to`; returns the summary.
    public static func run(from: String, to: String, progress: Bool) throws -> String {
        let sourceLocation = StoreLocation(from), targetLocation = StoreLocation(to)
        let source: Store
        do { source = try Store.open(backend: sourceLocation.backend(readonly: true)) } catch { throw AppFailure.io("\(error)") }
        let targetBackend: any StoreBackend
        switch targetLocation {
        case .sqlite(let path):
            guard !FileManager.default.fileExists(atPath: path) else {
                throw AppFailure.failed("\(path) already exists; migrate-store copies into a new store only")
            }
            do { targetBackend = try targetLocation.backend(create: true) } catch { throw AppFailure.io("\(error)") }
        case .postgres:
            do { targetBackend = try targetLocation.backend() } catch { throw AppFailure.io("\(error)") }
        }
        let target: Store
        do { target = try Store.create(backend: targetBackend) } catch { throw AppFailure.failed("\(error)") }

        let head: (seq: Int, hash: String) = try source.snapshot { snapshot in
            guard let head = try snapshot.storedHead() else { throw AppFailure.failed("\(sourceLocation) holds no events") }
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
            throw AppFailure.failed(
                "the copy's head differs from the source's (seq \(head.seq), hash \(head.hash)): nothing can be trusted in \(targetLocation)")
        }
        if let diff = try target.snapshot({ try $0.compareDerivedTables(with: source) }) {
            throw AppFailure.failed("table \(diff.table) of the copy differs from the source in \(diff.rows) row(s): run `whp verify` on both")
        }
        return """
            copied \(head.seq) events from \(sourceLocation) to \(targetLocation)
              both heads    seq \(head.seq), hash \(head.hash)
              derived tables equal (trial, referrals, runs, strata, opt_outs)
            """
    }

    /// Recomputes one event's chain hash and refuses a log that does not chain.
    public static func checked(_ e: StoredEvent, after previous: Bytes32?, expectedSeq: Int) throws -> (event: TrialEvent, hash: Bytes32) {
        guard e.seq == expectedSeq else {
            throw AppFailure.failed("the source log jumps from seq \(expectedSeq - 1) to \(e.seq): run `whp verify` on it; nothing was copied")
        }
        guard let payload = try? PayloadJSON.decode(e.payloadText), let event = try? TrialEvent.decode(type: e.type, payload) else {
            throw AppFailure.failed("event \(e.seq) of the source has an unreadable payload: run `whp verify` on it; nothing was copied")
        }
        let flat = Event(seq: e.seq, type: e.type, payload: payload)
        guard let start = previous ?? Chain.genesis(of: flat) else {
            throw AppFailure.failed("the source log does not begin with trial_started; nothing was copied")
        }
        let hash = Chain.next(previous: start, encoded: flat.encoded)
        guard hash.hex == e.hash else {
            throw AppFailure.failed("the source's chain breaks at seq \(e.seq): run `whp verify` on it; nothing was copied")
        }
        return (event, hash)
    }
}
