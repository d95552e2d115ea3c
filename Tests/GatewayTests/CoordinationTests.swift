import FoundationEssentials
import Gateway
import JSONRPC
import NIOCore
import NIOPosix
import Testing

/// Shared memory, publish-subscribe and agent messaging, over real sockets.
@Suite("Coordination over real sockets", .timeLimit(.minutes(2)))
struct CoordinationTests {
    // MARK: Memory

    @Test func aValueComesBackAsItWasSetWithItsVersion() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            let set = try #require(try await client.call(1, "memory/set", #"{"key":"config","value":{"model":"m-1","limits":[1,2.5,null]}}"#)?["result"])
            let version = try #require(set["version"]?.integerValue)
            #expect(version > 0)
            #expect(set["key"] == "config")
            #expect(set["expiresAt"] == nil)

            let got = try await client.call(2, "memory/get", #"{"key":"config"}"#)?["result"]
            #expect(got?["value"] == ["model": "m-1", "limits": [1, 2.5, nil]])
            #expect(got?["version"]?.integerValue == version)
            #expect(got?["found"] == true)
            #expect(got?["expiresAt"] == nil)

            let second = try await client.call(3, "memory/set", #"{"key":"config","value":"v2"}"#)?["result"]?["version"]?.integerValue
            #expect(try #require(second) > version)
            #expect(try await client.call(4, "memory/get", #"{"key":"config"}"#)?["result"]?["value"] == "v2")
            await client.close()
        }
    }

