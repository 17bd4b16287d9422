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

/// Streams the dataset into DIR and logs the export, all in one write
/// transaction so the manifest's head is exactly the event before `export_made`.
public struct EvaluationExport {
    let config: TrialConfig
    let configHash: Bytes32
    let key: Bytes32
    let format: ExportFormat
    let precision: DatePrecision
    let out: String
    let progress: Bool
    let clock: any ServiceClock
    /// RULES2 R11 `--min-k`: refuse an export whose `k_min` is below this.
    let minK: Int?

    public init(
        config: TrialConfig, configHash: Bytes32, key: Bytes32, format: ExportFormat, precision: DatePrecision,
        out: String, progress: Bool, clock: any ServiceClock, minK: Int? = nil
    ) {
        self.config = config; self.configHash = configHash; self.key = key; self.format = format
        self.precision = precision; self.out = out; self.progress = progress; self.clock = clock; self.minK = minK
    }

    public func run(_ store: Store) throws -> String {
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: out), !existing.isEmpty {
            throw AppFailure.io("\(out) is not empty; an export goes into a new folder")
        }
        let dataName = format == .csv ? "allocations.csv" : "allocations.jsonl"
        return try store.write { tx in
            guard let head = tx.head else { throw AppFailure.failed("the store holds no trial") }
            // RULES2 R11: with --min-k, the classes are counted first, in the
            // same transaction, before anything is written to --out; a refusal
            // rolls back, so no export_made is appended.
            if let minK {
                let counter = KAnonymityCounter(precision: precision)
                try tx.forEachReferralFact(.asReferred) { f in if Evaluation.isExported(f) { counter.add(f) } }
                let k = counter.finish()
                if let kMin = k.kMin, kMin < minK {
                    throw AppFailure.failed(
                        "k_min is \(kMin) at \(precision.rawValue) precision (\(k.rowsInClassesBelow10) rows in classes below \(KAnonymity.threshold)), below --min-k \(minK): nothing exported; try a coarser --date-precision"
                    )
                }
            }
            do { try makeDirectory(out) } catch { throw AppFailure.io("\(error)") }
            let file = try HashingFile(out + "/" + dataName)
            var buffer: [UInt8] = []
            buffer.reserveCapacity(1 << 20)
            // Rows go straight into the buffer, the research-id key schedule computed once.
            let writer = EvaluationRowWriter(config: config, evaluationKey: key, precision: precision, format: format)
            writer.header(into: &buffer)
            // RULES2 R6/R11: one research id per person, the person's exported
            // rows numbered 1, 2, … in referral order, and the file in research
            // id order (then that number), so it cannot be lined up with the log.
            // The referrals are read in their stored order (a sequential scan);
            // each row goes to the sorter keyed by the research id's 32 bytes
            // (they sort as its hex digits do) and stored without the id and
            // without its number, behind the two offsets where they belong. A
            // row is numbered as it comes out: the sort is stable, so a person's
            // rows come out in referral order.
            // Two threads each way (docs/performance.md): this one steps the
            // query, makes each referral's facts and counts its row's k-anonymity
            // class while `rows` makes the rows (research id, cells) and sorts
            // them; then this one merges the sorted rows while `output` hashes
            // and writes them.
            let maker = RowMaker(writer: writer, sorter: RowSorter(scratchDir: out + "/.sorting"))
            // Bounded: the reader is at most two batches ahead, whatever the trial's size.
            let rows = WorkerStage<[ReferralFacts]>(capacity: 2) { try maker.add($0) }
            let classes = KAnonymityCounter(precision: precision)
            var seen = 0, removed = 0
            var batch: [ReferralFacts] = []
            batch.reserveCapacity(RowMaker.batchSize)
            do {
                try tx.forEachReferralFact(.asReferred) { f in
                    seen += 1
                    if f.optedOut && f.status != .cancelled { removed += 1 }
                    if Evaluation.isExported(f) { classes.add(f) }
                    batch.append(f)
                    if batch.count == RowMaker.batchSize {
                        guard rows.put(batch) else { throw StageStopped() }
                        batch.removeAll(keepingCapacity: true)
                    }
                    if progress && seen % 100_000 == 0 {
                        FileHandle.standardError.write(Data("\rwhp export: \(seen) referrals read".utf8))
                    }
                }
                if !batch.isEmpty { rows.put(batch) }
            } catch is StageStopped {
            } catch {
                rows.abandon()  // the store failed: the rows thread ends too
                throw error
            }
            try rows.finish()
            let sorter = maker.sorter
            let output = WorkerStage<[UInt8]>(capacity: 1) { try file.write($0) }
            var lastRID: [UInt8] = [], number = 0
            lastRID.reserveCapacity(32)
            do {
                try sorter.drain { key, stored in
                    if !key.elementsEqual(lastRID) {
                        lastRID.removeAll(keepingCapacity: true)
                        lastRID.append(contentsOf: key)
                        number = 0
                    }
                    number += 1
                    let s = stored.startIndex, body = s + RowMaker.header
                    let ridAt = body + BigEndian32.read(stored[s..<s + 4]), numberAt = body + BigEndian32.read(stored[(s + 4)..<(s + 8)])
                    buffer.append(contentsOf: stored[body..<ridAt])
                    writer.appendResearchID(raw: key, to: &buffer)
                    buffer.append(contentsOf: stored[ridAt..<numberAt])
                    writer.appendReferralNumber(number, to: &buffer)
                    buffer.append(contentsOf: stored[numberAt...])
                    if buffer.count >= 1 << 20 {
                        guard output.put(buffer) else { throw StageStopped() }
                        buffer.removeAll(keepingCapacity: true)
                    }
                }
                output.put(buffer)
            } catch is StageStopped {
            } catch {
                output.abandon()
                throw error
            }
            try output.finish()
            let rowCount = maker.rows
            let dataHash = try file.finish()
            if progress { FileHandle.standardError.write(Data("\rwhp export: \(seen) referrals read, \(rowCount) rows\n".utf8)) }
            let kAnonymity = classes.finish()
            let recordedAt = tx.recordedAt(clock.now())

            let codebook = Array(Evaluation.codebook(config: config, precision: precision, format: format).utf8)
            try writeFile(out + "/codebook.md", codebook)
            let package = PrettyJSON.encode(
                DataPackage.descriptor(
                    config: config, precision: precision, format: format, dataFile: dataName, bytes: file.bytesWritten,
                    sha256: dataHash.hex, rows: rowCount, created: recordedAt))
            try writeFile(out + "/datapackage.json", package)
            let files: JSONObject = [
                dataName: .string(dataHash.hex), "codebook.md": .string(Crypto.sha256(codebook).hex),
                "datapackage.json": .string(Crypto.sha256(package).hex),
            ]
            let manifest: JSONObject = [
                "trial_id": .string(config.trialID), "rows": .int(rowCount), "removed_opted_out": .int(removed),
                "date_precision": .string(precision.rawValue), "head_seq": .int(head.seq), "head": .string(head.hash.hex),
                "config_hash": .string(configHash.hex), "k_anonymity": kAnonymity.json, "files": .object(files),
            ]
            var manifestBytes = JSON.encode(.object(manifest))
            manifestBytes.append(0x0a)
            try writeFile(out + "/manifest.json", manifestBytes)
            try tx.append(
                .exportMade(
                    ExportMade(manifestSHA256: Crypto.sha256(manifestBytes), rows: rowCount, removedOptedOut: removed, recordedAt: recordedAt)))
            let k = kAnonymity.kMin.map { "k_min \($0), \(kAnonymity.rowsInClassesBelow10) rows in classes below \(KAnonymity.threshold)" } ?? "no rows"
            return
                "exported \(rowCount) rows (\(removed) removed: opted out) to \(out)/\(dataName), with codebook.md, datapackage.json and manifest.json (\(k)); logged as event \(head.seq + 1)"
        }
    }

    private func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        do { try writeDurably(path, bytes) } catch { throw AppFailure.io(error.description) }
    }
}

