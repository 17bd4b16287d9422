import Foundation
import Logging
import WHPAudit
import WHPConfig
import WHPCrypto
import WHPDomain
import WHPEvaluation
import WHPJSON
import WHPService
import WHPStore

public enum ServeSetup {
    /// `whp serve` on stdin/stdout until EOF.
    public static func serve(paths: TrialPaths, clock: any ServiceClock, logger: Logger) throws {
        let server = try server(paths: paths, clock: clock, logger: logger, input: 0, output: 1)
        do { try server.run() } catch { throw AppFailure.io("serve stopped: \(error)") }
    }

    /// The start-up guards of PROTOCOL.md §1, then a server ready to run.
    public static func server(paths common: TrialPaths, clock: any ServiceClock, logger: Logger, input: Int32, output: Int32) throws -> Server {
        let loaded = try loadConfig(common.config)
        let config = loaded.config, configHash = loaded.hash
        let store: Store
        do { store = try Store.open(backend: common.store.backend()) } catch { throw AppFailure.failed("\(error)") }
        guard let trial = try store.read({ try $0.trial() }) else { throw AppFailure.failed("the store has no trial record") }
        guard trial.configHash == configHash.hex else {
            throw AppFailure.failed("district-config hashes to \(configHash.hex) but the trial was started with \(trial.configHash); the config of a running trial never changes (restore it, or point --config at the trial's folder)")
        }
        let keys = ServiceKeys(seed: try readKey(common.seedPath), pseudonym: try readKey(common.pseudonymKeyPath))
        // serve never uses the evaluation key, but a key file others can read is a leak all the same.
        _ = try readKey(common.evaluationKeyPath)
        guard Derivation.commitment(trialID: trial.trialID, seed: keys.seed).hex == trial.commitment else {
            throw AppFailure.failed("\(common.seedPath) is not the seed this trial committed to")
        }
        let engine = Engine(config: config, configHash: configHash, keys: keys)
        logger.info("serving trial \(trial.trialID) (\(config.frontlineRCG.rawValue) RCG policy)")
        logger.info("store: \(common.store)")
        return Server(engine: engine, store: store, clock: clock, logger: logger, input: input, output: output)
    }
}
