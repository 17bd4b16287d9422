#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Logging
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore

/// The clock, injected so a session can be replayed (`WHP_NOW`) and tests can
/// move time; nothing inside the service reads the system time itself.
public protocol ServiceClock: Sendable {
    func now() -> Instant
}

public struct SystemClock: ServiceClock {
    public init() {}
    public func now() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Instant(seconds: Int(ts.tv_sec))
    }
}

public struct FixedClock: ServiceClock {
    public let instant: Instant
    public init(_ instant: Instant) { self.instant = instant }
    public func now() -> Instant { instant }
}

/// Splits a byte stream into protocol lines (PROTOCOL.md §1): a line ends at
/// `\n`, loses one trailing `\r`, and is too large past 65,536 bytes, in which
/// case it is skipped to its end without being held in memory.
public struct LineFramer {
    public enum Item: Equatable {
        case line(ArraySlice<UInt8>)
        case tooLarge(Int)
    }

    /// The bytes read are `buffer[start..<end]`; `buffer[end...]` is room for
    /// the next read, allocated once, so a read copies nothing and zeroes
    /// nothing (a waiting client's every request is a read).
    private var buffer: [UInt8] = []
    private var start = 0
    private var end = 0
    /// Bytes of an over-long line dropped so far (nil when not discarding).
    private var discarding: Int?
    let limit: Int

    public init(limit: Int = RequestDecoder.maxLineBytes) { self.limit = limit }

    /// Room for `count` more bytes after `end`.
    private mutating func reserve(_ count: Int) {
        // One zeroed array appended (a memset and a copy, even unoptimised),
        // not a sequence of zeros element by element.
        if buffer.count - end < count { buffer += [UInt8](repeating: 0, count: count - (buffer.count - end)) }
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        reserve(bytes.count)
        buffer.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress, let from = bytes.baseAddress, bytes.count > 0 else { return }
            (base + end).copyMemory(from: from, byteCount: bytes.count)
        }
        end += bytes.count
    }

    public mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// Reads at most `count` bytes from `fd` straight into the buffer;
    /// returns what `read` returned.
    public mutating func fill(from fd: Int32, count: Int) -> Int {
        reserve(count)
        let at = end
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + at, count) }
        if n > 0 { end += n }
        return n
    }

    /// Bytes read and not yet framed.
    public var pendingBytes: Int { end - start }

    /// Every complete line now in the buffer, or the first `max` of them; at
    /// EOF also the unterminated rest.
    public mutating func drain(atEOF: Bool = false, max: Int = .max) -> [Item] {
        var items: [Item] = []
        while start < end && items.count < max {
            let nl = buffer[start..<end].firstIndex(of: 0x0a)
            if var n = discarding {
                if let nl {
                    n += nl - start
                    items.append(.tooLarge(n))
                    discarding = nil
                    start = nl + 1
                    continue
                }
                discarding = n + (end - start)
                start = end
                break
            }
            guard let lineEnd = nl ?? (atEOF ? end : nil) else {
                // No newline yet: keep waiting unless the line is already too long.
                if end - start > limit + 1 {
                    discarding = end - start
                    start = end
                }
                break
            }
            var stop = lineEnd
            if stop > start && buffer[stop - 1] == 0x0d { stop -= 1 }
            if stop - start > limit {
                items.append(.tooLarge(stop - start))
            } else if stop > start {
                items.append(.line(buffer[start..<stop]))
            }
            start = Swift.min(lineEnd + 1, end)
        }
        if atEOF, start >= end, let n = discarding {
            items.append(.tooLarge(n))
            discarding = nil
        }
        return items
    }

    /// Drops consumed bytes; call after the drained lines have been used.
    public mutating func compact() {
        if start >= end {
            if buffer.count > 8 << 20 { buffer = [] }  // a burst's room is not kept
        } else if start > 0 {
            let (from, count) = (start, end - start)
            buffer.withUnsafeMutableBytes { b in
                guard let base = b.baseAddress else { return }
                memmove(base, base + from, count)
            }
        }
        end -= start
        start = 0
    }
}

/// Encodes answers as response lines (PROTOCOL.md §2).
public enum ResponseWriter {
    public static func append(id: String?, _ answer: Answer, to w: inout JSONWriter) {
        w.beginObject()
        w.key("id")
        if let id { w.string(id) } else { w.null() }
        switch answer {
        case .ok(let result):
            w.key("ok"); w.bool(true)
            w.key("result"); w.value(result)
        case .error(let e):
            w.key("ok"); w.bool(false)
            w.key("error")
            w.beginObject()
            w.key("code"); w.string(e.code.wireName)
            w.key("message"); w.string(e.message)
            if let f = e.field { w.key("field"); w.string(f) }
            if let d = e.detail { w.key("detail"); w.string(d) }
            w.endObject()
        }
        w.endObject()
        w.newline()
    }
}

