import Foundation
import Testing
import WHPService
import WHPTestSupport

/// The hand-over between `whp serve`'s two threads (`BoundedQueue`): order,
/// the bound that keeps memory flat, and closing from either side.
@Suite("The bounded hand-over")
struct BoundedQueueTests {
    @Test("every element comes out once, in the order it went in, across threads")
    func order() {
        let queue = BoundedQueue<Int>(capacity: 1)
        let producer = WorkerThread {
            for i in 0..<20_000 { queue.put(i) }
            queue.close()
        }
        var taken: [Int] = []
        while let i = queue.take() { taken.append(i) }
        producer.join()
        #expect(taken == Array(0..<20_000))
    }

    @Test("a full queue holds its producer until an element is taken")
    func bound() {
        let queue = BoundedQueue<Int>(capacity: 2)
        #expect(queue.put(1) && queue.put(2))
        let third = DispatchSemaphore(value: 0)
        let producer = WorkerThread {
            queue.put(3)
            third.signal()
        }
        #expect(third.wait(timeout: .now() + 0.3) == .timedOut, "the third put waits while two are queued")
        #expect(queue.take() == 1)
        #expect(third.wait(timeout: .now() + 10) == .success, "a take frees the waiting put")
        producer.join()
        #expect(queue.take() == 2 && queue.take() == 3)
    }

    @Test("closing frees both sides: a waiting put fails, what is queued is still taken, then nil")
    func closing() {
        let queue = BoundedQueue<String>(capacity: 1)
        #expect(queue.put("a"))
        let result = BoundedQueue<Bool>(capacity: 1)
        let producer = WorkerThread { result.put(queue.put("b")) }
        usleep(100_000)
        queue.close()
        producer.join()
        #expect(result.take() == false, "the put waiting on a full queue returns false when it closes")
        #expect(!queue.put("c"))
        #expect(queue.take() == "a")
        #expect(queue.take() == nil)

        let empty = BoundedQueue<Int>(capacity: 3)
        let taken = BoundedQueue<Int?>(capacity: 1)
        let consumer = WorkerThread { taken.put(empty.take()) }
        usleep(100_000)
        empty.close()
        consumer.join()
        #expect(taken.take() == .some(nil), "a take waiting on an empty queue returns nil when it closes")
    }
}

/// The export's stages: a helper that handles each element in order, and
/// whose first error stops its producer and comes back from `finish`.
@Suite("A worker stage")
struct WorkerStageTests {
    struct Refused: Error, Equatable { let at: Int }

    @Test("every element handled once, in order, by the time finish returns")
    func inOrder() throws {
        nonisolated(unsafe) var seen: [Int] = []
        let stage = WorkerStage<Int>(capacity: 2) { seen.append($0) }
        for i in 0..<5_000 { #expect(stage.put(i)) }
        try stage.finish()
        #expect(seen == Array(0..<5_000))
    }

    @Test("the first error ends the stage: later puts return false, nothing after it is handled, finish rethrows it")
    func firstErrorStops() {
        nonisolated(unsafe) var seen: [Int] = []
        let stage = WorkerStage<Int>(capacity: 1) { i in
            if i == 10 { throw Refused(at: i) }
            seen.append(i)
        }
        var refusedAt: Int?
        for i in 0..<1_000 where !stage.put(i) {
            refusedAt = i
            break
        }
        #expect(refusedAt != nil, "the producer is told to stop")
        #expect(throws: Refused(at: 10)) { try stage.finish() }
        #expect(seen == Array(0..<10), "nothing after the failing element")
    }
}

/// PROTOCOL.md §1's framing, however the bytes arrive and however few lines
/// are taken at a time (`whp serve` frames a group's worth at a time and
/// compacts between reads).
@Suite("Line framing")
struct LineFramerTests {
    enum Framed: Equatable { case line([UInt8]), tooLarge }

    /// The rules, applied to the whole stream at once.
    static func reference(_ stream: [UInt8], limit: Int) -> [Framed] {
        var parts = stream.split(separator: 0x0a, omittingEmptySubsequences: false).map(Array.init)
        if stream.last == 0x0a { parts.removeLast() }
        return parts.compactMap { p in
            let line = p.last == 0x0d ? Array(p.dropLast()) : p
            if line.count > limit { return .tooLarge }
            return line.isEmpty ? nil : .line(line)
        }
    }

