import Foundation
import Logging
import Synchronization
import WHPApp
import WHPDomain
import WHPPostgres
import WHPService
import WHPStore

/// A clock the test steps by hand: the in-process door's `WHP_NOW`.
public final class TestClock: ServiceClock, Sendable {
    private let instant: Mutex<Instant>
    public init(_ start: Instant) { instant = Mutex(start) }
    public convenience init(_ iso: String) { self.init(Instant(iso)!) }
    public func now() -> Instant { instant.withLock { $0 } }
    public func set(_ iso: String) { instant.withLock { $0 = Instant(iso)! } }
    public func set(_ i: Instant) { instant.withLock { $0 = i } }
    public func advance(seconds: Int) { instant.withLock { $0 = Instant(seconds: $0.seconds + seconds) } }
    public func advance(days: Int) { advance(seconds: days * 86_400) }
}

/// Log lines kept in memory, for tests where a log line is a promise.
public final class InMemoryLogs: Sendable {
    public struct Entry: Sendable {
        public var level: Logger.Level
        public var message: String
    }
    private let entries = Mutex<[Entry]>([])
    public init() {}
    public var all: [Entry] { entries.withLock { $0 } }
    public var messages: [String] { all.map(\.message) }
    func append(_ e: Entry) { entries.withLock { $0.append(e) } }

    /// A logger that writes here.
    public func logger(_ label: String = "whp.test") -> Logger {
        Logger(label: label) { _ in Handler(sink: self) }
    }

    struct Handler: LogHandler {
        let sink: InMemoryLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: Logging.LogEvent) {
            sink.append(Entry(level: event.level, message: event.message.description))
        }
    }
}

/// The service of a trial folder driven through its API, in this process:
/// no `whp serve` is spawned, and the clock moves when the test says so.
public final class InProcessService: @unchecked Sendable {
    /// The trial served: held so that its folder, and on PostgreSQL its
    /// database, live as long as the door does.
    public let trial: TrialFolder
    public let service: Service
    public let clock: TestClock
    public let logs: InMemoryLogs

    /// The same start-up path as `whp serve` (every guard), on the trial's
    /// store or on `backend` when one is given.
    public init(
        _ trial: TrialFolder, now: String = "2019-06-01T12:00:00Z", backend: (any StoreBackend)? = nil,
        logs: InMemoryLogs = InMemoryLogs()
    ) throws {
        self.trial = trial
        clock = TestClock(now)
        self.logs = logs
        let paths = TrialPaths(config: trial.config.path, data: trial.data.path, store: trial.postgresURL)
        service = try ServeSetup.service(paths: paths, clock: clock, logger: logs.logger(), backend: backend)
    }

    /// One group: the lines are committed together and answered in order.
    public func send(_ lines: [String]) -> [String] { service.respond(lines: lines) }

    /// One line, one answer.
    public func send(_ line: String) -> String { send([line])[0] }
}

extension PostgresBackend {
    /// A PostgreSQL store whose writers do not take the chain lock: the seam
    /// for the one test that makes writers really race for the next seq.
    public static func racingWriters(url: String, logs: InMemoryLogs) throws -> PostgresBackend {
        try connect(url: url, logger: logs.logger("whp.test.race"), writersLock: false)
    }
}
