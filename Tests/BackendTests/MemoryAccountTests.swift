import Backend
import NIOCore
import Redis
import RedisTestSupport
import Testing

/// A tenant's memory usage, kept by the store with each write, delete and expiry, and its
/// quotas refused in the same step: the embedded store and Redis.
@Suite("Memory accounts", .timeLimit(.minutes(2)))
struct MemoryAccountTests {
    private static let account = MemoryAccount(owner: "acme", maximumKeys: 3, maximumBytes: 40)

    /// The same story on either store; `expire` makes the TTL'd key gone.
    private static func exercise(_ store: some AccountedKeyValueStore, expire: () async throws -> Void) async throws {
        let account = Self.account
        func value(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
        // Two keys: "a" + 5 bytes, "b" + 5 bytes.
        _ = try await store.set("a", to: value("12345"), ttl: nil, namespace: "acme*n", account: account)
        _ = try await store.set("b", to: value("12345"), ttl: nil, namespace: "acme*n", account: account)
        #expect(try await store.usage(of: "acme") == MemoryUsage(keys: 2, bytes: 12))
        // Overwriting changes bytes, not keys.
        _ = try await store.set("a", to: value("1234567890"), ttl: nil, namespace: "acme*n", account: account)
        #expect(try await store.usage(of: "acme") == MemoryUsage(keys: 2, bytes: 17))
        // A third key with a TTL, then a fourth is refused (keys).
        _ = try await store.set("c", to: value("x"), ttl: .seconds(3600), namespace: "acme*m", account: account)
        #expect(try await store.usage(of: "acme") == MemoryUsage(keys: 3, bytes: 19))
        await #expect(throws: MemoryQuotaExceeded(owner: "acme", resource: .keys, limit: 3, held: 3)) {
            try await store.set("d", to: value("x"), ttl: nil, namespace: "acme*n", account: account)
        }
        // Growing a key past the bytes is refused; shrinking is not.
        await #expect(throws: MemoryQuotaExceeded(owner: "acme", resource: .bytes, limit: 40, held: 19)) {
            try await store.set("b", to: value(String(repeating: "y", count: 30)), ttl: nil, namespace: "acme*n", account: account)
        }
        #expect(try await store.compareAndSet("b", expectedVersion: 0, to: value("z"), ttl: nil, namespace: "acme*n", account: account)
            .isConflict)
        // Another owner is counted apart.
        _ = try await store.set("d", to: value("x"), ttl: nil, namespace: "globex*n", account: MemoryAccount(owner: "globex", maximumKeys: 1))
        #expect(try await store.usage(of: "globex") == MemoryUsage(keys: 1, bytes: 2))
        // The TTL'd key expires: given back.
        try await expire()
        #expect(try await store.usage(of: "acme") == MemoryUsage(keys: 2, bytes: 17))
        // A delete gives back; the room is there again.
        #expect(try await store.delete("a", namespace: "acme*n", account: account))
        #expect(try await store.usage(of: "acme") == MemoryUsage(keys: 1, bytes: 6))
        guard case .stored = try await store.compareAndSet("d", expectedVersion: 0, to: value("new"), ttl: nil, namespace: "acme*n", account: account)
        else {
            Issue.record("a new key within the quota was not stored")
            return
        }
        #expect(try await store.usage(of: "acme") == MemoryUsage(keys: 2, bytes: 10))
    }

    @Test func theEmbeddedStoreKeepsAnOwnersUsageAndRefusesPastIt() async throws {
        let clock = ManualClock()
        let store = InMemoryKeyValueStore(clock: clock)
        try await Self.exercise(store) {
            clock.advance(by: .seconds(3601))
            store.sweepExpired()
        }
    }

    @Test func redisKeepsAnOwnersUsageAndRefusesPastIt() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 2)
        let store = RedisKeyValueStore(client: client, keyPrefix: "quota-test:")
        do {
            try await Self.exercise(store) {
                // The hour passes: the key's expiry, and the one the account keeps, become now
                // (Redis then deletes the key itself; its usage is given back at the next
                // accounted operation or usage read, once the key is gone).
                let dataKey = "quota-test:kv:6:{acme*m}:c"
                _ = try await client.send(["PEXPIRE", RedisArgument(dataKey), "1"])
                _ = try await client.send(["ZADD", "quota-test:mexp:4:{acme}", "0", RedisArgument(dataKey)])
                let deadline = ContinuousClock.now + .seconds(10)
                while try await client.send(["EXISTS", RedisArgument(dataKey)]).integer == 1, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }
}

extension CompareAndSetOutcome {
    fileprivate var isConflict: Bool {
        if case .conflict = self { return true }
        return false
    }
}
