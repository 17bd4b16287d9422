#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation
import WHPCrypto
import WHPDomain
import WHPJSON

/// A failure at the file-system edge. Each case says what to do about it.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The folder's content breaks a config rule (a symbolic link, a special
    /// file): a failed check, not an I/O problem.
    public var isConfigError: Bool
    public init(_ d: String, configError: Bool = false) { description = d; isConfigError = configError }
}

/// The trial's key files (`seed.hex`, `pseudonym.key`, `evaluation.key`): 64
/// lower-case hex digits and a newline, mode 0600 (ALLOCATION.md §1, CLI.md `init`).
public enum KeyFile {
    /// Reads a key, refusing a file that group or others may read: a key that
    /// leaked through permissions can no longer keep the allocation secret.
    public static func read(_ path: String, requirePrivate: Bool = true) throws(FileError) -> Bytes32 {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw FileError("\(path): cannot read key file (\(errnoText()))") }
        if requirePrivate && (st.st_mode & S_IFMT) == S_IFLNK {
            throw FileError("\(path): a key file must not be a symbolic link (its target could be swapped unseen)")
        }
        if (st.st_mode & S_IFMT) == S_IFLNK { guard stat(path, &st) == 0 else { throw FileError("\(path): cannot read key file (\(errnoText()))") } }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileError("\(path): not a regular file") }
        if requirePrivate && st.st_mode & 0o077 != 0 {
            throw FileError(
                "\(path): key file is readable or writable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); run: chmod 600 \(path)")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw FileError("\(path): cannot read key file") }
        var text = String(decoding: data, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        guard Hex.isLowerHex(text, count: 64), let key = Bytes32(hex: text) else {
            throw FileError("\(path): a key file must hold 64 lower-case hex digits and a newline")
        }
        return key
    }

    /// RULES2 R13: a keys folder that group or others may write lets them
    /// swap a key file for one of their own, so it is refused.
    public static func checkFolder(_ dir: String) throws(FileError) {
        var st = stat()
        guard stat(dir, &st) == 0 else { throw FileError("\(dir): cannot read the keys folder (\(errnoText()))") }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw FileError("\(dir): the keys folder is not a folder") }
        if st.st_mode & 0o022 != 0 {
            throw FileError(
                "\(dir): the keys folder is writable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); run: chmod 700 \(dir)")
        }
    }

    /// Writes a new key file with mode 0600; never replaces an existing file.
    public static func create(_ path: String, key: Bytes32) throws(FileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw FileError("\(path): cannot create key file (\(errnoText()))") }
        defer { close(fd) }
        let bytes = Array((key.hex + "\n").utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count, fsync(fd) == 0 else { throw FileError("\(path): cannot write key file (\(errnoText()))") }
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }
}

/// `SEEDS/<trial_id>.commitment.json`: the public commitment to the seed.
public struct CommitmentFile: Equatable, Sendable {
    public var trialID: String
    public var commitment: String
    public var configHash: String
    public var created: String

    public init(trialID: String, commitment: String, configHash: String, created: String) {
        self.trialID = trialID; self.commitment = commitment; self.configHash = configHash; self.created = created
    }

    public static func path(seedsDir: String, trialID: String) -> String { seedsDir + "/" + trialID + ".commitment.json" }

    public var json: String {
        "{\n  \"trial_id\": \"\(trialID)\",\n  \"commitment\": \"\(commitment)\",\n  \"config_hash\": \"\(configHash)\",\n  \"created\": \"\(created)\"\n}\n"
    }

    public static func read(_ path: String) throws(FileError) -> CommitmentFile {
        guard let data = FileManager.default.contents(atPath: path) else { throw FileError("\(path): commitment file not found") }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let t = obj["trial_id"] as? String, let c = obj["commitment"] as? String,
            let h = obj["config_hash"] as? String
        else {
            throw FileError("\(path): not a commitment file ({trial_id, commitment, config_hash, created})")
        }
        return CommitmentFile(trialID: t, commitment: c, configHash: h, created: obj["created"] as? String ?? "")
    }

    /// Writes the file durably; an existing file is kept only if it commits to
    /// the same seed and config (a published commitment must never change).
    public func write(_ path: String) throws(FileError) {
        if FileManager.default.fileExists(atPath: path) {
            let old = try CommitmentFile.read(path)
            guard old.trialID == trialID, old.commitment == commitment, old.configHash == configHash else {
                throw FileError(
                    "\(path) already commits trial \(old.trialID) to another seed or config; a published commitment is never replaced (use --seeds DIR or another trial_id)"
                )
            }
            return
        }
        // The commitment is public (RULES2 R13): its folder and file may be read by anyone.
        try makeDirectory(parentFolder(of: path), mode: 0o755)
        try writeDurably(path, Array(json.utf8), mode: 0o644)
    }
}

/// Writes a whole file and fsyncs it. Trial data is private (RULES2 R13):
/// the mode is 0600 unless the caller says otherwise, whatever the umask and
/// whatever mode a file of that name had.
public func writeDurably(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws(FileError) {
    let fd = try openPrivately(path, mode: mode)
    defer { close(fd) }
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw FileError("\(path): write failed (\(errnoText()))") }
        off += n
    }
    guard fsync(fd) == 0 else { throw FileError("\(path): fsync failed (\(errnoText()))") }
}

/// Creates (or truncates) a file for writing with exactly `mode`: the mode is
/// set again after opening, since the umask may have taken bits away and an
/// existing file keeps its own.
public func openPrivately(_ path: String, mode: mode_t = 0o600) throws(FileError) -> Int32 {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode)
    guard fd >= 0 else { throw FileError("\(path): cannot create (\(errnoText()))") }
    guard fchmod(fd, mode) == 0 else {
        close(fd)
        throw FileError("\(path): cannot set its mode (\(errnoText()))")
    }
    return fd
}

/// `mkdir -p` where every folder it creates has exactly `mode` (0700 for
/// trial data, RULES2 R13); folders that exist are left as they are.
public func makeDirectory(_ path: String, mode: mode_t = 0o700) throws(FileError) {
    guard !path.isEmpty else { return }
    var st = stat()
    if stat(path, &st) == 0 {
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw FileError("\(path): exists and is not a folder") }
        return
    }
    let parent = parentFolder(of: path)
    if !parent.isEmpty && parent != path { try makeDirectory(parent, mode: mode) }
    guard mkdir(path, mode) == 0 || errno == EEXIST else { throw FileError("\(path): cannot create folder (\(errnoText()))") }
    guard chmod(path, mode) == 0 else { throw FileError("\(path): cannot set its mode (\(errnoText()))") }
}

/// The folder that holds `path` ("" for a bare relative name, "/" at the
/// root), trailing and repeated slashes ignored. Written out rather than
/// taken from `NSString.deletingLastPathComponent`, which traps on Linux for
/// a one-character relative name such as `D` (swift-corelibs-foundation).
public func parentFolder(of path: String) -> String {
    var bytes = Array(path.utf8)
    while bytes.count > 1 && bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
    guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "" }
    var end = slash
    while end > 0 && bytes[end - 1] == UInt8(ascii: "/") { end -= 1 }
    if end == 0 { return bytes[0] == UInt8(ascii: "/") ? "/" : "" }
    return String(decoding: bytes[..<end], as: UTF8.self)
}

func errnoText() -> String { String(cString: strerror(errno)) }
