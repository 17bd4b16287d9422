import Foundation
#if canImport(FoundationXML)
    import FoundationXML
#endif
import Testing
import WHPTestSupport

/// `report consort` in the CONSORT 2025 layout, through the CLI: the four
/// phases, referrals and people, follow-up, per-district panels with their
/// ratios and the data cut; every figure recomputed here from the log.
@Suite(.serialized)
struct ConsortTests {
    /// The flow recomputed from the log with Foundation's JSON, not whp's code.
    struct Expected {
        var referrals: [String: (person: String, district: String)] = [:]
        var status: [String: String] = [:]
        var rule: [String: String] = [:]
        var steps: [String: [String: String]] = [:]
        var flagged: Set<String> = []
        var disclosed: Set<String> = []
        var optedOutPeople: Set<String> = []

        init(_ log: [LogEvent]) {
            var link: [String: String] = [:]
            var optedIdentifiers: Set<String> = []
            var order: [String] = []
            for e in log {
                let p = e.payload
                switch e.type {
                case "referred":
                    referrals[p["referral_id"]!] = (p["claimant"]!, p["district"]!)
                    status[p["referral_id"]!] = "awaiting"
                    order.append(p["referral_id"]!)
                case "cancelled": status[p["referral_id"]!] = "cancelled"
                case "gatekeeper_decision":
                    status[p["referral_id"]!] = p["decision"] == "selected" ? "selected" : "not_selected"
                    rule[p["referral_id"]!] = p["rule"]
                case "allocated": status[p["referral_id"]!] = p["arm"]!
                case "followed_up": steps[p["referral_id"]!, default: [:]][p["step"]!] = p["reason"] ?? p["date"]!
                case "flagged_in_error": flagged.insert(p["referral_id"]!)
                case "disclosed": disclosed.insert(p["referral_id"]!)
                case "claimant_linked": link[p["alias"]!] = p["claimant"]!
                case "opted_out": optedIdentifiers.insert(p["claimant"]!)
                default: break
                }
            }
            for (id, r) in referrals { referrals[id] = (link[r.person] ?? r.person, r.district) }
            for i in optedIdentifiers { optedOutPeople.insert(link[i] ?? i) }
        }

        /// "N referrals (P people)" over the referrals that pass `keep`.
        func count(_ keep: (String) -> Bool) -> String {
            let ids = referrals.keys.filter(keep)
            let people = Set(ids.map { referrals[$0]!.person }).count
            return "\(ids.count) referral\(ids.count == 1 ? "" : "s") (\(people) \(people == 1 ? "person" : "people"))"
        }
        func opted(_ id: String) -> Bool { optedOutPeople.contains(referrals[id]!.person) }
    }

    /// A trial of its own: other suites export from theirs while this one reads the data cut.
    static let trial = Result { try RichTrial() }

