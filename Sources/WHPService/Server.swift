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

    private var buffer: [UInt8] = []
    private var start = 0
    /// Bytes of an over-long line dropped so far (nil when not discarding).
    private var discarding: Int?
    let limit: Int

    public init(limit: Int = RequestDecoder.maxLineBytes) { self.limit = limit }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) { buffer.append(contentsOf: bytes) }
    public mutating func append(_ bytes: [UInt8]) { buffer.append(contentsOf: bytes) }

    /// Every complete line now in the buffer; at EOF also the unterminated rest.
    public mutating func drain(atEOF: Bool = false) -> [Item] {
        var items: [Item] = []
        while start < buffer.count {
            let nl = buffer[start...].firstIndex(of: 0x0a)
            if var n = discarding {
                if let nl {
                    n += nl - start
                    items.append(.tooLarge(n))
                    discarding = nil
                    start = nl + 1
                    continue
                }
                discarding = n + (buffer.count - start)
                start = buffer.count
                break
            }
            guard let end = nl ?? (atEOF ? buffer.count : nil) else {
                // No newline yet: keep waiting unless the line is already too long.
                if buffer.count - start > limit + 1 {
                    discarding = buffer.count - start
                    start = buffer.count
                }
                break
            }
            var stop = end
            if stop > start && buffer[stop - 1] == 0x0d { stop -= 1 }
            if stop - start > limit {
                items.append(.tooLarge(stop - start))
            } else if stop > start {
                items.append(.line(buffer[start..<stop]))
            }
            start = min(end + 1, buffer.count)
        }
        if atEOF, let n = discarding {
            items.append(.tooLarge(n))
            discarding = nil
        }
        return items
    }

    /// Drops consumed bytes; call after the drained lines have been used.
    public mutating func compact() {
        if start >= buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 8 << 20)
        } else if start > 0 {
            buffer.removeSubrange(0..<start)
        }
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

/// `whp serve`: reads requests from a file descriptor, answers each on
/// another, committing every group of pipelined requests in one transaction
/// and answering only after the commit (PROTOCOL.md §1).
public final class StdioServer {
    let service: Service
    let logger: Logger
    let input: Int32
    let output: Int32
    /// Most requests committed together; bounds a group's memory and latency.
    /// 16,384 pipelined `refer`s commit in about a fifth of a second and keep
    /// the process near 85 MiB; larger groups gain little and cost memory.
    public var maxGroup = 16384

    public init(service: Service, logger: Logger, input: Int32 = 0, output: Int32 = 1) {
        self.service = service
        self.logger = logger
        self.input = input
        self.output = output
    }

    /// What the reading thread hands to the answering one.
    private enum Input: Sendable {
        case group(Service.DecodedGroup)
        case failed(String)
    }

    /// Serves until EOF. Returns normally at EOF; throws only if the input
    /// fails or the output is gone.
    ///
    /// Two threads: this one executes, commits and answers each group while
    /// a reading thread reads, frames and decodes the next one (a tenth of a
    /// pipelined `refer`'s work, docs/performance.md). The reader decodes a
    /// group only once the one before has been taken, so at most two are in
    /// memory, as many as when one thread read while the other waited. Groups are answered in the order
    /// they were read, each only after its commit, as before.
    public func run() throws {
        let groups = BoundedQueue<Input>(capacity: 1)
        let service = service, input = input, maxGroup = maxGroup
        let reader = WorkerThread { Self.readGroups(from: input, service: service, maxGroup: maxGroup, into: groups) }
        // If this side stops early (the output is gone), the reader stops at
        // its next hand-over; it is not waited for, as it may be blocked in
        // a read that only the end of the process ends.
        defer { groups.close() }
        var served = 0
        while let input = groups.take() {
            switch input {
            case .group(let group):
                try writeAll(service.respond(to: group))
                served += group.count
            case .failed(let why):
                logger.error("cannot read requests: \(why)")
                throw StoreError("input error")
            }
        }
        reader.join()  // it closed the queue: it has returned or is returning
        logger.info("end of input after \(served) requests")
    }

    /// The reading thread: reads, frames and decodes groups until EOF or a
    /// read error, or until the answering side closes the queue.
    private static func readGroups(from input: Int32, service: Service, maxGroup: Int, into groups: BoundedQueue<Input>) {
        defer { groups.close() }
        var framer = LineFramer()
        var chunk = [UInt8](repeating: 0, count: 4 << 20)  // about 19,000 refer lines: one read fills a group
        while true {
            let n = chunk.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                groups.put(.failed(String(cString: strerror(errno))))
                return
            }
            let eof = n == 0
            if n > 0 { chunk.withUnsafeBytes { framer.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
            // The lines are views of the framer's buffer: decoded, they are
            // gone before it compacts, so it is not copied.
            do {
                let items = framer.drain(atEOF: eof)
                var offset = 0
                while offset < items.count {
                    let group = items[offset..<min(offset + maxGroup, items.count)]
                    // The next group is decoded once the last has been taken: two
                    // groups in memory at most, the one committing and this one.
                    guard groups.waitUntilEmpty(), groups.put(.group(service.decode(Array(group)))) else { return }
                    offset += group.count
                }
            }
            framer.compact()
            if eof { return }
        }
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
