import Foundation
import WHPCrypto
import WHPDomain
import WHPJSON
import WHPStore

/// Tampering with a store the way an insider would: with the database's own
/// tools (`sqlite3`, `psql`), outside whp. No production code offers a door
/// for raw SQL, so the tests reach the store exactly as an attacker could.
extension Store {
    public func unsafeExecute(_ sql: String) throws {
        let p = Process()
        let input = Pipe(), err = Pipe()
        if backend.dialect == .sqlite {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["sqlite3", "-bail", backend.location]
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [
                "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", "-",
                backend.location.firstIndex(of: "?").map { String(backend.location[..<$0]) } ?? backend.location,
            ]
        }
        p.standardInput = input
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let script = (backend.dialect == .sqlite ? ".timeout 60000\n" : "") + sql + "\n"
        try input.fileHandleForWriting.write(contentsOf: Data(script.utf8))
        try input.fileHandleForWriting.close()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw TestSetupError("tampering with \(backend.location) failed (\(p.terminationStatus)): \(message)")
        }
    }
}

/// Re-computes every stored hash from `from` on, from the stored hash before it
/// (the genesis hash for event 1): what an insider who rewrites the log does.
public func rehash(_ store: Store, from: Int) throws {
    var events: [StoredEvent] = []
    try store.forEachEvent { events.append($0) }
    guard let first = events.first, let p1 = try? PayloadJSON.decode(first.payloadText),
        let c = p1["commitment"].flatMap(Bytes32.init(hex:)), let tid = p1["trial_id"]
    else { throw TestSetupError("no trial_started") }
    var h = from == 1 ? Derivation.genesis(trialID: tid, commitment: c) : Bytes32(hex: events[from - 2].hash)!
    var sql = ""
    for e in events where e.seq >= from {
        h = Chain.next(previous: h, event: Event(seq: e.seq, type: e.type, payload: try PayloadJSON.decode(e.payloadText)))
        sql += "UPDATE events SET hash = '\(h.hex)' WHERE seq = \(e.seq);"
    }
    try store.unsafeExecute(sql)
}
