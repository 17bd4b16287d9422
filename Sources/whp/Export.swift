import ArgumentParser
import Foundation
import WHPCore
import WHPService
import WHPStore

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

    @Option(help: "csv or jsonl.")
    var format: String = "csv"

    @Option(name: .customLong("date-precision"), help: "day, week (ISO week) or month.")
    var datePrecision: String = "month"

    @Flag(name: .customLong("no-progress"), help: "No progress line on stderr.")
    var noProgress = false

    func run() throws {
        guard let format = ExportFormat(rawValue: format) else { throw ValidationError("--format must be csv or jsonl") }
        guard let precision = DatePrecision(rawValue: datePrecision) else { throw ValidationError("--date-precision must be day, week or month") }
        let (config, configHash, _) = try loadConfig(common.config)
        let store = try openStore(common, readonly: false)
        // One pass over every referral: a small page cache keeps SQLite's sorter
        // (the window query) within a few MiB however large the trial.
        try? (store.backend as? SQLiteBackend)?.setPageCache(kibibytes: 4096)
        guard let trial = try store.read({ try $0.trial() }), trial.configHash == configHash.hex else {
            throw Failure.failed("district-config does not match the trial's config hash; export with the trial's own config")
        }
        let key = try readKey(common.evaluationKeyPath)
        let summary = try EvaluationExport(config: config, configHash: configHash, key: key, format: format, precision: precision,
                                           out: out, progress: !noProgress && isatty(2) == 1, clock: try serviceClock()).run(store)
        stdout(summary)
    }
}

/// Streams the dataset into DIR and logs the export, all in one write
/// transaction so the manifest's head is exactly the event before `export_made`.
struct EvaluationExport {
    let config: TrialConfig
    let configHash: Bytes32
    let key: Bytes32
    let format: ExportFormat
    let precision: DatePrecision
    let out: String
    let progress: Bool
    let clock: any ServiceClock

    func run(_ store: Store) throws -> String {
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: out), !existing.isEmpty {
            throw Failure.io("\(out) is not empty; an export goes into a new folder")
        }
        do { try fm.createDirectory(atPath: out, withIntermediateDirectories: true) } catch { throw Failure.io("cannot create \(out)") }
        let dataName = format == .csv ? "allocations.csv" : "allocations.jsonl"
        return try store.write { tx in
            guard let head = tx.head else { throw Failure.failed("the store holds no trial") }
            let file = try HashingFile(out + "/" + dataName)
            var buffer: [UInt8] = []
            buffer.reserveCapacity(1 << 20)
            // Rows go straight into the buffer, the research-id key schedule computed once.
            let writer = EvaluationRowWriter(config: config, evaluationKey: key, precision: precision, format: format)
            writer.header(into: &buffer)
            var rows = 0, removed = 0, seen = 0
            try tx.forEachReferralFact { f in
                seen += 1
                if f.optedOut && f.status != .cancelled { removed += 1 }
                if writer.append(f, to: &buffer) {
                    rows += 1
                    if buffer.count >= 1 << 20 { try file.write(buffer); buffer.removeAll(keepingCapacity: true) }
                }
                if progress && seen % 100_000 == 0 {
                    FileHandle.standardError.write(Data("\rwhp export: \(seen) referrals read, \(rows) rows".utf8))
                }
            }
            try file.write(buffer)
            let dataHash = try file.finish()
            if progress { FileHandle.standardError.write(Data("\rwhp export: \(seen) referrals read, \(rows) rows\n".utf8)) }

            let codebook = Array(Evaluation.codebook(config: config, precision: precision, format: format).utf8)
            try writeDurably(out + "/codebook.md", codebook)
            let files: JSONObject = [dataName: .string(dataHash.hex), "codebook.md": .string(Crypto.sha256(codebook).hex)]
            let manifest: JSONObject = [
                "trial_id": .string(config.trialID), "rows": .int(rows), "removed_opted_out": .int(removed),
                "date_precision": .string(precision.rawValue), "head_seq": .int(head.seq), "head": .string(head.hash.hex),
                "config_hash": .string(configHash.hex), "files": .object(files),
            ]
            var manifestBytes = JSON.encode(.object(manifest))
            manifestBytes.append(0x0a)
            try writeDurably(out + "/manifest.json", manifestBytes)
            try tx.append(.exportMade, ["manifest_sha256": Crypto.sha256(manifestBytes).hex, "rows": String(rows),
                                        "removed_opted_out": String(removed), "recorded_at": tx.recordedAt(clock.now()).iso])
            return "exported \(rows) rows (\(removed) removed: opted out) to \(out)/\(dataName), with codebook.md and manifest.json; logged as event \(head.seq + 1)"
        }
    }
}

/// A file written in chunks and hashed as it goes, then fsynced.
final class HashingFile {
    let handle: FileHandle
    let hash = SHA256Stream()
    let path: String

    init(_ path: String) throws {
        self.path = path
        guard let h = openForWriting(path) else { throw Failure.io("\(path): cannot create") }
        handle = h
    }

    func write(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        hash.update(bytes)
        do { try handle.write(contentsOf: bytes) } catch { throw Failure.io("\(path): write failed: \(error.localizedDescription)") }
    }

    func finish() throws -> Bytes32 {
        do { try handle.synchronize(); try handle.close() } catch { throw Failure.io("\(path): cannot close: \(error.localizedDescription)") }
        return hash.finish()
    }
}
