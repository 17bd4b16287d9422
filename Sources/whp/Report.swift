import ArgumentParser
import Foundation
import WHPCore
import WHPStore

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reports on the trial for evaluators.",
        subcommands: [Consort.self])

    struct Consort: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The trial's flow: referred → gatekeeper → arms → removed by opt-out → in the dataset.",
            discussion: """
                Prints the CONSORT-style flow as a table (every box is the sum of the boxes it \
                splits into); with --svg also writes it as a diagram of boxes and arrows.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: ArgumentHelp("Also write the flow as an SVG diagram.", valueName: "FILE"))
        var svg: String?

        func run() throws {
            let (config, _, _) = try loadConfig(common.config)
            let store: Store
            do { store = try Store.open(path: common.storePath, readonly: true) } catch { throw Failure.io("\(error)") }
            var flow = ConsortFlow()
            try store.read { tx in try tx.forEachReferralFact { flow.add($0) } }
            stdout(flow.table(config: config))
            if let svg {
                do { try writeDurably(svg, Array(flow.svg(config: config).utf8)) } catch { throw Failure.io(error.description) }
                stdout("diagram written to \(svg)")
            }
        }
    }
}
