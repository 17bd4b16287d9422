import ArgumentParser
import Foundation
import WHPCore
import WHPStore

struct AuditBundle: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-bundle",
        abstract: "Write all an auditor needs besides the seed: the log, the config and the commitment.",
        discussion: """
            DIR gets events.jsonl ({seq, type, payload, hash} a line), district-config/ (a copy of \
            the config folder) and <trial_id>.commitment.json. Check it with \
            `whp verify --bundle DIR [--seed FILE]` or any independent implementation of \
            ALLOCATION.md. The bundle is confidential while the trial runs: from a block's size, \
            position and earlier arms a reader knows the block's last arm (ALLOCATION.md §9).
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: ArgumentHelp("Folder of the published commitment files.", valueName: "DIR"))
    var seeds: String = "seeds"

    @Option(help: ArgumentHelp("The bundle folder to create (must not exist or be empty).", valueName: "DIR"))
    var out: String

    func run() throws {
        let (config, _, files) = try loadConfig(common.config)
        let store = try openStore(common)
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: out), !existing.isEmpty {
            throw Failure.io("\(out) is not empty; an audit bundle goes into a new folder")
        }
        let commitmentPath = CommitmentFile.path(seedsDir: seeds, trialID: config.trialID)
        let commitment: CommitmentFile
        do { commitment = try CommitmentFile.read(commitmentPath) } catch { throw Failure.io(error.description) }
        do {
            try fm.createDirectory(atPath: out + "/district-config", withIntermediateDirectories: true)
            for f in files {
                let path = out + "/district-config/" + f.path
                try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try writeDurably(path, f.bytes)
            }
            try writeDurably(CommitmentFile.path(seedsDir: out, trialID: config.trialID), Array(commitment.json.utf8))
        } catch { throw Failure.io("cannot write the bundle: \(error)") }

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
        stdout("audit bundle written to \(out): \(count) events, district-config (\(files.count) files), \(config.trialID).commitment.json")
    }
}

func openForWriting(_ path: String) -> FileHandle? {
    guard FileManager.default.createFile(atPath: path, contents: nil) else { return nil }
    return FileHandle(forWritingAtPath: path)
}
