import NIOCore
import Redis

/// `ReplicaDirectory` on Redis, on the server's clock.
///
/// Layout (for `keyPrefix` P and a replica R):
/// - `P replica:R` — the announcement's payload, expiring with it (PEXPIREAT).
/// - `P replicas` — a sorted set of replicas by expiry (ms), so that `replicas()` finds them
///   without SCAN and drops lapsed members with one ZREMRANGEBYSCORE.
public final class RedisReplicaDirectory: ReplicaDirectory {
    public let client: RedisClient
    public let keyPrefix: String

    public init(client: RedisClient, keyPrefix: String = "switchboard:") {
        self.client = client
        self.keyPrefix = keyPrefix
    }

    // MARK: Scripts

    /// KEYS: the set, the payload key. ARGV: replica, payload, TTL (ms). Answers the expiry (ms).
    static let announceScript = RedisScript("""
        local t = redis.call('TIME')
        local at = math.ceil((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000) + tonumber(ARGV[3])
        redis.call('SET', KEYS[2], ARGV[2], 'PXAT', at)
        redis.call('ZADD', KEYS[1], at, ARGV[1])
        return at
        """)

    /// KEYS: the set, the payload key. ARGV: replica.
    static let withdrawScript = RedisScript("""
        redis.call('ZREM', KEYS[1], ARGV[1])
        return redis.call('DEL', KEYS[2])
        """)

    /// KEYS: the set. ARGV: the payload key prefix. Answers {replica, payload, expiry, ...}.
    static let replicasScript = RedisScript("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
        local out = {}
        for i = 1, #members, 2 do
          local payload = redis.call('GET', ARGV[1] .. members[i])
          if payload then
            out[#out + 1] = members[i]
            out[#out + 1] = payload
            out[#out + 1] = members[i + 1]
          else
            redis.call('ZREM', KEYS[1], members[i])
          end
        end
        return out
        """)

    private var setKey: RedisArgument { RedisArgument(keyPrefix + "replicas") }
    private var payloadPrefix: String { keyPrefix + "replica:" }

    // MARK: ReplicaDirectory

    public func announce(_ replica: String, payload: ByteBuffer, ttl: Duration) async throws {
        let reply = try await run(
            Self.announceScript, keys: [setKey, RedisArgument(payloadPrefix + replica)],
            arguments: [RedisArgument(replica), RedisArgument(payload), RedisArgument(max(1, ttl.millisecondsRoundedUp))])
        guard reply.integer != nil else { throw Self.unexpected("announce", reply) }
    }

    public func withdraw(_ replica: String) async throws {
        _ = try await run(Self.withdrawScript, keys: [setKey, RedisArgument(payloadPrefix + replica)], arguments: [RedisArgument(replica)])
    }

    public func replicas() async throws -> [ReplicaAnnouncement] {
        let reply = try await run(Self.replicasScript, keys: [setKey], arguments: [RedisArgument(payloadPrefix)])
        guard let parts = reply.array, parts.count % 3 == 0 else { throw Self.unexpected("replicas", reply) }
        var announcements: [ReplicaAnnouncement] = []
        for index in stride(from: 0, to: parts.count, by: 3) {
            guard let replica = parts[index].string, case .bulkString(let payload) = parts[index + 1],
                let score = parts[index + 2].string, let at = Int64(score) ?? Double(score).map({ Int64($0) })
            else { throw Self.unexpected("replicas", reply) }
            announcements.append(ReplicaAnnouncement(replica: replica, payload: payload, expiresAt: Timestamp(millisecondsSinceEpoch: at)))
        }
        // By UTF-8 bytes, whatever order the expiries gave.
        return announcements.sorted { ByteString($0.replica) < ByteString($1.replica) }
    }

    // MARK: Sending

    private func run(_ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> RESPReply {
        do {
            return try await client.evaluate(script, keys: keys, arguments: arguments)
        } catch let error as RedisError {
            throw RedisKeyValueStore.translate(error)
        }
    }

    private static func unexpected(_ operation: String, _ reply: RESPReply) -> RedisError {
        RedisError(.unexpectedReply, "\(operation) answered \(reply)")
    }
}