/// The service behind every door: it answers one group of request lines,
/// committing every event of the group in one transaction and returning the
/// answers only after the commit (PROTOCOL.md §1). The stdio loop feeds it
/// from a pipe; tests drive it in-process, with a clock of their own.
public final class Service: @unchecked Sendable {
    public let engine: Engine
    let decoder: RequestDecoder
    public let store: Store
    public let clock: any ServiceClock
    let logger: Logger

    public init(engine: Engine, store: Store, clock: any ServiceClock, logger: Logger) {
        self.engine = engine
        self.decoder = RequestDecoder(config: engine.config, window: engine.window)
        self.store = store
        self.clock = clock
        self.logger = logger
    }

    /// Decodes, executes and commits one group; returns its response lines.
    public func respond(to items: [LineFramer.Item]) -> [UInt8] {
        respond(to: decode(items))
    }

    /// One group's lines decoded at the instant it is served at: `today` for
    /// the checks that depend on it, and the instant its events record.
    public struct DecodedGroup: Sendable {
        let now: Instant
        let requests: [Result<Request, RejectedRequest>]
        public var count: Int { requests.count }
    }

    /// Decodes one group, reading the clock once for all of it. Pure apart
    /// from the clock, so the stdio loop runs it on its reading thread while
    /// the previous group commits.
    public func decode(_ items: [LineFramer.Item]) -> DecodedGroup {
        let now = clock.now()
        let today = now.date
        var decoded: [Result<Request, RejectedRequest>] = []
        decoded.reserveCapacity(items.count)
        for item in items {
            switch item {
            case .tooLarge(let n):
                decoded.append(.failure(RejectedRequest(id: nil, error: ProtocolError(.tooLarge, detail: "the line has \(n) bytes"))))
            case .line(let bytes):
                decoded.append(decoder.decode(bytes, today: today))
            }
        }
        return DecodedGroup(now: now, requests: decoded)
    }

    /// Executes and commits one decoded group; returns its response lines.
    public func respond(to group: DecodedGroup) -> [UInt8] {
        let decoded = group.requests, now = group.now
        guard !decoded.isEmpty else { return [] }
        // Answers are encoded as they are made, in request order, and written
        // only after the commit: no group's answers sit in memory as values.
        var w = JSONWriter(capacity: decoded.count * 160)
        /// Every answer of the group from the start, a decoded request's from `answer`.
        func writeAnswers(_ answer: (Request) throws -> Answer) rethrows {
            w.reset()
            for d in decoded {
                switch d {
                case .success(let r): ResponseWriter.append(id: r.id, try answer(r), to: &w)
                case .failure(let rej): ResponseWriter.append(id: rej.id, .error(rej.error), to: &w)
                }
            }
        }
        let failedCommit: (Request) -> Answer = { _ in .error(ProtocolError(.internal)) }
        if decoded.contains(where: { if case .success = $0 { true } else { false } }) {
            do {
                // Safe to run again after a lost race: the answers start again.
                let requests = decoded.compactMap { try? $0.get() }
                try store.write(retry: true) { tx in
                    try engine.prefetch(requests, &tx)
                    try writeAnswers { try engine.execute($0, &tx, now: now) }
                }
            } catch {
                // One request must not fail other users' requests (RULES2 R7):
                // the group had no effect, so each request runs again in a
                // commit of its own, and only those that fail alone answer
                // `internal`. A store that is down fails them all, as before.
                let isolated = decoded.count > 1 ? isolate(decoded, now: now) : nil
                if let isolated {
                    let failed = isolated.filter { if case .error(let e) = $0, e.code == .internal { true } else { false } }.count
                    logger.error("a group's commit failed (\(error)); its \(decoded.count) requests ran again one by one, \(failed) answered internal")
                    var k = 0
                    writeAnswers { _ in
                        defer { k += 1 }; return isolated[k]
                    }
                } else {
                    logger.error("commit failed, \(decoded.count) requests answered internal: \(error)")
                    writeAnswers(failedCommit)
                }
            }
        } else {
            writeAnswers(failedCommit)  // every request was rejected: no request reaches `answer`
        }
        return w.bytes
    }

    /// Each decoded request of a failed group in its own commit; the answers
    /// of the decoded requests, in order. Nil when the first three fail with
    /// none committed: then the store, not a request, is failing (a full
    /// disk), and every request of the group is answered `internal`.
    private func isolate(_ decoded: [Result<Request, RejectedRequest>], now: Instant) -> [Answer]? {
        var answers: [Answer] = []
        var committed = 0, failedFirst = 0
        for d in decoded {
            guard case .success(let r) = d else { continue }
            do {
                answers.append(try store.write(retry: true) { tx in try engine.execute(r, &tx, now: now) })
                committed += 1
            } catch {
                if committed == 0 {
                    failedFirst += 1
                    if failedFirst == 3 { return nil }
                }
                answers.append(.error(ProtocolError(.internal)))
            }
        }
        return committed == 0 ? nil : answers
    }

