import Foundation
import Testing
import WHPStore
import WHPTestSupport

/// PROTOCOL.md §1–§2: framing, the envelope and every error code, in order.
@Suite("Bad input: every error code, the server keeps answering, the store is untouched")
struct BadInputTests {
    static let now = "2018-01-31T12:00:00Z"  // "after today" is 2018-02-01

    /// One request line of the barrage and what it must answer.
    struct Item {
        var label: String
        var bytes: [UInt8]
        /// nil: a success.
        var code: String?
        /// When set, the `field` the error must name (any of these).
        var fields: Set<String>?
        /// The id the response must echo; nil: `"id": null`.
        var id: String?
        var crlf = false
    }

    // Raw envelopes, so that malformed values can be written exactly.
    static let gk = #"{"role":"gatekeeper","id":"G1"}"#
    static let wc = #"{"role":"work_coach","id":"WC1"}"#
    static let ea = #"{"role":"evaluation_admin","id":"EA1"}"#

    static func env(v: String? = "1", id: String? = nil, op: String? = #""status""#, actor: String? = gk, _ extra: String = "") -> String {
        var parts: [String] = []
        if let v { parts.append(#""v":"# + v) }
        if let id { parts.append(#""id":"# + id) }
        if let op { parts.append(#""op":"# + op) }
        if let actor { parts.append(#""actor":"# + actor) }
        if !extra.isEmpty { parts.append(extra) }
        return "{" + parts.joined(separator: ",") + "}"
    }

    static func q(_ s: String) -> String { "\"" + s + "\"" }

    static func items() -> [Item] {
        var out: [Item] = []
        func ok(_ label: String, _ text: String, id: String) { out.append(Item(label: label, bytes: Array(text.utf8), code: nil, id: id)) }
        func bad(_ label: String, _ text: String, _ code: String, _ fields: Set<String>? = nil, id: String?) {
            out.append(Item(label: label, bytes: Array(text.utf8), code: code, fields: fields, id: id))
        }
        func badBytes(_ label: String, _ bytes: [UInt8], _ code: String, id: String? = nil) {
            out.append(Item(label: label, bytes: bytes, code: code, id: id))
        }
        // too_large: 65,537 bytes is too large, exactly 65,536 is not (with or without a \r).
        func padded(_ id: String, _ total: Int) -> [UInt8] {
            let head = env(id: q(id), "\"pad\":\"\"")
            let base = Array(head.utf8).dropLast(2)  // drop `"}`
            return Array(base) + Array(repeating: UInt8(ascii: "x"), count: total - base.count - 2) + Array("\"}".utf8)
        }
        badBytes("65,537 bytes", padded("big", 65_537), "too_large")
        out.append(Item(label: "65,536 bytes", bytes: padded("big-ok", 65_536), code: nil, id: "big-ok"))
        out.append(Item(label: "65,536 bytes + CRLF", bytes: padded("big-crlf", 65_536), code: nil, id: "big-crlf", crlf: true))
        badBytes("300,000 bytes", padded("huge", 300_000), "too_large")
        out.append(Item(label: "65,537 bytes + CRLF", bytes: padded("big2", 65_537), code: "too_large", id: nil, crlf: true))

        // bad_json (id null: the id cannot be trusted).
        let valid = env(id: q("j"))
        badBytes("invalid UTF-8", Array(env(id: q("j"), actor: #"{"role":"gatekeeper","id":"G"#).utf8) + [0xFF] + Array("\"}}".utf8), "bad_json")
        badBytes(
            "overlong UTF-8", Array(#"{"v":1,"id":"j"#.utf8) + [0xC0, 0xAF] + Array(#"","op":"status","actor":{"role":"gatekeeper","id":"G1"}}"#.utf8),
            "bad_json")
        badBytes(
            "UTF-16 surrogate bytes",
            Array(#"{"v":1,"id":"j"#.utf8) + [0xED, 0xA0, 0x80] + Array(#"","op":"status","actor":{"role":"gatekeeper","id":"G1"}}"#.utf8), "bad_json")
        badBytes("BOM", [0xEF, 0xBB, 0xBF] + Array(valid.utf8), "bad_json")
        bad("duplicate key", env(id: q("j"), #""v":1"#), "bad_json", id: nil)
        bad("duplicate id key", env(id: q("j"), #""id":"j""#), "bad_json", id: nil)
        bad("duplicate nested key", env(id: q("j"), actor: #"{"role":"gatekeeper","id":"G1","role":"gatekeeper"}"#), "bad_json", id: nil)
        bad("duplicate key after escapes", env(id: q("j"), #""x":1,"\u0078":2"#), "bad_json", id: nil)
        bad("array", #"[{"v":1,"id":"j","op":"status"}]"#, "bad_json", id: nil)
        bad("string", #""status""#, "bad_json", id: nil)
        bad("number", "42", "bad_json", id: nil)
        bad("null", "null", "bad_json", id: nil)
        bad("deep nesting", env(id: q("j"), #""x":"# + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)), "bad_json", id: nil)
        bad(
            "deep objects", env(id: q("j"), #""x":"# + String(repeating: #"{"a":"#, count: 3000) + "1" + String(repeating: "}", count: 3000)), "bad_json",
            id: nil)
        bad("trailing garbage", valid + " x", "bad_json", id: nil)
        bad("two objects", valid + valid, "bad_json", id: nil)
        bad("not JSON", "hello", "bad_json", id: nil)
        bad("truncated", #"{"v":1,"id":"j","#, "bad_json", id: nil)
        bad("single quotes", "{'v':1}", "bad_json", id: nil)
        bad("trailing comma", #"{"v":1,"id":"j","op":"status","actor":{"role":"gatekeeper","id":"G1"},}"#, "bad_json", id: nil)
        badBytes(
            "raw control character", Array(#"{"v":1,"id":"j"#.utf8) + [0x01] + Array(#"","op":"status","actor":{"role":"gatekeeper","id":"G1"}}"#.utf8),
            "bad_json")
        badBytes("NUL byte", Array(valid.utf8) + [0x00], "bad_json")

        // bad_request: the envelope.
        bad("v missing", env(v: nil, id: q("v-missing")), "bad_request", id: "v-missing")
        bad("v = 1.0", env(v: "1.0", id: q("v-float")), "bad_request", id: "v-float")
        bad("v = 1e0", env(v: "1e0", id: q("v-exp")), "bad_request", id: "v-exp")
        bad("v = \"1\"", env(v: q("1"), id: q("v-string")), "bad_request", id: "v-string")
        bad("v = true", env(v: "true", id: q("v-bool")), "bad_request", id: "v-bool")
        bad("v = 2", env(v: "2", id: q("v-two")), "bad_request", id: "v-two")
        bad("v = null", env(v: "null", id: q("v-null")), "bad_request", id: "v-null")
        bad("id of 129 characters", env(id: q(String(repeating: "i", count: 129))), "bad_request", id: nil)
        ok("id of 128 characters", env(id: q(String(repeating: "i", count: 128))), id: String(repeating: "i", count: 128))
        ok("id of 128 non-ASCII characters", env(id: q(String(repeating: "é", count: 128))), id: String(repeating: "é", count: 128))
        bad("id of 129 non-ASCII characters", env(id: q(String(repeating: "é", count: 129))), "bad_request", id: nil)
        bad("id empty", env(id: q("")), "bad_request", id: nil)
        bad("id a number", env(id: "17"), "bad_request", id: nil)
        bad("id missing", env(), "bad_request", id: nil)
        bad("op missing", env(id: q("op-missing"), op: nil), "bad_request", id: "op-missing")
        bad("op a number", env(id: q("op-number"), op: "7"), "bad_request", id: "op-number")
        bad("actor missing", env(id: q("actor-missing"), actor: nil), "bad_request", id: "actor-missing")
        bad("actor a string", env(id: q("actor-string"), actor: q("WC1")), "bad_request", id: "actor-string")
        bad("actor.role unknown", env(id: q("role"), actor: #"{"role":"admin","id":"A1"}"#), "bad_request", id: "role")
        bad("actor.role missing", env(id: q("role-missing"), actor: #"{"id":"A1"}"#), "bad_request", id: "role-missing")
        bad("actor.id empty", env(id: q("staff-empty"), actor: #"{"role":"gatekeeper","id":""}"#), "bad_request", id: "staff-empty")
        bad(
            "actor.id 65 chars", env(id: q("staff-long"), actor: #"{"role":"gatekeeper","id":""# + String(repeating: "G", count: 65) + "\"}"),
            "bad_request", id: "staff-long")
        ok("actor.id 64 chars", env(id: q("staff-64"), actor: #"{"role":"gatekeeper","id":""# + String(repeating: "G", count: 64) + "\"}"), id: "staff-64")
        bad("actor.id with a space", env(id: q("staff-space"), actor: #"{"role":"gatekeeper","id":"G 1"}"#), "bad_request", id: "staff-space")
        bad("actor.id not ASCII", env(id: q("staff-utf8"), actor: #"{"role":"gatekeeper","id":"Gé"}"#), "bad_request", id: "staff-utf8")
        bad("bad actor before unknown op", env(id: q("order-1"), op: q("delete"), actor: #"{"role":"boss","id":"B"}"#), "bad_request", id: "order-1")

        // unknown_op, then forbidden.
        bad("unknown op", env(id: q("op-unknown"), op: q("delete")), "unknown_op", id: "op-unknown")
        bad("op case matters", env(id: q("op-case"), op: q("Refer"), actor: wc), "unknown_op", id: "op-case")
        bad("unknown op before forbidden", env(id: q("order-2"), op: q("explode"), actor: ea), "unknown_op", id: "order-2")
        bad(
            "work coach gatekeeps",
            env(id: q("fb-1"), op: q("gatekeep"), actor: wc, #""run_id":"x","district":"devon-cornwall","gk_date":"2017-11-13","capacity":1"#), "forbidden",
            id: "fb-1")
        bad("gatekeeper refers", env(id: q("fb-2"), op: q("refer"), actor: gk, #""referral_id":"x""#), "forbidden", id: "fb-2")
        bad("evaluation admin reads an outcome", env(id: q("fb-3"), op: q("outcome"), actor: ea, #""referral_id":"pend-1""#), "forbidden", id: "fb-3")
        bad(
            "work coach opts out", env(id: q("fb-4"), op: q("opt_out"), actor: wc, #""claimant":{"nino":"AB123456C"},"date":"2018-01-01""#), "forbidden",
            id: "fb-4")
        bad("gatekeeper discloses", env(id: q("fb-5"), op: q("disclose"), actor: gk, #""referral_id":"dec-1","reason":"r""#), "forbidden", id: "fb-5")
        bad("evaluation admin flags", env(id: q("fb-6"), op: q("flag_error"), actor: ea, #""referral_id":"dec-1","reason":"other""#), "forbidden", id: "fb-6")
        bad("work coach lists pending", env(id: q("fb-7"), op: q("pending"), actor: wc), "forbidden", id: "fb-7")
        bad("forbidden before invalid_field", env(id: q("order-3"), op: q("cancel"), actor: gk, #""referral_id":"no good!""#), "forbidden", id: "order-3")

        // invalid_field, naming the field, in each op's field order.
        func refer(
            _ id: String, rid: String? = "rx-1", claimant: String? = #"{"nino":"AB 99 99 99 A"}"#, district: String? = q("example-north"),
            group: String? = q("disability"), date: String? = q("2017-12-01")
        ) -> String {
            var f: [String] = []
            if let rid { f.append(#""referral_id":"# + (rid.hasPrefix("\"") || Int(rid) != nil ? rid : q(rid))) }
            if let claimant { f.append(#""claimant":"# + claimant) }
            if let district { f.append(#""district":"# + district) }
            if let group { f.append(#""group":"# + group) }
            if let date { f.append(#""referral_date":"# + date) }
            return env(id: q(id), op: q("refer"), actor: wc, f.joined(separator: ","))
        }
        bad("referral_id missing", refer("if-1", rid: nil), "invalid_field", ["referral_id"], id: "if-1")
        bad("referral_id with a space", refer("if-2", rid: "a b"), "invalid_field", ["referral_id"], id: "if-2")
        bad("referral_id of 65", refer("if-3", rid: String(repeating: "r", count: 65)), "invalid_field", ["referral_id"], id: "if-3")
        bad("referral_id a number", refer("if-4", rid: "12"), "invalid_field", ["referral_id"], id: "if-4")
        bad("claimant with both", refer("if-5", claimant: #"{"nino":"AB123456C","ref":"123456789012"}"#), "invalid_field", ["claimant"], id: "if-5")
        bad("claimant with neither", refer("if-6", claimant: "{}"), "invalid_field", ["claimant"], id: "if-6")
        bad("claimant a string", refer("if-7", claimant: q("AB123456C")), "invalid_field", ["claimant"], id: "if-7")
        for (n, nino) in [
            "GB123456A", "BG123456A", "NK123456B", "KN123456B", "TN123456C", "NT123456C", "ZZ123456D",
            "DA123456A", "AO123456A", "AB123456E", "AB12345C", "AB1234567C", "QQ123456C", "A1123456C",
        ].enumerated() {
            bad(
                "NINO \(nino)", refer("if-nino-\(n)", claimant: #"{"nino":""# + nino + "\"}"), "invalid_field", ["claimant", "claimant.nino"],
                id: "if-nino-\(n)")
        }
        bad("ref of 11 digits", refer("if-8", claimant: #"{"ref":"12345678901"}"#), "invalid_field", ["claimant", "claimant.ref"], id: "if-8")
        bad("ref with a letter", refer("if-9", claimant: #"{"ref":"12345678901X"}"#), "invalid_field", ["claimant", "claimant.ref"], id: "if-9")
        bad("district a number", refer("if-10", district: "5"), "invalid_field", ["district"], id: "if-10")
        bad("group missing", refer("if-11", group: nil), "invalid_field", ["group"], id: "if-11")
        bad("2017-02-29 does not exist", refer("if-12", date: q("2017-02-29")), "invalid_field", ["referral_date"], id: "if-12")
        bad("2018-13-01 does not exist", refer("if-13", date: q("2018-13-01")), "invalid_field", ["referral_date"], id: "if-13")
        bad("2017-11-31 does not exist", refer("if-14", date: q("2017-11-31")), "invalid_field", ["referral_date"], id: "if-14")
        bad("tomorrow", refer("if-15", date: q("2018-02-01")), "invalid_field", ["referral_date"], id: "if-15")
        bad("date without zero padding", refer("if-16", date: q("2017-1-05")), "invalid_field", ["referral_date"], id: "if-16")
        bad("date a number", refer("if-17", date: "20171105"), "invalid_field", ["referral_date"], id: "if-17")
        bad("first bad field wins", refer("if-18", rid: "a b", date: q("2017-02-30")), "invalid_field", ["referral_id"], id: "if-18")
        bad("invalid before unknown district", refer("if-19", claimant: "{}", district: q("atlantis")), "invalid_field", ["claimant"], id: "if-19")
        bad("invalid date before unknown group", refer("if-20", group: q("veterans"), date: q("2018-02-02")), "invalid_field", ["referral_date"], id: "if-20")
        func gate(_ id: String, _ rest: String, run: String = "g-x", district: String = "devon-cornwall", date: String = "2017-11-16") -> String {
            env(id: q(id), op: q("gatekeep"), actor: gk, #""run_id":"# + q(run) + #","district":"# + q(district) + #","gk_date":"# + q(date) + "," + rest)
        }
        bad("capacity -1", gate("gc-1", #""capacity":-1"#), "invalid_field", ["capacity"], id: "gc-1")
        bad("capacity 1.5", gate("gc-2", #""capacity":1.5"#), "invalid_field", ["capacity"], id: "gc-2")
        bad("capacity 99999999999", gate("gc-3", #""capacity":99999999999"#), "invalid_field", ["capacity"], id: "gc-3")
        bad("capacity 2^31", gate("gc-4", #""capacity":2147483648"#), "invalid_field", ["capacity"], id: "gc-4")
        bad("capacity \"3\"", gate("gc-5", #""capacity":"3""#), "invalid_field", ["capacity"], id: "gc-5")
        bad("capacity 2.0", gate("gc-6", #""capacity":2.0"#), "invalid_field", ["capacity"], id: "gc-6")
        bad("capacity and decisions", gate("gc-7", #""capacity":1,"decisions":[{"referral_id":"dv-a","decision":"selected"}]"#), "invalid_field", id: "gc-7")
        bad("neither capacity nor decisions", gate("gc-8", #""note":"none""#), "invalid_field", id: "gc-8")
        bad("decisions empty", gate("gc-9", #""decisions":[]"#), "invalid_field", ["decisions"], id: "gc-9")
        bad(
            "decisions.2.referral_id malformed",
            gate(
                "gc-10",
                #""decisions":[{"referral_id":"dv-a","decision":"selected"},{"referral_id":"dv-b","decision":"selected"},{"referral_id":"bad id!","decision":"selected"}]"#
            ),
            "invalid_field", ["decisions.2.referral_id"], id: "gc-10")
        bad(
            "decisions.2.referral_id repeated",
            gate(
                "gc-11",
                #""decisions":[{"referral_id":"dv-a","decision":"selected"},{"referral_id":"dv-b","decision":"selected"},{"referral_id":"dv-a","decision":"not_selected"}]"#
            ),
            "invalid_field", ["decisions.2.referral_id"], id: "gc-11")
        bad(
            "decisions.1.decision unknown",
            gate("gc-12", #""decisions":[{"referral_id":"dv-a","decision":"selected"},{"referral_id":"dv-b","decision":"maybe"}]"#),
            "invalid_field", ["decisions.1.decision"], id: "gc-12")
        bad(
            "decisions.2.referral_id of another district",
            gate(
                "gc-13",
                #""decisions":[{"referral_id":"dv-a","decision":"selected"},{"referral_id":"dv-b","decision":"selected"},{"referral_id":"pend-1","decision":"selected"}]"#
            ),
            "invalid_field", ["decisions.2.referral_id"], id: "gc-13")
        bad(
            "decisions.1.referral_id dated after gk_date",
            gate("gc-14", #""decisions":[{"referral_id":"dv-a","decision":"selected"},{"referral_id":"dv-late","decision":"selected"}]"#),
            "invalid_field", ["decisions.1.referral_id"], id: "gc-14")
        bad("gk_date before the district's previous run", gate("gc-15", #""capacity":5"#, date: "2017-11-12"), "invalid_field", ["gk_date"], id: "gc-15")
        bad("gk_date after today", gate("gc-16", #""capacity":5"#, date: "2018-02-01"), "invalid_field", ["gk_date"], id: "gc-16")
        bad("run_id malformed", gate("gc-17", #""capacity":5"#, run: "run 1"), "invalid_field", ["run_id"], id: "gc-17")
        bad(
            "cancel reason empty", env(id: q("ci-1"), op: q("cancel"), actor: wc, #""referral_id":"pend-1","reason":"""#), "invalid_field", ["reason"],
            id: "ci-1")
        bad(
            "cancel reason of 501",
            env(id: q("ci-2"), op: q("cancel"), actor: wc, #""referral_id":"pend-1","reason":""# + String(repeating: "é", count: 501) + "\""),
            "invalid_field", ["reason"], id: "ci-2")
        bad(
            "flag reason unknown", env(id: q("ci-3"), op: q("flag_error"), actor: gk, #""referral_id":"dec-1","reason":"bogus""#), "invalid_field", ["reason"],
            id: "ci-3")
        bad(
            "audience unknown", env(id: q("ci-4"), op: q("outcome"), actor: wc, #""referral_id":"pend-1","audience":"boss""#), "invalid_field", ["audience"],
            id: "ci-4")
        bad("name empty", env(id: q("ci-5"), op: q("outcome"), actor: wc, #""referral_id":"pend-1","name":"""#), "invalid_field", ["name"], id: "ci-5")
        bad(
            "name of 201", env(id: q("ci-6"), op: q("outcome"), actor: wc, #""referral_id":"pend-1","name":""# + String(repeating: "n", count: 201) + "\""),
            "invalid_field", ["name"], id: "ci-6")
        bad("outcome with neither", env(id: q("ci-7"), op: q("outcome"), actor: wc), "invalid_field", id: "ci-7")
        bad(
            "outcome with both", env(id: q("ci-8"), op: q("outcome"), actor: wc, #""referral_id":"pend-1","claimant":{"nino":"AB000001B"}"#), "invalid_field",
            id: "ci-8")
        bad(
            "eligibility on 2018-02-30", env(id: q("ci-9"), op: q("eligibility"), actor: wc, #""claimant":{"nino":"AB000001B"},"date":"2018-02-30""#),
            "invalid_field", ["date"], id: "ci-9")
        bad(
            "eligibility without date", env(id: q("ci-10"), op: q("eligibility"), actor: wc, #""claimant":{"nino":"AB000001B"}"#), "invalid_field", ["date"],
            id: "ci-10")
        bad(
            "opt_out tomorrow", env(id: q("ci-11"), op: q("opt_out"), actor: ea, #""claimant":{"nino":"AB000001B"},"date":"2018-02-01""#), "invalid_field",
            ["date"], id: "ci-11")
        bad(
            "pending tomorrow", env(id: q("ci-12"), op: q("pending"), actor: gk, #""district":"devon-cornwall","gk_date":"2018-02-01""#), "invalid_field",
            ["gk_date"], id: "ci-12")
        bad("disclose without reason", env(id: q("ci-13"), op: q("disclose"), actor: wc, #""referral_id":"dec-1""#), "invalid_field", ["reason"], id: "ci-13")

        // unknown_district, unknown_group.
        bad("unknown district", refer("ud-1", district: q("atlantis")), "unknown_district", ["district"], id: "ud-1")
        bad("unknown district before unknown group", refer("ud-2", district: q("atlantis"), group: q("veterans")), "unknown_district", id: "ud-2")
        bad(
            "pending in an unknown district", env(id: q("ud-3"), op: q("pending"), actor: gk, #""district":"atlantis","gk_date":"2017-11-13""#),
            "unknown_district", id: "ud-3")
        bad("gatekeep in an unknown district", gate("ud-4", #""capacity":1"#, district: "atlantis"), "unknown_district", id: "ud-4")
        bad("district ids are case-sensitive", refer("ud-5", district: q("Devon-Cornwall")), "unknown_district", id: "ud-5")
        bad("unknown group", refer("ug-1", group: q("veterans")), "unknown_group", ["group"], id: "ug-1")

        // State errors.
        bad("conflict", Q.refer("cf-1", "pend-1", claimant: Q.nino(1), district: "example-north", date: "2017-11-02"), "conflict", id: "cf-1")
        bad("not_found: cancel", Q.cancel("nf-1", "nope"), "not_found", id: "nf-1")
        bad("not_found: outcome", Q.outcome("nf-2", rid: "nope"), "not_found", id: "nf-2")
        bad("not_found: outcome by claimant", Q.outcome("nf-3", claimant: Q.nino(999)), "not_found", id: "nf-3")
        bad("not_found: disclose", Q.disclose("nf-4", "nope"), "not_found", id: "nf-4")
        bad("not_found: flag", Q.flag("nf-5", "nope", reason: "other"), "not_found", id: "nf-5")
        bad(
            "not_found: decisions", Q.decide("nf-6", run: "g-nf", district: "devon-cornwall", date: "2017-11-16", [("dv-a", true), ("nope", true)]),
            "not_found", id: "nf-6")
        bad("wrong_state: cancel after decision", Q.cancel("ws-1", "dec-1"), "wrong_state", id: "ws-1")
        bad("wrong_state: flag before decision", Q.flag("ws-2", "pend-1", reason: "duplicate"), "wrong_state", id: "ws-2")
        bad(
            "wrong_state: gatekeep with nothing pending", Q.capacity("ws-3", run: "g-empty", district: "devon-cornwall", date: "2017-11-13", 3), "wrong_state",
            id: "ws-3")
        bad(
            "wrong_state: gatekeep in an empty district", Q.capacity("ws-4", run: "g-empty2", district: "leicestershire-northants", date: "2017-11-13", 3),
            "wrong_state", id: "ws-4")
        bad(
            "wrong_state: deciding a decided referral",
            Q.decide("ws-5", run: "g-again", district: "devon-cornwall", date: "2017-11-16", [("dv-a", true), ("dec-1", true)]),
            "wrong_state", id: "ws-5")
        bad("conflict: cancel again with another reason", Q.cancel("ws-6", "gone-1", reason: "another"), "conflict", id: "ws-6")
        bad(
            "duplicate_referral", Q.refer("dr-1", "dup-1", claimant: Q.nino(1), district: "devon-cornwall", date: "2017-11-20"), "duplicate_referral",
            id: "dr-1")
        bad(
            "duplicate_referral, the same claimant written otherwise",
            Q.refer("dr-2", "dup-2", claimant: ["nino": "ab 00 00 01 b"], district: "devon-cornwall", date: "2017-11-20"),
            "duplicate_referral", id: "dr-2")
        bad("not_eligible", Q.refer("ne-1", "ne-1", claimant: Q.nino(2), district: "devon-cornwall", date: "2017-11-20"), "not_eligible", id: "ne-1")
        bad("not_eligible elsewhere", Q.refer("ne-2", "ne-2", claimant: Q.nino(2), district: "example-south", date: "2017-12-24"), "not_eligible", id: "ne-2")
        // Ids are echoed exactly, whatever characters they hold.
        for (n, weird) in ["q\"uote\\back\nnl", "nul\u{0}tab\t", "😀 emoji", "line\u{2028}sep\u{2029}", "e\u{301}" + String(repeating: "e\u{301}", count: 63)]
            .enumerated()
        {
            out.append(Item(label: "id echo \(n)", bytes: Array(Q.status(weird).utf8), code: nil, id: weird))
        }
        out.append(
            Item(
                label: "id of 129 scalars in 65 characters", bytes: Array(Q.status(String(repeating: "e\u{301}", count: 64) + "e").utf8),
                code: "bad_request", id: nil))
        ok("id with an escaped surrogate pair", env(id: #""\ud83d\ude00x""#), id: "😀x")
        // Lengths count Unicode scalars, not characters: 100 "é" written e + U+0301 are 200 scalars.
        ok("name of 200 scalars", Q.outcome("len-1", rid: "dec-1", name: String(repeating: "e\u{301}", count: 100)), id: "len-1")
        bad(
            "name of 201 scalars in 101 characters", Q.outcome("len-2", rid: "dec-1", name: String(repeating: "e\u{301}", count: 100) + "e"),
            "invalid_field", ["name"], id: "len-2")
        // Dates: exactly YYYY-MM-DD, existing, not after today.
        for (n, date) in [
            "2017-11-05 ", " 2017-11-05", "2017/11/05", "2017-11-05T00:00:00Z", "17-11-05", "2017-11-5", "2017-00-10",
            "2017-11-00", "1900-02-29", "2018-02-01", "9999-12-31", "２０１７-１１-０５",
        ].enumerated() {
            bad("eligibility on \(date)", Q.eligibility("dt-\(n)", claimant: Q.nino(1), date: date), "invalid_field", ["date"], id: "dt-\(n)")
        }
        for (n, date) in ["2000-02-29", "2016-02-29", "2018-01-31", "1970-01-01"].enumerated() {
            ok("eligibility on \(date)", Q.eligibility("dv-\(n)", claimant: Q.nino(1), date: date), id: "dv-\(n)")
        }
        // Valid read-only requests, interleaved.
        ok("pending", Q.pending("ok-1", district: "devon-cornwall", date: "2017-11-16"), id: "ok-1")
        ok("outcome", Q.outcome("ok-2", rid: "dec-1"), id: "ok-2")
        ok("eligibility", Q.eligibility("ok-3", claimant: Q.nino(2), date: "2017-12-25"), id: "ok-3")
        ok("status as work coach", Q.status("ok-4", role: "work_coach"), id: "ok-4")
        return out
    }

    @Test("a barrage of bad lines: every code, ids echoed, one answer per line, nothing stored", arguments: ["hidden", "dcams"])
    func barrage(policy: String) throws {
        let trial = try TrialFolder(frontlineRCG: policy)
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z", seedHex: Seeds.a).status == 0)
        // The state the errors need.
        var s = Script()
        s.add(Q.refer("s1", "pend-1", claimant: Q.nino(1), district: "example-north", date: "2017-11-01"))
        s.add(Q.refer("s2", "dec-1", claimant: Q.nino(2), district: "devon-cornwall", date: "2017-11-01"))
        s.add(Q.decide("s3", run: "g-dec", district: "devon-cornwall", date: "2017-11-13", [("dec-1", false)]))
        s.add(Q.refer("s4", "dv-a", claimant: Q.nino(3), district: "devon-cornwall", date: "2017-11-14"))
        s.add(Q.refer("s5", "dv-b", claimant: Q.nino(4), district: "devon-cornwall", date: "2017-11-14"))
        s.add(Q.refer("s6", "dv-late", claimant: Q.nino(5), district: "devon-cornwall", date: "2017-11-20"))
        s.add(Q.refer("s7", "gone-1", claimant: Q.nino(6), district: "devon-cornwall", date: "2017-11-20"))
        s.add(Q.cancel("s8", "gone-1", reason: "moved"))
        let setup = try trial.run(s, now: Self.now)
        #expect(setup.allSatisfy { $0.ok }, "setup: \(setup.filter { !$0.ok })")

        let items = Self.items()
        // Every item is followed by a gatekeeper `status`; empty lines and a lone \r are sprinkled in.
        var input: [UInt8] = []
        var expected: [(item: Item?, statusAfter: Bool)] = []
        for (k, item) in items.enumerated() {
            input += item.bytes + (item.crlf ? [0x0D, 0x0A] : [0x0A])
            expected.append((item, false))
            if k % 7 == 3 { input += [0x0A] }
            if k % 11 == 5 { input += [0x0D, 0x0A] }
            let st = Array(Q.status("st-\(k)").utf8)
            input += st + (k % 5 == 0 ? [0x0D, 0x0A] : [0x0A])
            expected.append((nil, true))
        }
        // A final line without \n is answered.
        input += Array(Q.status("last").utf8)
        expected.append((nil, true))

        let (run, out) = try trial.serveBytes(Data(input), now: Self.now)
        #expect(run.status == 0, "serve: \(run.stderr)")
        try #require(out.count == expected.count, "\(out.count) responses for \(expected.count) non-empty lines")
        let resps = out.map(Resp.init)
        var heads: [LogHead] = []
        var problems: [String] = []
        var messages: [String: Set<String>] = [:]
        var codesSeen: Set<String> = []
        for (k, (item, isStatus)) in expected.enumerated() {
            let r = resps[k]
            if isStatus {
                guard let h = LogHead(r) else { problems.append("status \(k): \(r)"); continue }
                heads.append(h)
                continue
            }
            let it = item!
            if let code = it.code {
                codesSeen.insert(code)
                messages[code, default: []].insert(r.message ?? "")
                if r.code != code { problems.append("\(it.label): expected \(code), got \(r.line.prefix(300))") }
                if let fields = it.fields, !fields.contains(r.field ?? "-") {
                    problems.append("\(it.label): field \(r.field ?? "absent"), expected \(fields.sorted())")
                }
            } else if !r.ok {
                problems.append("\(it.label): expected ok, got \(r.line.prefix(300))")
            }
            if let id = it.id {
                if r.id.map({ Array($0.unicodeScalars) }) != Array(id.unicodeScalars) { problems.append("\(it.label): id \(r.id ?? "null"), expected \(id)") }
            } else if !r.idIsNull {
                problems.append("\(it.label): id must be null: \(r.line.prefix(200))")
            }
        }
        expectNone(problems, "responses differ from PROTOCOL.md")
        let setupHead = try #require(heads.first)
        #expect(heads.allSatisfy { $0 == setupHead }, "a failed (or read-only) request changed the store: \(Set(heads.map(\.description)))")
        #expect(resps.last?.id == "last")

        let allCodes: Set<String> = [
            "too_large", "bad_json", "bad_request", "unknown_op", "forbidden", "invalid_field", "unknown_district",
            "unknown_group", "conflict", "not_found", "wrong_state", "duplicate_referral", "not_eligible",
        ]
        #expect(codesSeen == allCodes)
        if policy == "hidden" {
            for (code, set) in messages {
                #expect(set.count == 1, "under hidden, \(code) has \(set.count) messages: \(set)")
                for m in set {
                    let lower = m.lowercased()
                    for word in ["rcg", "control group", "not_selected", "not selected", "allocated", "42", "24", "six weeks", "month", "2017", "2018"] {
                        #expect(!lower.contains(word), "the \(code) message names \(word): \(m)")
                    }
                }
            }
        }
        // The log still verifies, with nothing in it but the setup.
        #expect(try trial.verify().status == 0)
    }

    @Test("a commit that fails answers internal for its group, has no effect, and the server goes on")
    func internalError() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z").status == 0)
        // An insider's trigger makes the store refuse one particular event.
        let store = try trial.openStore()
        switch trial.backend {
        case .sqlite:
            try store.unsafeExecute(
                """
                CREATE TRIGGER refuse_boom BEFORE INSERT ON events WHEN instr(NEW.payload, 'boom-') > 0
                BEGIN SELECT RAISE(ABORT, 'injected fault'); END;
                """)
        case .postgres:
            try store.unsafeExecute(
                """
                CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF position('boom-' in NEW.payload) > 0 THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$
                """)
            try store.unsafeExecute("CREATE TRIGGER refuse_boom BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_boom()")
        }
        let serve = try ServeProcess(trial, now: Self.now)
        func ask(_ line: String) throws -> Resp {
            try serve.send(line)
            return Resp(try #require(serve.readLine(), "serve ended early"))
        }
        let before = try #require(LogHead(try ask(Q.status("s0"))))
        let boom = try ask(Q.refer("b1", "boom-1", claimant: Q.nino(1), district: "example-north", date: "2017-11-01"))
        expectError(boom, "internal")
        #expect(boom.id == "b1")
        #expect(boom.message == "The service could not complete the request and it had no effect. Please try again.")
        #expect(LogHead(try ask(Q.status("s1"))) == before, "a failed commit changed the log")
        let fine = try ask(Q.refer("b2", "fine-1", claimant: Q.nino(1), district: "example-north", date: "2017-11-01"))
        #expect(fine.ok, "the server goes on after a failed commit, and the claimant has no pending referral: \(fine)")
        #expect(try ask(Q.outcome("b3", rid: "boom-1")).code == "not_found")
        let after = try #require(LogHead(try ask(Q.status("s2"))))
        #expect(after.events == before.events + 1)
        // Pipelined: the failing request's whole group answers internal and has no effect; whatever
        // answered ok is stored, whatever answered internal is not.
        let batch = [
            Q.refer("p1", "grp-1", claimant: Q.nino(11), district: "example-north", date: "2017-11-01"),
            Q.refer("p2", "boom-2", claimant: Q.nino(12), district: "example-north", date: "2017-11-01"),
            Q.refer("p3", "grp-3", claimant: Q.nino(13), district: "example-north", date: "2017-11-01"),
            Q.cancel("p4", "fine-1", reason: "test"),
        ]
        try serve.send(batch.joined(separator: "\n"))
        var answers: [Resp] = []
        for _ in batch { answers.append(Resp(try #require(serve.readLine()))) }
        #expect(answers.map(\.id) == ["p1", "p2", "p3", "p4"])
        expectError(answers[1], "internal")
        #expect(answers.allSatisfy { $0.ok || $0.code == "internal" }, "\(answers)")
        let stored = try ask(Q.status("s3"))
        let okCount = answers.filter(\.ok).count
        #expect(LogHead(stored)?.events == after.events + okCount, "only the requests answered ok were stored: \(answers)")
        for (rid, a) in [("grp-1", answers[0]), ("grp-3", answers[2])] {
            let o = try ask(Q.outcome("o-" + rid, rid: rid))
            #expect(o.ok == a.ok, "\(rid): answered \(a.line), outcome \(o.line)")
        }
        let fineNow = try ask(Q.outcome("o-fine", rid: "fine-1"))
        #expect(fineNow.str("status") == (answers[3].ok ? "cancelled" : "awaiting_gatekeeper"), "\(fineNow)")
        try serve.closeInput()
        #expect(serve.wait() == 0)
        try store.unsafeExecute(trial.backend == .sqlite ? "DROP TRIGGER refuse_boom" : "DROP TRIGGER refuse_boom ON events")
        #expect(try trial.verify().status == 0)
    }
}

@Suite("Framing at the edges of the stream")
struct FramingTests {
    @Test("with WHP_LOG=debug, stdout still carries nothing but one response per request")
    func logsStayOffStdout() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z").status == 0)
        let lines = [Q.status("l1"), "not json", Q.refer("l2", "log-1", claimant: Q.nino(1), district: "example-north", date: "2017-11-01")]
        let r = try runWHPStreaming(
            ["serve"] + trial.common, env: ["WHP_NOW": "2018-01-31T12:00:00Z", "WHP_LOG": "debug"],
            stdin: Data((lines.joined(separator: "\n") + "\n").utf8))
        #expect(r.status == 0)
        let out = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(out.count == 4 && out.last == "", "three responses, each ending in \\n: \(r.stdout)")
        #expect(out.prefix(3).map { Resp($0).obj.isEmpty } == [false, false, false], "only JSON responses on stdout")
        #expect(out.prefix(3).map { Resp($0).id } == ["l1", nil, "l2"])
    }

    @Test("empty input, blank lines only, and an over-long or blank last line without \\n")
    func edges() throws {
        let trial = try TrialFolder()
        try #require(try trial.initialise(now: "2017-10-02T09:00:00Z").status == 0)
        let now = "2018-01-31T12:00:00Z"
        let (empty, emptyOut) = try trial.serveBytes(Data(), now: now)
        #expect(empty.status == 0 && emptyOut.isEmpty && empty.stdout.isEmpty)
        let (blank, blankOut) = try trial.serveBytes(Data("\n\r\n\n\r\n\r".utf8), now: now)
        #expect(blank.status == 0 && blankOut.isEmpty, "blank lines get no response: \(blank.stdout)")
        let long = Array(Q.status("a").utf8) + [0x0A] + Array(repeating: UInt8(ascii: " "), count: 70_000)
        let (r1, out1) = try trial.serveBytes(Data(long), now: now)
        #expect(r1.status == 0 && out1.count == 2, "\(out1)")
        #expect(out1.first.map(Resp.init)?.id == "a")
        #expect(out1.last.map(Resp.init)?.code == "too_large" && out1.last.map(Resp.init)?.idIsNull == true)
        // Exactly 65,536 bytes of whitespace around a request, as the last line without \n: not too large.
        let req = Array(Q.status("edge").utf8)
        let edge = req + Array(repeating: UInt8(ascii: " "), count: 65_536 - req.count)
        let (r2, out2) = try trial.serveBytes(Data(edge + [0x0D]), now: now)
        #expect(r2.status == 0 && out2.count == 1 && Resp(out2[0]).id == "edge" && Resp(out2[0]).ok, "\(out2.map { $0.prefix(200) })")
        // Every response line is JSON and ends with \n.
        #expect(r2.stdout.hasSuffix("\n"))
    }
}