/// What the export's second thread does with each batch of facts while the
/// referrals are read: each row is made and goes to the sorter keyed by its
/// research id. It belongs to that thread until the stage has finished.
final class RowMaker {
    static let batchSize = 1024
    /// The row's first bytes: where its research id and its number go (two big-endian offsets).
    static let header = 8

    let writer: EvaluationRowWriter
    let sorter: RowSorter
    private(set) var rows = 0
    private var row: [UInt8] = []

    init(writer: EvaluationRowWriter, sorter: RowSorter) {
        self.writer = writer; self.sorter = sorter
    }

    func add(_ batch: [ReferralFacts]) throws {
        let header = Self.header
        for f in batch {
            row.removeAll(keepingCapacity: true)
            row.append(contentsOf: repeatElement(0, count: header))
            guard let at = writer.appendUnnumbered(f, to: &row) else { continue }
            // Each row's research id is computed afresh: rows come in stored
            // order, so a person's referrals are rarely near each other, and a
            // cache of recent persons cost more in hashing than the HMACs it
            // spared (a 1,000,000-row profile: 7 % of the export, for no hits).
            let rid = writer.rawResearchID(of: f.claimant)
            BigEndian32.put(at.researchIDAt - header, into: &row, at: 0)
            BigEndian32.put(at.numberAt - header, into: &row, at: 4)
            rows += 1
            try sorter.add(key: rid[...], row: row[...])
        }
    }
}

