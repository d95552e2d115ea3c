import JSONRPC
import NIOCore
import Testing

@Suite("JSON scanner")
struct JSONScannerTests {
    private func validate(_ text: String, depth: Int = 512) -> JSONSyntaxError? {
        do {
            _ = try RawJSON(validating: text, maximumDepth: depth)
            return nil
        } catch {
            return error
        }
    }

    private func validate(bytes: [UInt8]) -> JSONSyntaxError? {
        do {
            _ = try RawJSON(validating: ByteBuffer(bytes: bytes))
            return nil
        } catch {
            return error
        }
    }

    @Test("accepts every kind of value", arguments: [
        "{}", "[]", "0", "-0", "12.5e-3", "1E+2", "true", "false", "null", "\"\"",
        #"{"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00\n"}"#, "  [ 1 , 2 ]  ", "\"é日本😀\"",
    ])
    func acceptsValidJSON(_ text: String) {
        #expect(validate(text) == nil)
    }

    @Test("rejects malformed JSON", arguments: [
        "", "{", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "01", "1.", "-", ".5", "1e", "tru", "nul",
        "\"abc", "\"\\x\"", "\"\\u12G4\"", "[1] 2", "{\"a\":1,}", "'a'", "NaN",
    ])
    func rejectsMalformedJSON(_ text: String) {
        #expect(validate(text) != nil)
    }

    @Test func rejectsControlCharactersAndNULInStrings() {
        #expect(validate(bytes: Array("\"a".utf8) + [0x00] + Array("b\"".utf8))?.kind == .controlCharacterInString(0))
        #expect(validate(bytes: Array("\"a".utf8) + [0x0A] + Array("b\"".utf8))?.kind == .controlCharacterInString(0x0A))
        #expect(validate(bytes: [0x00]) != nil)
    }

