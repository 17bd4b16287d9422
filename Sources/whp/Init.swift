import ArgumentParser
import Foundation
import WHPCore
import WHPStore

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

    @Option(name: .customLong("import-seed"),
            help: ArgumentHelp("Use this seed file (64 hex digits, mode 0600) instead of drawing a new seed, e.g. one made in a key ceremony.", valueName: "FILE"))
    var importSeed: String?

    func run() throws {
        let summary = try TrialSetup.initialise(common: common, seedsDir: seeds, importSeed: importSeed, now: try serviceClock().now())
        stdout(summary)
    }
}

/// `init`'s steps, shared with `demo`.
enum TrialSetup {
    static func initialise(common: CommonOptions, seedsDir: String, importSeed: String?, now: Instant) throws -> String {
        let (config, configHash, _) = try loadConfig(common.config)
        let location = common.storeLocation
        // Refuse a store that already holds a trial before any key or commitment is written.
        var backend: (any StoreBackend)?
        switch location {
        case .sqlite(let path):
            if FileManager.default.fileExists(atPath: path) {
                if let store = try? Store.open(path: path, readonly: true), let head = try? store.head() {
                    throw Failure.failed("\(path) already holds a trial (\(head.seq) events); init runs once per store")
                }
                throw Failure.failed("\(path) already exists; init runs once per store (move it away to start afresh)")
            }
        case .postgres:
            do { backend = try location.backend() } catch { throw Failure.io("\(error)") }
            if let store = try? Store.open(backend: backend!), let head = try? store.head() {
                throw Failure.failed("\(location) already holds a trial (\(head.seq) events); init runs once per store")
            }
        }
        do {
            try FileManager.default.createDirectory(atPath: common.keysDir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch { throw Failure.io("cannot create \(common.keysDir): \(error.localizedDescription)") }

        if let importSeed {
            let seed = try readKey(importSeed)
            if KeyFile.exists(common.seedPath) {
                guard try readKey(common.seedPath) == seed else {
                    throw Failure.failed("\(common.seedPath) already holds a different seed; keys are never overwritten")
                }
            } else {
                try createKey(common.seedPath, seed)
            }
        }
        for path in [common.seedPath, common.pseudonymKeyPath, common.evaluationKeyPath] where !KeyFile.exists(path) {
            guard let key = Crypto.randomKey() else { throw Failure.io("OpenSSL RAND_bytes failed: no key was made") }
            try createKey(path, key)
        }
        let seed = try readKey(common.seedPath)
        _ = try readKey(common.pseudonymKeyPath)
        _ = try readKey(common.evaluationKeyPath)

        let commitment = Derivation.commitment(trialID: config.trialID, seed: seed)
        let file = CommitmentFile(trialID: config.trialID, commitment: commitment.hex, configHash: configHash.hex, created: now.iso)
        let commitmentPath = CommitmentFile.path(seedsDir: seedsDir, trialID: config.trialID)
        do { try file.write(commitmentPath) } catch { throw Failure.failed(error.description) }

        let store: Store
        do { store = try Store.create(backend: backend ?? location.backend(create: true)) } catch { throw Failure.io("cannot create the store at \(location): \(error)") }
        let head = try store.write { tx in
            try tx.append(.trialStarted, config.trialStartedPayload(commitment: commitment, configHash: configHash, recordedAt: now))
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

    static func createKey(_ path: String, _ key: Bytes32) throws {
        do { try KeyFile.create(path, key: key) } catch { throw Failure.io(error.description) }
    }
}
