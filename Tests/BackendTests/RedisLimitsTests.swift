import Access
import Backend
import NIOCore
import Redis
import RedisTestSupport
import Synchronization
import Testing

/// Rate limits and quotas shared by replicas through Redis: each "replica" is a `RedisClient`
/// of its own on one real `redis-server`.
@Suite("Limits across replicas: Redis", .serialized, .timeLimit(.minutes(3)))
struct RedisLimitsTests {
    @Test func twoReplicasSharingAKeyAreLetThroughTheRateInTotal() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let replicas = (0..<2).map { _ in RedisClient(configuration: server.configuration, connections: 4) }
        let changes = Mutex<[RedisRateLimiter.AvailabilityChange]>([])
        // Failing closed, so that a decision Redis did not make would show as too few allowed;
        // patient, since the rest of the suite may load the machine heavily meanwhile.
        let limiters = replicas.map { client in
            RedisRateLimiter(
                client: client, whenUnavailable: .refuse, timeout: .seconds(60),
                onAvailabilityChange: { change in changes.withLock { $0.append(change) } })
        }
        // A burst of 0.2 s of the rate absorbs a short stall of the askers on a loaded machine
        // (GCRA keeps no credit beyond the burst, so a longer one would lose allowance).
        let limit = RateLimit(perSecond: 200, burst: 40)
        // Every pooled connection open and the script loaded before the clock starts.
        for limiter in limiters {
            for _ in 0..<8 { _ = await limiter.admit(key: "warm-up", limit: limit) }
        }
        let started = try await Self.serverTime(replicas[0])
        let deadline = ContinuousClock.now + .seconds(2)
        let allowed = await withTaskGroup(of: Int.self) { group in
            for limiter in limiters {
                for _ in 0..<16 {
                    group.addTask {
                        var allowed = 0
                        while ContinuousClock.now < deadline {
                            if await limiter.admit(key: "shared", limit: limit).isAllowed { allowed += 1 }
                        }
                        return allowed
                    }
                }
            }
            return await group.reduce(0, +)
        }
        // The span on the server's clock, the one the script decides by.
        let seconds = try await Self.serverTime(replicas[0]) - started
        for client in replicas { await client.shutdown() }
        // Never more than the limit lets through in total, whatever the replicas (each deciding
        // alone would let through twice as much). How much less depends on the askers keeping up
        // on a loaded machine (GCRA keeps no credit beyond the burst), so closeness to the rate
        // is held by the gateway's interop test, which runs alone; here at least the burst.
        let expected = Double(limit.burst) + limit.perSecond * seconds
        #expect(Double(allowed) <= expected + 1, "allowed \(allowed) in \(seconds) s, at most \(expected)")
        #expect(allowed >= limit.burst, "allowed \(allowed) in \(seconds) s, expected about \(expected)")
        #expect(changes.withLock { $0 }.isEmpty)
    }

    /// The server's clock (TIME), in seconds.
    private static func serverTime(_ client: RedisClient) async throws -> Double {
        let parts = try await client.send(["TIME"]).array?.compactMap { $0.string.flatMap { Double($0) } } ?? []
        guard parts.count == 2 else { throw RedisError(.unexpectedReply, "TIME answered \(parts)") }
        return parts[0] + parts[1] / 1e6
    }

    @Test func aRefusalSaysWhenToRetryAndEveryReplicaSeesTheSameState() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let first = RedisClient(configuration: server.configuration, connections: 1)
        let second = RedisClient(configuration: server.configuration, connections: 1)
        let limiters = [first, second].map { RedisRateLimiter(client: $0, whenUnavailable: .refuse, timeout: .seconds(10)) }
        let limit = RateLimit(perSecond: 0.1, burst: 2)
        let started = try await Self.serverTime(first)
        #expect(await limiters[0].admit(key: "k", limit: limit) == .allowed)
        #expect(await limiters[1].admit(key: "k", limit: limit) == .allowed)
        for limiter in limiters {
            guard case .refused(let retryAfter?) = await limiter.admit(key: "k", limit: limit) else {
                Issue.record("the third request within 10 s was not refused with a retry time")
                continue
            }
            // 10 s (one interval) less the time since the first request (on the server's clock,
            // which the script decides by: a loaded machine may take a while between requests).
            let elapsed = try await Self.serverTime(first) - started
            #expect(retryAfter > 10 - elapsed - 0.01 && retryAfter <= 10, "retry after \(retryAfter) s, \(elapsed) s after the first")
        }
        // The key lives until its TAT (20 s after the first request at most), then Redis drops it.
        let ttl = try await first.send(["PTTL", "switchboard:rate:k"]).integer ?? -3
        let elapsed = try await Self.serverTime(first) - started
        #expect(Double(ttl) > 20_000 - elapsed * 1000 - 10 && ttl <= 20_000, "PTTL \(ttl), \(elapsed) s after the first")
        await first.shutdown()
        await second.shutdown()
    }

    @Test func aCostSpendsThatManyCellsAndOneAboveTheBurstIsRefusedWithoutARetryTime() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 1)
        let limiter = RedisRateLimiter(client: client, whenUnavailable: .refuse, timeout: .seconds(10))
        // Slow enough that no cell comes back between the requests, however loaded the machine.
        let limit = RateLimit(perSecond: 0.1, burst: 10)
        #expect(await limiter.admit(key: "k", limit: limit, cost: 7) == .allowed)
        guard case .refused(let retryAfter?) = await limiter.admit(key: "k", limit: limit, cost: 4) else {
            Issue.record("4 cells more than the 3 left were not refused with a retry time")
            return
        }
        #expect(retryAfter > 9 && retryAfter <= 10, "retry after \(retryAfter) s")
        #expect(await limiter.admit(key: "k", limit: limit, cost: 3) == .allowed)
        #expect(await limiter.admit(key: "other", limit: limit, cost: 11) == .refused(retryAfterSeconds: nil))
        #expect(try await client.send(["EXISTS", "switchboard:rate:other"]).integer == 0)
        await client.shutdown()
    }

    @Test func aRateFinerThanTheServersClockIsStillDecided() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 1)
        let changes = Mutex<[RedisRateLimiter.AvailabilityChange]>([])
        let limiter = RedisRateLimiter(
            client: client, whenUnavailable: .refuse, timeout: .seconds(10),
            onAvailabilityChange: { change in changes.withLock { $0.append(change) } })
        // An interval of 1 ns: below what a µs time in a double resolves.
        for _ in 0..<3 { #expect(await limiter.admit(key: "k", limit: RateLimit(perSecond: 1e9, burst: 1)) == .allowed) }
        #expect(changes.withLock { $0 }.isEmpty)
        await client.shutdown()
    }

    @Test func theKeyPrefixIsTheLimitersOwn() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 1)
        let one = RedisRateLimiter(client: client, keyPrefix: "a:", whenUnavailable: .refuse, timeout: .seconds(10))
        let other = RedisRateLimiter(client: client, keyPrefix: "b:", whenUnavailable: .refuse, timeout: .seconds(10))
        // Keys that live 100 s: still there however slow the machine.
        let limit = RateLimit(perSecond: 0.01, burst: 1)
        #expect(await one.admit(key: "k", limit: limit) == .allowed)
        #expect(await other.admit(key: "k", limit: limit) == .allowed)
        #expect(try await client.send(["EXISTS", "a:k", "b:k"]).integer == 2)
        await client.shutdown()
    }

    @Test func withoutRedisTheLimiterFallsBackAsConfiguredAndSaysSoOnce() async throws {
        let port = try RedisServerProcess.freeLoopbackPort()
        let configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port), connectTimeout: .seconds(1))
        let client = RedisClient(configuration: configuration, connections: 1, backoff: RedisBackoff(maximumAttempts: 1))
        let changes = Mutex<[RedisRateLimiter.AvailabilityChange]>([])
        let limit = RateLimit(perSecond: 0.01, burst: 2)
        let local = RedisRateLimiter(client: client, onAvailabilityChange: { change in changes.withLock { $0.append(change) } })
        #expect(await local.admit(key: "k", limit: limit) == .allowed)
        #expect(await local.admit(key: "k", limit: limit) == .allowed)
        #expect(await !local.admit(key: "k", limit: limit).isAllowed)
        let reported = changes.withLock { $0 }
        #expect(reported.count == 1)
        if case .unavailable = reported.first {} else { Issue.record("expected one unavailability, got \(reported)") }

        let closed = RedisRateLimiter(client: client, whenUnavailable: .refuse, retryInterval: .milliseconds(300))
        #expect(await closed.admit(key: "k", limit: limit) == .refused(retryAfterSeconds: 0.3))
        let open = RedisRateLimiter(client: client, whenUnavailable: .allow)
        for _ in 0..<5 { #expect(await open.admit(key: "k", limit: limit) == .allowed) }
        await client.shutdown()
    }

    @Test func whenRedisComesBackTheLimiterUsesItAgain() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        var configuration = server.configuration
        configuration.connectTimeout = .seconds(1)
        let client = RedisClient(configuration: configuration, connections: 1, backoff: RedisBackoff(maximumAttempts: 1))
        let changes = Mutex<[RedisRateLimiter.AvailabilityChange]>([])
        let limiter = RedisRateLimiter(
            client: client, whenUnavailable: .allow, timeout: .seconds(10), retryInterval: .milliseconds(20),
            onAvailabilityChange: { change in changes.withLock { $0.append(change) } })
        let limit = RateLimit(perSecond: 0.01, burst: 1)
        #expect(await limiter.admit(key: "k", limit: limit) == .allowed)
        server.stop()
        for _ in 0..<3 { #expect(await limiter.admit(key: "k", limit: limit) == .allowed) }
        try await server.start()
        // The restarted server has no data: the key is fresh there; after the retry interval
        // Redis decides again, so the second request is refused.
        try await Task.sleep(for: .milliseconds(50))
        #expect(await limiter.admit(key: "k", limit: limit) == .allowed)
        #expect(await !limiter.admit(key: "k", limit: limit).isAllowed)
        let reported = changes.withLock { $0 }
        #expect(reported.count == 2 && reported.last == .available, "\(reported)")
        await client.shutdown()
    }

    @Test func aQuotaHoldsAcrossReplicas() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let clients = (0..<2).map { _ in RedisClient(configuration: server.configuration, connections: 2) }
        let first = RedisQuotaLedger(client: clients[0], replica: "r1")
        let second = RedisQuotaLedger(client: clients[1], replica: "r2")
        #expect(try await first.acquire(key: "alice/connections", amount: 2, limit: 3) == .granted(held: 2))
        #expect(try await second.acquire(key: "alice/connections", amount: 1, limit: 3) == .granted(held: 3))
        #expect(try await second.acquire(key: "alice/connections", amount: 1, limit: 3) == .refused(held: 3, limit: 3))
        try await first.release(key: "alice/connections", amount: 1)
        #expect(try await second.acquire(key: "alice/connections", amount: 1, limit: 3) == .granted(held: 3))
        #expect(try await first.held(key: "alice/connections") == 3)
        for client in clients { await client.shutdown() }
    }

    @Test func aQuotaCountIsNeverNegativeAndAReleaseMayComeFromAnotherReplica() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 1)
        let first = RedisQuotaLedger(client: client, replica: "r1")
        let second = RedisQuotaLedger(client: client, replica: "r2")
        try await first.release(key: "k", amount: 4)
        #expect(try await first.held(key: "k") == 0)
        #expect(try await first.acquire(key: "k", amount: 2, limit: 5).isGranted)
        #expect(try await second.acquire(key: "k", amount: 1, limit: 5).isGranted)
        // A task queued by r1 that finished on r2: r2's own count first, then r1's.
        try await second.release(key: "k", amount: 2)
        #expect(try await first.held(key: "k") == 1)
        try await second.release(key: "k", amount: 10)
        #expect(try await first.held(key: "k") == 0)
        #expect(try await client.send(["KEYS", "switchboard:quota:*"]).array?.isEmpty == true)
        #expect(try await first.acquire(key: "k", amount: 5, limit: 5) == .granted(held: 5))
        await client.shutdown()
    }

    @Test func aGoneReplicasHoldingsAreGivenBack() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 1)
        let gone = RedisQuotaLedger(client: client, replica: "r1")
        let alive = RedisQuotaLedger(client: client, replica: "r2")
        #expect(try await gone.acquire(key: "a", amount: 2, limit: 3).isGranted)
        #expect(try await gone.acquire(key: "b", amount: 1, limit: 3).isGranted)
        #expect(try await alive.acquire(key: "a", amount: 1, limit: 3).isGranted)
        #expect(try await alive.forget(replica: "r1") == 2)
        #expect(try await alive.held(key: "a") == 1)
        #expect(try await alive.held(key: "b") == 0)
        #expect(try await alive.acquire(key: "a", amount: 2, limit: 3) == .granted(held: 3))
        await client.shutdown()
    }

    @Test func withoutRedisAQuotaOperationThrowsBackendUnavailable() async throws {
        let port = try RedisServerProcess.freeLoopbackPort()
        let configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port), connectTimeout: .seconds(1))
        let client = RedisClient(configuration: configuration, connections: 1, backoff: RedisBackoff(maximumAttempts: 1))
        let ledger = RedisQuotaLedger(client: client, replica: "r1")
        await #expect(throws: BackendUnavailable.self) { try await ledger.acquire(key: "k", amount: 1, limit: 1) }
        await client.shutdown()
    }
}
