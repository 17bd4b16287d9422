import WHPDomain
import WHPJSON

/// The clock a recorded session is replayed under (`whp demo`, its golden
/// transcript): each line is read on the latest date it names (a
/// `referral_date`, `gk_date` or `date`), at 09:00 UTC, and the clock never
/// goes back. So a session written over weeks passes the recruitment window
/// (RULES2 R2) as it would have when it was lived, and replays byte for byte.
public enum SessionSchedule {
    public struct Step: Sendable {
        public var at: Instant
        public var lines: [String]
    }

    static let dateFields = ["referral_date", "gk_date", "date"]

    /// Consecutive lines that share a clock, in order. Lines before the first
    /// dated one take the first date; a line that names no date (or is not
    /// JSON) keeps the clock of the line before; a session that names no date
    /// at all is read at `undated`.
    public static func steps(_ lines: [String], undated: Instant = Instant(seconds: 0)) -> [Step] {
        var out: [Step] = []
        var clock: Instant?
        var pending: [String] = []
        for line in lines {
            var latest: CivilDate?
            if case .object(let o)? = try? JSON.parse(line) {
                for k in dateFields {
                    if case .string(let s)? = o[k], let d = CivilDate(s) { latest = max(latest ?? d, d) }
                }
            }
            if let latest {
                let at = Instant(seconds: latest.dayNumber * 86_400 + 9 * 3_600)
                if clock == nil {
                    clock = at
                } else if at > clock! {
                    out.append(Step(at: clock!, lines: pending))
                    pending = []
                    clock = at
                }
            }
            pending.append(line)
        }
        if !pending.isEmpty { out.append(Step(at: clock ?? undated, lines: pending)) }
        return out.filter { !$0.lines.isEmpty }
    }
}