    @Test("random streams in random pieces, drained a few lines at a time: the lines the rules say, in order")
    func randomStreams() {
        var rng = SplitMix(19)
        let limit = 64
        for _ in 0..<300 {
            var stream: [UInt8] = []
            for _ in 0..<rng.int(0...40) {
                let n = rng.pick([0, 1, 5, limit - 1, limit, limit + 1, limit + 2, 3 * limit, rng.int(0...200)])
                stream += (0..<n).map { _ in UInt8(rng.pick([0x61, 0x62, 0x7b, 0x0d])) }
                stream += rng.chance(0.3) ? [0x0d, 0x0a] : [0x0a]
            }
            if rng.chance(0.5) { stream += Array(repeating: 0x63, count: rng.int(1...150)) }  // an unterminated rest
            var framer = LineFramer(limit: limit)
            var got: [Framed] = []
            func take(atEOF: Bool) {
                while true {
                    let items = framer.drain(atEOF: atEOF, max: rng.int(1...5))
                    if items.isEmpty { break }
                    for item in items {
                        switch item {
                        case .line(let l): got.append(.line(Array(l)))
                        case .tooLarge: got.append(.tooLarge)
                        }
                    }
                    if rng.chance(0.5) { framer.compact() }
                }
            }
            var at = 0
            while at < stream.count {
                let n = min(rng.int(1...90), stream.count - at)
                framer.append(Array(stream[at..<at + n]))
                at += n
                take(atEOF: false)
                #expect(framer.pendingBytes <= limit + 2 + 90, "an over-long line is not held")
            }
            take(atEOF: true)
            #expect(got == Self.reference(stream, limit: limit))
        }
    }
}

/// `whp serve` reads and decodes the next group on one thread while the
/// group before it commits on another. What a client sees must not change:
/// one answer per line, in order, each after its commit, however the lines
/// fall into groups.
@Suite("serve's reading thread", .serialized)
struct ReadingThreadTests {
    /// `whp serve` on the trial under a fixed clock, its pipes left to the test.
    static func serve(_ trial: TrialFolder) -> Process {
        let p = Process()
        p.executableURL = WHPBinary.url
        p.arguments = ["serve"] + trial.common
        var env = ProcessInfo.processInfo.environment
        env["WHP_LOG"] = "warning"; env["WHP_NOW"] = "2017-11-25T12:00:00Z"
        p.environment = env
        return p
    }

    @Test("a file of more lines than one group: every line answered in order, bad lines among them, and all of it durable")
    func manyGroups() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        let districts = DistrictModel.shipped.map(\.id)
        var lines: [String] = []
        var expected: [(id: String?, code: String?)] = []
        var accepted = 0
        for k in 0..<18_000 {
            if k == 16_380 {
                // Over the line limit, at the first group's edge: skipped to its end and answered in its place.
                lines.append("{\"v\":1,\"id\":\"big\",\"pad\":\"" + String(repeating: "x", count: 70_000) + "\"}")
                expected.append((nil, "too_large"))
            }
            if k % 1_500 == 7 {
                lines.append("{\"v\":1,\"id\":")
                expected.append((nil, "bad_json"))
            }
            if k % 1_000 == 999 {
                // The same referral id for another claimant: refused, and nothing changes.
                lines.append(Q.refer("dup-\(k)", "R\(k - 1)", claimant: Q.nino(900_000 + k), district: districts[(k - 1) % 6], date: "2017-11-20"))
                expected.append(("dup-\(k)", "conflict"))
            }
            lines.append(Q.refer("q\(k)", "R\(k)", claimant: Q.nino(k), district: districts[k % 6], date: "2017-11-20"))
            expected.append(("q\(k)", nil))
            accepted += 1
        }
        lines.append(Q.status("last"))
        expected.append(("last", nil))
        let input = trial.root.appendingPathComponent("session.jsonl")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: input)

        // A file, not a pipe: one read returns megabytes, so the lines fall
        // into groups of the largest size and the reader runs a group ahead.
        let p = Self.serve(trial)
        p.standardInput = try FileHandle(forReadingFrom: input)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let bytes = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)

        let answers = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map { Resp(String($0)) }
        try #require(answers.count == lines.count, "one answer per line")
        var wrong: [String] = []
        for (i, (a, e)) in zip(answers, expected).enumerated() {
            let idOK = e.id == nil ? a.idIsNull : a.id == e.id
            if !idOK || a.code != e.code { wrong.append("line \(i): expected \(e), got \(a.line.prefix(160))") }
        }
        #expect(wrong.isEmpty, "\(wrong.count) answers out of place, first: \(wrong.prefix(3))")
        // Every accepted refer is in the log: trial_started, then one `referred` each.
        #expect(LogHead(answers.last!)?.events == accepted + 1)
        let verify = try trial.verify()
        #expect(verify.status == 0, "\(verify.stdout.prefix(400))")
    }

    @Test("serve ends when its output is gone, though its input stays open")
    func outputGone() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        ignoreSIGPIPE()
        let p = Self.serve(trial)
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = FileHandle.nullDevice
        let ended = DispatchSemaphore(value: 0)
        p.terminationHandler = { _ in ended.signal() }
        try p.run()
        try output.fileHandleForReading.close()
        // The first answers fill nothing: the reader of stdout is gone, so the
        // first write fails. Serve must then end, while this side keeps stdin open.
        var finished = false
        for k in 0..<50 where !finished {
            try? input.fileHandleForWriting.write(contentsOf: Data((Q.status("s\(k)") + "\n").utf8))
            finished = ended.wait(timeout: .now() + 0.05) == .success
        }
        if !finished { finished = ended.wait(timeout: .now() + 20) == .success }
        if !finished { p.terminate() }
        #expect(finished, "serve stopped once its output was closed")
        #expect(p.terminationStatus != 0)
        try? input.fileHandleForWriting.close()
    }
}
