import Foundation
import Testing
@testable import WHPConfig
@testable import WHPAudit
@testable import WHPCrypto
@testable import WHPDomain
@testable import WHPEvaluation
@testable import WHPJSON

/// A small deterministic generator for the fast-path comparisons (no Foundation randomness).
struct TestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
    mutating func key() -> Bytes32 { Bytes32(bytes(32))! }
}

/// The libcrypto fast paths (algorithms fetched once, contexts reused, keyed
/// HMAC contexts) against the plain one-shot calls, byte for byte.
@Suite struct CryptoFastPathTests {
    @Test func sha256MatchesOneShot() {
        var rng = TestRNG(1)
        for n in [0, 1, 31, 32, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 300, 1000, 4096] + (0..<200).map({ _ in rng.below(700) }) {
            let data = rng.bytes(n)
            #expect(Crypto.sha256(data) == Crypto.oneShotSHA256(data), "length \(n)")
            let cut = n == 0 ? 0 : rng.below(n + 1)
            let two = data.withUnsafeBytes { d in
                Crypto.sha256(UnsafeRawBufferPointer(rebasing: d[0..<cut]), UnsafeRawBufferPointer(rebasing: d[cut...]))
            }
            #expect(two == Crypto.oneShotSHA256(data), "split \(cut) of \(n)")
        }
    }

    @Test func hmacMatchesOneShot() {
        var rng = TestRNG(2)
        for i in 0..<300 {
            let key = rng.key()
            let data = rng.bytes(i < 20 ? i : rng.below(400))
            #expect(Crypto.hmac(key: key, data) == Crypto.oneShotHMAC(key: key, data))
        }
    }

    @Test func keyedHMACMatchesOneShotOverManyMessages() {
        var rng = TestRNG(3)
        for _ in 0..<8 {
            let key = rng.key()
            let keyed = HMACKey(key)
            for i in 0..<200 {
                let data = rng.bytes(i < 70 ? i : rng.below(300))
                #expect(keyed.mac(data) == Crypto.oneShotHMAC(key: key, data))
                // Interleaved use of the per-thread context must not disturb the keyed one.
                let other = rng.key()
                #expect(Crypto.hmac(key: other, data) == Crypto.oneShotHMAC(key: other, data))
                let cut = data.isEmpty ? 0 : rng.below(data.count + 1)
                let two = data.withUnsafeBytes { d in
                    keyed.mac(UnsafeRawBufferPointer(rebasing: d[0..<cut]), UnsafeRawBufferPointer(rebasing: d[cut...]))
                }
                #expect(two == Crypto.oneShotHMAC(key: key, data))
            }
        }
    }

