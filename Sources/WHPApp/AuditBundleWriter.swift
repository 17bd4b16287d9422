import Foundation
import WHPConfig
import WHPDomain
import WHPJSON
import WHPStore

/// `whp audit-bundle`: all an auditor needs besides the seed.
public enum AuditBundleWriter {
    /// Writes the bundle into `out`; returns the summary line.
    public static func write(paths common: TrialPaths, out: String) throws -> String {
        let loaded = try loadConfig(common.config)
        let config = loaded.config, files = loaded.files
        let store = try openStore(common)
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: out), !existing.isEmpty {
            throw AppFailure.io("\(out) is not empty; an audit bundle goes into a new folder")
        }
        // RULES2 R10: the commitment file comes from the store's own
        // trial_started (created = its recorded_at); no --seeds is needed.
        guard let trial = try store.read({ try $0.trial() }), let started = try store.read({ try $0.trialStartedAt() }) else {
            throw AppFailure.failed("the store holds no trial")
        }
        let commitment = CommitmentFile(trialID: trial.trialID, commitment: trial.commitment, configHash: trial.configHash, created: started.iso)
        do {
            try makeDirectory(out + "/district-config")
            for f in files {
                let path = out + "/district-config/" + f.path
                try makeDirectory(parentFolder(of: path))
                try writeDurably(path, f.bytes)
            }
            try writeDurably(CommitmentFile.path(seedsDir: out, trialID: config.trialID), Array(commitment.json.utf8))
        } catch { throw AppFailure.io("cannot write the bundle: \(error)") }

        let file = try HashingFile(out + "/events.jsonl")
        var count = 0
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 20)
        try store.forEachEvent { e in
            buffer.append(contentsOf: Array("{\"seq\":\(e.seq),\"type\":".utf8))
            buffer.append(contentsOf: JSON.encode(.string(e.type)))
            buffer.append(contentsOf: Array(",\"payload\":".utf8))
            buffer.append(contentsOf: Array(e.payloadText.utf8))
            buffer.append(contentsOf: Array(",\"hash\":".utf8))
            buffer.append(contentsOf: JSON.encode(.string(e.hash)))
            buffer.append(contentsOf: Array("}\n".utf8))
            count += 1
            if buffer.count > 1 << 20 { try file.write(buffer); buffer.removeAll(keepingCapacity: true) }
        }
        try file.write(buffer)
        _ = try file.finish()
        FileHandle.standardError.write(Data("whp: the bundle is confidential while the trial runs (ALLOCATION.md §9)\n".utf8))
        return ("audit bundle written to \(out): \(count) events, district-config (\(files.count) files), \(config.trialID).commitment.json")
    }
}

/// A new private file (mode 0600, RULES2 R13) to write through a handle.
public func openForWriting(_ path: String) -> FileHandle? {
    guard let fd = try? openPrivately(path) else { return nil }
    return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
}