    @Test func aMissingKeyIsReportedNotFound() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            #expect(try await client.call(1, "memory/get", #"{"key":"nope"}"#)?["result"] == ["key": "nope", "found": false])
            #expect(try await client.call(2, "memory/delete", #"{"key":"nope"}"#)?["result"] == ["key": "nope", "deleted": false])
            await client.close()
        }
    }

    @Test func deleteRemovesTheKey() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            _ = try await client.call(1, "memory/set", #"{"key":"k","value":1}"#)
            #expect(try await client.call(2, "memory/delete", #"{"key":"k"}"#)?["result"] == ["key": "k", "deleted": true])
            #expect(try await client.call(3, "memory/get", #"{"key":"k"}"#)?["result"]?["found"] == false)
            await client.close()
        }
    }

    @Test func compareAndSetCreatesOnlyAbsentKeysAndRefusesStaleVersions() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            let created = try #require(try await client.call(1, "memory/cas", #"{"key":"leader","expectedVersion":0,"value":"a"}"#)?["result"])
            #expect(created["ok"] == true)
            let version = try #require(created["version"]?.integerValue)

            let taken = try await client.call(2, "memory/cas", #"{"key":"leader","expectedVersion":0,"value":"b"}"#)?["result"]
            #expect(taken == ["key": "leader", "ok": false, "currentVersion": .integer(version)])

            let updated = try #require(try await client.call(3, "memory/cas", #"{"key":"leader","expectedVersion":\#(version),"value":"c"}"#)?["result"])
            #expect(updated["ok"] == true)
            let newVersion = try #require(updated["version"]?.integerValue)
            #expect(newVersion > version)

            let stale = try await client.call(4, "memory/cas", #"{"key":"leader","expectedVersion":\#(version),"value":"d"}"#)?["result"]
            #expect(stale == ["key": "leader", "ok": false, "currentVersion": .integer(newVersion)])
            #expect(try await client.call(5, "memory/get", #"{"key":"leader"}"#)?["result"]?["value"] == "c")
            await client.close()
        }
    }

    @Test func pipelinedWritesFromOneConnectionApplyInOrder() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            let writes = (1...1_000).map { #"{"jsonrpc":"2.0","id":\#($0),"method":"memory/set","params":{"key":"seq","value":\#($0)}}"# }
            try await client.send(writes.joined(separator: "\n"))
            var versions: [Int64: Int64] = [:]
            for _ in 1...1_000 {
                let reply = try #require(try await client.receive())
                versions[try #require(reply["id"]?.integerValue)] = reply["result"]?["version"]?.integerValue
            }
            let ordered = (1...1_000).compactMap { versions[Int64($0)] }
            #expect(ordered == ordered.sorted() && Set(ordered).count == 1_000, "each later write got a later version")
            #expect(try await client.call(1_001, "memory/get", #"{"key":"seq"}"#)?["result"]?["value"] == 1_000)
            await client.close()
        }
    }

    @Test func namespacesKeepTenantsApart() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            _ = try await client.call(1, "memory/set", #"{"key":"secret","value":"a's","namespace":"tenant-a"}"#)
            #expect(try await client.call(2, "memory/get", #"{"key":"secret","namespace":"tenant-b"}"#)?["result"]?["found"] == false)
            #expect(try await client.call(3, "memory/get", #"{"key":"secret"}"#)?["result"]?["found"] == false, "the default namespace is its own")
            #expect(try await client.call(4, "memory/list", #"{"namespace":"tenant-b"}"#)?["result"]?["keys"] == [])
            #expect(try await client.call(5, "memory/delete", #"{"key":"secret","namespace":"tenant-b"}"#)?["result"]?["deleted"] == false)
            #expect(try await client.call(6, "memory/get", #"{"key":"secret","namespace":"tenant-a"}"#)?["result"]?["value"] == "a's")
            await client.close()
        }
    }

    @Test func anAgentsDefaultNamespaceIsItsOwn() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await agent.call(1, "agents/register", #"{"agentName":"planner"}"#)
            _ = try await agent.call(2, "memory/set", #"{"key":"plan","value":[1,2]}"#)
            let client = try await gateway.connect()
            #expect(try await client.call(1, "memory/get", #"{"key":"plan"}"#)?["result"]?["found"] == false)
            #expect(try await client.call(2, "memory/get", #"{"key":"plan","namespace":"agent:planner"}"#)?["result"]?["value"] == [1, 2])
            await agent.close()
            await client.close()
        }
    }

    @Test func aTimeToLiveGivesTheKeyAnExpiryTime() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            let before = Date()
            let set = try #require(try await client.call(1, "memory/set", #"{"key":"session","value":true,"ttlSeconds":120}"#)?["result"])
            let after = Date()
            let expiresAt = try #require(set["expiresAt"]?.stringValue)
            // Same format on both sides, so the strings order as the instants do (seconds precision).
            let earliest = before.addingTimeInterval(119).formatted(.iso8601)
            let latest = after.addingTimeInterval(121).formatted(.iso8601)
            #expect(expiresAt.hasSuffix("Z") && expiresAt.count == "2026-01-01T00:00:00.000Z".count)
            #expect(String(expiresAt.prefix(19)) >= String(earliest.prefix(19)) && String(expiresAt.prefix(19)) <= String(latest.prefix(19)))
            #expect(try await client.call(2, "memory/get", #"{"key":"session"}"#)?["result"]?["expiresAt"]?.stringValue == expiresAt)
            let listed = try await client.call(3, "memory/list", #"{"prefix":"sess"}"#)?["result"]?["keys"]
            #expect(listed == [["key": "session", "version": set["version"]!, "expiresAt": .string(expiresAt)]])
            await client.close()
        }
    }

    @Test func listPagesThroughTheKeysWithAPrefixInOrder() async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            for (index, key) in ["task.3", "task.1", "other", "task.2", "task.10"].enumerated() {
                _ = try await client.call(index, "memory/set", #"{"key":"\#(key)","value":0}"#)
            }
            let first = try #require(try await client.call(10, "memory/list", #"{"prefix":"task.","limit":3}"#)?["result"])
            #expect(first["keys"]?.arrayKeys == ["task.1", "task.10", "task.2"])
            let cursor = try #require(first["nextCursor"]?.stringValue)
            let second = try #require(try await client.call(11, "memory/list", #"{"prefix":"task.","limit":3,"cursor":"\#(cursor)"}"#)?["result"])
            #expect(second["keys"]?.arrayKeys == ["task.3"])
            #expect(second["nextCursor"] == nil)
            await client.close()
        }
    }

    @Test(arguments: [
        ("memory/get", #"{}"#),
        ("memory/get", #"{"key":""}"#),
        ("memory/get", #"{"key":7}"#),
        ("memory/get", #"["key"]"#),
        ("memory/set", #"{"key":"k"}"#),
        ("memory/set", #"{"key":"k","value":1,"ttlSeconds":0}"#),
        ("memory/set", #"{"key":"k","value":1,"ttlSeconds":"60"}"#),
        ("memory/set", #"{"key":"k","value":1,"namespace":"has space"}"#),
        ("memory/set", #"{"key":"k","value":1,"namespace":""}"#),
        ("memory/cas", #"{"key":"k","value":1}"#),
        ("memory/cas", #"{"key":"k","value":1,"expectedVersion":-1}"#),
        ("memory/cas", #"{"key":"k","value":1,"expectedVersion":1.5}"#),
        ("memory/list", #"{"limit":1001}"#),
        ("memory/list", #"{"limit":0}"#),
        ("memory/list", #"{"cursor":5}"#),
        ("memory/delete", #"{"namespace":"a"}"#),
        ("events/subscribe", #"{}"#),
        ("events/subscribe", #"{"topic":"a","pattern":"b.*"}"#),
        ("events/subscribe", #"{"topic":"market.*"}"#),
        ("events/subscribe", #"{"pattern":"[unclosed"}"#),
        ("events/subscribe", #"{"topic":"a","queueLimit":0}"#),
        ("events/unsubscribe", #"{}"#),
        ("events/publish", #"{"data":1}"#),
        ("events/publish", #"{"topic":"with space","data":1}"#),
        ("events/publish", #"{"topic":"market.*","data":1}"#),
        ("messages/send", #"{"messageData":{}}"#),
        ("messages/send", #"{"targetAgentId":"a","capability":"b","messageData":{}}"#),
        ("messages/send", #"{"targetAgentId":"a"}"#),
        ("messages/send", #"{"targetAgentId":"a","messageData":{},"messageType":"response"}"#),
        ("messages/send", #"{"targetAgentId":"a","messageData":{},"messageType":5}"#),
        ("messages/send", #"{"capability":"b","messageData":{},"messageType":"broadcast","expectResponse":true}"#),
        ("messages/send", #"{"targetAgentId":"a","messageData":{},"ttl":0}"#),
        ("messages/send", #"{"targetAgentId":"a","messageData":{},"priority":11}"#),
        ("messages/send", #"{"targetAgentId":"nobody-by-that-name","messageData":{}}"#),
    ])
    func invalidParamsAreRefusedWithAReason(_ method: String, _ params: String) async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            let reply = try await client.call(1, method, params)
            #expect(reply?["error"]?["code"] == -32602)
            #expect(reply?["error"]?["data"]?["reason"]?.stringValue?.isEmpty == false)
            await client.close()
        }
    }

    // MARK: Events

    @Test func aSubscriberReceivesWhatAnotherConnectionPublishes() async throws {
        try await withGateway { gateway in
            let subscriber = try await gateway.connect()
            let id = try #require(try await subscriber.call(1, "events/subscribe", #"{"topic":"orders.created"}"#)?["result"]?["subscriptionId"]?.stringValue)
            let publisher = try await gateway.connect()
            let published = try await publisher.call(1, "events/publish", #"{"topic":"orders.created","data":{"order":17}}"#)
            #expect(published?["result"] == ["topic": "orders.created", "delivered": 1])

            let event = try #require(try await subscriber.receive())
            #expect(event["method"] == "notifications/events/message")
            #expect(event["id"] == nil)
            #expect(event["params"]?["subscriptionId"]?.stringValue == id)
            #expect(event["params"]?["topic"] == "orders.created")
            #expect(event["params"]?["data"] == ["order": 17])
            #expect(event["params"]?["publishedAt"]?.stringValue?.hasSuffix("Z") == true)
            #expect(event["params"]?["publisher"] == nil, "a client publishes anonymously")
            #expect(event["params"]?["dropped"] == nil)
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test func aPatternSubscriptionReceivesOnlyTheTopicsItMatches() async throws {
        try await withGateway { gateway in
            let subscriber = try await gateway.connect()
            _ = try await subscriber.call(1, "events/subscribe", #"{"pattern":"market.*"}"#)
            let publisher = try await gateway.connect()
            for (index, topic) in ["markets.btc", "market.btc", "stock.market", "market.btc.usd"].enumerated() {
                let delivered = try await publisher.call(index, "events/publish", #"{"topic":"\#(topic)","data":\#(index)}"#)?["result"]?["delivered"]
                #expect(delivered == (topic.hasPrefix("market.") ? 1 : 0), "\(topic)")
            }
            #expect(try await subscriber.receive()?["params"]?["topic"] == "market.btc")
            #expect(try await subscriber.receive()?["params"]?["topic"] == "market.btc.usd")
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test func agentsReceiveEventsAndArePublishersByName() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            let agentID = try #require(try await agent.call(1, "agents/register", #"{"agentName":"watcher"}"#)?["result"]?["agentId"]?.stringValue)
            _ = try await agent.call(2, "events/subscribe", #"{"topic":"alerts"}"#)
            let client = try await gateway.connect()
            _ = try await client.call(1, "events/subscribe", #"{"topic":"reports"}"#)

            _ = try await client.call(2, "events/publish", #"{"topic":"alerts","data":"cpu high"}"#)
            #expect(try await agent.receive()?["params"]?["data"] == "cpu high")

            try await agent.send(#"{"jsonrpc":"2.0","id":3,"method":"events/publish","params":{"topic":"reports","data":"handled"}}"#)
            let event = try #require(try await client.receive())
            #expect(event["params"]?["publisher"]?.stringValue == agentID)
            #expect(event["params"]?["data"] == "handled")
            #expect(try await agent.receive()?["result"]?["delivered"] == 1)
            await agent.close()
            await client.close()
        }
    }

    @Test func unsubscribeStopsDeliveryAndOnlyTheSubscriberCanUnsubscribe() async throws {
        try await withGateway { gateway in
            let subscriber = try await gateway.connect()
            let id = try #require(try await subscriber.call(1, "events/subscribe", #"{"topic":"t"}"#)?["result"]?["subscriptionId"]?.stringValue)
            let other = try await gateway.connect()
            #expect(try await other.call(1, "events/unsubscribe", #"{"subscriptionId":"\#(id)"}"#)?["result"] == ["unsubscribed": false])
            #expect(try await other.call(2, "events/publish", #"{"topic":"t","data":1}"#)?["result"]?["delivered"] == 1)
            #expect(try await subscriber.receive()?["params"]?["data"] == 1)

            let ended = try await subscriber.call(2, "events/unsubscribe", #"{"subscriptionId":"\#(id)"}"#)?["result"]
            #expect(ended?["unsubscribed"] == true)
            #expect(ended?["delivered"] == 1)
            #expect(try await other.call(3, "events/publish", #"{"topic":"t","data":2}"#)?["result"]?["delivered"] == 0)
            #expect(try await subscriber.call(3, "events/unsubscribe", #"{"subscriptionId":"\#(id)"}"#)?["result"]?["unsubscribed"] == false)
            // Nothing was queued for the subscriber in between: the next line is this reply.
            #expect(try await subscriber.call(4, "ping")?["id"] == 4)
            await subscriber.close()
            await other.close()
        }
    }

    @Test func subscriptionsEndWhenTheirConnectionCloses() async throws {
        try await withGateway { gateway in
            let subscriber = try await gateway.connect()
            _ = try await subscriber.call(1, "events/subscribe", #"{"topic":"gone"}"#)
            _ = try await subscriber.call(2, "events/subscribe", #"{"pattern":"go*"}"#)
            let publisher = try await gateway.connect()
            #expect(try await publisher.call(1, "events/publish", #"{"topic":"gone","data":0}"#)?["result"]?["delivered"] == 2)
            await subscriber.close()
            // The gateway learns of the close asynchronously; ask until it has (a deadline, not a
            // count of tries: a loaded machine may take seconds).
            var delivered: JSONValue?
            var attempt = 2
            let deadline = ContinuousClock.now + .seconds(60)
            repeat {
                delivered = try await publisher.call(attempt, "events/publish", #"{"topic":"gone","data":0}"#)?["result"]?["delivered"]
                if delivered == 0 { break }
                attempt += 1
                try await Task.sleep(for: .milliseconds(10))
            } while ContinuousClock.now < deadline
            #expect(delivered == 0)
            await publisher.close()
        }
    }

    @Test func aSlowSubscriberLosesOnlyItsOwnOldestEventsAndSlowsNobody() async throws {
        try await withGateway { gateway in
            // More than the kernel can buffer toward the slow reader (its send buffer at most), so
            // that the rest must wait in the gateway, where the bounded queue drops the oldest.
            let eventBytes = 32 * 1024
            let count = (Self.largestSocketSendBuffer() + 2 << 20) / eventBytes
            let padding = String(repeating: "x", count: eventBytes)
            let slow = try await gateway.connect()
            _ = try await slow.call(1, "events/subscribe", #"{"topic":"feed","queueLimit":8}"#)
            // Stop reading and keep the kernel's buffer small: the gateway's writes now back up.
            try await slow.channel.setOption(ChannelOptions.socketOption(.so_rcvbuf), value: 16 * 1024).get()
            try await slow.channel.setOption(ChannelOptions.autoRead, value: false).get()
            let fast = try await gateway.connect()
            _ = try await fast.call(1, "events/subscribe", #"{"topic":"feed"}"#)

            let publisher = try await gateway.connect()
            for sequence in 0..<count {
                let reply = try await publisher.call(sequence, "events/publish", #"{"topic":"feed","data":{"seq":\#(sequence),"pad":"\#(padding)"}}"#)
                #expect(reply?["result"]?["delivered"] == 2, "every publish is answered at once, the slow subscriber notwithstanding")
            }

            for sequence in 0..<count {
                let event = try #require(try await fast.receive())
                #expect(event["params"]?["data"]?["seq"]?.integerValue == Int64(sequence))
                #expect(event["params"]?["dropped"] == nil)
            }

            try await slow.channel.setOption(ChannelOptions.autoRead, value: true).get()
            var received: [Int64] = []
            var dropped: Int64 = 0
            while received.last != Int64(count - 1) {
                let event = try #require(try await slow.receive())
                received.append(try #require(event["params"]?["data"]?["seq"]?.integerValue))
                dropped = event["params"]?["dropped"]?.integerValue ?? 0
            }
            #expect(dropped > 0, "the slow subscriber's queue overflowed")
            #expect(Int64(received.count) + dropped == Int64(count), "every event was either delivered or counted as dropped")
            #expect(received == received.sorted(), "what arrives keeps its order")
            await slow.close()
            await fast.close()
            await publisher.close()
        }
    }

    // MARK: Messages

    @Test func aRequestToAnAgentByIdReturnsTheAgentsAnswer() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            let agentID = try #require(try await agent.call(1, "agents/register", #"{"agentName":"analyst"}"#)?["result"]?["agentId"]?.stringValue)
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":"m1","method":"messages/send","params":{"targetAgentId":"\#(agentID)","messageType":"request","messageData":{"question":"risk?"},"expectResponse":true,"priority":2}}"#)

            let delivery = try #require(try await agent.receive())
            #expect(delivery["method"] == "messages/deliver")
            let deliveryID = try #require(delivery["id"]?.stringValue)
            #expect(deliveryID.hasPrefix("sb-"))
            let messageID = try #require(delivery["params"]?["messageId"]?.stringValue)
            #expect(delivery["params"]?["from"]?.stringValue?.hasPrefix("client:") == true)
            #expect(delivery["params"]?["messageType"] == "request")
            #expect(delivery["params"]?["messageData"] == ["question": "risk?"])
            #expect(delivery["params"]?["priority"] == 2)

            try await agent.send(#"{"jsonrpc":"2.0","id":"\#(deliveryID)","result":{"answer":"low"}}"#)
            let answer = try await client.receive()
            #expect(answer?["id"] == "m1")
            #expect(answer?["result"] == ["messageId": .string(messageID), "agentId": .string(agentID), "response": ["answer": "low"]])
            await agent.close()
            await client.close()
        }
    }

    @Test func anAgentsErrorAnswerReachesTheSender() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            _ = try await agent.call(1, "agents/register", #"{"agentName":"grumpy"}"#)
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":1,"method":"messages/send","params":{"targetAgentId":"grumpy","messageData":null,"expectResponse":true}}"#)
            let deliveryID = try #require(try await agent.receive()?["id"]?.stringValue)
            try await agent.send(#"{"jsonrpc":"2.0","id":"\#(deliveryID)","error":{"code":-32601,"message":"Method not found","data":{"method":"messages/deliver"}}}"#)
            let reply = try await client.receive()
            #expect(reply?["error"]?["code"] == -32601)
            #expect(reply?["error"]?["data"]?["method"] == "messages/deliver")
            await agent.close()
            await client.close()
        }
    }

    @Test func aFireAndForgetMessageByCapabilityReachesOneAgent() async throws {
        try await withGateway { gateway in
            let agents = try await registerAgents(["scorer-a", "scorer-b"], capability: "scoring", in: gateway)
            let client = try await gateway.connect()
            let reply = try await client.call(1, "messages/send", #"{"capability":"scoring","messageType":"notification","messageData":{"n":1},"expectResponse":false}"#)
            #expect(reply?["result"]?["delivered"] == 1)
            let messageID = try #require(reply?["result"]?["messageId"]?.stringValue)
            // One of the two got it; probing both with a ping shows which.
            var notified = 0
            for (index, agent) in agents.enumerated() {
                try await agent.send(#"{"jsonrpc":"2.0","id":"probe-\#(index)","method":"ping"}"#)
                let first = try #require(try await agent.receive())
                if first["method"] == "notifications/messages/message" {
                    notified += 1
                    #expect(first["params"]?["messageId"]?.stringValue == messageID)
                    #expect(first["params"]?["messageType"] == "notification")
                    #expect(first["params"]?["messageData"] == ["n": 1])
                    #expect(try await agent.receive()?["id"]?.stringValue == "probe-\(index)")
                } else {
                    #expect(first["id"]?.stringValue == "probe-\(index)")
                }
            }
            #expect(notified == 1)
            for agent in agents { await agent.close() }
            await client.close()
        }
    }

    @Test func aBroadcastReachesEveryAgentWithTheCapability() async throws {
        try await withGateway { gateway in
            let agents = try await registerAgents(["relay-a", "relay-b", "relay-c"], capability: "relay", in: gateway)
            let bystander = try await gateway.connect()
            _ = try await bystander.call(1, "agents/register", #"{"agentName":"bystander","capabilities":["other"]}"#)
            let client = try await gateway.connect()
            let reply = try await client.call(1, "messages/send", #"{"capability":"relay","messageType":"broadcast","messageData":"all hands"}"#)
            #expect(reply?["result"]?["delivered"] == 3)
            for agent in agents {
                let message = try await agent.receive()
                #expect(message?["method"] == "notifications/messages/message")
                #expect(message?["params"]?["messageType"] == "broadcast")
                #expect(message?["params"]?["messageData"] == "all hands")
            }
            #expect(try await bystander.call(2, "ping")?["id"] == 2, "the bystander got nothing before this reply")
            for agent in agents { await agent.close() }
            await bystander.close()
            await client.close()
        }
    }

    @Test func aMessageToAnOfflineAgentFailsWithNoAgentAvailable() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            let agentID = try #require(try await agent.call(1, "agents/register", #"{"agentName":"sleeper","capabilities":["naps"]}"#)?["result"]?["agentId"]?.stringValue)
            await agent.close()
            let client = try await gateway.connect()
            try await waitUntilOffline(agentID, client)

            let byID = try await client.call(1, "messages/send", #"{"targetAgentId":"\#(agentID)","messageData":{},"expectResponse":true}"#)
            #expect(byID?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.noAgentAvailable)))
            #expect(byID?["error"]?["data"]?["agent"]?.stringValue == agentID)
            #expect(byID?["error"]?["data"]?["reason"]?.stringValue?.isEmpty == false)
            let byCapability = try await client.call(2, "messages/send", #"{"capability":"naps","messageType":"notification","messageData":{}}"#)
            #expect(byCapability?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.noAgentAvailable)))
            #expect(byCapability?["error"]?["data"]?["capability"] == "naps")
            await client.close()
        }
    }

    @Test func aRequestNobodyAnswersEndsWhenItsTTLRunsOut() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            let agentID = try #require(try await agent.call(1, "agents/register", #"{"agentName":"mute"}"#)?["result"]?["agentId"]?.stringValue)
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":9,"method":"messages/send","params":{"targetAgentId":"mute","messageData":{},"expectResponse":true,"ttl":0.3}}"#)
            let deliveryID = try #require(try await agent.receive()?["id"]?.stringValue)

            let reply = try await client.receive()
            #expect(reply?["id"] == 9)
            #expect(reply?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.callTimedOut)))
            #expect(reply?["error"]?["data"]?["agent"]?.stringValue == agentID)
            #expect(reply?["error"]?["data"]?["timeoutSeconds"] == 0.3)
            let cancelled = try await agent.receive()
            #expect(cancelled?["method"] == "notifications/cancelled")
            #expect(cancelled?["params"]?["requestId"]?.stringValue == deliveryID)
            await agent.close()
            await client.close()
        }
    }

    @Test func aRequestWhoseAgentDisconnectsFailsWithAgentFailed() async throws {
        try await withGateway { gateway in
            let agent = try await gateway.connect()
            let agentID = try #require(try await agent.call(1, "agents/register", #"{"agentName":"flaky"}"#)?["result"]?["agentId"]?.stringValue)
            let client = try await gateway.connect()
            try await client.send(#"{"jsonrpc":"2.0","id":5,"method":"messages/send","params":{"targetAgentId":"\#(agentID)","messageData":{},"expectResponse":true}}"#)
            #expect(try await agent.receive()?["method"] == "messages/deliver")
            await agent.close()
            let reply = try await client.receive()
            #expect(reply?["error"]?["code"] == .integer(Int64(JSONRPCError.Code.agentFailed)))
            #expect(reply?["error"]?["data"]?["agent"]?.stringValue == agentID)
            await client.close()
        }
    }

    // MARK: Helpers

    /// The most a TCP socket buffers for sending on this machine (Linux: `tcp_wmem`'s maximum).
    private static func largestSocketSendBuffer() -> Int {
        let fallback = 16 << 20
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: "/proc/sys/net/ipv4/tcp_wmem")),
            let maximum = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isWhitespace).last.flatMap({ Int($0) })
        else { return fallback }
        return maximum
    }

    private func registerAgents(_ names: [String], capability: String, in gateway: RunningGateway) async throws -> [LineClient] {
        var agents: [LineClient] = []
        for name in names {
            let agent = try await gateway.connect()
            let reply = try await agent.call(1, "agents/register", #"{"agentName":"\#(name)","capabilities":["\#(capability)"]}"#)
            #expect(reply?["result"]?["agentId"] != nil)
            agents.append(agent)
        }
        return agents
    }

    /// The gateway learns of a closed connection asynchronously; ask until it has (within a
    /// deadline that a loaded machine does not reach).
    private func waitUntilOffline(_ agentID: String, _ client: LineClient) async throws {
        var attempt = 1000
        let deadline = ContinuousClock.now + .seconds(60)
        repeat {
            let state = try await client.call(attempt, "agents/get", #"{"agentId":"\#(agentID)"}"#)?["result"]?["currentState"]
            if state == "OFFLINE" { return }
            attempt += 1
            try await Task.sleep(for: .milliseconds(10))
        } while ContinuousClock.now < deadline
        Issue.record("agent \(agentID) never went offline")
    }
}

extension JSONValue {
    fileprivate var arrayKeys: [String]? {
        guard case .array(let items) = self else { return nil }
        return items.compactMap { $0["key"]?.stringValue }
    }
}
