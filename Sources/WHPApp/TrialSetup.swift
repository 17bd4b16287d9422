import Foundation
import WHPConfig
import WHPCrypto
import WHPDomain
import WHPStore

/// `init`'s steps, shared with `demo`.
public enum TrialSetup {
    public static func initialise(paths common: TrialPaths, seedsDir: String, importSeed: String?, now: Instant) throws -> String {
        let loaded = try loadConfig(common.config)
        let config = loaded.config, configHash = loaded.hash
        // A new trial is a rules 2 trial (RULES2 R0): its config obeys rules 2's config rules (R3).
        if let problem = config.ruleViolations(.current).first {
            throw AppFailure.failed("invalid district-config: \(common.config)/\(problem.description)")
        }
        // RULES2 R5: the published demo seed is for the demo trial only.
        if config.trialID != DemoSeed.trialID {
            for path in [importSeed, KeyFile.exists(common.seedPath) ? common.seedPath : nil].compactMap({ $0 }) {
                if (try? KeyFile.read(path, requirePrivate: false)) == DemoSeed.value {
                    throw AppFailure.failed(
                        "\(path) holds the published demo seed, which is public: it may start only the trial \(DemoSeed.trialID), not \(config.trialID); nothing was created"
                    )
                }
            }
        }
        let location = common.store
        // Refuse a store that already holds a trial before any key or commitment is written.
        var backend: (any StoreBackend)?
        switch location {
        case .sqlite(let path):
            if FileManager.default.fileExists(atPath: path) {
                if let store = try? Store.open(path: path, readonly: true), let head = try? store.head() {
                    throw AppFailure.failed("\(path) already holds a trial (\(head.seq) events); init runs once per store")
                }
                throw AppFailure.failed("\(path) already exists; init runs once per store (move it away to start afresh)")
            }
        case .postgres:
            do { backend = try location.backend() } catch { throw AppFailure.io("\(error)") }
            if let store = try? Store.open(backend: backend!), let head = try? store.head() {
                throw AppFailure.failed("\(location) already holds a trial (\(head.seq) events); init runs once per store")
            }
        }
        do { try makeDirectory(common.keysDir) } catch { throw AppFailure.io(error.description) }
        do { try KeyFile.checkFolder(common.keysDir) } catch { throw AppFailure.failed(error.description) }

        if let importSeed {
            let seed = try readKey(importSeed)
            if KeyFile.exists(common.seedPath) {
                guard try readKey(common.seedPath) == seed else {
                    throw AppFailure.failed("\(common.seedPath) already holds a different seed; keys are never overwritten")
                }
            } else {
                try createKey(common.seedPath, seed)
            }
        }
        for path in [common.seedPath, common.pseudonymKeyPath, common.evaluationKeyPath] where !KeyFile.exists(path) {
            guard let key = Crypto.randomKey() else { throw AppFailure.io("OpenSSL RAND_bytes failed: no key was made") }
            try createKey(path, key)
        }
        let seed = try readKey(common.seedPath)
        let pseudonymKey = try readKey(common.pseudonymKeyPath)
        let evaluationKey = try readKey(common.evaluationKeyPath)

        let commitment = Derivation.commitment(trialID: config.trialID, seed: seed)
        let file = CommitmentFile(trialID: config.trialID, commitment: commitment.hex, configHash: configHash.hex, created: now.iso)
        let commitmentPath = CommitmentFile.path(seedsDir: seedsDir, trialID: config.trialID)
        do { try file.write(commitmentPath) } catch { throw AppFailure.failed(error.description) }

        let store: Store
        do { store = try Store.create(backend: backend ?? location.backend(create: true)) } catch {
            throw AppFailure.io("cannot create the store at \(location): \(error)")
        }
        let head = try store.write { tx in
            try tx.append(
                .trialStarted(
                    TrialStarted(
                        trialID: config.trialID, commitment: commitment, configHash: configHash, method: config.method,
                        blockMultipliers: config.blockMultipliers, stratifyByGroup: config.stratifyByGroup, frontlineRCG: config.frontlineRCG,
                        rules: .current, pseudonymKeyCheck: Derivation.keyCheck(pseudonymKey),
                        evaluationKeyCheck: Derivation.keyCheck(evaluationKey), recordedAt: now)))
            return tx.head!
        }
        return """
            trial \(config.trialID) started
              commitment   \(commitment.hex)  (published in \(commitmentPath))
              config hash  \(configHash.hex)
              store        \(location)  (event 1, head \(head.hash.hex))
              keys         \(common.keysDir)/  (mode 0600: keep them secret and backed up)
            """
    }

    public static func createKey(_ path: String, _ key: Bytes32) throws {
        do { try KeyFile.create(path, key: key) } catch { throw AppFailure.io(error.description) }
    }
}
