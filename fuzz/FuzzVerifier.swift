// libFuzzer target over the auditor's side (docs/reliability.md §3, RULES2
// R10): arbitrary `events.jsonl` text → BundleReader (framing, the line
// parser) → AuditVerifier (every check), as is and re-chained so that
// mutations reach the checks behind `chain`. The harness itself is
// Tests/WHPCoreTests/VerifierFuzzHarness.swift, which `swift test` also runs
// over the committed corpus (fuzz/corpus-verify); this file only adds
// libFuzzer's entry points.
//
// Built by `scripts/fuzz verify` against the SwiftPM-built modules
// (instrumented with `swift build --sanitize fuzzer`). The trials an input
// may belong to are read from fuzz/verify-trials (WHP_FUZZ_TRIALS overrides).

import Foundation

let trials: [VerifierFuzz.Trial] = {
    let root = ProcessInfo.processInfo.environment["WHP_FUZZ_TRIALS"] ?? "fuzz/verify-trials"
    do { return try VerifierFuzz.loadTrials(root: root) } catch { fatalError("fuzz: cannot load the trials: \(error)") }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    VerifierFuzz.run(Array(UnsafeBufferPointer(start: data, count: size)), trials: trials)
    return 0
}

@_silgen_name("LLVMFuzzerMutate")
func libFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int) -> Int

/// Mostly event-level edits (VerifierFuzz.mutate); otherwise libFuzzer's byte mutations.
@_cdecl("LLVMFuzzerCustomMutator")
public func customMutator(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let out = VerifierFuzz.mutate(input, maxSize: maxSize, seed: seed), !out.isEmpty {
        out.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: out.count) }
        return out.count
    }
    return libFuzzerMutate(data, size, maxSize)
}