    @Test("rejects invalid UTF-8", arguments: [
        [0x22, 0xFF, 0x22],  // never valid
        [0x22, 0xC0, 0xAF, 0x22],  // overlong '/'
        [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-16 surrogate
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
        [0x22, 0xE6, 0x97, 0x22],  // truncated sequence
        [0x22, 0x80, 0x22],  // lone continuation byte
    ] as [[UInt8]])
    func rejectsInvalidUTF8(_ bytes: [UInt8]) {
        #expect(validate(bytes: bytes)?.kind == .invalidUTF8)
    }

    @Test func enforcesTheNestingLimitWithoutRecursion() {
        let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
        #expect(validate(deep)?.kind == .tooDeep(512))
        let atLimit = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        #expect(validate(atLimit) == nil)
        let overLimit = String(repeating: "{\"a\":", count: 513) + "1" + String(repeating: "}", count: 513)
        #expect(validate(overLimit)?.kind == .tooDeep(512))
    }

    @Test func reportsTheOffsetOfTheProblem() {
        #expect(validate("[1, 2, x]")?.offset == 7)
    }

    @Test func decodesEscapesAndSurrogatePairs() {
        let raw = try! RawJSON(validating: #""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00\ud800x""#)
        #expect(raw.stringValue == "a\"b\\c/d\u{8}\u{c}\n\r\té😀\u{FFFD}x")
    }

    @Test func findsMembersWithoutCopying() {
        let raw = try! RawJSON(validating: #"{"name":"echo","arguments":{"text":"hi","n":[1,2]},"x":null}"#)
        #expect(raw.member("name")?.stringValue == "echo")
        #expect(raw.member("arguments")?.description == #"{"text":"hi","n":[1,2]}"#)
        #expect(raw.member("missing") == nil)
        #expect(raw.member("x")?.kind == .null)
    }

    @Test func findsMembersPastEveryKindOfValue() {
        // Long strings (the eight-byte fast path), escaped quotes and brackets inside strings,
        // nesting, scalars, whitespace, and names that need decoding.
        let text = #"{ "long" : "0123456789abcdefghij\"}]{[0123456789" , "n" : -12.5e3 , "t":true,"#
            + #""deep":{"a":[{"b":"]}"},[],{}]},"caf\u00e9":1,"é":2,"K":3,"last":[1,"x"] }"#
        let raw = try! RawJSON(validating: text)
        #expect(raw.member("long")?.stringValue == "0123456789abcdefghij\"}]{[0123456789")
        #expect(raw.member("n")?.description == "-12.5e3")
        #expect(raw.member("t")?.description == "true")
        #expect(raw.member("deep")?.description == #"{"a":[{"b":"]}"},[],{}]}"#)
        #expect(raw.member("café")?.description == "1")
        #expect(raw.member("é")?.description == "2")
        #expect(raw.member("\u{212A}")?.description == "3")  // the Kelvin sign is canonically "K"
        #expect(raw.member("last")?.description == #"[1,"x"]"#)
        #expect(raw.member("las") == nil)
        #expect(try! RawJSON(validating: #"{"a":1,"a":2}"#).member("a")?.description == "1")
        #expect(try! RawJSON(validating: "{}").member("a") == nil)
        #expect(try! RawJSON(validating: "[1]").member("a") == nil)
        // Bytes that break the promise of validity give nil, never a crash.
        #expect(RawJSON(unchecked: ByteBuffer(string: #"{"a":"#)).member("a") == nil)
        #expect(RawJSON(unchecked: ByteBuffer(string: #"{"a":"x"#)).member("a") == nil)
        #expect(RawJSON(unchecked: ByteBuffer(string: #"{"a":[1,"#)).member("a") == nil)
    }

    @Test func findsSeveralMembersInOnePassAsMemberDoes() {
        let text = #"{ "long" : "0123456789abcdefghij\"}]{[0123456789" , "n\u0061me":"echo","deep":{"name":"inner"},"#
            + #""caf\u00e9":1,"K":3,"dup":1,"dup":2,"last":[1,"x"] }"#
        let raw = try! RawJSON(validating: text)
        let found = raw.members("name", "missing", "café", "\u{212A}", "dup", "last", "long", "deep")
        #expect(found.map { $0?.description } == [#""echo""#, nil, "1", "3", "1", #"[1,"x"]"#, #""0123456789abcdefghij\"}]{[0123456789""#, #"{"name":"inner"}"#])
        let names: [String] = ["name", "missing", "café", "\u{212A}", "dup", "last", "long", "deep"]
        #expect(found == names.map { raw.member($0) })
        #expect(try! RawJSON(validating: "{}").members("a", "b") == [nil, nil])
        #expect(try! RawJSON(validating: "[1]").members("a") == [nil])
        #expect(RawJSON(unchecked: ByteBuffer(string: #"{"a":1,"b":"#)).members("a", "b") == [try! RawJSON(validating: "1"), nil])
    }

    @Test func validatesStringsEightBytesAtATime() {
        // Every offending byte at every position of an eight-byte window is still caught.
        for position in 0..<17 {
            for bad: UInt8 in [0x00, 0x1F, 0x0A] {
                var bytes = Array(#""0123456789ACDEGHJ""#.utf8)
                bytes[1 + position] = bad
                #expect(validate(bytes: bytes)?.offset == 1 + position, "byte \(bad) at \(position)")
            }
            var invalidUTF8 = Array(#""0123456789ACDEGHJ""#.utf8)
            invalidUTF8[1 + position] = 0xFF
            #expect(validate(bytes: invalidUTF8) != nil)
            var escaped = Array(#""0123456789ACDEGHJ""#.utf8)
            escaped[1 + position] = UInt8(ascii: "\\")
            #expect(validate(bytes: escaped) != nil)  // `\` followed by a digit or letter that is no escape, or by the quote
        }
        let valid = "\"" + String(repeating: "abcdefgh", count: 5) + "é😀" + String(repeating: "x", count: 9) + "\""
        #expect(validate(valid) == nil)
        #expect(try! RawJSON(validating: valid).stringValue == String(repeating: "abcdefgh", count: 5) + "é😀" + String(repeating: "x", count: 9))
    }

    @Test func buildsTreesForSmallDocuments() {
        let raw = try! RawJSON(validating: #"{"a":1,"b":[true,null,"s"],"c":1.5,"d":12345678901234567890}"#)
        #expect(raw.decoded() == .object(["a": 1, "b": [true, nil, "s"], "c": 1.5, "d": .double(1.2345678901234567e19)]))
    }
}

@Suite("JSON encoding")
struct JSONEncodingTests {
    @Test func escapesOnlyWhatJSONRequires() {
        let value: JSONValue = ["s": .string("q\"b\\n\n\u{1}é😀")]
        #expect(value.encoded == #"{"s":"q\"b\\n\n\u0001é😀"}"#)
    }

    @Test func roundTripsThroughTheScanner() throws {
        let value: JSONValue = ["a": [1, -2, 2.5, "x", nil, true], "b": ["c": [:]]]
        let raw = try RawJSON(validating: value.encoded)
        #expect(raw.decoded() == value)
    }

    @Test func embedsRawJSONAsItIs() throws {
        let raw = try RawJSON(validating: #"{ "keep" : [1,  2] }"#)
        let value: JSONValue = ["result": .raw(raw)]
        #expect(value.encoded == #"{"result":{ "keep" : [1,  2] }}"#)
    }
}
