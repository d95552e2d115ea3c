import JSONRPC
import NIOCore
import Testing

@Suite("JSON-RPC message decoding")
struct MessageDecoderTests {
    let decoder = MessageDecoder()

    private func decode(_ text: String) -> DecodedLine {
        decoder.decode(line: ByteBuffer(string: text))
    }

    private func single(_ text: String) -> DecodedEntry? {
        guard case .single(let entry) = decode(text) else { return nil }
        return entry
    }

    private func invalidCode(_ text: String) -> (JSONRPCID?, Int)? {
        guard case .invalid(let id, let error) = single(text) else { return nil }
        return (id, error.code)
    }

    @Test func decodesRequestsWithRawParams() throws {
        guard case .message(.request(let request)) = single(#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#) else {
            Issue.record("not a request")
            return
        }
        #expect(request.id == .integer(7))
        #expect(request.method == "tools/call")
        #expect(request.params?.description == #"{"name":"x"}"#)
    }

    @Test func keepsStringAndIntegerIdsApart() {
        guard case .message(.request(let a)) = single(#"{"jsonrpc":"2.0","id":"7","method":"ping"}"#),
            case .message(.request(let b)) = single(#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"ping"}"#)
        else {
            Issue.record("not requests")
            return
        }
        #expect(a.id == .string("7"))
        #expect(b.id == .integer(.min))
    }

    @Test func decodesNotificationsAndResponses() {
        #expect(single(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            == .message(.notification(JSONRPCNotification(method: "notifications/initialized"))))
        guard case .message(.response(let response)) = single(#"{"jsonrpc":"2.0","id":"sb-1","result":{}}"#) else {
            Issue.record("not a response")
            return
        }
        #expect(response.id == .string("sb-1"))
        guard case .message(.response(let failure)) = single(#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no","data":{"a":1}}}"#),
            case .error(let error) = failure.outcome
        else {
            Issue.record("not an error response")
            return
        }
        #expect(error.code == -32601)
        #expect(error.data?["a"]?.integerValue == 1)
    }

    @Test("refuses ids that cannot be echoed exactly", arguments: [
        #"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        #"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
        #"{"jsonrpc":"2.0","id":1e3,"method":"ping"}"#,
        #"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
        #"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
        #"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
        #"{"jsonrpc":"2.0","id":9223372036854775808,"method":"ping"}"#,
    ])
    func refusesInvalidIds(_ text: String) {
        let outcome = invalidCode(text)
        #expect(outcome?.0 == nil)
        #expect(outcome?.1 == JSONRPCError.Code.invalidRequest)
    }

    @Test("refuses invalid requests and keeps a readable id", arguments: [
        #"{"jsonrpc":"1.0","id":5,"method":"ping"}"#,
        #"{"id":5,"method":"ping"}"#,
        #"{"jsonrpc":"2.0","id":5,"method":1}"#,
        #"{"jsonrpc":"2.0","id":5,"method":"ping","params":"bar"}"#,
        #"{"jsonrpc":"2.0","id":5}"#,
        #"{"jsonrpc":"2.0","id":5,"result":1,"error":{"code":1,"message":"m"}}"#,
    ])
    func refusesInvalidRequests(_ text: String) {
        let outcome = invalidCode(text)
        #expect(outcome?.0 == .integer(5))
        #expect(outcome?.1 == JSONRPCError.Code.invalidRequest)
    }

    @Test func refusesDuplicateMembersWithoutTrustingTheId() {
        let outcome = invalidCode(#"{"jsonrpc":"2.0","id":5,"method":"ping","method":"ping"}"#)
        #expect(outcome?.0 == nil)
        #expect(outcome?.1 == JSONRPCError.Code.invalidRequest)
    }

    @Test func acceptsAnErrorResponseWithANullId() {
        guard case .message(.response(let response)) = single(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}"#) else {
            Issue.record("an error response with a null id is a response")
            return
        }
        #expect(response.id == nil)
    }

    @Test func answersNonObjectsAsInvalidRequests() {
        #expect(invalidCode("1")?.1 == JSONRPCError.Code.invalidRequest)
        #expect(invalidCode(#""ping""#)?.1 == JSONRPCError.Code.invalidRequest)
    }

    @Test func refusesABatchOverTheLimitWholeAndCountsItsEntries() {
        let small = MessageDecoder(maximumBatchSize: 3)
        let ping = #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
        #expect(small.decode(line: ByteBuffer(string: "[\(ping),\(ping),\(ping),\(ping),\(ping)]")) == .batchTooLarge(entries: 5, limit: 3))
        guard case .batch(let entries) = small.decode(line: ByteBuffer(string: "[\(ping),\(ping),\(ping)]")) else {
            Issue.record("a batch at the limit is a batch")
            return
        }
        #expect(entries.count == 3)
        // Past the limit the text is still validated: broken JSON is a parse error, not a big batch.
        guard case .parseError = small.decode(line: ByteBuffer(string: "[\(ping),\(ping),\(ping),\(ping),{]")) else {
            Issue.record("not a parse error")
            return
        }
    }

    @Test func decodesBatchesAsTheSpecificationSays() {
        #expect(decode("[]") == .emptyBatch)
        guard case .batch(let entries) = decode("[1,2,3]") else {
            Issue.record("not a batch")
            return
        }
        #expect(entries.count == 3)
        guard case .parseError(let error) = decode(#"[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method"]"#) else {
            Issue.record("an invalid batch must be a parse error")
            return
        }
        #expect(error.code == JSONRPCError.Code.parseError)
    }

    @Test func ignoresBlankLines() {
        #expect(decode("") == .blank)
        #expect(decode(" \t\r") == .blank)
    }

    @Test func paramsShareStorageWithTheLine() {
        let line = ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"method":"m","params":[1,2,3]}"#)
        guard case .single(.message(.request(let request))) = decoder.decode(line: line), let params = request.params else {
            Issue.record("not a request")
            return
        }
        let lineBase = line.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        let paramsBase = params.buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(paramsBase == lineBase + 46)
    }
}

@Suite("JSON-RPC message encoding")
struct MessageEncoderTests {
    @Test func writesResultsAndErrors() {
        var buffer = ByteBuffer()
        MessageEncoder.writeResult(id: .string("a\"b"), result: [:], to: &buffer)
        #expect(String(buffer: buffer) == #"{"jsonrpc":"2.0","id":"a\"b","result":{}}"#)
        buffer.clear()
        MessageEncoder.writeError(id: nil, error: .methodNotFound("x"), to: &buffer)
        #expect(String(buffer: buffer) == #"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"data":{"method":"x"},"message":"Method not found: x"}}"#)
    }

    static let ids: [JSONRPCID] = [
        .integer(0), .integer(7), .integer(-1), .integer(Int64.max), .integer(Int64.min),
        .string(""), .string("sb-42"), .string("quote\" backslash\\ newline\n tab\t nul\u{0} bell\u{7} del\u{7f}"), .string("日本語 ☃"),
        .escapedString(#"\ud800a"#), .escapedString(#"\u0041\/"#),
    ]

    /// The id as the general path writes it.
    private static func idText(_ id: JSONRPCID) -> String {
        var buffer = ByteBuffer()
        id.write(to: &buffer)
        return String(buffer: buffer)
    }

    @Test("a relayed result is written whole, id as the general path writes it", arguments: ids)
    func writesRelayedResult(id: JSONRPCID) throws {
        let result = try RawJSON(validating: #"{"content":[{"type":"text","text":"a\"b"}],"isError":false}"#)
        var buffer = ByteBuffer(string: "earlier line\n")
        MessageEncoder.writeResult(id: id, result: .raw(result), to: &buffer)
        let expected = "earlier line\n" + #"{"jsonrpc":"2.0","id":"# + Self.idText(id) + #","result":{"content":[{"type":"text","text":"a\"b"}],"isError":false}}"#
        #expect(String(buffer: buffer) == expected)
        guard case .single(.message(.response(let response))) = MessageDecoder().decode(line: buffer.getSlice(at: 13, length: buffer.readableBytes - 13)!) else {
            Issue.record("not read back as a response")
            return
        }
        // Read back, it is written as it was: byte for byte, escapes included.
        #expect(response.id.map(Self.idText) == Self.idText(id))
    }

    @Test("a relayed request is written whole, with or without params", arguments: ids)
    func writesRelayedRequest(id: JSONRPCID) throws {
        let params = try RawJSON(validating: #"{"name":"echo","arguments":{"text":"hi"}}"#)
        var buffer = ByteBuffer()
        MessageEncoder.writeRequest(id: id, method: "tools/call", params: .raw(params), to: &buffer)
        #expect(String(buffer: buffer) == #"{"jsonrpc":"2.0","id":"# + Self.idText(id) + #","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#)
        buffer.clear()
        MessageEncoder.writeRequest(id: id, method: "odd \"method\"\u{1}", params: nil, to: &buffer)
        #expect(String(buffer: buffer) == #"{"jsonrpc":"2.0","id":"# + Self.idText(id) + #","method":"odd \"method\"\u0001"}"#)
        guard case .single(.message(.request(let request))) = MessageDecoder().decode(line: buffer) else {
            Issue.record("not read back as a request")
            return
        }
        #expect(Self.idText(request.id) == Self.idText(id))
        #expect(request.method == "odd \"method\"\u{1}")
    }

    @Test func anIdWithEscapesIsEchoedAsWritten() throws {
        for written in [#""\ud800a""#, #""\u0041""#, #""a\"b""#, #""\ud83d\ude00""#] {
            let line = ByteBuffer(string: #"{"jsonrpc":"2.0","id":"# + written + #","method":"ping"}"#)
            guard case .single(.message(.request(let request))) = MessageDecoder().decode(line: line) else {
                Issue.record("\(written) not read as a request")
                continue
            }
            var buffer = ByteBuffer()
            MessageEncoder.writeResult(id: request.id, result: [:], to: &buffer)
            #expect(String(buffer: buffer) == #"{"jsonrpc":"2.0","id":"# + written + #","result":{}}"#)
        }
    }
}
