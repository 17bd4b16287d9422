import ArgumentParser
import WHPApp

struct Checkpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print {\"trial_id\", \"seq\", \"head\"} of the newest event.",
        discussion: """
            Hand the checkpoint to an outside party (an auditor keeps it): later, \
            `whp verify --checkpoint FILE` fails unless the log still holds exactly that head at \
            that seq, so the log can be neither rewritten nor cut short unseen (ALLOCATION.md §10).
            """)

    @OptionGroup var common: CommonOptions

    func run() throws {
        stdout(try Checkpoints.current(paths: common.paths))
    }
}
