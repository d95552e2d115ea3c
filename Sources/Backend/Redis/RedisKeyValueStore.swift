import NIOCore
import Redis

/// `KeyValueStore` on Redis. Every operation that reads-then-writes is one Lua script run by
/// EVALSHA, so it is atomic on the server.
///
/// Layout (for `keyPrefix` P, a namespace N of n UTF-8 bytes and a key K):
/// - `P kv:n:{N}:K` — a hash `{v: value, ver: version}`, with the key's TTL as its PEXPIREAT.
///   The length n makes the (namespace, key) → Redis key mapping injective whatever bytes N and
///   K hold; `{N}` is a cluster hash tag so a namespace's keys share one slot.
/// - `P idx:n:{N}` — a sorted set of the namespace's key names, all with score 0, so that
///   ZRANGEBYLEX gives them in byte order: `list` pages with a lexicographic cursor in
///   O(log n + page). SCAN MATCH would return keys in no order and need a full scan per page.
///   Members of expired keys are removed lazily by `list` when it meets them.
/// - `P version` — one counter INCRed by every write, so a version never repeats for a key,
///   even across a delete or an expiry.
///
/// Expiry times are computed by the server (`TIME` + TTL, rounded up to the millisecond) and
/// read back with PEXPIRETIME (Redis 7), so `expiresAt` is the server's wall clock.
public final class RedisKeyValueStore: AccountedKeyValueStore {
    public let client: RedisClient
    public let keyPrefix: String

    public init(client: RedisClient, keyPrefix: String = "switchboard:") {
        self.client = client
        self.keyPrefix = keyPrefix
    }

    // MARK: Scripts

    /// Stores ARGV[1] under KEYS[1] with a new version; ARGV[2] is the TTL in ms, or -1 for none;
    /// ARGV[3] is the key's name for the index KEYS[2]; KEYS[3] is the version counter.
    /// Leaves `ver` and `at` (expiry in ms, -1 for none) set.
    private static let writeFragment = """
        local ver = redis.call('INCR', KEYS[3])
        redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ver', ver)
        local at = -1
        local ttl = tonumber(ARGV[2])
        if ttl >= 0 then
          local t = redis.call('TIME')
          at = math.ceil((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000) + ttl
          redis.call('PEXPIREAT', KEYS[1], at)
        else
          redis.call('PERSIST', KEYS[1])
        end
        redis.call('ZADD', KEYS[2], 0, ARGV[3])
        """

    static let setScript = RedisScript(writeFragment + "\nreturn {ver, at}\n")

    /// ARGV[4] is the expected version (0: the key must not exist).
    static let compareAndSetScript = RedisScript("""
        local cur = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
        if cur ~= tonumber(ARGV[4]) then return {0, cur} end
        \(writeFragment)
        return {1, ver, at}
        """)

    static let getScript = RedisScript("""
        local r = redis.call('HMGET', KEYS[1], 'v', 'ver')
        if not r[1] then return false end
        return {r[1], r[2], redis.call('PEXPIRETIME', KEYS[1])}
        """)

    static let deleteScript = RedisScript("""
        redis.call('ZREM', KEYS[2], ARGV[1])
        return redis.call('DEL', KEYS[1])
        """)

    /// KEYS[1]: the index. ARGV: data-key prefix, key prefix, ZRANGEBYLEX lower bound, limit.
    /// Returns {more, name, version, expiry, name, version, expiry, ...}. Reads data keys that
    /// are not in KEYS (built from the prefix): fine on one server, not on a cluster unless the
    /// namespace's hash tag keeps them in the index's slot (it does, by the layout above).
    static let listScript = RedisScript("""
        local dataPrefix, prefix, bound, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
        local out = {0}
        local found = 0
        while true do
          local batch = redis.call('ZRANGEBYLEX', KEYS[1], bound, '+', 'LIMIT', 0, 128)
          if #batch == 0 then return out end
          for _, name in ipairs(batch) do
            if string.sub(name, 1, #prefix) ~= prefix then return out end
            local ver = redis.call('HGET', dataPrefix .. name, 'ver')
            if not ver then
              redis.call('ZREM', KEYS[1], name)
            else
              if found == limit then out[1] = 1 return out end
              found = found + 1
              out[#out + 1] = name
              out[#out + 1] = ver
              out[#out + 1] = redis.call('PEXPIRETIME', dataPrefix .. name)
            end
          end
          bound = '(' .. batch[#batch]
        end
        """)

    // MARK: Keys

    private func namespaceTag(_ namespace: String) -> String {
        "\(namespace.utf8.count):{\(namespace)}"
    }

