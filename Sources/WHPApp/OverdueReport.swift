import Foundation
import WHPDomain
import WHPJSON
import WHPStore

/// `whp report overdue` (RULES2 R14): the follow-ups and decisions past due on
/// a date. For operators: like the store it reads, it names WHP/PSC
/// referrals, and is not for front-line staff.
public enum OverdueReport {
    public static func items(paths: TrialPaths, on date: CivilDate) throws -> [Overdue.Item] {
        let config = try loadConfig(paths.config).config
        let store = try openStore(paths)
        var facts: [Overdue.Facts] = []
        let trial = try store.read { try $0.trial() }
        try store.read { tx in try tx.forEachOverdueCandidate { facts.append($0) } }
        return Overdue.items(
            facts, on: date, rules: trial?.rules ?? .current, deadlines: config.deadlines, days: WorkingDays(bankHolidays: config.bankHolidays))
    }

    public static func json(_ items: [Overdue.Item]) -> String {
        let list: [JSONValue] = items.map { i in
            .object([
                "referral_id": .string(i.referralID), "district": .string(i.district), "due": .string(i.due.rawValue),
                "due_date": .string(i.dueDate.iso), "working_days_overdue": .int(i.workingDaysOverdue),
            ])
        }
        return String(decoding: JSON.encode(.array(list)), as: UTF8.self)
    }

    public static func text(_ items: [Overdue.Item], on date: CivilDate) -> String {
        var lines = ["Overdue on \(date.iso): \(items.count) item\(items.count == 1 ? "" : "s") (operators only: names referrals)"]
        if items.isEmpty { return lines[0] }
        lines.append("due date    working days  waits for          referral  district")
        for i in items {
            lines.append(
                i.dueDate.iso + "  " + String(i.workingDaysOverdue).padding(toLength: 12, withPad: " ", startingAt: 0) + "  "
                    + i.due.rawValue.padding(toLength: 17, withPad: " ", startingAt: 0) + "  " + i.referralID + "  " + i.district)
        }
        return lines.joined(separator: "\n")
    }
}