    @Test func fastPathsAgreeAcrossThreads() async {
        await withTaskGroup(of: Bool.self) { group in
            for t in 0..<8 {
                group.addTask {
                    var rng = TestRNG(100 + UInt64(t))
                    let key = rng.key(), keyed = HMACKey(key)
                    var ok = true
                    for _ in 0..<300 {
                        let data = rng.bytes(rng.below(200))
                        ok =
                            ok && Crypto.sha256(data) == Crypto.oneShotSHA256(data)
                            && Crypto.hmac(key: key, data) == Crypto.oneShotHMAC(key: key, data)
                            && keyed.mac(data) == Crypto.oneShotHMAC(key: key, data)
                    }
                    return ok
                }
            }
            for await ok in group { #expect(ok) }
        }
    }

    @Test func seedDerivationMatchesDerivation() {
        var rng = TestRNG(4)
        let strata = ["devon-cornwall", "example-north|disability", "", "é|x", String(repeating: "s", count: 300)]
        for _ in 0..<4 {
            let seed = rng.key()
            let trial = ["whp-demo", "t", String(repeating: "a", count: 64)][rng.below(3)]
            let d = SeedDerivation(seed: seed, trialID: trial)
            for _ in 0..<60 {
                let s = strata[rng.below(strata.count)]
                let i = rng.below(3) == 0 ? Int(truncatingIfNeeded: rng.next() >> 1) : rng.below(1000)
                #expect(d.allocationSeed(stratum: s, index: i) == Derivation.allocationSeed(seed: seed, trialID: trial, stratum: s, index: i))
                #expect(d.blockSeed(stratum: s, block: i) == Derivation.blockSeed(seed: seed, trialID: trial, stratum: s, block: i))
                let run = "gk-\(rng.below(50))", ref = ["R-\(rng.below(9999))", "", "ü-∆"][rng.below(3)]
                #expect(d.lotteryKey(runID: run, referralID: ref) == Derivation.lotteryKey(seed: seed, trialID: trial, runID: run, referralID: ref))
            }
        }
    }

    @Test func researchIDsMatchDerivation() throws {
        let v = try Fixture.vectors()
        let key = try Fixture.key(v.research_key)
        let ids = ResearchIDs(key: key)
        for r in v.research_id { #expect(ids.researchID(pseudonymHex: r.claimant) == r.hex) }
        var rng = TestRNG(5)
        for _ in 0..<200 {
            let p = Pseudonym(hex: hexString(rng.bytes(rng.below(4) == 0 ? rng.below(40) : 32)))
            #expect(ids.researchID(pseudonymHex: p.hex) == Derivation.researchID(key: key, pseudonym: p))
        }
    }

    @Test func bytes32HexParsingMatchesHexDecode() {
        var rng = TestRNG(7)
        let digits = Array("0123456789abcdefABCDEF".utf8)
        for round in 0..<3000 {
            var u = (0..<64).map { _ in digits[rng.below(digits.count)] }
            if round % 2 == 1 { u[rng.below(64)] = UInt8(rng.below(256)) }  // any byte, anywhere
            if round % 7 == 0 { u.removeLast(rng.below(3)) }
            if round % 11 == 0 { u.append(digits[rng.below(digits.count)]) }
            let text = String(decoding: u, as: UTF8.self)
            let expected = Hex.decode(text).flatMap { $0.count == 32 ? $0 : nil }
            #expect(Bytes32(hex: text)?.bytes == expected, "\(text.debugDescription)")
            #expect(u.withUnsafeBufferPointer { Bytes32(hexUTF8: $0) }?.bytes == (u.allSatisfy { $0 < 0x80 } ? expected : nil))
            if let b = Bytes32(hex: text) {
                #expect(b.hex == hexString(b.bytes))
                #expect(Array(b.hex.utf8).withUnsafeBufferPointer { b.isHex($0) })
                #expect(u.withUnsafeBufferPointer { b.isHex($0) } == (text == b.hex))
            }
        }
        for c in 0...255 {
            let u = [UInt8](repeating: UInt8(c), count: 64)
            let expected = Hex.decode(String(decoding: u, as: UTF8.self)).flatMap { $0.count == 32 ? $0 : nil }
            #expect(u.withUnsafeBufferPointer { Bytes32(hexUTF8: $0) }?.bytes == (c < 0x80 ? expected : nil), "byte \(c)")
        }
    }

    @Test func bytes32OrderIsByteOrder() {
        var rng = TestRNG(8)
        for _ in 0..<2000 {
            var a = rng.bytes(32), b = a
            let k = rng.below(32)
            b[k] = UInt8(rng.below(256))
            if rng.below(4) == 0 { a = rng.bytes(32) }
            let x = Bytes32(a)!, y = Bytes32(b)!
            #expect((x < y) == a.lexicographicallyPrecedes(b))
            #expect((x == y) == (a == b))
            #expect(x.bytes == a && y.bytes == b)
            if a == b { #expect(x.hashValue == y.hashValue) }
        }
    }

    @Test func uniformWordsMatchTheSpecEncoding() {
        var rng = TestRNG(6)
        for _ in 0..<100 {
            let seed = rng.key(), j = rng.below(2) == 0 ? UInt64(rng.below(4)) : rng.next()
            var w = ByteWriter()
            w.enc("whp/uniform/v1"); w.u64(j)
            let h = Crypto.oneShotHMAC(key: seed, w.bytes).bytes
            let x = h[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            #expect(Uniform.hmacWords(seed, j) == x)
        }
    }
}

/// The service's per-request fast paths against the plain definitions.
@Suite struct ServiceFastPathTests {
    @Test func pseudonymKeyMatchesDerivation() {
        var rng = TestRNG(7)
        for _ in 0..<50 {
            let key = rng.key()
            let fast = Derivation.PseudonymKey(key)
            for n in [0, 1, 9, 15, 16, 60, 200] {
                let id = String(decoding: (0..<n).map { _ in UInt8(0x41 + rng.below(26)) }, as: UTF8.self)
                #expect(fast.pseudonym(normalisedID: id) == Derivation.pseudonym(key: key, normalisedID: id), "id \(id)")
            }
        }
    }

    /// `iso` writes digits into the string's bytes; the old padded concatenation is the reference.
    @Test func isoFormattingMatchesPaddedConcatenation() {
        func padded(_ n: Int, _ w: Int) -> String { let s = String(n); return String(repeating: "0", count: max(0, w - s.count)) + s }
        var rng = TestRNG(8)
        let days =
            [CivilDate("0001-01-01")!.dayNumber, CivilDate("9999-12-31")!.dayNumber, 0, -1, 17_000]
            + (0..<500).map { _ in rng.below(3_000_000) - 719_162 }
        for d in days {
            guard let date = CivilDate(dayNumber: d) else { continue }
            #expect(date.iso == padded(date.year, 4) + "-" + padded(date.month, 2) + "-" + padded(date.day, 2))
            for s in [0, 1, 59, 3599, 3600, 86399, rng.below(86400)] {
                let i = Instant(seconds: d * 86400 + s)
                let ref = date.iso + "T" + padded(s / 3600, 2) + ":" + padded(s / 60 % 60, 2) + ":" + padded(s % 60, 2) + "Z"
                #expect(i.iso == ref)
                #expect(Instant(i.iso) == i, "round trip \(ref)")
            }
        }
    }
}
