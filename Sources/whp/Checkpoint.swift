import ArgumentParser
import Foundation
import WHPCore
import WHPStore

struct Checkpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print {\"trial_id\", \"seq\", \"head\"} of the newest event.",
        discussion: """
            Hand the checkpoint to an outside party (an auditor keeps it): later, \
            `whp verify --checkpoint FILE` fails unless the log still holds exactly that head at \
            that seq, so the log can be neither rewritten nor cut short unseen (ALLOCATION.md §10).
            """)

    @OptionGroup var common: CommonOptions

    func run() throws {
        let store = try openStore(common)
        guard let trial = try store.read({ try $0.trial() }), let head = try store.storedHead() else {
            throw Failure.failed("the store holds no trial")
        }
        let obj: JSONObject = ["trial_id": .string(trial.trialID), "seq": .int(head.seq), "head": .string(head.hash)]
        stdout(String(decoding: JSON.encode(.object(obj)), as: UTF8.self))
    }

    static func read(_ path: String) throws -> Auditor.CheckpointValue {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure.io("\(path): cannot read checkpoint") }
        guard let obj = try? JSON.parse([UInt8](data).trimmingTrailingNewlines()).objectValue,
              let t = obj["trial_id"]?.stringValue, let s = obj["seq"]?.intValue, let h = obj["head"]?.stringValue else {
            throw Failure.io("\(path): not a checkpoint {\"trial_id\", \"seq\", \"head\"}")
        }
        return (t, s, h)
    }
}

extension Array where Element == UInt8 {
    func trimmingTrailingNewlines() -> [UInt8] {
        var a = self
        while let l = a.last, l == 0x0a || l == 0x0d || l == 0x20 { a.removeLast() }
        return a
    }
}
