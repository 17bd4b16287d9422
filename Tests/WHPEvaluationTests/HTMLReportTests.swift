import Foundation
import Testing
import WHPTestSupport

struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion; stdout and stderr as text.
@discardableResult
func runTool(_ path: String, _ args: [String]) throws -> ToolResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return ToolResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// Headless Chromium (Debian `chromium`, installed by scripts/setup): a page
/// rendered to PDF, and its text as poppler's `pdftotext` reads it.
enum Browser {
    static let chromium = "/usr/bin/chromium"
    static let pdftotext = "/usr/bin/pdftotext"

    static func flags(_ profile: URL) -> [String] {
        // Root in CI needs --no-sandbox; no network is reachable from the page anyway.
        [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
            "--user-data-dir=" + profile.path, "--host-resolver-rules=MAP * ~NOTFOUND",
        ]
    }

    static func renderedText(_ page: URL, work: URL) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: chromium), FileManager.default.isExecutableFile(atPath: pdftotext) else {
            throw TestSetupError("the HTML report test needs Debian's chromium and poppler-utils: run scripts/setup")
        }
        let pdf = work.appendingPathComponent("page.pdf")
        let r = try runTool(
            chromium, flags(work.appendingPathComponent("profile")) + ["--no-pdf-header-footer", "--print-to-pdf=" + pdf.path, page.absoluteString])
        guard FileManager.default.fileExists(atPath: pdf.path) else { throw TestSetupError("chromium made no PDF: \(r.stderr.suffix(2000))") }
        let t = try runTool(pdftotext, ["-layout", pdf.path, "-"])
        guard t.status == 0 else { throw TestSetupError("pdftotext failed: \(t.stderr)") }
        return t.stdout
    }

    static func screenshot(_ page: URL, to png: URL, work: URL, width: Int = 1200, height: Int = 3000) throws {
        let r = try runTool(
            chromium,
            flags(work.appendingPathComponent("profile-shot")) + ["--window-size=\(width),\(height)", "--screenshot=" + png.path, page.absoluteString])
        guard FileManager.default.fileExists(atPath: png.path) else { throw TestSetupError("chromium made no screenshot: \(r.stderr.suffix(2000))") }
    }
}

@Suite(.serialized)
struct HTMLReportTests {
    /// A trial of its own: other suites export from theirs while this one reads heads.
    static let trial = Result { try RichTrial() }

