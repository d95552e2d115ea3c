import Gateway
import JSONRPC
import NIOCore
import NIOPosix
import Testing
import Transport

@Suite("Gateway over real sockets", .timeLimit(.minutes(2)))
struct GatewayServerTests {
    @Test func answersOverTCPAndUnixSockets() async throws {
        let path = "/tmp/switchboard-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        try await withGateway(configure: { $0.listen.append(.unix(path: path)) }) { gateway in
            let tcp = try await gateway.connect()
            #expect(try await tcp.call(1, "ping") == ["jsonrpc": "2.0", "id": 1, "result": [:]])
            let unixPath = try #require(gateway.unixPath)
            #expect(unixPath == path)
            let unix = try await LineClient.connect(unixPath: unixPath)
            let status = try await unix.call(2, "gateway/status")
            #expect(status?["result"]?["connections"]?["open"] == 2)
            #expect(status?["result"]?["listeners"] == .array(gateway.urls.map(JSONValue.string)))
            await tcp.close()
            await unix.close()
        }
    }

    @Test func servesThousandsOfConcurrentConnections() async throws {
        // All from 127.0.0.1: over the default per-peer cap of 1000.
        try await withGateway(configure: { $0.limits.maximumConnectionsPerPeer = 4_000 }) { gateway in
            let count = 2_000
            let clients = try await withThrowingTaskGroup(of: LineClient.self) { group in
                for _ in 0..<count { group.addTask { try await gateway.connect() } }
                var clients: [LineClient] = []
                for try await client in group { clients.append(client) }
                return clients
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        let reply = try await client.call(index + 1, "ping")
                        #expect(reply?["id"]?.integerValue == Int64(index + 1))
                        #expect(reply?["result"] == [:])
                    }
                }
                try await group.waitForAll()
            }
            // Every connection has been answered, so every one has been accepted.
            let status = try await clients[0].call(0, "gateway/status")
            #expect(status?["result"]?["connections"]?["open"]?.integerValue == Int64(count))
            for client in clients { await client.close() }
        }
    }

    @Test func pathologicalInputOnOneConnectionLeavesTheOthersServed() async throws {
        // 64 MiB without a newline takes a while on a loaded machine: the timeouts of unfinished
        // lines (tested on their own) are off here.
        try await withGateway(configure: { $0.limits.connectionTimeouts = ConnectionTimeouts(idle: nil, partialLine: nil, firstMessage: nil) }) { gateway in
            let attacker = try await gateway.connect()
            let bystander = try await gateway.connect()
            let megabyte = ByteBuffer(repeating: UInt8(ascii: "a"), count: 1 << 20)
            for round in 0..<64 {
                try await attacker.sendRaw(megabyte)
                if round % 16 == 0 {
                    #expect(try await bystander.call(round, "ping")?["result"] == [:])
                }
            }
            // The line is answered once it ends; it had no id to read, so the error's id is null.
            try await attacker.sendRaw(ByteBuffer(string: "\n"))
            let tooLarge = try await attacker.receive()
            #expect(tooLarge?["error"]?["code"] == -32003)
            #expect(tooLarge?["error"]?["data"]?["limit"] == 8_388_608)
            #expect(tooLarge?["error"]?["data"]?["size"] == 67_108_864)
            #expect(tooLarge?["id"] == .null)
            // The connection then works again.
            #expect(try await attacker.call(100, "ping")?["result"] == [:])

            try await attacker.send(String(repeating: "[", count: 200_000))
            #expect(try await attacker.receive()?["error"]?["code"] == -32700)
            try await attacker.sendRaw(ByteBuffer(bytes: [0x7B, 0xFF, 0x00, 0x0A]))
            #expect(try await attacker.receive()?["error"]?["code"] == -32700)
            #expect(try await bystander.call(101, "ping")?["result"] == [:])
            #expect(try await attacker.call(102, "ping")?["result"] == [:])
            await attacker.close()
            await bystander.close()
        }
    }

    @Test func answersRequestsOutOfOrderWhenEarlierOnesTakeLonger() async throws {
        let held = HeldCalls()
        try await withGateway(extraMethods: { held.register(in: &$0) }) { gateway in
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":"slow","method":"test/hold"}"#)
            await held.waitForHeld(1)
            #expect(try await client.call(2, "ping")?["id"] == 2)
            held.releaseOne(["value": 42])
            let slow = try await client.receive()
            #expect(slow == ["jsonrpc": "2.0", "id": "slow", "result": ["value": 42]])
            await client.close()
        }
    }

    @Test func aBatchIsAnsweredOnceItsSlowestEntryCompletes() async throws {
        let held = HeldCalls()
        try await withGateway(extraMethods: { held.register(in: &$0) }) { gateway in
            let client = try await gateway.connect()
            try await client.send(#"[{"jsonrpc":"2.0","id":1,"method":"test/hold"},{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","method":"ping"}]"#)
            await held.waitForHeld(1)
            held.releaseOne()
            guard case .array(let replies)? = try await client.receive() else {
                Issue.record("a batch reply must be an array")
                return
            }
            #expect(Set(replies.compactMap { $0["id"]?.integerValue }) == [1, 2])
            await client.close()
        }
    }

    @Test func aBatchWhoseEntriesFailAtOnceIsAnsweredExactlyOnce() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            try await client.send(#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#)
            guard case .array(let replies)? = try await client.receive() else {
                Issue.record("a batch reply must be an array")
                return
            }
            #expect(replies.count == 2)
            // The next message must be the probe's reply, not a second copy of the batch.
            #expect(try await client.call(3, "ping")?["id"] == 3)
            await client.close()
        }
    }

    @Test func drainingRefusesNewRequestsAndLetsInFlightOnesFinish() async throws {
        let held = HeldCalls()
        var port = 0
        // A grace period no loaded machine outlasts: the held call must finish inside it.
        try await withGateway(configure: { $0.limits.shutdownGrace = .seconds(300) }, extraMethods: { held.register(in: &$0) }) { gateway in
            port = gateway.tcpPort
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":1,"method":"test/hold"}"#)
            await held.waitForHeld(1)
            await gateway.serviceGroup.triggerGracefulShutdown()
            // Wait until the drain has begun: new requests are refused with -32004.
            var refused: JSONValue?
            for id in 2..<10_000 {
                let reply = try await client.call(id, "ping")
                if reply?["error"] != nil {
                    refused = reply
                    break
                }
            }
            #expect(refused?["error"]?["code"] == -32004)
            held.releaseOne(["finished": true])
            #expect(try await client.receive()?["result"] == ["finished": true])
            // After the drain the gateway closes the connection.
            #expect(try await client.receive() == nil)
        }
        await #expect(throws: (any Error).self) { try await LineClient.connect(port: port) }
    }

    @Test func answersWhatWasSentBeforeThePeerHalfCloses() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            try await client.finishWriting()
            #expect(try await client.receive()?["id"] == 1)
            #expect(try await client.receive() == nil)
        }
    }

    @Test func keepalivePingsHandshakePeersAndDropsSilentOnes() async throws {
        try await withGateway(configure: {
            $0.keepalive.interval = .milliseconds(50)
            $0.keepalive.timeout = .seconds(10)
        }) { gateway in
            let client = try await gateway.connect()
            #expect(try await client.call(1, "initialize", #"{"protocolVersion":"2025-06-18"}"#)?["result"]?["protocolVersion"] == "2025-06-18")
            try await client.send(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            let ping = try #require(try await client.receive())
            #expect(ping["method"] == "ping")
            let id = try #require(ping["id"]?.stringValue)
            #expect(id.hasPrefix("sb-"))
            try await client.send(#"{"jsonrpc":"2.0","id":"\#(id)","result":{}}"#)
            // Answer nothing from now on: the gateway pings again, then gives up on us.
            var pingsAfter = 0
            while let message = try await client.receive() {
                #expect(message["method"] == "ping")
                pingsAfter += 1
            }
            #expect(pingsAfter >= 1)
        }
    }

    @Test func aPeerThatDoesNotReadStallsOnlyItself() async throws {
        try await withGateway { gateway in
            let stalled = try await gateway.connect()
            // Stop reading, with a small kernel buffer: the gateway's replies back up toward us
            // and it must stop reading our requests rather than queue replies without bound.
            try await stalled.channel.setOption(ChannelOptions.socketOption(.so_rcvbuf), value: 16 * 1024).get()
            try await stalled.channel.setOption(ChannelOptions.autoRead, value: false).get()
            let other = try await gateway.connect()
            let request = ByteBuffer(string: String(repeating: #"{"jsonrpc":"2.0","id":1,"method":"gateway/status"}"# + "\n", count: 1_000))
            // Write far more requests than the socket buffers hold, never reading a reply.
            let writer = Task {
                for _ in 0..<200 { try await stalled.sendRaw(request) }
            }
            for id in 0..<50 {
                #expect(try await other.call(id, "ping")?["result"] == [:])
            }
            writer.cancel()
            await stalled.close()
            _ = await writer.result
            await other.close()
        }
    }
}
