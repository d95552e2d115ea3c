import JSONRPC
import MCPProtocol
import Testing

@Suite("MCP session lifecycle")
struct MCPSessionTests {
    let identity = ServerIdentity(name: "switchboard", title: "Switchboard", version: "0.1.0", instructions: "i", capabilities: ["tools": [:]])

    private func request(_ method: String, _ params: String? = nil, id: Int64 = 1) -> JSONRPCRequest {
        JSONRPCRequest(id: .integer(id), method: method, params: params.map { try! RawJSON(validating: $0) })
    }

    private func result(_ admission: MCPSession.Admission) -> JSONValue? {
        if case .answered(let value) = admission { return value }
        return nil
    }

    private func errorCode(_ admission: MCPSession.Admission) -> Int? {
        if case .rejected(let error) = admission { return error.code }
        return nil
    }

    @Test("echoes a handshake version it speaks", arguments: ProtocolVersion.handshake)
    func echoesSupportedVersions(_ version: String) {
        var session = MCPSession(identity: identity)
        let answer = result(session.admit(request("initialize", #"{"protocolVersion":"\#(version)","capabilities":{}}"#)))
        #expect(answer?["protocolVersion"] == .string(version))
        #expect((answer?["capabilities"]?["tasks"] != nil) == (version == "2025-11-25"))
        #expect(session.era == .legacy(protocolVersion: version, initialized: false))
    }

    @Test("answers an unknown version with the latest handshake version", arguments: ["1999-01-01", "2026-07-28", ""])
    func negotiatesUnknownVersions(_ version: String) {
        var session = MCPSession(identity: identity)
        let answer = result(session.admit(request("initialize", #"{"protocolVersion":"\#(version)"}"#)))
        #expect(answer?["protocolVersion"] == "2025-11-25")
        #expect(answer?["serverInfo"]?["name"] == "switchboard")
        // 2025-11-25 is the one revision with the tasks capability.
        #expect(answer?["capabilities"]?["tools"] == [:])
        #expect(answer?["capabilities"]?["tasks"]?["requests"]?["tools"]?["call"] == [:])
    }

    @Test func refusesASecondInitializeAndBadParams() {
        var session = MCPSession(identity: identity)
        #expect(errorCode(session.admit(request("initialize", #"{"protocolVersion":5}"#))) == JSONRPCError.Code.invalidParams)
        #expect(errorCode(session.admit(request("initialize", "[]"))) == JSONRPCError.Code.invalidParams)
        #expect(session.era == .plain)
        _ = session.admit(request("initialize", #"{"protocolVersion":"2025-06-18"}"#))
        #expect(errorCode(session.admit(request("initialize", #"{"protocolVersion":"2025-06-18"}"#))) == JSONRPCError.Code.invalidRequest)
        session.receive(JSONRPCNotification(method: "notifications/initialized"))
        #expect(session.era == .legacy(protocolVersion: "2025-06-18", initialized: true))
    }

    @Test func allowsBatchesOnlyWhereTheVersionDoes() {
        var plain = MCPSession(identity: identity)
        #expect(plain.batchRejection == nil)
        _ = plain.admit(request("ping"))
        #expect(plain.batchRejection == nil)

        var old = MCPSession(identity: identity)
        _ = old.admit(request("initialize", #"{"protocolVersion":"2025-03-26"}"#))
        #expect(old.batchRejection == nil)

        var current = MCPSession(identity: identity)
        _ = current.admit(request("initialize", #"{"protocolVersion":"2025-11-25"}"#))
        #expect(current.batchRejection?.code == JSONRPCError.Code.invalidRequest)
    }

    @Test func discoverSettlesTheModernEraAndStampsResults() {
        var session = MCPSession(identity: identity)
        let answer = result(session.admit(request("server/discover", #"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#)))
        #expect(session.era == .modern)
        #expect(answer?["supportedVersions"] == .array(ProtocolVersion.all.map(JSONValue.string)))
        #expect(answer?["resultType"] == "complete")
        #expect(answer?["_meta"]?[MetaKey.serverInfo]?["name"] == "switchboard")
        #expect(session.admit(request("ping")) == .proceed)
        let stamped = session.stamp([:])
        #expect(stamped["resultType"] == "complete")
        #expect(session.batchRejection != nil)
        #expect(!session.acceptsServerRequests)
    }

    @Test func refusesUnsupportedEnvelopeVersionsWithoutSettling() {
        var session = MCPSession(identity: identity)
        let admission = session.admit(request("server/discover", #"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}"#))
        guard case .rejected(let error) = admission else {
            Issue.record("expected -32022")
            return
        }
        #expect(error.code == JSONRPCError.Code.unsupportedProtocolVersion)
        #expect(error.data?["requested"] == "2099-01-01")
        #expect(error.data?["supported"] == .array(ProtocolVersion.all.map(JSONValue.string)))
        // A client that gets -32022 from the probe falls back to the handshake, which must work.
        #expect(session.era == .plain)
        #expect(result(session.admit(request("initialize", #"{"protocolVersion":"2025-11-25"}"#))) != nil)
    }

    @Test func anEnvelopeOnAnyRequestSettlesAPlainSessionAsModern() {
        var session = MCPSession(identity: identity)
        #expect(session.admit(request("tools/list", #"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#)) == .proceed)
        #expect(session.era == .modern)
        #expect(errorCode(session.admit(request("initialize", #"{"protocolVersion":"2025-11-25"}"#))) == JSONRPCError.Code.unsupportedProtocolVersion)
        #expect(errorCode(session.admit(request("ping", #"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}"#)))
            == JSONRPCError.Code.unsupportedProtocolVersion)
    }

    @Test func legacySessionsIgnoreEnvelopeKeysAndTakeServerRequests() {
        var session = MCPSession(identity: identity)
        _ = session.admit(request("initialize", #"{"protocolVersion":"2025-06-18"}"#))
        #expect(session.admit(request("ping", #"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}"#)) == .proceed)
        #expect(session.acceptsServerRequests)
        #expect(session.stamp([:]) == [:])
    }
}
