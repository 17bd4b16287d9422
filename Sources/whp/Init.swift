import ArgumentParser
import Foundation
import WHPApp

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a trial: keys, the seed commitment and the trial_started event.",
        discussion: """
            Validates district-config, creates DATA/keys/seed.hex, pseudonym.key and evaluation.key \
            (32 bytes from OpenSSL RAND_bytes each, mode 0600; an existing key is kept, never \
            overwritten), writes SEEDS/<trial_id>.commitment.json — publish it before the first \
            allocation — and creates the store with its trial_started event. Refuses a store that \
            already holds a trial.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: ArgumentHelp("Where the public commitment file is written.", valueName: "DIR"))
    var seeds: String = "seeds"

    @Option(
        name: .customLong("import-seed"),
        help: ArgumentHelp("Use this seed file (64 hex digits, mode 0600) instead of drawing a new seed, e.g. one made in a key ceremony.", valueName: "FILE"))
    var importSeed: String?

    func run() throws {
        let summary = try TrialSetup.initialise(paths: common.paths, seedsDir: seeds, importSeed: importSeed, now: try serviceClock().now())
        stdout(summary)
    }
}