/// A file written in chunks and hashed as it goes, then fsynced.
public final class HashingFile {
    let handle: FileHandle
    let hash = SHA256Stream()
    let path: String

    public init(_ path: String) throws {
        self.path = path
        guard let h = openForWriting(path) else { throw AppFailure.io("\(path): cannot create") }
        handle = h
    }

    /// How many bytes were written.
    public private(set) var bytesWritten = 0

    public func write(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        hash.update(bytes)
        bytesWritten += bytes.count
        do { try handle.write(contentsOf: bytes) } catch { throw AppFailure.io("\(path): write failed: \(error.localizedDescription)") }
    }

    public func finish() throws -> Bytes32 {
        do { try handle.synchronize(); try handle.close() } catch { throw AppFailure.io("\(path): cannot close: \(error.localizedDescription)") }
        return hash.finish()
    }
}

extension EvaluationExport {
    /// `whp export`: checks the config against the trial, reads the evaluation
    /// key, then writes the dataset. Returns the summary line.
    public static func run(
        paths: TrialPaths, format: ExportFormat, precision: DatePrecision, out: String,
        progress: Bool, clock: any ServiceClock, minK: Int? = nil
    ) throws -> String {
        let loaded = try loadConfig(paths.config)
        let store = try openStore(paths, readonly: false)
        // One pass over every referral: a small page cache keeps SQLite's sorter
        // (the window query) within a few MiB however large the trial.
        try? (store.backend as? SQLiteBackend)?.setPageCache(kibibytes: 4096)
        guard let trial = try store.read({ try $0.trial() }), trial.configHash == loaded.hash.hex else {
            throw AppFailure.failed("district-config does not match the trial's config hash; export with the trial's own config")
        }
        let key = try readKey(paths.evaluationKeyPath)
        try checkKeyBinding(key, expected: try store.read { try $0.trial() }?.evaluationKeyCheck, path: paths.evaluationKeyPath)
        return try EvaluationExport(
            config: loaded.config, configHash: loaded.hash, key: key, format: format, precision: precision,
            out: out, progress: progress, clock: clock, minK: minK
        ).run(store)
    }
}
