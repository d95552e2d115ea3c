import Gateway
import JSONRPC
import NIOCore
import Testing
import Transport

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Bounds on what a peer may make the gateway hold: connections, their silence, half-sent
/// lines, and the size of a batch. Real sockets, short timeouts.
@Suite("Input bounds")
struct InputBoundsTests {
    @Test func aPeerOverItsConnectionCapGetsOneErrorAndIsClosedWhileItsOthersAreServed() async throws {
        try await withGateway(configure: { $0.limits.maximumConnectionsPerPeer = 3 }) { gateway in
            var admitted: [LineClient] = []
            for _ in 0..<3 {
                let client = try await gateway.connect()
                // A round trip: the connection is counted before the next one arrives.
                #expect(try await client.call(1, "ping")?["result"] == [:])
                admitted.append(client)
            }
            let refused = try await gateway.connect()
            let error = try #require(try await refused.receive()?["error"])
            #expect(error["code"] == -32006)
            #expect(error["data"]?["limit"] == 3)
            #expect(error["data"]?["scope"] == "peer")
            #expect(error["data"]?["reason"] != nil)
            #expect(try await refused.receive() == nil)
            for client in admitted { #expect(try await client.call(2, "ping")?["result"] == [:]) }

            // A closed connection frees its place.
            await admitted.removeFirst().close()
            try await eventually { try await gateway.connect().call(3, "ping")?["result"] == [:] }
            for client in admitted { await client.close() }
        }
    }

    @Test func aListenerOverItsCapRefusesWithTheListenerScope() async throws {
        try await withGateway(configure: { $0.limits.maximumConnectionsPerListener = 2 }) { gateway in
            let first = try await gateway.connect()
            let second = try await gateway.connect()
            #expect(try await first.call(1, "ping")?["result"] == [:])
            #expect(try await second.call(1, "ping")?["result"] == [:])
            let refused = try await gateway.connect()
            let error = try #require(try await refused.receive()?["error"])
            #expect(error["code"] == -32006)
            #expect(error["data"]?["scope"] == "listener")
            #expect(error["data"]?["limit"] == 2)
            await first.close()
            await second.close()
        }
    }

    @Test func aBatchOverTheLimitIsRefusedWholeAndNothingOfItRuns() async throws {
        try await withGateway(configure: { $0.limits.maximumBatchSize = 3 }) { gateway in
            let client = try await gateway.connect()
            let entries = (1...4).map { #"{"jsonrpc":"2.0","id":\#($0),"method":"memory/set","params":{"key":"k\#($0)","value":1}}"# }
            try await client.send("[" + entries.joined(separator: ",") + "]")
            let reply = try #require(try await client.receive())
            #expect(reply["id"] == .null)
            #expect(reply["error"]?["code"] == -32600)
            #expect(reply["error"]?["data"]?["limit"] == 3)
            #expect(reply["error"]?["data"]?["size"] == 4)
            // Nothing ran, and the connection is still served.
            let got = try await client.call(9, "memory/get", #"{"key":"k1"}"#)
            #expect(got?["result"]?["found"] == false)
            // A batch at the limit runs.
            try await client.send("[" + entries.prefix(3).joined(separator: ",") + "]")
            guard case .array(let replies)? = try await client.receive() else {
                Issue.record("no batch reply")
                return
            }
            #expect(replies.count == 3)
            await client.close()
        }
    }

    @Test func anIdleConnectionIsClosedAndOneWithASubscriptionOrARequestInFlightIsKept() async throws {
        let held = HeldCalls()
        try await withGateway(
            // Long enough that a loaded machine gets the first ping through before it.
            configure: { $0.limits.connectionTimeouts = ConnectionTimeouts(idle: .seconds(2), partialLine: nil, firstMessage: nil) },
            extraMethods: { held.register(in: &$0) }
        ) { gateway in
            let idle = try await gateway.connect()
            #expect(try await idle.call(1, "ping")?["result"] == [:])
            let subscribed = try await gateway.connect()
            #expect(try await subscribed.call(1, "events/subscribe", #"{"topic":"news"}"#)?["result"]?["subscriptionId"] != nil)
            let waiting = try await gateway.connect()
            try await waiting.send(#"{"jsonrpc":"2.0","id":1,"method":"test/hold"}"#)
            await held.waitForHeld(1)

            // The idle one is closed by the gateway: its stream ends.
            #expect(try await idle.receive() == nil)
            try await Task.sleep(for: .milliseconds(700))
            #expect(try await subscribed.call(2, "ping")?["result"] == [:])
            held.releaseAll()
            #expect(try await waiting.receive()?["result"] == ["released": true])
            #expect(try await waiting.receive() == nil)
            await subscribed.close()
        }
    }

    @Test func aHalfSentLineIsClosedAfterThePartialLineTimeout() async throws {
        try await withGateway(configure: {
            $0.limits.connectionTimeouts = ConnectionTimeouts(idle: nil, partialLine: .milliseconds(300), firstMessage: nil)
        }) { gateway in
            let client = try await gateway.connect()
            let started = ContinuousClock.now
            try await client.sendRaw(ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"#))
            #expect(try await client.receive() == nil)
            #expect(ContinuousClock.now - started >= .milliseconds(300))
        }
    }

    @Test func statusReportsTheBounds() async throws {
        try await withGateway(configure: { $0.limits.maximumBatchSize = 7 }) { gateway in
            let client = try await gateway.connect()
            let limits = try #require(try await client.call(1, "gateway/status")?["result"]?["limits"])
            #expect(limits["maxBatchSize"] == 7)
            #expect(limits["maxConnectionsPerPeer"] == 1000)
            #expect(limits["maxConnectionsPerListener"] == 10000)
            #expect(limits["idleTimeoutSeconds"] == 300)
            #expect(limits["partialLineTimeoutSeconds"] == 30)
            #expect(limits["firstMessageTimeoutSeconds"] == 10)
            await client.close()
        }
    }
}

/// Retries `check` until it holds (a closed connection is released on its event loop, shortly
/// after the peer sees the close).
private func eventually(_ check: () async throws -> Bool) async throws {
    for _ in 0..<50 {
        if (try? await check()) == true { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("the condition never held")
}
