import Foundation
import Logging
import WHPAudit
import WHPConfig
import WHPCrypto
import WHPDomain
import WHPEvaluation
import WHPJSON
import WHPService
import WHPStore

/// Feeds a log (store or bundle) through the pure `AuditVerifier` and adds the
/// checks that need the edges: checkpoint and derived tables.
public enum Auditor {
    public typealias CheckpointValue = (trialID: String, seq: Int, head: String)

    public static func verifyStore(paths common: TrialPaths, seedsDir: String, seed: Bytes32?, checkpoint: CheckpointValue?) throws -> AuditReport {
        let loaded = try loadConfig(common.config)
        let config = loaded.config, configHash = loaded.hash
        let store = try openStore(common)
        let commitment = publishedCommitment(CommitmentFile.path(seedsDir: seedsDir, trialID: config.trialID))
        var verifier = AuditVerifier(
            config: config, configHash: configHash, seed: seed,
            commitmentFile: commitment.map { PublishedCommitment(trialID: $0.trialID, commitment: $0.commitment, configHash: $0.configHash) })
        let rebuilt = try Store.scratch()
        var count = 0, hashes: [Int: String] = [:]
        var head: [UInt8] = []
        // The first event whose payload did not parse or decode as its type:
        // the derived tables could not be rebuilt from it.
        var unparsable: Int?
        // One snapshot for the log and the derived tables: a trial being served
        // while it is verified is judged as of one head. The verifier runs on
        // this thread; the rebuild of the derived tables, from the events the
        // verifier decoded, on a second one.
        let rebuild = ParallelRebuild(into: rebuilt)
        let (report0, diff) = try store.snapshot { snapshot in
            var batch: [ParallelRebuild.Item] = []
            batch.reserveCapacity(ParallelRebuild.batchSize)
            try snapshot.forEachEventBytes { seq, type, payload, hash in
                let event = verifier.consume(seq: seq, type: type, payloadText: payload, storedHash: hash)
                count += 1
                head.removeAll(keepingCapacity: true); head.append(contentsOf: hash)
                if let checkpoint, seq == checkpoint.seq { hashes[seq] = String(decoding: hash, as: UTF8.self) }
                guard let event else {
                    if unparsable == nil { unparsable = seq }
                    return
                }
                batch.append((event, seq))
                if batch.count == ParallelRebuild.batchSize { rebuild.add(batch); batch.removeAll(keepingCapacity: true) }
            }
            rebuild.add(batch)
            try rebuild.finish()
            return (verifier.finish(events: count, head: String(decoding: head, as: UTF8.self)), try snapshot.compareDerivedTables(with: rebuilt))
        }
        var report = report0
        if let checkpoint { report.checks.append(checkpointCheck(checkpoint, trialID: config.trialID, found: hashes[checkpoint.seq], events: count)) }
        if let refused = rebuild.unprojectable, diff?.seq.map({ $0 < refused.seq }) != true {
            report.checks.append(
                CheckResult(
                    name: "derived_tables", ok: false,
                    detail: "event \(refused.seq) cannot be applied to the derived tables (\(refused.error.prefix(200)))", firstBadSeq: refused.seq))
        } else {
            report.checks.append(
                diff.map {
                    CheckResult(
                        name: "derived_tables", ok: false,
                        detail: "table \($0.table): \($0.rows) row(s) differ from the rebuild from the log", firstBadSeq: $0.seq ?? unparsable)
                } ?? CheckResult(name: "derived_tables", ok: true, detail: "every derived table equals its rebuild from the log"))
        }
        report.checks.sort { $0.name < $1.name }
        return report
    }

    public static func verifyBundle(dir: String, seed: Bytes32?, checkpoint: CheckpointValue?) throws -> AuditReport {
        let loaded = try loadConfig(dir + "/district-config")
        let config = loaded.config, configHash = loaded.hash
        let commitment = publishedCommitment(CommitmentFile.path(seedsDir: dir, trialID: config.trialID))
        let verifier = AuditVerifier(
            config: config, configHash: configHash, seed: seed,
            commitmentFile: commitment.map { PublishedCommitment(trialID: $0.trialID, commitment: $0.commitment, configHash: $0.configHash) })
        guard let handle = FileHandle(forReadingAtPath: dir + "/events.jsonl") else { throw AppFailure.io("\(dir)/events.jsonl: cannot open") }
        defer { try? handle.close() }
        // Lines are framed as they are read, 1 MiB at a time: a line longer
        // than BundleReader.maxLineBytes is judged without being held whole.
        var reader = BundleReader(verifier: verifier, checkpointSeq: checkpoint?.seq)
        var framer = BundleLineFramer()
        while true {
            let chunk: Data
            do { chunk = try handle.read(upToCount: 1 << 20) ?? Data() } catch { throw AppFailure.io("\(dir)/events.jsonl: \(error)") }
            if chunk.isEmpty { break }
            chunk.withUnsafeBytes { raw in framer.feed(raw.bindMemory(to: UInt8.self)) { reader.take($0) } }
        }
        framer.end { reader.take($0) }
        let count = reader.events, found = reader.checkpointHash
        var report = reader.finish()
        if let checkpoint { report.checks.append(checkpointCheck(checkpoint, trialID: config.trialID, found: found, events: count)) }
        report.checks.sort { $0.name < $1.name }
        return report
    }

