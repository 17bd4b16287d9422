import Foundation
import Testing
import WHPAudit
import WHPCrypto
import WHPDomain
import WHPJSON

/// The verifier fuzz target's corpus (fuzz/corpus-verify), replayed through
/// the same harness the fuzzer runs (VerifierFuzzHarness.swift): every file
/// as it is and re-chained with its trial's seed. Each run must return (a
/// trap would end the test process) with a report that keeps the report's own
/// rules. Honest logs must pass every check; crafted ones must not. Beside the
/// corpus, hostile inputs too large to commit are made here.
@Suite struct VerifierCorpusTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let corpus = repo.appendingPathComponent("fuzz/corpus-verify")

    static let trials: [VerifierFuzz.Trial] = {
        do { return try VerifierFuzz.loadTrials(root: repo.appendingPathComponent("fuzz/verify-trials").path) } catch {
            fatalError("fuzz/verify-trials: \(error)")
        }
    }()

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: corpus.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    @Test func corpusIsCommitted() {
        let files = Self.files
        #expect(files.filter { $0.hasPrefix("honest-") }.count >= 7, "the honest seeds: \(files)")
        #expect(files.filter { $0.hasPrefix("crafted-") }.count >= 3, "the issue's three crafted logs: \(files)")
    }

    @Test func everyCorpusFileReturnsThroughTheVerifier() throws {
        var honest = 0, crafted = 0
        for name in Self.files {
            let bytes = try [UInt8](Data(contentsOf: Self.corpus.appendingPathComponent(name)))
            let (raw, chained) = VerifierFuzz.run(bytes, trials: Self.trials)
            if name.hasPrefix("honest-") {
                honest += 1
                #expect(raw.ok, "\(name) as committed: \(Self.failures(raw))")
                #expect(chained.ok, "\(name) re-chained with its seed: \(Self.failures(chained))")
                #expect(chained.checks.contains { $0.name == "derived_seeds" && $0.ok })
            } else if name.hasPrefix("crafted-") {
                crafted += 1
                #expect(!chained.ok, "\(name) forges a fact: some check must fail")
                #expect(chained.checks.first { $0.name == "chain" }?.ok == true || name.contains("seq"), "\(name): re-chained, chain holds")
            }
        }
        #expect(honest > 0 && crafted > 0)
    }

    static func failures(_ r: AuditReport) -> String {
        r.checks.filter { !$0.ok }.map { "\($0.name)@\($0.firstBadSeq.map(String.init) ?? "-"): \($0.detail)" }.joined(separator: "; ")
    }

    /// The honest demo log of one district, as lines.
    static func honestLines() throws -> [String] {
        let text = try String(contentsOf: corpus.appendingPathComponent("honest-demo-devon-cornwall"), encoding: .utf8)
        return text.split(separator: "\n").map(String.init)
    }

    static func check(_ r: AuditReport, _ name: String, at seq: Int?, sourceLocation: SourceLocation = #_sourceLocation) {
        let c = r.checks.first { $0.name == name }
        #expect(c?.ok == false, "\(name) should fail: \(failures(r))", sourceLocation: sourceLocation)
        if let seq { #expect(c?.firstBadSeq == seq, "\(name) at \(seq): \(failures(r))", sourceLocation: sourceLocation) }
    }

    /// Inputs too large to commit, each run as the fuzzer runs them.
    @Test func generatedHostileInputsReturn() throws {
        let lines = try Self.honestLines()
        let head = lines.prefix(10).joined(separator: "\n") + "\n"
        let tail = lines.dropFirst(10).joined(separator: "\n") + "\n"
        func run(_ s: [UInt8]) -> (AuditReport, AuditReport) { VerifierFuzz.run(s, trials: Self.trials) }

        // A line of 2 MiB (over BundleReader.maxLineBytes): unparsable at its seq, and the lines after it still read.
        let long =
            Array(head.utf8) + Array("{\"seq\":11,\"type\":\"referred\",\"payload\":{\"x\":\"".utf8)
            + [UInt8](repeating: 0x61, count: 2 << 20) + Array("\"},\"hash\":\"\"}\n".utf8) + Array(tail.utf8)
        let (r1, _) = run(long)
        Self.check(r1, "chain", at: 11)
        #expect(r1.events == lines.count + 1)

        // Nesting 100,000 deep in a payload, closed and unclosed.
        let deep =
            Array(head.utf8) + Array("{\"seq\":11,\"type\":\"referred\",\"payload\":{\"x\":".utf8)
            + [UInt8](repeating: 0x5b, count: 100_000) + [UInt8](repeating: 0x5d, count: 100_000) + Array("},\"hash\":\"\"}\n".utf8)
        Self.check(run(deep).0, "chain", at: 11)
        let unclosed = Array(head.utf8) + [UInt8](repeating: 0x7b, count: 200_000) + [0x0a]
        Self.check(run(unclosed).0, "chain", at: 11)

        // A payload of 50,000 keys; invalid UTF-8; NUL; CR LF line ends; nothing at all.
        var keys = "{\"seq\":11,\"type\":\"referred\",\"payload\":{"
        keys += (0..<50_000).map { "\"k\($0)\":\"v\"" }.joined(separator: ",") + "},\"hash\":\"00\"}\n"
        Self.check(run(Array(head.utf8) + Array(keys.utf8)).0, "chain", at: 11)
        Self.check(run(Array(head.utf8) + [0xff, 0xfe, 0x00, 0x80, 0x0a]).0, "chain", at: 11)
        let crlf = Array(lines.joined(separator: "\r\n").utf8) + [0x0d, 0x0a]
        #expect(run(crlf).0.ok, "CR before LF is JSON whitespace: \(Self.failures(run(crlf).0))")
        for empty in [[UInt8](), [0x0a], [0x0a, 0x0a, 0x0d, 0x0a]] {
            let (r, _) = run(empty)
            Self.check(r, "chain", at: 1)
        }

        // Seqs at the ends of Int, everywhere.
        for seq in [Int.max, Int.max - 1, Int.min, -1, 0] {
            var edited = lines
            for k in [3, 4, 5] { edited[k] = edited[k].replacingOccurrences(of: "\"seq\":\(k + 1),", with: "\"seq\":\(seq),") }
            let (r, chained) = run(Array((edited.joined(separator: "\n") + "\n").utf8))
            Self.check(r, "chain", at: 4)
            Self.check(chained, "chain", at: 4)
        }
        var all = lines
        for k in all.indices { all[k] = all[k].replacingOccurrences(of: "\"seq\":\(k + 1),", with: "\"seq\":\(Int.max),") }
        Self.check(run(Array((all.joined(separator: "\n") + "\n").utf8)).0, "chain", at: 1)
    }

    /// The framer splits the same lines whatever the chunks, and drops a line past its limit.
    @Test func framerIsIndependentOfChunking() throws {
        var rng = VerifierFuzz.Mix(0x5eed)
        let base = Array(try Self.honestLines().prefix(6).joined(separator: "\n").utf8) + [0x0a, 0x0a] + Array("tail".utf8)
        func frame(_ bytes: [UInt8], limit: Int, chunks: (Int) -> Int) -> [BundleLineFramer.Item] {
            var f = BundleLineFramer(limit: limit)
            var out: [BundleLineFramer.Item] = []
            var i = 0
            while i < bytes.count {
                let n = min(bytes.count - i, max(1, chunks(i)))
                f.feed(Array(bytes[i..<(i + n)])) { out.append(Self.copy($0)) }
                i += n
            }
            f.end { out.append(Self.copy($0)) }
            return out
        }
        for limit in [BundleReader.maxLineBytes, 700, 10, 1, 0] {
            let whole = frame(base, limit: limit) { _ in base.count }
            let expected: [BundleLineFramer.Item] = base.split(separator: 0x0a, omittingEmptySubsequences: false).map {
                $0.count > limit ? .overlong : .line(ArraySlice($0))
            }
            #expect(whole == expected, "limit \(limit)")
            for _ in 0..<20 { #expect(frame(base, limit: limit) { _ in rng.below(97) + 1 } == whole, "limit \(limit), random chunks") }
        }
    }

    static func copy(_ item: BundleLineFramer.Item) -> BundleLineFramer.Item {
        if case .line(let b) = item { return .line(ArraySlice(Array(b))) }
        return item
    }

    /// The mutator always returns something the harness accepts (a few thousand rounds).
    @Test func mutatorOutputsRunThroughTheHarness() throws {
        var input = Array(try Self.honestLines().prefix(30).joined(separator: "\n").utf8) + [0x0a]
        for round in 0..<300 {
            if let m = VerifierFuzz.mutate(input, maxSize: 65_536, seed: UInt32(round)) { input = m }
            VerifierFuzz.run(input, trials: Self.trials)
        }
    }
}
