import Gateway
import JSONRPC
import Testing

@Suite("Nested calls between agents", .timeLimit(.minutes(1)))
struct CallChainTests {
    private func register(_ agent: LineClient, name: String, tool: String) async throws {
        #expect(try await agent.call(1, "agents/register", #"{"agentName":"\#(name)","tools":[{"name":"\#(tool)","inputSchema":{"type":"object"}}]}"#)?["result"] != nil)
    }

    @Test func anAgentCanCallAnotherButACycleIsRefused() async throws {
        try await withGateway { gateway in
            let alpha = try await gateway.connect()
            try await register(alpha, name: "alpha", tool: "first")
            let beta = try await gateway.connect()
            try await register(beta, name: "beta", tool: "second")
            let client = try await gateway.connect()

            try await client.send(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"first"}}"#)
            let first = try #require(try await alpha.receive())
            // While serving it, alpha calls beta's tool through the gateway: allowed.
            try await alpha.send(#"{"jsonrpc":"2.0","id":"a1","method":"tools/call","params":{"name":"second"}}"#)
            let second = try #require(try await beta.receive())
            #expect(second["params"]?["name"] == "second")
            // Beta, serving alpha's call, calls back into alpha: that would wait on itself.
            let cycle = try await beta.call(2, "tools/call", #"{"name":"first"}"#)
            #expect(cycle?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.callChainRefused)))
            #expect(cycle?["error"]?["data"]?["reason"] == "cycle")
            // Alpha calling its own tool while serving it is refused too.
            let selfCall = try await alpha.call(3, "tools/call", #"{"name":"first"}"#)
            #expect(selfCall?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.callChainRefused)))

            try await beta.send(#"{"jsonrpc":"2.0","id":"\#(second["id"]!.stringValue!)","result":{"content":[{"type":"text","text":"from beta"}]}}"#)
            #expect(try await alpha.receive()?["result"]?["content"] == [["type": "text", "text": "from beta"]])
            try await alpha.send(#"{"jsonrpc":"2.0","id":"\#(first["id"]!.stringValue!)","result":{"content":[{"type":"text","text":"done"}]}}"#)
            #expect(try await client.receive()?["result"]?["content"] == [["type": "text", "text": "done"]])
            for connection in [alpha, beta, client] { await connection.close() }
        }
    }
}