    /// Answers request lines given as text, one group: the in-process door's convenience.
    public func respond(lines: [String]) -> [String] {
        var framer = LineFramer()
        framer.append(Array((lines.joined(separator: "\n") + "\n").utf8))
        let out = respond(to: framer.drain(atEOF: true))
        return String(decoding: out, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }
}

/// Decodes groups on a thread of its own, one at a time, while the caller
/// commits the group before: `whp serve`'s helper when lines are ready ahead.
final class DecodeAhead: @unchecked Sendable {
    private let jobs = BoundedQueue<[LineFramer.Item]>(capacity: 1)
    private let results = BoundedQueue<Service.DecodedGroup>(capacity: 1)
    private var thread: WorkerThread?

    init(_ service: Service) {
        let jobs = jobs, results = results
        thread = WorkerThread {
            while let lines = jobs.take() { results.put(service.decode(lines)) }
            results.close()
        }
    }

    /// Starts decoding a group; one at a time (take its `result` first).
    func submit(_ lines: [LineFramer.Item]) { jobs.put(lines) }

    /// The group last submitted, decoded; waits for it.
    func result() -> Service.DecodedGroup {
        guard let group = results.take() else { preconditionFailure("a result asked for with no group submitted") }
        return group
    }

    /// Ends the thread; it never waits on I/O, so this returns at once.
    func stop() {
        jobs.close()
        thread?.join()
    }
}

/// `whp serve`: reads requests from a file descriptor, answers each on
/// another, committing every group of pipelined requests in one transaction
/// and answering only after the commit (PROTOCOL.md §1).
public final class StdioServer {
    let service: Service
    let logger: Logger
    let input: Int32
    let output: Int32
    /// Most requests committed together; bounds a group's memory and latency.
    /// 16,384 pipelined `refer`s commit in about a fifth of a second; with
    /// the next group decoded ahead, 1,000,000 of them peak at 93 MiB.
    /// Larger groups gain little and cost memory.
    public var maxGroup = 16384

    public init(service: Service, logger: Logger, input: Int32 = 0, output: Int32 = 1) {
        self.service = service
        self.logger = logger
        self.input = input
        self.output = output
    }

    /// Serves until EOF. Returns normally at EOF; throws only if the input
    /// fails or the output is gone.
    ///
    /// This thread reads, executes, commits and answers. When the lines of
    /// the next group are already here as a group commits (a pipelining
    /// client, a file), a helper thread decodes that group meanwhile (a
    /// tenth of a pipelined `refer`'s work, docs/performance.md). A client
    /// that waits for each answer has no next group, so its request never
    /// crosses threads: a hand-over costs a waiting client more than the
    /// decoding it would overlap. Groups are answered in the order they were
    /// read, each only after its commit; two are decoded at most.
    public func run() throws {
        var framer = LineFramer()
        let chunk = 4 << 20  // about 19,000 refer lines: one read fills a group
        var eof = false
        var ahead: DecodeAhead?
        defer { ahead?.stop() }

        /// Reads once: if `waiting`, until something comes; otherwise only
        /// what is there now. The framer compacts first: by now no group's
        /// lines point into its buffer, so it does so in place.
        func readMore(waiting: Bool) throws {
            if !waiting {
                var p = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 0) > 0 else { return }
            }
            framer.compact()
            var n: Int
            repeat { n = framer.fill(from: input, count: chunk) } while n < 0 && errno == EINTR
            if n < 0 {
                logger.error("cannot read requests: \(String(cString: strerror(errno)))")
                throw StoreError("input error")
            }
            eof = n == 0
        }
        /// The next group's lines, framed only now: the bytes not yet in a
        /// group stay in the framer, all the input this loop holds.
        func nextGroup() -> [LineFramer.Item] { framer.drain(atEOF: eof, max: maxGroup) }

        var served = 0
        var decodedAhead = false
        reading: while true {
            let group: Service.DecodedGroup
            if decodedAhead, let ahead {
                group = ahead.result()
                decodedAhead = false
            } else {
                var lines = nextGroup()
                while lines.isEmpty {
                    if eof { break reading }
                    try readMore(waiting: true)
                    lines = nextGroup()
                }
                group = service.decode(lines)
            }
            // Lines that are already here (the rest of the last read, and
            // whatever can be read without waiting) are decoded meanwhile.
            if framer.pendingBytes < chunk && !eof { try readMore(waiting: false) }
            let next = nextGroup()
            if !next.isEmpty {
                if ahead == nil { ahead = DecodeAhead(service) }
                ahead?.submit(next)
                decodedAhead = true
            }
            try writeAll(service.respond(to: group))
            served += group.count
        }
        logger.info("end of input after \(served) requests")
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(output, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                logger.error("cannot write responses: \(String(cString: strerror(errno)))")
                throw StoreError("output closed")
            }
            off += n
        }
    }
}
