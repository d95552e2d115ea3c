import Gateway
import JSONRPC
import Testing

@Suite("Attached agents over real sockets", .timeLimit(.minutes(1)))
struct AttachedAgentTests {
    private let registration = #"{"agentName":"pricer","agentType":"analysis","version":"1.0","capabilities":["pricing"],"maxConcurrency":4,"tools":[{"name":"quote","description":"Quote a symbol","inputSchema":{"type":"object","properties":{"symbol":{"type":"string"}}}}]}"#

    @Test func aRegisteredAgentServesCallsMadeByOtherClients() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            let registered = try await agent.call(1, "agents/register", registration)
            let agentID = try #require(registered?["result"]?["agentId"]?.stringValue)
            #expect(agentID.hasPrefix("pricer@"))

            let client = try await gateway.connect()
            let tools = try await client.call(1, "tools/list")
            #expect(tools?["result"]?["tools"]?.arrayNames == ["quote"])

            try await client.send(#"{"jsonrpc":"2.0","id":"q1","method":"tools/call","params":{"name":"quote","arguments":{"symbol":"ACME"}}}"#)
            let forwarded = try #require(try await agent.receive())
            #expect(forwarded["method"] == "tools/call")
            #expect(forwarded["params"]?["name"] == "quote")
            #expect(forwarded["params"]?["arguments"] == ["symbol": "ACME"])
            let forwardedID = try #require(forwarded["id"]?.stringValue)

            let busy = try await client.call(2, "agents/get", #"{"agentId":"\#(agentID)"}"#)
            #expect(busy?["result"]?["currentState"] == "BUSY")

            try await agent.send(#"{"jsonrpc":"2.0","id":"\#(forwardedID)","result":{"content":[{"type":"text","text":"ACME 42.00"}],"isError":false}}"#)
            let answer = try await client.receive()
            #expect(answer?["id"] == "q1")
            #expect(answer?["result"]?["content"] == [["type": "text", "text": "ACME 42.00"]])

            let idle = try await client.call(3, "agents/get", #"{"agentId":"\#(agentID)"}"#)
            #expect(idle?["result"]?["currentState"] == "IDLE")
            #expect(idle?["result"]?["performanceMetrics"]?["tasksCompleted"] == 1)
            await agent.close()
            await client.close()
        }
    }

    @Test func aCallWhoseAgentDisconnectsGetsAClearErrorAndTheAgentGoesOffline() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            let agentID = try #require(try await agent.call(1, "agents/register", registration)?["result"]?["agentId"]?.stringValue)
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"quote","arguments":{}}}"#)
            #expect(try await agent.receive()?["method"] == "tools/call")
            await agent.close()

            let failure = try await client.receive()
            #expect(failure?["id"] == 7)
            #expect(failure?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.agentFailed)))
            #expect(failure?["error"]?["data"]?["agent"] == .string(agentID))

            let status = try await client.call(8, "agents/get", #"{"agentId":"\#(agentID)"}"#)
            #expect(status?["result"]?["currentState"] == "OFFLINE")
            #expect(try await client.call(9, "tools/list")?["result"]?["tools"] == [])
            let unknown = try await client.call(10, "tools/call", #"{"name":"quote"}"#)
            #expect(unknown?["error"]?["code"] == -32602)
            await client.close()
        }
    }

    @Test func handshakeClientsAreToldWhenTheToolListChanges() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            _ = try await client.call(1, "initialize", #"{"protocolVersion":"2025-06-18","capabilities":{}}"#)
            let agent = try await gateway.connect()
            _ = try await agent.call(1, "agents/register", registration)
            #expect(try await client.receive()?["method"] == "notifications/tools/list_changed")
            await agent.close()
            #expect(try await client.receive()?["method"] == "notifications/tools/list_changed")
            await client.close()
        }
    }
}

extension JSONValue {
    var arrayNames: [String]? {
        guard case .array(let items) = self else { return nil }
        return items.compactMap { $0["name"]?.stringValue }
    }
}