    @Test func thePageRendersWithTheTrialsNumbers() throws {
        let rich = try Self.trial.get()
        let t = rich.t
        let page = t.root.appendingPathComponent("report.html")
        let now = "2018-06-01T12:00:00Z"
        let r = try runWHP(["report", "html", "--out", page.path, "--seeds", t.seeds.path] + t.common, env: ["WHP_NOW": now])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let html = try String(contentsOf: page, encoding: .utf8)

        // Self-contained: nothing the page could fetch.
        for banned in ["http://", "https://", "src=", "<link", "<script", "@import", "<iframe", "<object", "<img"] {
            #expect(!html.contains(banned), "the page holds \(banned)")
        }
        #expect(html.replacingOccurrences(of: "url(#arrow)", with: "").contains("url(") == false)
        #expect(html.contains("default-src 'none'"), "a content security policy that forbids every fetch")

        let text = try Browser.renderedText(page, work: t.root)
        let words = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        func shows(_ s: String) { #expect(words.contains(s), "the rendered page shows «\(s)»") }

        // Verify, head and checkpoint: as `whp verify` and `whp checkpoint` say.
        let cp = try jsonObject(Data(try runWHP(["checkpoint"] + t.common).stdout.utf8))
        let seq = try #require(cp["seq"] as? Int), head = try #require(cp["head"] as? String)
        let v = try jsonObject(Data(try t.verify(["--json"]).stdout.utf8))
        #expect(v["events"] as? Int == seq)
        shows("Verify result: OK — events verified: \(seq); head: \(head)")
        shows("\"seq\":\(seq)")

        // The four phases and the flow's first numbers, from the log.
        let x = ConsortTests.Expected(try readLog(t))
        shows("CONSORT 2025 flow")
        shows("Referred by work coaches " + x.count { _ in true })
        for arm in ["WHP", "PSC", "RCG"] { shows("Allocated to \(arm)"); shows("\(arm) follow-up"); shows("\(arm) analysed") }

        // Allocation by district: the rendered row of each district holds its counts, as the internal balance report has them.
        let balance = try jsonObject(Data(try runWHP(["report", "balance", "--json"] + t.common).stdout.utf8))
        let byDistrict = try #require((balance["tables"] as? [[String: Any]])?.first { $0["id"] as? String == "allocations_by_district" })
        let lines = text.components(separatedBy: "\n").drop { !$0.contains("Allocation by district against the configured weights") }
        for row in byDistrict["rows"] as? [[String: Any]] ?? [] {
            let name = row["value"] as? String ?? ""
            let counts = row["counts"] as? [String: Any] ?? [:]
            let rendered = try #require(lines.first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(name + " ") }, "a row for \(name)")
            let numbers = rendered.split(separator: " ").compactMap { Int($0) }
            let expected = ["WHP", "PSC", "RCG"].compactMap { counts[$0] as? Int } + [row["total"] as? Int ?? -1]
            #expect(numbers == expected, "\(name): \(rendered)")
        }

        // Overdue on the report's date: every referral still awaiting the gatekeeper (all due by then), and every
        // WHP/PSC allocation with no provider referral; the starts that followed a provider referral are all recorded.
        let awaiting = x.status.values.filter { $0 == "awaiting" }.count
        let noProvider = x.referrals.keys.filter { ["WHP", "PSC"].contains(x.status[$0]!) && x.steps[$0]?["provider_referral"] == nil }.count
        shows("Overdue items: \(awaiting + noProvider)")

        // Recruitment over time and the balance checks.
        shows("Recruitment over time")
        shows("2017-11")
        shows("Balance checks")

        // A screenshot renders.
        let png = t.root.appendingPathComponent("report.png")
        try Browser.screenshot(page, to: png, work: t.root)
        let bytes = try Data(contentsOf: png)
        #expect(bytes.count > 20_000 && bytes.starts(with: [0x89, 0x50, 0x4e, 0x47]), "a PNG of the page")
    }

    @Test func thePublishedPageHoldsOnlyPublishedFigures() throws {
        let rich = try Self.trial.get()
        let t = rich.t
        let page = t.root.appendingPathComponent("published.html")
        let r = try runWHP(["report", "html", "--publish", "--out", page.path, "--seeds", t.seeds.path] + t.common)
        #expect(r.status == 0, "\(r.stderr)")
        let html = try String(contentsOf: page, encoding: .utf8)
        #expect(html.contains("For publication (RULES2 R12)"))
        #expect(!html.contains("CONSORT 2025 flow") && !html.contains("Overdue on"), "the flow and the overdue counts are not published")
        let published = try jsonObject(Data(try runWHP(["report", "balance", "--publish", "--json"] + t.common).stdout.utf8))
        let byDistrict = try #require((published["tables"] as? [[String: Any]])?.first { $0["id"] as? String == "allocations_by_district" })
        let text = try Browser.renderedText(page, work: t.root)
        let lines = text.components(separatedBy: "\n").drop { !$0.contains("Allocation by district against the configured weights") }
        for row in byDistrict["rows"] as? [[String: Any]] ?? [] {
            let name = row["value"] as? String ?? ""
            let counts = row["counts"] as? [String: Any] ?? [:]
            let rendered = try #require(lines.first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(name + " ") })
            let cells = rendered.split(separator: " ").filter { Int($0) != nil || $0 == "*" }.map(String.init)
            let expected =
                ["WHP", "PSC", "RCG"].compactMap { k in counts[k].map { ($0 as? Int).map(String.init) ?? "*" } } + [
                    (row["total"] as? Int).map(String.init) ?? "*"
                ]
            #expect(cells == expected, "\(name): \(rendered)")
        }
    }
}
