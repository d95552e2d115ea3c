import Gateway
import JSONRPC
import Testing

@Suite("Scatter-gather and pipelines over real sockets", .timeLimit(.minutes(1)))
struct PatternTests {
    private func register(_ agent: LineClient, name: String, tool: String) async throws {
        let reply = try await agent.call(1, "agents/register", #"{"agentName":"\#(name)","maxConcurrency":4,"tools":[{"name":"\#(tool)","inputSchema":{"type":"object"}}]}"#)
        #expect(reply?["result"]?["agentId"] != nil)
    }

    /// Receives one call and answers it with a text.
    private func answer(_ agent: LineClient, text: String, isError: Bool = false) async throws -> JSONValue {
        let call = try #require(try await agent.receive())
        let id = try #require(call["id"]?.stringValue)
        try await agent.send(#"{"jsonrpc":"2.0","id":"\#(id)","result":{"content":[{"type":"text","text":"\#(text)"}],"isError":\#(isError)}}"#)
        return call
    }

    @Test func scatterGathersEveryAgentAndFindsTheMajority() async throws {
        try await withGateway { gateway in
            var agents: [LineClient] = []
            for _ in 0..<3 {
                let agent = try await gateway.connect()
                try await register(agent, name: "scorer", tool: "score")
                agents.append(agent)
            }
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":1,"method":"tasks/scatter","params":{"tool":"score","arguments":{"symbol":"ACME"},"aggregation":"majority"}}"#)
            for (agent, verdict) in zip(agents, ["buy", "buy", "sell"]) {
                let call = try await answer(agent, text: verdict)
                #expect(call["params"]?["arguments"] == ["symbol": "ACME"])
            }
            let reply = try #require(try await client.receive())
            #expect(reply["result"]?["targets"] == 3)
            #expect(reply["result"]?["succeeded"] == 3)
            #expect(reply["result"]?["votes"] == 2)
            #expect(reply["result"]?["result"]?["content"] == [["type": "text", "text": "buy"]])
            #expect(reply["result"]?["complete"] == true)
            for agent in agents { await agent.close() }
            await client.close()
        }
    }

    @Test func aSlowAgentYieldsPartialResultsAtTheTimeout() async throws {
        try await withGateway { gateway in
            let fast = try await gateway.connect()
            try await register(fast, name: "scorer", tool: "score")
            let slow = try await gateway.connect()
            try await register(slow, name: "scorer", tool: "score")
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":1,"method":"tasks/scatter","params":{"tool":"score","timeout":5,"quorum":2}}"#)
            _ = try await answer(fast, text: "42")
            #expect(try await slow.receive()?["method"] == "tools/call")  // and never answers
            let reply = try #require(try await client.receive())
            #expect(reply["result"]?["complete"] == false)
            #expect(reply["result"]?["succeeded"] == 1)
            #expect(reply["result"]?["quorumMet"] == false)
            guard case .array(let results)? = reply["result"]?["results"] else {
                Issue.record("results must be an array")
                return
            }
            #expect(Set(results.compactMap { $0["status"]?.stringValue }) == ["ok", "timeout"])
            #expect(try await slow.receive()?["method"] == "notifications/cancelled")
            await fast.close()
            await slow.close()
            await client.close()
        }
    }

    @Test func aPipelineFeedsEachStageTheOneBefore() async throws {
        try await withGateway { gateway in
            let fetcher = try await gateway.connect()
            try await register(fetcher, name: "fetcher", tool: "fetch")
            let writer = try await gateway.connect()
            try await register(writer, name: "writer", tool: "summarize")
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":1,"method":"tasks/pipeline","params":{"stages":[{"tool":"fetch","arguments":{"symbol":"ACME"}},{"tool":"summarize","arguments":{"text":"Summary of: ${previous.text}"}}]}}"#)
            _ = try await answer(fetcher, text: "ACME up 3%")
            let second = try await answer(writer, text: "ACME rose.")
            #expect(second["params"]?["arguments"] == ["text": "Summary of: ACME up 3%"])
            let reply = try #require(try await client.receive())
            #expect(reply["result"]?["result"]?["content"] == [["type": "text", "text": "ACME rose."]])
            guard case .array(let stages)? = reply["result"]?["stages"] else {
                Issue.record("stages must be an array")
                return
            }
            #expect(stages.count == 2)
            await fetcher.close()
            await writer.close()
            await client.close()
        }
    }

    @Test func aFailingStageIsNamed() async throws {
        try await withGateway { gateway in
            let fetcher = try await gateway.connect()
            try await register(fetcher, name: "fetcher", tool: "fetch")
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":1,"method":"tasks/pipeline","params":{"stages":[{"tool":"fetch","arguments":{}},{"tool":"fetch","arguments":{}}]}}"#)
            _ = try await answer(fetcher, text: "ok")
            _ = try await answer(fetcher, text: "upstream down", isError: true)
            let reply = try #require(try await client.receive())
            #expect(reply["error"]?["code"] == .integer(Int64(JSONRPCError.Code.taskFailed)))
            #expect(reply["error"]?["data"]?["stage"] == 1)
            #expect(reply["error"]?["data"]?["tool"] == "fetch")
            await fetcher.close()
            await client.close()
        }
    }
}
