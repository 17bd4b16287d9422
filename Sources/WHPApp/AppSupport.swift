import Foundation
import Logging
import WHPConfig
import WHPCrypto
import WHPDomain
import WHPService
import WHPStore

/// Why a command stopped, with its exit code (CLI.md): 1 when a check or an
/// operation failed, 2 for a usage or I/O problem. The message is for the
/// operator and never holds a secret.
public struct AppFailure: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public init(code: Int32, message: String) { self.code = code; self.message = message }
    public static func failed(_ m: String) -> AppFailure { AppFailure(code: 1, message: m) }
    public static func io(_ m: String) -> AppFailure { AppFailure(code: 2, message: m) }
    public var description: String { message }
}

/// Where a trial lives: its district-config folder, its data folder (keys and,
/// by default, the SQLite store) and its store.
public struct TrialPaths: Sendable {
    public var config: String
    public var data: String
    public var store: StoreLocation

    public init(config: String = "district-config", data: String = ".whp", store: String? = nil) {
        self.config = config
        self.data = data
        self.store = store.map(StoreLocation.init) ?? .sqlite(data + "/whp.sqlite")
    }

    public var keysDir: String { data + "/keys" }
    public var seedPath: String { keysDir + "/seed.hex" }
    public var pseudonymKeyPath: String { keysDir + "/pseudonym.key" }
    public var evaluationKeyPath: String { keysDir + "/evaluation.key" }
}

/// The service clock from the environment: `WHP_NOW` when set, else the
/// system's UTC clock (CLI.md).
public func serviceClock(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> any ServiceClock {
    guard let text = environment["WHP_NOW"], !text.isEmpty else { return SystemClock() }
    guard let instant = Instant(text) else { throw AppFailure.io("WHP_NOW must be YYYY-MM-DDTHH:MM:SSZ, got \"\(text)\"") }
    guard CalendarRange.contains(instant.date) else {
        throw AppFailure.io("WHP_NOW must be from 1900-01-01 to 2999-12-31, got \(text) (RULES2 R9)")
    }
    return FixedClock(instant)
}

/// A loaded district-config: the parsed config, its hash and its files.
public struct LoadedConfig: Sendable {
    public var config: TrialConfig
    public var hash: Bytes32
    public var files: [ConfigFile]
}

/// Reads and parses the config folder; a config that breaks a rule is exit 1,
/// a folder that cannot be read exit 2.
public func loadConfig(_ dir: String) throws -> LoadedConfig {
    do {
        let files = try ConfigFolder.read(dir)
        do {
            return LoadedConfig(config: try TrialConfig.parse(files: files), hash: TrialConfig.hash(of: files), files: files)
        } catch {
            throw AppFailure.failed("invalid district-config: \(dir)/\(error.description)")
        }
    } catch let e as ConfigFolderError {
        throw e.isConfigError ? AppFailure.failed("invalid district-config: \(e.description)") : AppFailure.io(e.description)
    }
}

/// Opens the trial's store for a command; a missing or unreachable store is an I/O error (exit 2).
public func openStore(_ paths: TrialPaths, readonly: Bool = true) throws -> Store {
    do { return try Store.open(backend: paths.store.backend(readonly: readonly)) } catch { throw AppFailure.io("\(error)") }
}

/// Reads a key file; a key file that is not private or not a key is exit 1.
public func readKey(_ path: String) throws -> Bytes32 {
    do { return try KeyFile.read(path) } catch { throw AppFailure.failed(error.description) }
}

/// RULES2 R4: a rules 2 trial records `HMAC(K, enc("whp/key-check/v1"))` of
/// its pseudonym and evaluation keys; a key file that does not match is
/// refused, naming the file and never its content. (A rules 1 trial has no
/// check to compare.)
public func checkKeyBinding(_ key: Bytes32, expected: Bytes32?, path: String) throws {
    guard let expected else { return }
    guard Derivation.keyCheck(key) == expected else {
        throw AppFailure.failed(
            "\(path) is not the key this trial was started with (its key check differs from trial_started's): restore the trial's own key file")
    }
}

/// The published demo seed (`seeds/whp-demo.seed.hex`), built in so that
/// `init` recognises it by value wherever a copy of it lies (RULES2 R5).
public enum DemoSeed {
    public static let trialID = "whp-demo"
    public static let value = Bytes32(hex: "0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186")!
}
