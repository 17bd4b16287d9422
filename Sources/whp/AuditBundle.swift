import ArgumentParser
import WHPApp
import Foundation

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

    /// Accepted for scripts written for earlier releases; the commitment file
    /// now comes from the store itself (RULES2 R10).
    @Option(help: .hidden)
    var seeds: String?

    @Option(help: ArgumentHelp("The bundle folder to create (must not exist or be empty).", valueName: "DIR"))
    var out: String

    func run() throws {
        stdout(try AuditBundleWriter.write(paths: common.paths, out: out))
    }
}
