// libFuzzer harness for the request side of `whp serve` (PROTOCOL.md §1–§2):
// arbitrary bytes → LineFramer (fed in fuzzer-chosen chunks) → RequestDecoder →
// ResponseWriter, exactly the pure part of `Server.answer` (the store is left out:
// every decoded request is answered `ok` with an echo of what was decoded).
//
// It crashes (and so reports) when:
//   - the framer's lines differ from a naive reference split of the same bytes
//     (a line ends at \n, loses one trailing \r, empty lines are skipped, a line
//     longer than the limit is `too_large`), whatever the chunking, for the real
//     limit (65,536) and for a tiny one (so over-long lines are reachable);
//   - decoding one line twice gives different results (the decoder is pure);
//   - a rejection carries a code the decoder may not answer (anything that
//     needs the store), an id that is not 1–128 scalars, or an id on
//     too_large/bad_json;
//   - a response line is not valid UTF-8, not one JSON object, lacks "ok" as a
//     bool, has ok=false without an error code of PROTOCOL.md §2, or echoes a
//     different id than the request's;
//   - anything traps (overflow, out-of-range index, force unwrap) — Swift's
//     own runtime checks are on in this debug build.
//
// Built by scripts/fuzz against the SwiftPM-built modules (instrumented with
// `swift build --sanitize fuzzer`).

import WHPDomain
import WHPJSON
import WHPService

let config = TrialConfig(
    trialID: "whp-fuzz",
    groups: ["disability", "early_access"],
    districts: [
        District(
            id: "devon-cornwall", name: "Devon and Cornwall", psc: true, gatekeeperRule: .lottery,
            weights: Weights(whp: 1, psc: 1, rcg: 1)),
        District(
            id: "example-north", name: "Example North", psc: false, gatekeeperRule: .fifo,
            weights: Weights(whp: 1, rcg: 1)),
    ])
let decoder = RequestDecoder(config: config)
let today = CivilDate("2019-06-01")!

/// Codes the decoder may answer: everything decided before the store is read.
let decoderCodes: Set<String> = [
    "too_large", "bad_json", "bad_request", "unknown_op", "forbidden",
    "invalid_field", "unknown_district", "unknown_group",
]
/// Every code of PROTOCOL.md §2.
let protocolCodes: Set<String> = decoderCodes.union([
    "conflict", "not_found", "wrong_state",
    "duplicate_referral", "not_eligible", "internal",
])

func fail(_ message: String) -> Never {
    fatalError("fuzz invariant broken: " + message)
}

/// The reference framing of PROTOCOL.md §1, on the whole input at once.
func referenceLines(_ bytes: [UInt8], limit: Int) -> [LineFramer.Item] {
    var items: [LineFramer.Item] = []
    var start = 0
    while start < bytes.count {
        let end = bytes[start...].firstIndex(of: 0x0a) ?? bytes.count
        var stop = end
        if stop > start && bytes[stop - 1] == 0x0d { stop -= 1 }
        let n = stop - start
        if n > limit {
            items.append(.tooLarge(n))
        } else if n > 0 {
            items.append(.line(bytes[start..<stop]))
        }
        start = end + 1
    }
    return items
}

/// Feeds `bytes` to a framer in chunks whose sizes come from `sizes` (cycled).
func framed(_ bytes: [UInt8], limit: Int, sizes: [Int]) -> [LineFramer.Item] {
    var framer = LineFramer(limit: limit)
    var items: [LineFramer.Item] = []
    var off = 0, k = 0
    while off < bytes.count {
        let n = min(bytes.count - off, max(1, sizes.isEmpty ? bytes.count : sizes[k % sizes.count]))
        framer.append(Array(bytes[off..<(off + n)]))
        // Materialise the slices before compacting: they index the framer's buffer.
        items += framer.drain().map { if case .line(let s) = $0 { .line(ArraySlice(Array(s))) } else { $0 } }
        framer.compact()
        off += n; k += 1
    }
    items += framer.drain(atEOF: true).map { if case .line(let s) = $0 { .line(ArraySlice(Array(s))) } else { $0 } }
    return items
}

