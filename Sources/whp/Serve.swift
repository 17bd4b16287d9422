import ArgumentParser
import Foundation
import Logging
import WHPCore
import WHPService
import WHPStore

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
        let logger = Logger(label: "whp.serve")
        let server = try ServeSetup.server(common: common, clock: try serviceClock(), logger: logger, input: 0, output: 1)
        do { try server.run() } catch { throw Failure.io("serve stopped: \(error)") }
    }
}

enum ServeSetup {
    /// The start-up guards of PROTOCOL.md §1, then a server ready to run.
    static func server(common: CommonOptions, clock: any ServiceClock, logger: Logger, input: Int32, output: Int32) throws -> Server {
        let (config, configHash, _) = try loadConfig(common.config)
        let store: Store
        do { store = try Store.open(backend: common.storeLocation.backend()) } catch { throw Failure.failed("\(error)") }
        guard let trial = try store.read({ try $0.trial() }) else { throw Failure.failed("the store has no trial record") }
        guard trial.configHash == configHash.hex else {
            throw Failure.failed("district-config hashes to \(configHash.hex) but the trial was started with \(trial.configHash); the config of a running trial never changes (restore it, or point --config at the trial's folder)")
        }
        let keys = ServiceKeys(seed: try readKey(common.seedPath), pseudonym: try readKey(common.pseudonymKeyPath))
        // serve never uses the evaluation key, but a key file others can read is a leak all the same.
        _ = try readKey(common.evaluationKeyPath)
        guard Derivation.commitment(trialID: trial.trialID, seed: keys.seed).hex == trial.commitment else {
            throw Failure.failed("\(common.seedPath) is not the seed this trial committed to")
        }
        let engine = Engine(config: config, configHash: configHash, keys: keys)
        logger.info("serving trial \(trial.trialID) (\(config.frontlineRCG.rawValue) RCG policy)")
        logger.info("store: \(common.storeLocation)")
        return Server(engine: engine, store: store, clock: clock, logger: logger, input: input, output: output)
    }
}
