import ArgumentParser
import WHPApp
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the embedded default end to end in a fresh folder and say what happened.",
        discussion: """
            Copies district-config into a new folder, starts the trial with the PUBLISHED demo \
            seed (seeds/whp-demo.seed.hex — public, for demonstration only), checks its commitment \
            against seeds/whp-demo.commitment.json, plays the example DCAMS session \
            (examples/dcams-session.jsonl) through `whp serve`, runs `whp verify --seed`, exports the evaluation dataset and prints the CONSORT flow. \
            Run it from the repository root, or point the options at those files.
            """)

    @Option(help: ArgumentHelp("The fresh folder to run in (default: a new folder under the system temp dir).", valueName: "DIR"))
    var dir: String?

    @Option(help: ArgumentHelp("The config to copy.", valueName: "DIR"))
    var config: String = "district-config"

    @Option(help: ArgumentHelp("The published demo seed and commitment folder.", valueName: "DIR"))
    var seeds: String = "seeds"

    @Option(help: ArgumentHelp("The DCAMS session to play.", valueName: "FILE"))
    var session: String = "examples/dcams-session.jsonl"

    func run() throws {
        try DemoRunner(dir: dir, config: config, seeds: seeds, session: session).run()
    }
}
