import NIOCore
import Redis
import RedisTestSupport
import Testing

@Suite("Redis client, pub-sub and scripts against a real server")
struct RedisClientTests {
    @Test func poolReconnectsAfterServerRestart() async throws {
        let server = try await RedisServerProcess()
        let client = RedisClient(configuration: server.configuration, connections: 2)
        for _ in 0..<4 { #expect(try await client.send(["PING"]) == .status("PONG")) }
        server.stop()
        try await server.start()
        // A command written just before the old connection noticed the restart may fail;
        // every connection is replaced on its next use.
        var successes = 0
        for _ in 0..<6 {
            if (try? await client.send(["PING"])) == .status("PONG") { successes += 1 }
        }
        #expect(successes >= 4)
        #expect(try await client.send(["SET", "after", "restart"]) == .status("OK"))
        await client.shutdown()
    }

    @Test func subscriberReceivesMessagesAndResubscribesAfterRestart() async throws {
        let server = try await RedisServerProcess()
        let subscriber = RedisSubscriber(configuration: server.configuration)
        let publisher = RedisClient(configuration: server.configuration, connections: 1)
        try await subscriber.subscribe(["news"])
        try await subscriber.psubscribe(["alerts.*"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await subscriber.run() }
            var events = subscriber.events.makeAsyncIterator()
            var messages = subscriber.messages.makeAsyncIterator()
            #expect(await events.next() == .subscribed)

            #expect(try await publisher.send(["PUBLISH", "news", "hello"]) == .integer(1))
            let first = await messages.next()
            #expect(first?.channel == "news" && first.map { String(buffer: $0.payload) } == "hello")
            try await publisher.send(["PUBLISH", "alerts.fire", "hot"])
            let second = await messages.next()
            #expect(second?.pattern == "alerts.*" && second?.channel == "alerts.fire")

            server.stop()
            guard case .disconnected = await events.next() else { Issue.record("expected a disconnect"); return }
            try await server.start()
            #expect(await events.next() == .subscribed)
            var delivered: Int64 = 0
            for _ in 0..<3 where delivered == 0 {
                delivered = (try? await publisher.send(["PUBLISH", "news", "again"]))?.integer ?? 0
            }
            #expect(delivered == 1)
            #expect(await messages.next().map { String(buffer: $0.payload) } == "again")
            group.cancelAll()
        }
        await publisher.shutdown()
    }

    @Test func scriptIsCalledBySHAAndReloadedAfterFlush() async throws {
        let server = try await RedisServerProcess()
        let client = RedisClient(configuration: server.configuration, connections: 1)
        let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        #expect(try await client.evaluate(script, keys: ["n"], arguments: ["2"]) == .integer(2))
        #expect(try await client.evaluate(script, keys: ["n"], arguments: ["3"]) == .integer(5))
        try await client.send(["SCRIPT", "FLUSH"])
        #expect(try await client.evaluate(script, keys: ["n"], arguments: ["1"]) == .integer(6))
        await client.shutdown()
    }
}
