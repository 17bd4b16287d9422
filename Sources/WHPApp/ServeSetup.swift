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
        let server = StdioServer(service: try service(paths: paths, clock: clock, logger: logger), logger: logger)
        do { try server.run() } catch { throw AppFailure.io("serve stopped: \(error)") }
    }

    /// The start-up guards of PROTOCOL.md §1, then the service ready to answer.
    /// `backend` replaces the store the paths name (the in-process test door's
    /// seam). A refusal is also logged, saying why: it is what an operator's
    /// log collection shows when an instance does not come up.
    public static func service(
        paths: TrialPaths, clock: any ServiceClock, logger: Logger,
        backend: (any StoreBackend)? = nil
    ) throws -> Service {
        do {
            return try startUp(paths: paths, clock: clock, logger: logger, backend: backend)
        } catch let f as AppFailure {
            logger.error("refusing to serve: \(f.message)")
            throw f
        }
    }

    static func startUp(
        paths common: TrialPaths, clock: any ServiceClock, logger: Logger,
        backend: (any StoreBackend)?
    ) throws -> Service {
        let loaded = try loadConfig(common.config)
        let config = loaded.config, configHash = loaded.hash
        let store: Store
        do { store = try Store.open(backend: backend ?? common.store.backend(), logger: logger) } catch { throw AppFailure.failed("\(error)") }
        guard let trial = try store.read({ try $0.trial() }) else { throw AppFailure.failed("the store has no trial record") }
        guard trial.configHash == configHash.hex else {
            throw AppFailure.failed(
                "district-config hashes to \(configHash.hex) but the trial was started with \(trial.configHash); the config of a running trial never changes (restore it, or point --config at the trial's folder)"
            )
        }
        if let problem = config.ruleViolations(trial.rules).first {
            throw AppFailure.failed("invalid district-config for this rules \(trial.rules.rawValue) trial: \(common.config)/\(problem.description)")
        }
        do { try KeyFile.checkFolder(common.keysDir) } catch { throw AppFailure.failed(error.description) }
        let keys = ServiceKeys(seed: try readKey(common.seedPath), pseudonym: try readKey(common.pseudonymKeyPath))
        // serve never uses the evaluation key, but a key file others can read is a leak all the same.
        _ = try readKey(common.evaluationKeyPath)
        guard Derivation.commitment(trialID: trial.trialID, seed: keys.seed).hex == trial.commitment else {
            throw AppFailure.failed("\(common.seedPath) is not the seed this trial committed to")
        }
        // RULES2 R4: another valid key would give every claimant a new pseudonym and lift every lock.
        try checkKeyBinding(keys.pseudonym, expected: trial.pseudonymKeyCheck, path: common.pseudonymKeyPath)
        let window = RecruitmentWindow(config.recruitment, startedOn: trial.startedOn)
        let engine = Engine(config: config, configHash: configHash, keys: keys, rules: trial.rules, window: window)
        logger.info("serving trial \(trial.trialID) (\(config.frontlineRCG.rawValue) RCG policy)")
        logger.info("store: \(common.store)")
        return Service(engine: engine, store: store, clock: clock, logger: logger)
    }
}
