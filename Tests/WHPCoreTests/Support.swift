import Foundation
import Testing
@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

// Shared helpers for the WHPCore tests: the spec's vectors.json, decoded
// once, and small independent byte/hex utilities.

struct Vectors: Decodable, Sendable {
    struct EncVector: Decodable, Sendable { let s: String; let hex: String }
    struct AllocSeedVector: Decodable, Sendable { let stratum: String; let i: Int; let hex: String }
    struct BlockSeedVector: Decodable, Sendable { let stratum: String; let b: Int; let hex: String }
    struct UniformVector: Decodable, Sendable { let seed: String; let n: UInt64; let value: UInt64 }
    struct SequenceAllocation: Decodable, Sendable {
        let index: Int
        let block: Int?
        let block_size: Int?
        let position: Int?
        let arm: String
        let alloc_seed: String
    }
    struct SequenceVector: Decodable, Sendable, CustomTestStringConvertible {
        let stratum: String
        let weights: [String: Int]
        let block_multipliers: [Int]
        let method: String
        let allocations: [SequenceAllocation]
        var testDescription: String { "\(method) \(stratum) \(weights.sorted { $0.key < $1.key }) M=\(block_multipliers)" }
    }
    struct LotteryKeyVector: Decodable, Sendable { let run_id: String; let referral_id: String; let hex: String }
    struct PseudonymVector: Decodable, Sendable { let id: String; let hex: String }
    struct ResearchIDVector: Decodable, Sendable { let claimant: String; let hex: String }
    struct AddMonthsVector: Decodable, Sendable { let date: String; let months: Int; let result: String }
    struct ConfigHashVector: Decodable, Sendable { let files: [String: String]; let hex: String }
    struct ChainEvent: Decodable, Sendable {
        let seq: Int
        let type: String
        let payload: [String: String]
        let event_bytes: String
        let hash: String
    }
    struct ChainVector: Decodable, Sendable { let genesis: String; let events: [ChainEvent] }

    let seed: String
    let trial_id: String
    let commitment: String
    let enc: [EncVector]
    let alloc_seed: [AllocSeedVector]
    let block_seed: [BlockSeedVector]
    let uniform: [UniformVector]
    let sequences: [SequenceVector]
    let lottery_key: [LotteryKeyVector]
    let pseudonym: [PseudonymVector]
    let research_id: [ResearchIDVector]
    let add_months: [AddMonthsVector]
    let pseudonym_key: String
    let research_key: String
    let config_hash: ConfigHashVector
    let chain: ChainVector
}

enum FixtureError: Error { case missing(String), badKey(String) }

enum Fixture {
    private static let loaded: Result<Vectors, any Error> = Result {
        guard let url = Bundle.module.url(forResource: "vectors", withExtension: "json", subdirectory: "Fixtures") else {
            throw FixtureError.missing("Fixtures/vectors.json is not in the test bundle")
        }
        return try JSONDecoder().decode(Vectors.self, from: Data(contentsOf: url))
    }

    /// The decoded vectors; throws (failing the test) if the file is missing or malformed.
    static func vectors() throws -> Vectors { try loaded.get() }

    /// The vectors' master seed `S`.
    static func seed() throws -> Bytes32 { try key(vectors().seed) }

    static func key(_ hex: String) throws -> Bytes32 {
        guard let k = Bytes32(hex: hex) else { throw FixtureError.badKey(hex) }
        return k
    }
}

/// Lower-case hex, written here independently of `Hex.encode`.
func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { b in
        let s = String(b, radix: 16)
        return b < 16 ? "0" + s : s
    }.joined()
}

/// Weights from a vectors.json `{"WHP": 1, "RCG": 1}` table (unlisted arms weigh 0).
func weights(_ table: [String: Int]) -> Weights {
    Weights(whp: table["WHP"] ?? 0, psc: table["PSC"] ?? 0, rcg: table["RCG"] ?? 0)
}

/// A date literal in a test; a nil here fails the calling test via #require.
func date(_ iso: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> CivilDate {
    try #require(CivilDate(iso), "\(iso) should be a valid date", sourceLocation: sourceLocation)
}

extension TrialConfig {
    /// The stored map of a rules 1 `trial_started` (what the vectors' chain holds).
    func trialStartedPayload(commitment: Bytes32, configHash: Bytes32, recordedAt: Instant) -> [String: String] {
        TrialEvent.trialStarted(trialStarted(commitment: commitment, configHash: configHash, rules: .one, recordedAt: recordedAt)).payload
    }
}
