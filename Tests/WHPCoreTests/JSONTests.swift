import Testing
@testable import WHPJSON

// MARK: - Helpers

private func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The parse error for `bytes`, or nil if it parsed.
private func rejection(_ bytes: [UInt8], maxDepth: Int = 64) -> JSONParseError? {
    do {
        _ = try JSON.parse(bytes, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

private func rejection(_ text: String, maxDepth: Int = 64) -> JSONParseError? {
    rejection(utf8(text), maxDepth: maxDepth)
}

/// Asserts `bytes` is rejected with a message containing `fragment`.
private func expectRejected(
    _ bytes: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let e = rejection(bytes) else {
        Issue.record("accepted \(bytes)", sourceLocation: sourceLocation)
        return
    }
    #expect(e.message.contains(fragment), "message: \(e.message)", sourceLocation: sourceLocation)
}

private func expectRejected(
    _ text: String, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    expectRejected(utf8(text), fragment, sourceLocation: sourceLocation)
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

// MARK: - Valid documents

@Suite("JSON parsing: valid input")
struct JSONValidTests {
    static let documents: [String] = [
        "{}", "[]", "0", "-0", "true", "false", "null", "\"\"",
        "[1,2,[3,{}],[]]",
        #"{"a":{"b":[true,false,null,-1.5e+10,0.25E-3,"x\n\""]},"c":"é😀\u2028"}"#,
        " \t\r\n{ \"k\" : [ 1 , 2 ] }\n",
        #"{"v":1,"id":"c-17","op":"refer","actor":{"role":"work_coach","id":"WC0042"},"referral_id":"R-000123","claimant":{"nino":"AB 12 34 56 C"},"district":"devon-cornwall","group":"disability","referral_date":"2017-11-01"}"#,
    ]

    @Test("parse → encode → parse round-trips", arguments: documents)
    func roundTrip(_ doc: String) throws {
        let v = try JSON.parse(utf8(doc))
        let encoded = JSON.encode(v)
        let again = try JSON.parse(encoded)
        #expect(again == v)
        #expect(JSON.encode(again) == encoded)
    }

    @Test func encodingIsCompactAndKeepsNumberText() throws {
        let v = try JSON.parse(utf8(#" { "a" : [ 1 , 2.50, -0, 1E+2 ] , "b" : { } } "#))
        #expect(text(JSON.encode(v)) == #"{"a":[1,2.50,-0,1E+2],"b":{}}"#)
    }

    @Test func keepsDocumentOrderAndLooksUpKeys() throws {
        let v = try JSON.parse(utf8(#"{"z":1,"a":{"n":"x"},"m":[true]}"#))
        let o = try #require(v.objectValue)
        #expect(o.keys == ["z", "a", "m"])
        #expect(v["a"]?["n"]?.stringValue == "x")
        #expect(v["m"] == [true])
        #expect(v["missing"] == nil)
    }

    @Test func entryPointsAgree() throws {
        let line = utf8(#"xx{"a":[1]}yy"#)
        let expected: JSONValue = ["a": [1]]
        #expect(try JSON.parse(line[2..<11]) == expected)
        #expect(try JSON.parse(Array(line[2..<11])) == expected)
        #expect(try JSON.parse(#"{"a":[1]}"#) == expected)
        let viaRaw = try line.withUnsafeBytes { raw in
            try JSON.parse(UnsafeRawBufferPointer(rebasing: raw[2..<11]))
        }
        #expect(viaRaw == expected)
    }

    @Test func whitespaceIsSpaceTabCRLFOnly() throws {
        #expect(try JSON.parse(utf8(" \t\n\r[ 1 ,\t2 ] \r\n")) == [1, 2])
        expectRejected("\u{0C}1", "unexpected character")  // form feed
        expectRejected("\u{0B}1", "unexpected character")  // vertical tab
        expectRejected("\u{A0}1", "unexpected character")  // NBSP
    }
}

// MARK: - Rejections

@Suite("JSON parsing: rejections")
struct JSONRejectionTests {
    static let invalidUTF8Inputs: [[UInt8]] = [
        [0x22, 0xFF, 0x22],  // never valid
        [0x22, 0xFE, 0x22],
        [0x22, 0xF5, 0x80, 0x80, 0x80, 0x22],  // lead byte > F4
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // > U+10FFFF
        [0x22, 0xC0, 0xAF, 0x22],  // overlong 2-byte
        [0x22, 0xC1, 0xBF, 0x22],
        [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong 3-byte
        [0x22, 0xF0, 0x80, 0x80, 0xAF, 0x22],  // overlong 4-byte
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-8-encoded high surrogate
        [0x22, 0xED, 0xBF, 0xBF, 0x22],  // UTF-8-encoded low surrogate
        [0x22, 0x80, 0x22],  // stray continuation byte
        [0x22, 0xC3, 0x22],  // truncated sequence
        [0x22, 0xE2, 0x82],  // truncated at end of input
        Array(#"{"a":1} "#.utf8) + [0xFF],  // outside any string
    ]

    @Test("invalid UTF-8 is rejected", arguments: invalidUTF8Inputs)
    func invalidUTF8(_ bytes: [UInt8]) {
        expectRejected(bytes, "invalid UTF-8")
    }

    @Test func validMultibyteBoundariesAccepted() throws {
        #expect(try JSON.parse([0x22, 0xF4, 0x8F, 0xBF, 0xBF, 0x22]) == .string("\u{10FFFF}"))
        #expect(try JSON.parse([0x22, 0xEF, 0xBF, 0xBF, 0x22]) == .string("\u{FFFF}"))
        #expect(try JSON.parse([0x22, 0xED, 0x9F, 0xBF, 0x22]) == .string("\u{D7FF}"))
        #expect(try JSON.parse([0x22, 0xC2, 0x80, 0x22]) == .string("\u{80}"))
    }

    @Test func byteOrderMark() {
        expectRejected([0xEF, 0xBB, 0xBF] + utf8("{}"), "byte-order mark")
        expectRejected([0xEF, 0xBB, 0xBF], "byte-order mark")
    }

    @Test func duplicateKeys() {
        expectRejected(#"{"a":1,"a":2}"#, #"duplicate key "a""#)
        // depth 2
        expectRejected(#"{"x":{"a":1,"b":{},"a":2}}"#, #"duplicate key "a""#)
        // equal after unescaping
        expectRejected(#"[{"a":1,"\u0061":2}]"#, #"duplicate key "a""#)
        // large object (hashed path)
        let keys = (0..<100).map { "\"k\($0)\":1" }.joined(separator: ",")
        expectRejected("{" + keys + #","k5":2}"#, #"duplicate key "k5""#)
        #expect(rejection("{" + keys + "}") == nil)
    }

    @Test func sameKeyInDifferentObjectsAndDistinctSpellingsAreFine() throws {
        #expect(rejection(#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#) == nil)
        // Canonically equivalent but different code points: distinct JSON keys.
        let o = try #require(JSON.parse(utf8(#"{"é":1,"e\u0301":2}"#)).objectValue)
        #expect(o.count == 2)
    }

    @Test func hostileNestingDoesNotCrash() {
        expectRejected([UInt8](repeating: UInt8(ascii: "["), count: 100_000), "nesting deeper than 64")
        expectRejected(String(repeating: #"{"a":"#, count: 100_000), "nesting deeper than 64")
        // Even a huge requested limit is clamped, so this cannot build a crash-deep tree.
        #expect(rejection([UInt8](repeating: UInt8(ascii: "["), count: 100_000), maxDepth: .max) != nil)
    }

    @Test func requestedDepthIsClampedToHardCap() {
        let cap = JSON.hardMaxDepth
        let atCap = String(repeating: "[", count: cap) + String(repeating: "]", count: cap)
        let overCap = "[" + atCap + "]"
        #expect(rejection(atCap, maxDepth: .max) == nil)
        #expect(rejection(overCap, maxDepth: .max)?.message == "nesting deeper than \(cap)")
    }

    @Test func depthLimitBoundary() {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(rejection(ok) == nil)
        expectRejected(tooDeep, "nesting deeper than 64")
        let okObj = String(repeating: #"{"a":"#, count: 64) + "1" + String(repeating: "}", count: 64)
        let deepObj = String(repeating: #"{"a":"#, count: 65) + "1" + String(repeating: "}", count: 65)
        #expect(rejection(okObj) == nil)
        expectRejected(deepObj, "nesting deeper than 64")
        #expect(rejection("[[1]]", maxDepth: 1) != nil)
        #expect(rejection("[1]", maxDepth: 1) == nil)
        #expect(rejection("1", maxDepth: 0) == nil)
    }

    static let badNumberInputs = [
        "01", "-01", "00", "+1", ".5", "1.", "-", "1e", "1e+", "1.e5", "-.5", "0x10",
        "NaN", "Infinity", "-Infinity", "--1", "1.5.5", "1 2",
    ]

    @Test("malformed numbers are rejected", arguments: badNumberInputs)
    func badNumber(_ s: String) {
        #expect(rejection(s) != nil)
    }

    @Test func leadingZeroMessage() {
        expectRejected("01", "leading zero")
        expectRejected("[-012]", "leading zero")
    }

    static let badGrammarInputs = [
        "[1,]", #"{"a":1,}"#, "[,1]", "{,}", #"{"a"}"#, #"{"a" 1}"#, "{a:1}", "{'a':1}", "['a']",
        "/*c*/1", "1 //c", "[1 2]", "tru", "nul", "falsey", "True", "[]]", "[", "{", #""abc"#,
        #""\x""#, #""\U0041""#, #""\u12""#, #""\u12G4""#, "{}{}",
    ]

    @Test("grammar violations are rejected", arguments: badGrammarInputs)
    func badGrammar(_ s: String) {
        #expect(rejection(s) != nil)
    }

    @Test func trailingComma() {
        expectRejected("[1,]", "unexpected character at byte 3")
        expectRejected(#"{"a":1,}"#, "unexpected character at byte 7")
    }

    @Test func trailingGarbage() {
        expectRejected(#"{"a":1} x"#, "trailing characters at byte 8")
        expectRejected("1 2", "trailing characters")
        #expect(rejection("{\"a\":1} \t\r\n") == nil)
    }

    @Test func emptyAndWhitespaceOnly() {
        expectRejected("", "empty input")
        expectRejected(" \t\r\n", "empty input")
    }

    @Test func loneSurrogates() {
        expectRejected(#""\ud83d""#, "unpaired surrogate")
        expectRejected(#""\ude00""#, "unpaired surrogate")
        expectRejected(#""\ud83dx""#, "unpaired surrogate")
        expectRejected(#""\ud83d\u0041""#, "unpaired surrogate")
        expectRejected(#""\ud83d\ud83d""#, "unpaired surrogate")
        expectRejected(#""\ude00\ud83d""#, "unpaired surrogate")
        expectRejected(#"{"\ud800":1}"#, "unpaired surrogate")
    }

    @Test func controlCharactersInStrings() {
        expectRejected("\"a\u{01}b\"", "control character")
        expectRejected("\"a\tb\"", "control character")
        expectRejected("\"a\nb\"", "control character")
        expectRejected([0x5B, 0x22, 0x61, 0x00, 0x22, 0x5D], "control character")
        expectRejected("{\"k\u{1F}\":1}", "control character")
        // DEL is not a control character for JSON.
        #expect(rejection("\"\u{7F}\"") == nil)
    }

    @Test func errorOffset() {
        #expect(rejection(#"{"a":tru}"#)?.offset == 5)
    }
}

// MARK: - Numbers and strings

@Suite("JSON numbers and string escapes")
struct JSONNumberStringTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let text: String
        let isInteger: Bool
        let intValue: Int?
        var testDescription: String { text }
    }

    static let cases: [Case] = [
        Case(text: "1", isInteger: true, intValue: 1),
        Case(text: "-0", isInteger: true, intValue: 0),
        Case(text: "1.0", isInteger: false, intValue: nil),
        Case(text: "1e2", isInteger: false, intValue: nil),
        Case(text: "1E2", isInteger: false, intValue: nil),
        Case(text: "-0.0", isInteger: false, intValue: nil),
        Case(text: "2147483647", isInteger: true, intValue: 2_147_483_647),
        Case(text: "9223372036854775807", isInteger: true, intValue: Int.max),
        Case(text: "-9223372036854775808", isInteger: true, intValue: Int.min),
        Case(text: "9223372036854775808", isInteger: true, intValue: nil),
        Case(text: "99999999999999999999999", isInteger: true, intValue: nil),
    ]

    @Test("number classification", arguments: cases)
    func classify(_ c: Case) throws {
        let v = try JSON.parse(utf8(c.text))
        let n = try #require(v.numberValue)
        #expect(n.text == c.text)
        #expect(n.isInteger == c.isInteger)
        #expect(n.intValue == c.intValue)
        #expect(v.intValue == c.intValue)
    }

    @Test func numberFromText() {
        #expect(JSONNumber(text: "-7")?.intValue == -7)
        #expect(JSONNumber(text: "1.5")?.isInteger == false)
        #expect(JSONNumber(text: "01") == nil)
        #expect(JSONNumber(text: "1 ") == nil)
        #expect(JSONNumber(text: "") == nil)
        #expect(JSONNumber(42).text == "42")
    }

    @Test func escapesDecode() throws {
        #expect(try JSON.parse(utf8(#""\u00e9""#)) == .string("é"))
        #expect(try JSON.parse(utf8(#""\ud83d\ude00""#)) == .string("😀"))
        #expect(try JSON.parse(utf8(#""\uD83D\uDE00""#)) == .string("\u{1F600}"))
        #expect(
            try JSON.parse(utf8(#""\"\\\/\b\f\n\r\t\u0000x""#))
                == .string("\"\\/\u{08}\u{0C}\n\r\t\u{00}x"))
        #expect(try JSON.parse(utf8(#"{"k\u00e9y":"v"}"#))["kéy"] == "v")
    }

    @Test func stringEqualityIsByteWise() {
        #expect(JSONValue.string("é") != JSONValue.string("e\u{301}"))
        #expect((["a": 1, "b": 2] as JSONValue) == (["b": 2, "a": 1] as JSONValue))
    }
}

// MARK: - Writer

@Suite("JSON writer")
struct JSONWriterTests {
    @Test func escaping() {
        var w = JSONWriter()
        w.string("q\"b\\s\n\r\t\u{08}\u{0C}\u{01}\u{1F}\u{7F}\u{2028}\u{2029}é😀\u{2027}")
        #expect(
            text(w.bytes)
                == #""q\"b\\s\n\r\t\b\f\u0001\u001f"# + "\u{7F}" + #"\u2028\u2029"# + "é😀\u{2027}\"")
    }

    @Test func commasAndColonsAreAutomatic() {
        var w = JSONWriter()
        w.beginObject()
        w.key("a")
        w.beginArray()
        w.int(0)
        w.int(-5)
        w.int(Int.min)
        w.int(Int.max)
        w.bool(true)
        w.bool(false)
        w.null()
        w.beginObject()
        w.endObject()
        w.beginArray()
        w.endArray()
        w.endArray()
        w.key("b\"")
        w.string("x")
        w.key("n")
        w.int(12)
        w.key("v")
        w.value(["k": [1, "two", .null]])
        w.endObject()
        #expect(
            text(w.bytes)
                == #"{"a":[0,-5,-9223372036854775808,9223372036854775807,true,false,null,{},[]],"b\"":"x","n":12,"v":{"k":[1,"two",null]}}"#
        )
    }

    @Test func newlineStartsANewRecord() throws {
        var w = JSONWriter()
        w.beginObject()
        w.key("a")
        w.int(1)
        w.endObject()
        w.newline()
        w.beginArray()
        w.string("x")
        w.endArray()
        w.newline()
        #expect(text(w.bytes) == "{\"a\":1}\n[\"x\"]\n")
        let lines = w.bytes.split(separator: 0x0A)
        #expect(try JSON.parse(lines[0]) == ["a": 1])
        #expect(try JSON.parse(lines[1]) == ["x"])
        w.reset()
        w.int(7)
        #expect(text(w.bytes) == "7")
    }

    @Test func writerOutputParsesBack() throws {
        let original = "a\"b\\c\n\u{00}\u{1F}\u{2028}\u{2029}😀"
        var w = JSONWriter()
        w.beginObject()
        w.key(original)
        w.string(original)
        w.endObject()
        let v = try JSON.parse(w.bytes)
        #expect(v[original]?.stringValue == original)
    }

    @Test func keyOrderIsUTF8ByteOrder() {
        #expect(JSON.utf8Precedes("a", "ab"))
        #expect(JSON.utf8Precedes("ab", "b"))
        #expect(JSON.utf8Precedes("Z", "a"))
        #expect(JSON.utf8Precedes("z", "é"))
        #expect(!JSON.utf8Precedes("a", "a"))
        // U+FF5E (EF BD 9E) sorts before U+1F600 (F0 9F 98 80) by bytes.
        #expect(JSON.utf8Precedes("\u{FF5E}", "😀"))

        let map = ["b": "1", "ab": "2", "a": "3", "Z": "4", "é": "5", "z": "6"]
        #expect(
            PayloadJSON.encode(map)
                == #"{"Z":"4","a":"3","ab":"2","b":"1","z":"6","é":"5"}"#)
    }

    @Test func sortKeysIsRecursive() throws {
        let v = try JSON.parse(utf8(#"{"b":{"d":1,"c":2},"a":[{"z":0,"y":1}]}"#))
        #expect(text(JSON.encode(v, sortKeys: true)) == #"{"a":[{"y":1,"z":0}],"b":{"c":2,"d":1}}"#)
    }

    @Test func flatStringMap() throws {
        let m = try JSON.parseFlatStringMap(utf8(#" {"a":"1", "b\u00e9":"x\ny"} "#))
        #expect(m == ["a": "1", "bé": "x\ny"])
        #expect(try JSON.parseFlatStringMap(utf8("{}")) == [:])
        #expect(try JSON.parseFlatStringMap(Array(PayloadJSON.encode(m).utf8)) == m)
        for bad in [
            #"{"a":1}"#, #"{"a":"1","a":"2"}"#, "[]", #"{"a":{}}"#, #"{"a":"1",}"#, #"{"a":"1"}x"#, "",
            #"{"a":null}"#, #"{"é":"1","e\u0301":"2"}"#,
        ] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSON.parseFlatStringMap(utf8(bad)) }
        }
        #expect(throws: JSONParseError.self) { try JSON.parseFlatStringMap([0xEF, 0xBB, 0xBF] + utf8("{}")) }
        #expect(throws: JSONParseError.self) { try JSON.parseFlatStringMap([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x22, 0x22, 0x7D]) }
    }

    @Test func objectMutationKeepsKeysUnique() {
        var o: JSONObject = ["a": 1, "b": "x"]
        o["a"] = nil
        o["c"] = true
        o["b"] = "y"
        #expect(o.keys == ["b", "c"])
        #expect(o["b"] == "y")
        let built = JSONObject([("k", 1), ("k", 2)])
        #expect(built.count == 1 && built["k"] == 2)
    }
}
