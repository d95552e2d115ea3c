import JSONRPC
import NIOCore
import Testing

/// The id of a message too large to keep, read from its first or last bytes.
@Suite("Oversize messages")
struct OversizeMessageTests {
    private func message(_ head: String, _ tail: String) -> OversizeMessage {
        OversizeMessage(head: ByteBuffer(string: head), tail: ByteBuffer(string: tail))
    }

    @Test func readsTheIdWhereSDKsPutItFirst() {
        let found = message(#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"x","arguments":{"blob":"aaaa"#, #"aaaa"}}}"#)
        #expect(found.id == .integer(42))
        #expect(!found.isResponse)
    }

    @Test func readsAStringIdWithEscapes() {
        let found = message(#"{"id":"req \"7\"","jsonrpc":"2.0","method":"x","params":"aaa"#, "")
        #expect(found.id == .escapedString(#"req \"7\""#))
    }

    @Test func readsTheIdAtTheEnd() {
        let found = message(#"{"jsonrpc":"2.0","method":"tools/call","params":{"data":"aaaa"#, #"aaaa"}, "id" : "last-one" }"#)
        #expect(found.id == .string("last-one"))
        let numeric = message(#"{"method":"x","params":"aaa"#, #"aaa","id":-3}"#)
        #expect(numeric.id == .integer(-3))
    }

    @Test func doesNotTakeANestedIdAtTheEnd() {
        let found = message(#"{"jsonrpc":"2.0","method":"x","params":{"data":"aaaa"#, #"aaaa","item":{"id":5}}}"#)
        #expect(found.id == nil)
    }

    @Test func doesNotTakeAnIdInsideAStringValue() {
        let found = message(#"{"jsonrpc":"2.0","method":"x","params":{"text":"aaaa"#, #"aa \",\"id\":9}"}}"#)
        #expect(found.id == nil)
    }

    @Test func tellsAResponseFromARequest() {
        let found = message(#"{"jsonrpc":"2.0","id":"sb-12","result":{"content":[{"type":"text","text":"aaaa"#, #"aaaa"}]}}"#)
        #expect(found.id == .string("sb-12"))
        #expect(found.isResponse)
    }

    @Test func refusesFractionsAndGarbage() {
        #expect(message(#"{"id":1.5,"method":"x","params":"aaa"#, "").id == nil)
        #expect(message("garbage without braces", "more garbage").id == nil)
        #expect(message("", "").id == nil)
    }
}
