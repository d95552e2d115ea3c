import Access
import NIOCore
import Redis

/// A `QuotaLedger` shared by every replica through Redis; each operation is one Lua script, so
/// the check against the limit and the count are one atomic step on the server.
///
/// A key's count is kept per replica, so that the holdings of a replica that died (its
/// connections, subscriptions, agent instances) can be given back with `forget(replica:)`
/// instead of staying counted for ever. The limit applies to the sum over replicas. A release
/// takes from this replica's share first, then from the others' (a task queued by one replica
/// may finish on another).
///
/// Layout (for `keyPrefix` P, a key K and a replica R):
/// - `P held:K` — a hash, replica → count, with only counts above 0.
/// - `P replica:R` — a set of the `held:` keys in which R has a count.
///
/// `release` and `forget` touch keys they are not given in KEYS (other replicas' sets, the
/// hashes a replica's set names): right on one server or under Sentinel, not on a Cluster.
///
/// Unlike `RedisRateLimiter` there is no local fallback: a count decided apart from Redis could
/// not be given back to it. When Redis cannot be reached, operations throw `BackendUnavailable`
/// and the caller chooses to refuse or to allow.
public final class RedisQuotaLedger: QuotaLedger {
    public static let defaultKeyPrefix = "switchboard:quota:"

    public let client: RedisClient
    public let replica: String
    public let keyPrefix: String

    /// - Parameter replica: this replica's id, as it announces itself.
    public init(client: RedisClient, replica: String, keyPrefix: String = RedisQuotaLedger.defaultKeyPrefix) {
        self.client = client
        self.replica = replica
        self.keyPrefix = keyPrefix
    }

    // MARK: Scripts

    /// KEYS: the held hash, this replica's set. ARGV: replica, amount, limit.
    /// Answers {1, count after} when counted, {0, count} when the limit would be passed.
    static let acquireScript = RedisScript("""
        local held = 0
        for _, n in ipairs(redis.call('HVALS', KEYS[1])) do held = held + tonumber(n) end
        local amount, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
        if held + amount > limit then return {0, held} end
        if amount > 0 then
          redis.call('HINCRBY', KEYS[1], ARGV[1], amount)
          redis.call('SADD', KEYS[2], KEYS[1])
        end
        return {1, held + amount}
        """)

    /// KEYS: the held hash, this replica's set. ARGV: replica, amount, the replica-set prefix.
    /// Takes from this replica's count, then from the others', never below 0; a count that
    /// reaches 0 is deleted with its set membership. Answers the amount that found nothing to take.
    static let releaseScript = RedisScript("""
        local amount = tonumber(ARGV[2])
        local function take(replica, set)
          local n = tonumber(redis.call('HGET', KEYS[1], replica) or '0')
          local t = math.min(n, amount)
          if t <= 0 then return end
          if t == n then
            redis.call('HDEL', KEYS[1], replica)
            redis.call('SREM', set, KEYS[1])
          else
            redis.call('HINCRBY', KEYS[1], replica, -t)
          end
          amount = amount - t
        end
        take(ARGV[1], KEYS[2])
        if amount > 0 then
          for _, other in ipairs(redis.call('HKEYS', KEYS[1])) do
            if amount <= 0 then break end
            take(other, ARGV[3] .. other)
          end
        end
        return amount
        """)

    /// KEYS: the replica's set. ARGV: replica. Answers how many keys it held counts in.
    static let forgetScript = RedisScript("""
        local keys = redis.call('SMEMBERS', KEYS[1])
        for _, k in ipairs(keys) do redis.call('HDEL', k, ARGV[1]) end
        redis.call('DEL', KEYS[1])
        return #keys
        """)

    private func heldKey(_ key: String) -> RedisArgument { RedisArgument(keyPrefix + "held:" + key) }
    private var replicaSetPrefix: String { keyPrefix + "replica:" }
    private func replicaSet(_ replica: String) -> RedisArgument { RedisArgument(replicaSetPrefix + replica) }

    // MARK: QuotaLedger

    /// A negative `amount` counts as 0. Never answers `ledgerFull`: Redis's memory is the bound.
    public func acquire(key: String, amount: Int, limit: Int) async throws -> QuotaDecision {
        let reply = try await run(
            Self.acquireScript, keys: [heldKey(key), replicaSet(replica)],
            arguments: [RedisArgument(replica), RedisArgument(max(amount, 0)), RedisArgument(limit)])
        guard let fields = reply.array, fields.count == 2, let counted = fields[0].integer, let held = fields[1].integer else {
            throw RedisError(.unexpectedReply, "the quota acquire script answered \(reply)")
        }
        return counted == 1 ? .granted(held: Int(held)) : .refused(held: Int(held), limit: limit)
    }

    /// A negative `amount` counts as 0.
    public func release(key: String, amount: Int) async throws {
        guard amount > 0 else { return }
        _ = try await run(
            Self.releaseScript, keys: [heldKey(key), replicaSet(replica)],
            arguments: [RedisArgument(replica), RedisArgument(amount), RedisArgument(replicaSetPrefix)])
    }

    public func held(key: String) async throws -> Int {
        let reply: RESPReply
        do {
            reply = try await client.send(["HVALS", heldKey(key)])
        } catch let error as RedisError {
            throw RedisKeyValueStore.translate(error)
        }
        guard let counts = reply.array else { throw RedisError(.unexpectedReply, "HVALS answered \(reply)") }
        return counts.reduce(0) { $0 + ($1.string.flatMap { Int($0) } ?? 0) }
    }

    /// Gives back everything `replica` holds, on every key: for a replica that is gone (its
    /// announcement lapsed), or for this one as it starts, since a restarted replica holds
    /// nothing. Answers how many keys it held counts in.
    @discardableResult
    public func forget(replica: String) async throws -> Int {
        let reply = try await run(Self.forgetScript, keys: [replicaSet(replica)], arguments: [RedisArgument(replica)])
        guard let count = reply.integer else { throw RedisError(.unexpectedReply, "the quota forget script answered \(reply)") }
        return Int(count)
    }

    private func run(_ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> RESPReply {
        do {
            return try await client.evaluate(script, keys: keys, arguments: arguments)
        } catch let error as RedisError {
            throw RedisKeyValueStore.translate(error)
        }
    }
}
