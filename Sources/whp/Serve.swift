import ArgumentParser
import Logging
import WHPApp

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the DCAMS wire protocol (JSON Lines) on stdin/stdout until EOF.",
        discussion: """
            One response line per request line, in order; a response is written only after its \
            events are durably committed; pipelined requests are committed in groups. Logs go to \
            stderr (WHP_LOG=debug|info|warning). Before reading anything it checks that \
            district-config hashes to the trial's config hash and that the key files are private \
            (mode 0600); otherwise it explains on stderr and exits 1. See PROTOCOL.md.
            """)

    @OptionGroup var common: CommonOptions

    func run() throws {
        try ServeSetup.serve(paths: common.paths, clock: try serviceClock(), logger: Logger(label: "whp.serve"))
    }
}