    @Test func theFourPhasesInReferralsAndPeople() throws {
        let rich = try Self.trial.get()
        let t = rich.t
        let svg = t.root.appendingPathComponent("consort.svg")
        let r = try runWHP(["report", "consort"] + t.common + ["--svg", svg.path])
        #expect(r.status == 0, "\(r.stderr)")
        let log = try readLog(t)
        let x = Expected(log)
        let lines = r.stdout.components(separatedBy: "\n")
        // The trial-wide panel comes first; a district panel starts at "District ".
        let trialPart = lines.prefix { !$0.hasPrefix("District ") }.joined(separator: "\n")
        func has(_ s: String) { #expect(trialPart.contains(s), "the text shows «\(s)»\n\(trialPart)") }
        for phase in ["ENROLLMENT", "ALLOCATION", "FOLLOW-UP", "ANALYSIS"] { has(phase) }
        has("Referred by work coaches: " + x.count { _ in true })
        has("Cancelled before the gatekeeper: " + x.count { x.status[$0] == "cancelled" })
        has("Awaiting the gatekeeper: " + x.count { x.status[$0] == "awaiting" })
        has("Not selected by the gatekeeper: " + x.count { x.status[$0] == "not_selected" })
        has("Excluded before randomisation: " + x.count { ["cancelled", "awaiting", "not_selected"].contains(x.status[$0]!) })
        let lottery = x.referrals.keys.filter { ["WHP", "PSC", "RCG"].contains(x.status[$0]!) && x.rule[$0] == "lottery" }.count
        let manual = x.referrals.keys.filter { ["WHP", "PSC", "RCG"].contains(x.status[$0]!) && x.rule[$0] == "manual" }.count
        has("Selected and randomised: " + x.count { ["WHP", "PSC", "RCG"].contains(x.status[$0]!) } + " — lottery \(lottery), manual \(manual)")
        for arm in ["WHP", "PSC", "RCG"] {
            has("Allocated to \(arm): " + x.count { x.status[$0] == arm })
            has("In the dataset: " + x.count { x.status[$0] == arm && !x.opted($0) })
            has("Removed by opt-out: " + x.count { x.status[$0] == arm && x.opted($0) })
            has("Flagged as allocated in error: " + x.count { x.status[$0] == arm && x.flagged.contains($0) })
            has("Status disclosed to front-line staff: " + x.count { x.status[$0] == arm && x.disclosed.contains($0) })
            guard arm != "RCG" else { continue }
            has("Referred to a provider: " + x.count { x.status[$0] == arm && x.steps[$0]?["provider_referral"] != nil })
            has("Started: " + x.count { x.status[$0] == arm && x.steps[$0]?["started"] != nil })
            has("Did not start: " + x.count { x.status[$0] == arm && x.steps[$0]?["did_not_start"] != nil })
            has("Left: " + x.count { x.status[$0] == arm && x.steps[$0]?["left"] != nil })
        }
        has("In the dataset: " + x.count { x.status[$0] != "cancelled" && !x.opted($0) })
        // People are fewer than referrals: R-3 and REF-1 are one person.
        #expect(Set(x.referrals.values.map(\.person)).count == x.referrals.count - 1)

        // The data cut: the newest event before the report.
        let cp = try jsonObject(Data(try runWHP(["checkpoint"] + t.common).stdout.utf8))
        let seq = try #require(cp["seq"] as? Int), head = try #require(cp["head"] as? String)
        #expect(r.stdout.contains("Data cut: event \(seq) (head \(head.prefix(16))…)"), "\(lines.prefix(3))")
        #expect(r.stdout.contains("referrals dated 2017-11-01 to 2017-11-09; gatekeeper decisions dated 2017-11-20 to 2017-11-20"))

        // Per-district panels with the configured ratios.
        #expect(r.stdout.contains("District example-south — Example South (example district); ratio WHP 2 : RCG 1; gatekeeper rule lottery"))
        #expect(r.stdout.contains("District devon-cornwall — Devon and Cornwall; ratio WHP 1 : PSC 1 : RCG 1"))
        let south = lines.drop { !$0.hasPrefix("District example-south") }.prefix { !$0.isEmpty }.joined(separator: "\n")
        let southCount = x.count { x.referrals[$0]!.district == "example-south" }
        #expect(south.contains("Enrollment — referred: " + southCount), "\(south)")
        #expect(!south.contains("PSC —"), "a district without PSC has no PSC line")

        // The diagram: well-formed, the four phases, the same figures.
        let data = try Data(contentsOf: svg)
        let parser = XMLParser(data: data)
        #expect(parser.parse(), "well-formed SVG: \(String(describing: parser.parserError))")
        let raw = String(decoding: data, as: UTF8.self)
        // The diagram's words in order, its wrapped lines joined again.
        let text = raw.components(separatedBy: "<text").dropFirst().compactMap { part -> String? in
            guard let open = part.firstIndex(of: ">"), let close = part.range(of: "</text>") else { return nil }
            return String(part[part.index(after: open)..<close.lowerBound])
        }.joined(separator: " ")
        for phase in ["Enrollment", "Allocation", "Follow-up", "Analysis"] { #expect(raw.contains(">\(phase)</text>"), "phase \(phase)") }
        #expect(text.contains("Referred by work coaches " + x.count { _ in true }))
        for arm in ["WHP", "PSC", "RCG"] {
            #expect(text.contains("Allocated to \(arm) " + x.count { x.status[$0] == arm }), "\(arm) box")
            #expect(text.contains("In the dataset: " + x.count { x.status[$0] == arm && !x.opted($0) }))
        }
        #expect(text.contains("ratio WHP 2 : RCG 1; gatekeeper rule lottery") && text.contains("ratio WHP 1 : PSC 1 : RCG 1"))
        #expect(text.contains("Data cut: event \(seq)"))
        #expect(!raw.contains("href=\"http") && !raw.contains("<image"), "nothing fetched")

        let json = try runWHP(["report", "consort", "--json"] + t.common)
        let obj = try jsonObject(Data(json.stdout.utf8))
        #expect(obj["head_seq"] as? Int == seq)
        #expect(((obj["districts"] as? [String: Any])?.keys.count ?? 0) == 6)
    }
}