func same(_ a: [LineFramer.Item], _ b: [LineFramer.Item]) -> Bool {
    guard a.count == b.count else { return false }
    for (x, y) in zip(a, b) {
        switch (x, y) {
        case (.line(let p), .line(let q)): if !p.elementsEqual(q) { return false }
        case (.tooLarge, .tooLarge): break  // the count may stop early while discarding; only the kind matters
        default: return false
        }
    }
    return true
}

func checkResponse(_ line: ArraySlice<UInt8>, expectedID: String?) {
    guard String(validating: line, as: UTF8.self) != nil else { fail("response is not UTF-8") }
    let value: JSONValue
    do { value = try JSON.parse(line) } catch { fail("response is not JSON: \(error)") }
    guard case .object(let o) = value else { fail("response is not an object") }
    switch o["id"] {
    case .null?: if expectedID != nil { fail("id null, expected \(expectedID!)") }
    case .string(let s)?: if s != expectedID { fail("id \(s), expected \(expectedID ?? "null")") }
    default: fail("response id is neither a string nor null")
    }
    guard case .bool(let ok)? = o["ok"] else { fail("response has no boolean ok") }
    if ok {
        guard o["result"] != nil else { fail("ok response without result") }
    } else {
        guard case .object(let e)? = o["error"], case .string(let code)? = e["code"], protocolCodes.contains(code),
            case .string(let message)? = e["message"], !message.isEmpty
        else {
            fail("error response without a known code and a message")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    // The first bytes choose how the stream is cut into reads (as a pipe would).
    let sizes = input.prefix(4).map { Int($0 % 61) + 1 }

    // 1. Framing, with the real limit and with a tiny one.
    let items = framed(input, limit: RequestDecoder.maxLineBytes, sizes: sizes)
    if !same(items, referenceLines(input, limit: RequestDecoder.maxLineBytes)) { fail("framer (65536) differs from the reference") }
    let tinyLimit = Int(input.first ?? 0) % 40 + 1
    if !same(framed(input, limit: tinyLimit, sizes: sizes), referenceLines(input, limit: tinyLimit)) {
        fail("framer (\(tinyLimit)) differs from the reference")
    }

    // 2. Decoding and the answers, as Server.answer writes them.
    var w = JSONWriter(capacity: 256)
    var ids: [String?] = []
    for item in items {
        switch item {
        case .tooLarge(let n):
            ResponseWriter.append(id: nil, .error(ProtocolError(.tooLarge, detail: "the line has \(n) bytes")), to: &w)
            ids.append(nil)
        case .line(let bytes):
            let d = decoder.decode(bytes, today: today)
            switch (d, decoder.decode(bytes, today: today)) {
            case (.success(let a), .success(let b)): if a != b { fail("decoder is not deterministic") }
            case (.failure(let a), .failure(let b)): if a.id != b.id || a.error != b.error { fail("decoder is not deterministic") }
            default: fail("decoder is not deterministic")
            }
            switch d {
            case .success(let r):
                if !(1...128).contains(r.id.unicodeScalars.count) { fail("accepted id of bad length") }
                let echo = "\(r.command)|\(r.actor.recorded)"
                ResponseWriter.append(id: r.id, .ok(.object(["echo": .string(echo)])), to: &w)
                ids.append(r.id)
            case .failure(let rej):
                let code = rej.error.code.wireName
                if !decoderCodes.contains(code) { fail("decoder answered \(code)") }
                if (code == "bad_json" || code == "too_large") && rej.id != nil { fail("\(code) with an id") }
                if let id = rej.id, !(1...128).contains(id.unicodeScalars.count) { fail("rejected id of bad length") }
                ResponseWriter.append(id: rej.id, .error(rej.error), to: &w)
                ids.append(rej.id)
            }
        }
    }
    // 3. Exactly one response line per request, each well formed.
    let lines = w.bytes.split(separator: 0x0a, omittingEmptySubsequences: false).dropLast()
    if w.bytes.last != nil && w.bytes.last != 0x0a { fail("responses do not end with a newline") }
    if lines.count != ids.count { fail("\(ids.count) requests but \(lines.count) response lines") }
    for (line, id) in zip(lines, ids) { checkResponse(line, expectedID: id) }
    return 0
}
