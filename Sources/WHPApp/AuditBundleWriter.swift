import Foundation
import WHPConfig
import WHPDomain
import WHPJSON
import WHPStore

/// `whp audit-bundle`: all an auditor needs besides the seed.
public enum AuditBundleWriter {
    /// Writes the bundle into `out`; returns the summary line.
    public static func write(paths common: TrialPaths, seedsDir seeds: String, out: String) throws -> String {
        let loaded = try loadConfig(common.config)
        let config = loaded.config, files = loaded.files
        let store = try openStore(common)
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: out), !existing.isEmpty {
            throw AppFailure.io("\(out) is not empty; an audit bundle goes into a new folder")
        }
        let commitmentPath = CommitmentFile.path(seedsDir: seeds, trialID: config.trialID)
        let commitment: CommitmentFile
        do { commitment = try CommitmentFile.read(commitmentPath) } catch { throw AppFailure.io(error.description) }
        do {
            try fm.createDirectory(atPath: out + "/district-config", withIntermediateDirectories: true)
            for f in files {
                let path = out + "/district-config/" + f.path
                try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
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

public func openForWriting(_ path: String) -> FileHandle? {
    guard FileManager.default.createFile(atPath: path, contents: nil) else { return nil }
    return FileHandle(forWritingAtPath: path)
}
