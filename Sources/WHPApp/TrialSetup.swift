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
        do {
            try FileManager.default.createDirectory(
                atPath: common.keysDir, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch { throw AppFailure.io("cannot create \(common.keysDir): \(error.localizedDescription)") }

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
        _ = try readKey(common.pseudonymKeyPath)
        _ = try readKey(common.evaluationKeyPath)

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
                        rules: .one, pseudonymKeyCheck: nil, evaluationKeyCheck: nil, recordedAt: now)))
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