    /// The published commitment file, if there is one to compare (RULES2 R10);
    /// when there is none, stderr says where verify looked.
    static func publishedCommitment(_ path: String) -> CommitmentFile? {
        guard FileManager.default.fileExists(atPath: path) else {
            FileHandle.standardError.write(
                Data("whp: no commitment file at \(path): the commitment_file check is left out (--seeds DIR names the folder)\n".utf8))
            return nil
        }
        // A file that is there but unreadable is compared as empty, so the check fails rather than vanishes.
        return (try? CommitmentFile.read(path)) ?? CommitmentFile(trialID: "", commitment: "", configHash: "", created: "")
    }

    static func checkpointCheck(_ c: CheckpointValue, trialID: String, found: String?, events: Int) -> CheckResult {
        if c.trialID != trialID {
            return CheckResult(name: "checkpoint", ok: false, detail: "the checkpoint is for trial \(c.trialID), not \(trialID)", firstBadSeq: c.seq)
        }
        guard let found else {
            return CheckResult(
                name: "checkpoint", ok: false, detail: "the log ends at event \(events); the checkpoint holds event \(c.seq): the log was cut short",
                firstBadSeq: c.seq)
        }
        guard found == c.head else {
            return CheckResult(
                name: "checkpoint", ok: false, detail: "event \(c.seq) no longer has the checkpoint's head hash: the log was rewritten", firstBadSeq: c.seq)
        }
        return CheckResult(name: "checkpoint", ok: true, detail: "event \(c.seq) still has head \(c.head)")
    }

    public static func text(_ r: AuditReport) -> String {
        var lines = ["\(r.ok ? "OK" : "FAILED"): \(r.events) events, head \(r.head)"]
        for c in r.checks {
            let at = c.firstBadSeq.map { " (first bad event: \($0))" } ?? ""
            lines.append("  \(c.ok ? "ok  " : "FAIL") \(c.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(c.detail)\(at)")
        }
        return lines.joined(separator: "\n")
    }

    public static func json(_ r: AuditReport) -> String {
        let checks: [JSONValue] = r.checks.map { c in
            var o: JSONObject = ["name": .string(c.name), "ok": .bool(c.ok), "detail": .string(c.detail)]
            if let s = c.firstBadSeq { o["first_bad_seq"] = .int(s) }
            return .object(o)
        }
        let obj: JSONObject = ["ok": .bool(r.ok), "events": .int(r.events), "head": .string(r.head), "checks": .array(checks)]
        return String(decoding: JSON.encode(.object(obj)), as: UTF8.self)
    }
}

/// Replays the log into a scratch store's derived tables on a thread of its
/// own, fed batches of the events the verifier decoded, so that `verify`
/// uses both cores: the verifier (payloads, hashes, derivations, checks) on
/// the reading thread, the projection's inserts here. The queue is bounded,
/// so memory stays flat however long the log.
final class ParallelRebuild: @unchecked Sendable {
    typealias Item = (event: TrialEvent, seq: Int)
    static let batchSize = 2048

    private let store: Store
    private let queue = BoundedQueue<[Item]>(capacity: 8)
    private var failure: (any Error)?
    private var thread: WorkerThread?
    /// The first event the derived tables refused, and why (read after `finish`).
    private(set) var unprojectable: (seq: Int, error: String)?

    init(into store: Store) {
        self.store = store
        thread = WorkerThread { [self] in run() }
    }

    /// Queues a batch, waiting while the queue is full (dropped once the rebuild has failed).
    func add(_ batch: [Item]) {
        guard !batch.isEmpty else { return }
        queue.put(batch)
    }

    /// Waits for the rebuild to commit; rethrows its error.
    func finish() throws {
        queue.close()
        thread?.join()
        if let failure { throw failure }
    }

    private func run() {
        do {
            try store.rebuild { project in
                while let batch = queue.take() {
                    for (event, seq) in batch {
                        // A forged log can hold events the tables cannot take (a referral
                        // id referred twice breaks a unique key): that event is where the
                        // rebuild, and so `derived_tables`, fails; the rest is still applied.
                        do { try project(event, seq) } catch {
                            if unprojectable == nil { unprojectable = (seq, "\(error)") }
                        }
                    }
                }
            }
        } catch {
            failure = error
            queue.close()  // later batches are dropped
        }
    }
}

extension Auditor {
    /// `whp verify`: the store, or the bundle at `bundle`; with the revealed
    /// seed and a checkpoint when their files are given.
    public static func verify(
        paths: TrialPaths, seedsDir: String, bundle: String?, seedFile: String?,
        checkpointFile: String?
    ) throws -> AuditReport {
        let seed = try seedFile.map(readRevealedSeed)
        let checkpoint = try checkpointFile.map(Checkpoints.read)
        if let bundle { return try verifyBundle(dir: bundle, seed: seed, checkpoint: checkpoint) }
        return try verifyStore(paths: paths, seedsDir: seedsDir, seed: seed, checkpoint: checkpoint)
    }

    /// A revealed seed file for `verify --seed` (RULES2 R10): a revealed seed
    /// is public, so any readable file will do; a missing or malformed one is
    /// a usage error (exit 2), never a failed check.
    public static func readRevealedSeed(_ path: String) throws -> Bytes32 {
        do { return try KeyFile.read(path, requirePrivate: false) } catch { throw AppFailure.io(error.description) }
    }
}