    private func dataPrefix(_ namespace: String) -> String { keyPrefix + "kv:" + namespaceTag(namespace) + ":" }
    private func indexKey(_ namespace: String) -> String { keyPrefix + "idx:" + namespaceTag(namespace) }
    private var counterKey: String { keyPrefix + "version" }

    private func writeKeys(_ key: String, _ namespace: String) -> [RedisArgument] {
        [RedisArgument(dataPrefix(namespace) + key), RedisArgument(indexKey(namespace)), RedisArgument(counterKey)]
    }

    /// TTL in whole milliseconds rounded up, as `Timestamp.advanced(by:)` does; -1 for none.
    private static func milliseconds(_ ttl: Duration?) -> Int {
        guard let ttl else { return -1 }
        let (seconds, attoseconds) = ttl.components
        return max(0, Int(seconds * 1_000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
    }

    private static func expiry(_ milliseconds: Int64) -> Timestamp? {
        milliseconds < 0 ? nil : Timestamp(millisecondsSinceEpoch: milliseconds)
    }

    // MARK: KeyValueStore

    public func get(_ key: String, namespace: String) async throws -> KeyValueEntry? {
        let reply = try await run(Self.getScript, keys: [RedisArgument(dataPrefix(namespace) + key)], arguments: [])
        if reply.isNull { return nil }
        guard let fields = reply.array, fields.count == 3, case .bulkString(let value) = fields[0],
            let version = fields[1].string.flatMap({ Int64($0) }), let at = fields[2].integer
        else { throw Self.unexpected("get", reply) }
        return KeyValueEntry(key: key, value: value, version: version, expiresAt: Self.expiry(at))
    }

    public func set(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String) async throws -> KeyValueWrite {
        let reply = try await run(
            Self.setScript, keys: writeKeys(key, namespace),
            arguments: [RedisArgument(value), RedisArgument(Self.milliseconds(ttl)), RedisArgument(key)])
        guard let fields = reply.array, fields.count == 2, let version = fields[0].integer, let at = fields[1].integer else {
            throw Self.unexpected("set", reply)
        }
        return KeyValueWrite(version: version, expiresAt: Self.expiry(at))
    }

    public func delete(_ key: String, namespace: String) async throws -> Bool {
        let reply = try await run(
            Self.deleteScript, keys: [RedisArgument(dataPrefix(namespace) + key), RedisArgument(indexKey(namespace))],
            arguments: [RedisArgument(key)])
        guard let removed = reply.integer else { throw Self.unexpected("delete", reply) }
        return removed > 0
    }

    public func compareAndSet(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String
    ) async throws -> CompareAndSetOutcome {
        let reply = try await run(
            Self.compareAndSetScript, keys: writeKeys(key, namespace),
            arguments: [
                RedisArgument(value), RedisArgument(Self.milliseconds(ttl)), RedisArgument(key),
                RedisArgument(String(expectedVersion)),
            ])
        guard let fields = reply.array, let stored = fields.first?.integer else { throw Self.unexpected("compareAndSet", reply) }
        if stored == 0, fields.count == 2, let current = fields[1].integer {
            return .conflict(currentVersion: current)
        }
        guard fields.count == 3, let version = fields[1].integer, let at = fields[2].integer else {
            throw Self.unexpected("compareAndSet", reply)
        }
        return .stored(KeyValueWrite(version: version, expiresAt: Self.expiry(at)))
    }

    public func list(namespace: String, prefix: String, after cursor: String?, limit: Int) async throws -> KeyValuePage {
        precondition(limit > 0, "a page holds at least one key")
        // The lower bound: after the cursor if it is within or past the prefix's range, else
        // from the prefix (byte order, as ZRANGEBYLEX compares).
        let bound: String
        if let cursor, !(ByteString(cursor) < ByteString(prefix)) {
            bound = "(" + cursor
        } else {
            bound = prefix.isEmpty ? "-" : "[" + prefix
        }
        let reply = try await run(
            Self.listScript, keys: [RedisArgument(indexKey(namespace))],
            arguments: [RedisArgument(dataPrefix(namespace)), RedisArgument(prefix), RedisArgument(bound), RedisArgument(limit)])
        guard let fields = reply.array, let more = fields.first?.integer, (fields.count - 1) % 3 == 0 else {
            throw Self.unexpected("list", reply)
        }
        var entries: [KeyValueListing] = []
        entries.reserveCapacity((fields.count - 1) / 3)
        var index = 1
        while index < fields.count {
            guard let name = fields[index].string, let version = fields[index + 1].string.flatMap({ Int64($0) }),
                let at = fields[index + 2].integer
            else { throw Self.unexpected("list", reply) }
            entries.append(KeyValueListing(key: name, version: version, expiresAt: Self.expiry(at)))
            index += 3
        }
        return KeyValuePage(entries: entries, nextCursor: more == 1 ? entries.last?.key : nil)
    }

    // MARK: AccountedKeyValueStore
    //
    // An owner's usage: `P musage:{O}` — a hash {keys, bytes}; keys written with a TTL are also
    // in `P mexp:{O}` (a sorted set of data keys by expiry, ms) with their size in `P msize:{O}`,
    // so that a key Redis expired is given back at the owner's next accounted operation. Each
    // operation is one script: the usage, the check and the write move together.

    /// Gives back what expired of an owner whose usage hash, expiry set and size hash are
    /// KEYS[usage], KEYS[expiring], KEYS[sizes]; leaves `nowms` set.
    private static func reclaim(usage: Int, expiring: Int, sizes: Int) -> String {
        """
        local t = redis.call('TIME')
        local nowms = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
        for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[\(expiring)], '-inf', nowms)) do
          if redis.call('EXISTS', k) == 0 then
            local sz = tonumber(redis.call('HGET', KEYS[\(sizes)], k) or '0')
            redis.call('HINCRBY', KEYS[\(usage)], 'keys', -1)
            redis.call('HINCRBY', KEYS[\(usage)], 'bytes', -sz)
          end
          redis.call('ZREM', KEYS[\(expiring)], k)
          redis.call('HDEL', KEYS[\(sizes)], k)
        end
        """
    }

    /// For writes: KEYS[1..3] as for a plain write, then the owner's usage, expiry set and size hash.
    private static let reclaimFragment = reclaim(usage: 4, expiring: 5, sizes: 6)

    /// After `reclaimFragment`. ARGV: value, TTL ms (-1: none), key name, maximum keys (-1:
    /// none), maximum bytes (-1: none). Refused: {-1, 0 for keys or 1 for bytes, held}. Leaves
    /// `ver` and `at` set.
    private static let accountedWriteBody = """
        local existed = redis.call('EXISTS', KEYS[1]) == 1
        local old = 0
        if existed then old = redis.call('HSTRLEN', KEYS[1], 'v') + #ARGV[3] end
        local new = #ARGV[1] + #ARGV[3]
        local keys = tonumber(redis.call('HGET', KEYS[4], 'keys') or '0')
        local bytes = tonumber(redis.call('HGET', KEYS[4], 'bytes') or '0')
        local maxKeys, maxBytes = tonumber(ARGV[4]), tonumber(ARGV[5])
        if not existed and maxKeys >= 0 and keys + 1 > maxKeys then return {-1, 0, keys} end
        if new > old and maxBytes >= 0 and bytes - old + new > maxBytes then return {-1, 1, bytes} end
        \(writeFragment)
        if not existed then redis.call('HINCRBY', KEYS[4], 'keys', 1) end
        redis.call('HINCRBY', KEYS[4], 'bytes', new - old)
        if at >= 0 then
          redis.call('ZADD', KEYS[5], at, KEYS[1])
          redis.call('HSET', KEYS[6], KEYS[1], new)
        else
          redis.call('ZREM', KEYS[5], KEYS[1])
          redis.call('HDEL', KEYS[6], KEYS[1])
        end
        """

    static let accountedSetScript = RedisScript([reclaimFragment, accountedWriteBody, "return {1, ver, at}"].joined(separator: "\n"))

    /// ARGV[6] is the expected version (0: the key must not exist).
    static let accountedCompareAndSetScript = RedisScript(
        [
            reclaimFragment,
            "local cur = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')",
            "if cur ~= tonumber(ARGV[6]) then return {0, cur} end",
            accountedWriteBody, "return {1, ver, at}",
        ].joined(separator: "\n"))

    /// KEYS: data key, index, the owner's usage, expiry set and size hash. ARGV[1]: key name.
    static let accountedDeleteScript = RedisScript(reclaim(usage: 3, expiring: 4, sizes: 5) + "\n" + """
        if redis.call('EXISTS', KEYS[1]) == 1 then
          redis.call('HINCRBY', KEYS[3], 'keys', -1)
          redis.call('HINCRBY', KEYS[3], 'bytes', -(redis.call('HSTRLEN', KEYS[1], 'v') + #ARGV[1]))
          redis.call('ZREM', KEYS[4], KEYS[1])
          redis.call('HDEL', KEYS[5], KEYS[1])
        end
        redis.call('ZREM', KEYS[2], ARGV[1])
        return redis.call('DEL', KEYS[1])
        """)

    /// KEYS: the owner's usage, expiry set and size hash. Answers {keys, bytes}.
    static let usageScript = RedisScript(reclaim(usage: 1, expiring: 2, sizes: 3) + "\n" + """
        return {tonumber(redis.call('HGET', KEYS[1], 'keys') or '0'), tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')}
        """)

    private func accountKeys(_ owner: String) -> [RedisArgument] {
        let tag = "\(owner.utf8.count):{\(owner)}"
        return [RedisArgument(keyPrefix + "musage:" + tag), RedisArgument(keyPrefix + "mexp:" + tag), RedisArgument(keyPrefix + "msize:" + tag)]
    }

    private static func limits(_ account: MemoryAccount) -> [RedisArgument] {
        [RedisArgument(account.maximumKeys ?? -1), RedisArgument(account.maximumBytes ?? -1)]
    }

    private static func refusal(_ fields: [RESPReply], _ account: MemoryAccount) -> MemoryQuotaExceeded? {
        guard fields.count == 3, fields[0].integer == -1, let which = fields[1].integer, let held = fields[2].integer else { return nil }
        let resource: MemoryQuotaExceeded.Resource = which == 0 ? .keys : .bytes
        let limit = (resource == .keys ? account.maximumKeys : account.maximumBytes) ?? 0
        return MemoryQuotaExceeded(owner: account.owner, resource: resource, limit: limit, held: Int(held))
    }

    public func set(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String, account: MemoryAccount) async throws -> KeyValueWrite {
        let reply = try await run(
            Self.accountedSetScript, keys: writeKeys(key, namespace) + accountKeys(account.owner),
            arguments: [RedisArgument(value), RedisArgument(Self.milliseconds(ttl)), RedisArgument(key)] + Self.limits(account))
        guard let fields = reply.array else { throw Self.unexpected("set", reply) }
        if let refusal = Self.refusal(fields, account) { throw refusal }
        guard fields.count == 3, fields[0].integer == 1, let version = fields[1].integer, let at = fields[2].integer else {
            throw Self.unexpected("set", reply)
        }
        return KeyValueWrite(version: version, expiresAt: Self.expiry(at))
    }

    public func compareAndSet(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String, account: MemoryAccount
    ) async throws -> CompareAndSetOutcome {
        let reply = try await run(
            Self.accountedCompareAndSetScript, keys: writeKeys(key, namespace) + accountKeys(account.owner),
            arguments: [RedisArgument(value), RedisArgument(Self.milliseconds(ttl)), RedisArgument(key)] + Self.limits(account)
                + [RedisArgument(String(expectedVersion))])
        guard let fields = reply.array, let stored = fields.first?.integer else { throw Self.unexpected("compareAndSet", reply) }
        if let refusal = Self.refusal(fields, account) { throw refusal }
        if stored == 0, fields.count == 2, let current = fields[1].integer {
            return .conflict(currentVersion: current)
        }
        guard fields.count == 3, let version = fields[1].integer, let at = fields[2].integer else {
            throw Self.unexpected("compareAndSet", reply)
        }
        return .stored(KeyValueWrite(version: version, expiresAt: Self.expiry(at)))
    }

    public func delete(_ key: String, namespace: String, account: MemoryAccount) async throws -> Bool {
        let reply = try await run(
            Self.accountedDeleteScript,
            keys: [RedisArgument(dataPrefix(namespace) + key), RedisArgument(indexKey(namespace))] + accountKeys(account.owner),
            arguments: [RedisArgument(key)])
        guard let removed = reply.integer else { throw Self.unexpected("delete", reply) }
        return removed > 0
    }

    public func usage(of owner: String) async throws -> MemoryUsage {
        let reply = try await run(Self.usageScript, keys: accountKeys(owner), arguments: [])
        guard let fields = reply.array, fields.count == 2, let keys = fields[0].integer, let bytes = fields[1].integer else {
            throw Self.unexpected("usage", reply)
        }
        return MemoryUsage(keys: Int(keys), bytes: Int(bytes))
    }

    // MARK: Errors

    private func run(_ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> RESPReply {
        do {
            return try await client.evaluate(script, keys: keys, arguments: arguments)
        } catch let error as RedisError {
            throw Self.translate(error)
        }
    }

    /// Connection failures become `BackendUnavailable`; anything else (a script error, say)
    /// is a bug and stays a `RedisError`.
    static func translate(_ error: RedisError) -> any Error {
        switch error.code {
        case .connectFailed, .notConnected, .connectionClosed, .timeout, .handshakeFailed:
            return BackendUnavailable(reason: error.description)
        default:
            return error
        }
    }

    private static func unexpected(_ operation: String, _ reply: RESPReply) -> RedisError {
        RedisError(.unexpectedReply, "\(operation) script answered \(reply)")
    }
}
