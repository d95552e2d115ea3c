import Backend
import NIOCore
import Redis
import RedisTestSupport
import Testing

/// The contract suites against the Redis backends, each case on its own `redis-server` (started
/// on a free loopback port and killed when the case ends), so cases run in parallel and leave
/// nothing behind. Names are still isolated with a prefix, as on a shared server.
///
/// Time for TTLs: `advanceTime(d)` shifts the expiry of every key of the case's store `d`
/// earlier (PEXPIRETIME − d, set back with PEXPIREAT; a time in the past makes Redis delete the
/// key, exactly as if it had expired). No sleeps, and Redis's own expiry does the rest. The
/// server's clock does not move, so an `expiresAt` read after advancing is `d` earlier than the
/// one the write returned; the contract never compares them across an advance. The task board
/// and the replica directory also keep times as sorted-set scores (leases, delayed retries,
/// replicas' expiries): advancing shifts those scores `d` earlier too.
@Suite("Backend contract: Redis", .timeLimit(.minutes(3)))
struct RedisContractTests {
    @Test(arguments: KeyValueStoreContract.cases)
    func keyValueStore(_ contract: ContractCase<KeyValueStoreSubject>) async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 4)
        let keyPrefix = "contract:"
        let store = RedisKeyValueStore(client: client, keyPrefix: keyPrefix)
        let subject = KeyValueStoreSubject(store: store, isolation: "iso/", advanceTime: { duration in
            try await Self.shiftExpiries(client, matching: keyPrefix + "*", by: duration)
        })
        do {
            try await contract.run(subject)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    @Test(arguments: PubSubContract.cases)
    func pubSub(_ contract: ContractCase<PubSubSubject>) async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 4)
        let pubsub = RedisPubSub(client: client, channelPrefix: "sb:")
        do {
            try await contract.run(PubSubSubject(pubsub: pubsub, isolation: "iso."))
        } catch {
            await pubsub.shutdown()
            await client.shutdown()
            throw error
        }
        await pubsub.shutdown()
        await client.shutdown()
    }

    @Test(arguments: TaskBoardContract.cases)
    func taskBoard(_ contract: ContractCase<TaskBoardSubject>) async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 4)
        let keyPrefix = "contract:"
        let board = RedisTaskBoard(client: client, keyPrefix: keyPrefix)
        let subject = TaskBoardSubject(board: board, advanceTime: { duration in
            try await Self.shiftScores(client, of: [keyPrefix + "leases", keyPrefix + "delayed"], by: duration)
            try await Self.shiftExpiries(client, matching: keyPrefix + "*", by: duration)
        })
        do {
            try await contract.run(subject)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    /// Redis restarted without persistence: every key is gone, the task counter too. The next
    /// task must not get the number of one given before (a client polling the old id would read
    /// another task's result).
    @Test func taskNumbersAreNotGivenAgainAfterRedisLosesItsData() async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 1)
        let board = RedisTaskBoard(client: client, keyPrefix: "lost:")
        let subject = TaskBoardSubject(board: board, advanceTime: { _ in })
        do {
            let before = try await subject.submit("q", priority: 5, record: #"{"n":1}"#)
            try await client.evaluate(Self.dropEverythingScript, keys: [], arguments: [])
            let after = try await subject.submit("q", priority: 5, record: #"{"n":2}"#)
            #expect(after.number > before.number)
            #expect(after.id != before.id)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    static let dropEverythingScript = RedisScript("""
        for _, key in ipairs(redis.call('KEYS', '*')) do redis.call('DEL', key) end
        return 0
        """)

    @Test(arguments: ReplicaDirectoryContract.cases)
    func replicaDirectory(_ contract: ContractCase<ReplicaDirectorySubject>) async throws {
        let server = try await RedisServerProcess()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration, connections: 4)
        let keyPrefix = "contract:"
        let directory = RedisReplicaDirectory(client: client, keyPrefix: keyPrefix)
        let subject = ReplicaDirectorySubject(directory: directory, advanceTime: { duration in
            try await Self.shiftScores(client, of: [keyPrefix + "replicas"], by: duration)
            try await Self.shiftExpiries(client, matching: keyPrefix + "*", by: duration)
        })
        do {
            try await contract.run(subject)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    /// Makes `duration` pass for a sorted set scored by time in ms (leases, delayed retries,
    /// replicas' expiries).
    static let shiftScoresScript = RedisScript("""
        local items = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
        for i = 1, #items, 2 do
          redis.call('ZADD', KEYS[1], tonumber(items[i + 1]) - tonumber(ARGV[1]), items[i])
        end
        return #items / 2
        """)

    static func shiftScores(_ client: RedisClient, of keys: [String], by duration: Duration) async throws {
        let (seconds, attoseconds) = duration.components
        let milliseconds = Int(seconds * 1_000 + attoseconds / 1_000_000_000_000_000)
        for key in keys {
            try await client.evaluate(shiftScoresScript, keys: [RedisArgument(key)], arguments: [RedisArgument(milliseconds)])
        }
    }

    /// Makes `duration` pass for every key matching `pattern` that has a TTL.
    static let shiftScript = RedisScript("""
        local at = redis.call('PEXPIRETIME', KEYS[1])
        if at < 0 then return 0 end
        redis.call('PEXPIREAT', KEYS[1], at - tonumber(ARGV[1]))
        return 1
        """)

    static func shiftExpiries(_ client: RedisClient, matching pattern: String, by duration: Duration) async throws {
        let (seconds, attoseconds) = duration.components
        let milliseconds = Int(seconds * 1_000 + attoseconds / 1_000_000_000_000_000)
        var cursor = "0"
        repeat {
            let reply = try await client.send(["SCAN", RedisArgument(cursor), "MATCH", RedisArgument(pattern), "COUNT", 1_000])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                throw RedisError(.unexpectedReply, "SCAN answered \(reply)")
            }
            for key in keys {
                guard case .bulkString(let name) = key else { continue }
                try await client.evaluate(shiftScript, keys: [RedisArgument(name)], arguments: [RedisArgument(milliseconds)])
            }
            cursor = next
        } while cursor != "0"
    }
}
