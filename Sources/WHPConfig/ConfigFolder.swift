#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation
import WHPDomain

/// A config folder that cannot be read (an I/O problem, exit 2), or whose
/// content breaks a config rule (a symbolic link, a special file: exit 1).
public struct ConfigFolderError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public var isConfigError: Bool
    public init(_ d: String, configError: Bool = false) { description = d; isConfigError = configError }
}

/// Reads `district-config/` as ALLOCATION.md §6 hashes it: every regular file,
/// hidden ones included, relative `/`-paths; a symbolic link is an error.
public enum ConfigFolder {
    public static func read(_ dir: String) throws(ConfigFolderError) -> [ConfigFile] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw ConfigFolderError("\(dir): config folder not found (use --config DIR)")
        }
        var out: [ConfigFile] = []
        try walk(dir, relative: "", into: &out)
        return out
    }

    private static func walk(_ dir: String, relative: String, into out: inout [ConfigFile]) throws(ConfigFolderError) {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw ConfigFolderError("\(dir): cannot list config folder")
        }
        for name in names {
            let full = dir + "/" + name
            let rel = relative.isEmpty ? name : relative + "/" + name
            var st = stat()
            guard lstat(full, &st) == 0 else { throw ConfigFolderError("\(full): cannot stat (\(errnoText()))") }
            switch st.st_mode & S_IFMT {
            case S_IFLNK:
                throw ConfigFolderError(
                    "\(full): a symbolic link in the config folder is not allowed (its target would escape the config hash)", configError: true)
            case S_IFDIR: try walk(full, relative: rel, into: &out)
            case S_IFREG:
                guard let data = FileManager.default.contents(atPath: full) else { throw ConfigFolderError("\(full): cannot read") }
                out.append(ConfigFile(path: rel, bytes: [UInt8](data)))
            default: throw ConfigFolderError("\(full): not a regular file", configError: true)
            }
        }
    }
}

private func errnoText() -> String { String(cString: strerror(errno)) }
