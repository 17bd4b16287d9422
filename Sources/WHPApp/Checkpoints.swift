import Foundation
import WHPJSON
import WHPStore

/// Checkpoints (ALLOCATION.md §10): `{trial_id, seq, head}` of the newest event.
public enum Checkpoints {
    /// The store's checkpoint as one JSON line.
    public static func current(paths: TrialPaths) throws -> String {
        let store = try openStore(paths)
        guard let trial = try store.read({ try $0.trial() }), let head = try store.storedHead() else {
            throw AppFailure.failed("the store holds no trial")
        }
        let obj: JSONObject = ["trial_id": .string(trial.trialID), "seq": .int(head.seq), "head": .string(head.hash)]
        return String(decoding: JSON.encode(.object(obj)), as: UTF8.self)
    }

    /// Reads a checkpoint file; a missing or malformed one is an I/O error (exit 2).
    public static func read(_ path: String) throws -> Auditor.CheckpointValue {
        guard let data = FileManager.default.contents(atPath: path) else { throw AppFailure.io("\(path): cannot read checkpoint") }
        var bytes = [UInt8](data)
        while let l = bytes.last, l == 0x0a || l == 0x0d || l == 0x20 { bytes.removeLast() }
        guard let obj = try? JSON.parse(bytes).objectValue,
            let t = obj["trial_id"]?.stringValue, let s = obj["seq"]?.intValue, let h = obj["head"]?.stringValue
        else {
            throw AppFailure.io("\(path): not a checkpoint {\"trial_id\", \"seq\", \"head\"}")
        }
        return (t, s, h)
    }
}
