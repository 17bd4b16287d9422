import Foundation
import Logging
import WHPPostgres
import WHPStore

/// Where a trial's store lives, as given to `--store`, `--from` or `--to`:
/// a `postgres://` URL, a SQLite file, or a data folder holding `whp.sqlite`.
public enum StoreLocation: CustomStringConvertible, Sendable {
    case sqlite(String)
    case postgres(String)

    public init(_ text: String) {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(text)
            return
        }
        let path = text.hasPrefix("sqlite:") ? String(text.dropFirst("sqlite:".count)) : text
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            self = .sqlite(path + "/whp.sqlite")
        } else {
            self = .sqlite(path)
        }
    }

    /// For messages: a path, or the URL without its password.
    public var description: String {
        switch self {
        case .sqlite(let path): path
        case .postgres(let url): (try? PostgresBackend.printable(url)) ?? "postgres://…"
        }
    }

    public var isPostgres: Bool { if case .postgres = self { true } else { false } }

    /// Connects (PostgreSQL) or opens the file (SQLite); `create` makes a new SQLite file.
    public func backend(readonly: Bool = false, create: Bool = false) throws -> any StoreBackend {
        switch self {
        case .sqlite(let path):
            return try SQLiteBackend.open(path: path, readonly: readonly, create: create)
        case .postgres(let url):
            var logger = Logger(label: "whp.postgres")
            logger.logLevel = .warning
            return try PostgresBackend.connect(url: url, logger: logger)
        }
    }
}
