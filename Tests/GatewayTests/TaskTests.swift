import Access
import Gateway
import JSONRPC
import Testing

/// Tasks through a real gateway with an attached agent played by the test.
@Suite("Tasks over real sockets", .timeLimit(.minutes(1)))
struct TaskTests {
    private func registerWorker(_ agent: LineClient, concurrency: Int = 1, name: String = "worker") async throws -> String {
        let reply = try await agent.call(1, "agents/register", #"{"agentName":"\#(name)","maxConcurrency":\#(concurrency),"tools":[{"name":"work","inputSchema":{"type":"object"}}]}"#)
        return try #require(reply?["result"]?["agentId"]?.stringValue)
    }

    private func submit(_ client: LineClient, _ id: Int, _ params: String) async throws -> String {
        let reply = try await client.call(id, "tasks/submit", params)
        return try #require(reply?["result"]?["taskId"]?.stringValue, "\(String(describing: reply))")
    }

    /// Answers the next call the agent receives and returns its arguments.
    private func serveOne(_ agent: LineClient, result: String = #"{"content":[{"type":"text","text":"ok"}]}"#) async throws -> JSONValue? {
        let call = try #require(try await agent.receive())
        #expect(call["method"] == "tools/call")
        let id = try #require(call["id"]?.stringValue)
        try await agent.send(#"{"jsonrpc":"2.0","id":"\#(id)","result":\#(result)}"#)
        return call["params"]?["arguments"]
    }

    @Test func higherPrioritiesRunFirst() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await registerWorker(agent)
            let client = try await gateway.connect()
            // The first task occupies the only slot; the rest queue behind it.
            _ = try await submit(client, 1, #"{"taskType":"work","taskData":{"n":0},"priority":5}"#)
            let first = try #require(try await agent.receive())
            for (index, priority) in [9, 1, 5, 3].enumerated() {
                _ = try await submit(client, 10 + index, #"{"taskType":"work","taskData":{"n":\#(priority)},"priority":\#(priority)}"#)
            }
            try await agent.send(#"{"jsonrpc":"2.0","id":"\#(first["id"]!.stringValue!)","result":{"content":[]}}"#)
            var order: [Int64] = []
            for _ in 0..<4 { order.append(try #require(try await serveOne(agent)?["n"]?.integerValue)) }
            #expect(order == [1, 3, 5, 9])
            await agent.close()
            await client.close()
        }
    }

    @Test func aFailedAttemptIsRetriedAndTheResultWaitsForTheEnd() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await registerWorker(agent)
            let client = try await gateway.connect()
            let task = try await submit(client, 1, #"{"taskType":"work","taskData":{},"maxRetries":2,"backoff":"fixed","backoffDelay":0.01}"#)
            try await client.send(#"{"jsonrpc":"2.0","id":2,"method":"tasks/result","params":{"taskId":"\#(task)"}}"#)
            _ = try await serveOne(agent, result: #"{"content":[{"type":"text","text":"boom"}],"isError":true}"#)
            _ = try await serveOne(agent, result: #"{"content":[{"type":"text","text":"fine"}]}"#)
            let result = try await client.receive()
            #expect(result?["id"] == 2)
            #expect(result?["result"]?["content"] == [["type": "text", "text": "fine"]])
            let status = try await client.call(3, "tasks/get", #"{"taskId":"\#(task)"}"#)
            #expect(status?["result"]?["state"] == "COMPLETED")
            #expect(status?["result"]?["status"] == "completed")
            #expect(status?["result"]?["retryCount"] == 1)
            await agent.close()
            await client.close()
        }
    }

    @Test func aTaskThatKeepsFailingEndsFailedWithEveryAttempt() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await registerWorker(agent)
            let client = try await gateway.connect()
            let task = try await submit(client, 1, #"{"taskType":"work","taskData":{},"maxRetries":1,"backoff":"fixed","backoffDelay":0}"#)
            try await client.send(#"{"jsonrpc":"2.0","id":2,"method":"tasks/result","params":{"taskId":"\#(task)"}}"#)
            for _ in 0..<2 { _ = try await serveOne(agent, result: #"{"content":[{"type":"text","text":"boom"}],"isError":true}"#) }
            let result = try await client.receive()
            #expect(result?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.taskFailed)))
            #expect(result?["error"]?["data"]?["state"] == "FAILED")
            let message = try #require(result?["error"]?["data"]?["errorMessage"]?.stringValue)
            #expect(message.contains("#1") && message.contains("#2"))
            await agent.close()
            await client.close()
        }
    }

    @Test func anAgentThatDoesNotAnswerTimesTheTaskOut() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await registerWorker(agent)
            let client = try await gateway.connect()
            let task = try await submit(client, 1, #"{"taskType":"work","taskData":{},"timeout":0.2,"maxRetries":0}"#)
            #expect(try await agent.receive()?["method"] == "tools/call")
            let result = try await client.call(2, "tasks/result", #"{"taskId":"\#(task)"}"#)
            #expect(result?["error"]?["data"]?["state"] == "TIMEOUT")
            #expect(result?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.callTimedOut)))
            await agent.close()
            await client.close()
        }
    }

    @Test func cancellingAPendingAndARunningTask() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await registerWorker(agent)
            let client = try await gateway.connect()
            let running = try await submit(client, 1, #"{"taskType":"work","taskData":{}}"#)
            let call = try #require(try await agent.receive())
            let pending = try await submit(client, 2, #"{"taskType":"work","taskData":{}}"#)
            #expect(try await client.call(3, "tasks/cancel", #"{"taskId":"\#(pending)"}"#)?["result"]?["state"] == "CANCELLED")
            #expect(try await client.call(4, "tasks/cancel", #"{"taskId":"\#(running)"}"#)?["result"]?["state"] == "CANCELLED")
            let notice = try await agent.receive()
            #expect(notice?["method"] == "notifications/cancelled")
            #expect(notice?["params"]?["requestId"] == call["id"])
            await agent.close()
            await client.close()
        }
    }

    @Test func dependenciesIdempotencyAndUnknownTasks() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await registerWorker(agent, concurrency: 4)
            let client = try await gateway.connect()
            let first = try await submit(client, 1, #"{"taskType":"work","taskData":{"step":1},"idempotencyKey":"order-42"}"#)
            #expect(try await submit(client, 2, #"{"taskType":"work","taskData":{"step":1},"idempotencyKey":"order-42"}"#) == first)
            let second = try await submit(client, 3, #"{"taskType":"work","taskData":{"step":2},"dependsOn":["\#(first)"]}"#)
            // Only the first runs until it completes; then the second.
            #expect(try await serveOne(agent)?["step"] == 1)
            #expect(try await serveOne(agent)?["step"] == 2)
            #expect(try await client.call(4, "tasks/result", #"{"taskId":"\#(second)"}"#)?["result"] != nil)
            let unknown = try await client.call(5, "tasks/submit", #"{"taskType":"work","dependsOn":["task-999"]}"#)
            #expect(unknown?["error"]?["code"] == -32602)
            #expect(try await client.call(6, "tasks/get", #"{"taskId":"nope"}"#)?["error"]?["code"] == -32602)
            await agent.close()
            await client.close()
        }
    }

    @Test func partialCapabilityMatchesGoToTheBestMatchWithTheirConfidence() async throws {
        try await withGateway { gateway in
            let narrow = try await gateway.connect()
            _ = try await narrow.call(1, "agents/register", #"{"agentName":"pricer","capabilities":["pricing"],"tools":[{"name":"work","inputSchema":{"type":"object"}}]}"#)
            let broad = try await gateway.connect()
            _ = try await broad.call(1, "agents/register", #"{"agentName":"pricer","capabilities":["pricing","fx"],"tools":[{"name":"work","inputSchema":{"type":"object"}}]}"#)
            let client = try await gateway.connect()
            let strict = try await submit(client, 1, #"{"taskType":"work","requiredCapabilities":["pricing","fx","options"],"maxRetries":0}"#)
            let refused = try await client.call(2, "tasks/result", #"{"taskId":"\#(strict)"}"#)
            #expect(refused?["error"]?["data"]?["state"] == "FAILED")
            let partial = try await submit(client, 3, #"{"taskType":"work","requiredCapabilities":["pricing","fx","options"],"minimumMatch":0.5}"#)
            _ = try await serveOne(broad)
            let status = try await client.call(4, "tasks/result", #"{"taskId":"\#(partial)"}"#)
            #expect(status?["result"] != nil)
            let task = try await client.call(5, "tasks/get", #"{"taskId":"\#(partial)"}"#)
            guard case .array(let attempts)? = task?["result"]?["attempts"], let attempt = attempts.first else {
                Issue.record("the task must list its attempt")
                return
            }
            #expect(attempt["matchConfidence"] == 0.667)
            for connection in [narrow, broad, client] { await connection.close() }
        }
    }

    @Test func aTaskAugmentedToolCallReturnsATaskAtOnce() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await registerWorker(agent)
            let client = try await gateway.connect()
            let created = try await client.call(1, "tools/call", #"{"name":"work","arguments":{"x":1},"task":{"ttl":60000}}"#)
            let taskID = try #require(created?["result"]?["task"]?["taskId"]?.stringValue)
            #expect(created?["result"]?["task"]?["status"] == "working")
            #expect(try await serveOne(agent)?["x"] == 1)
            let result = try await client.call(2, "tasks/result", #"{"taskId":"\#(taskID)"}"#)
            #expect(result?["result"]?["content"] == [["type": "text", "text": "ok"]])
            await agent.close()
            await client.close()
        }
    }
}

import NIOCore
import NIOPosix
import Synchronization

/// A one-shot HTTP receiver: records the body of the POSTs it gets and answers with `status`.
final class CallbackReceiver: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var received = ByteBuffer()
    let bodies: AsyncStream<String>.Continuation
    let status: Int

    init(bodies: AsyncStream<String>.Continuation, status: Int) {
        self.bodies = bodies
        self.status = status
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        received.writeBuffer(&chunk)
        let text = String(buffer: received)
        guard let split = text.range(of: "\r\n\r\n"),
            let lengthLine = text[..<split.lowerBound].split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") }),
            let length = Int(lengthLine.split(separator: ":")[1].trimmingPrefix(" "))
        else { return }
        let body = text[split.upperBound...]
        guard body.utf8.count >= length else { return }
        bodies.yield(String(body))
        context.writeAndFlush(NIOAny(ByteBuffer(string: "HTTP/1.1 \(status) OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")), promise: nil)
        context.close(promise: nil)
    }
}

@Suite("Task callbacks", .timeLimit(.minutes(1)))
struct TaskCallbackTests {
    @Test func aFinishedTaskIsPostedToItsCallback() async throws {
        let (bodies, continuation) = AsyncStream<String>.makeStream()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(CallbackReceiver(bodies: continuation, status: 200))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        // The receiver is on loopback, which egress refuses unless listed.
        try await withGateway(configure: { $0.egress = EgressPolicy(allow: [EgressRule("127.0.0.1")!]) }) { gateway in
            let agent = try await gateway.connect()
            _ = try await agent.call(1, "agents/register", #"{"agentName":"worker","tools":[{"name":"work","inputSchema":{"type":"object"}}]}"#)
            let client = try await gateway.connect()
            let submitted = try await client.call(1, "tasks/submit", #"{"taskType":"work","taskData":{},"callback":"http://127.0.0.1:\#(port)/hooks/task"}"#)
            let taskID = try #require(submitted?["result"]?["taskId"]?.stringValue)
            let call = try #require(try await agent.receive())
            try await agent.send(#"{"jsonrpc":"2.0","id":"\#(call["id"]!.stringValue!)","result":{"content":[{"type":"text","text":"done"}]}}"#)
            var iterator = bodies.makeAsyncIterator()
            let body = try #require(await iterator.next())
            let posted = try RawJSON(validating: body).decoded()
            #expect(posted["taskId"] == .string(taskID))
            #expect(posted["state"] == "COMPLETED")
            #expect(posted["result"]?["content"] == [["type": "text", "text": "done"]])
            await agent.close()
            await client.close()
        }
        try await server.close()
    }
}
