import NIOCore
import Redis

/// `TaskBoard` on Redis, shared by every replica on the server. Every operation that
/// reads-then-writes is one Lua script run by EVALSHA, so it is atomic on the server, and time
/// is the server's clock (`TIME` inside the scripts): replicas' clocks never have to agree.
///
/// Layout (for `keyPrefix` P and a task id I, `task-N`):
/// - `P task-seq` — the counter that numbers tasks (never below the time in microseconds).
/// - `P task:I` — a hash: `record` (the engine's bytes, never decoded here), `state`, `queue`,
///   `priority`, `owner` (present exactly while leased), `claims`, `max`, `note`, `number`,
///   `idem` (its idempotency key), `remaining` (unfinished dependencies, while WAITING) and
///   `done` (once finished). A finished task's hash expires at the end of its retention.
/// - `P queue:Q` — a sorted set of the queued ids of queue Q, scored priority × 2^40 + number,
///   so ZPOPMIN hands out by priority then number, exactly in a double (numbers below 2^40).
/// - `P queues` — the set of queue names, for `queueDepths` (empty ones are dropped there).
/// - `P leases` — a sorted set of leased ids by lease deadline (ms); `P delayed` — retries by
///   the time they are due (ms).
/// - `P idem:K` — the id submitted with idempotency key K, expiring after its TTL or with the
///   task's retention, whichever is later.
/// - `P waiting:I` — the ids of the tasks waiting for I, deleted once I finishes.
/// - `P tasks` — a sorted set of every id by number, for `list`; ids of forgotten tasks are
///   removed lazily when `list` meets them.
/// - `P dead-letter` — a list of dead-lettered ids, newest first, trimmed to `deadLetterCapacity`.
///
/// The scripts build task, queue and waiting keys from the prefix instead of receiving them in
/// KEYS (which ones a script touches depends on what it reads), so the board needs one server,
/// not a cluster.
public final class RedisTaskBoard: TaskBoard {
    public let client: RedisClient
    public let keyPrefix: String
    /// How many dead-lettered ids are kept.
    public let deadLetterCapacity: Int
    private let fixedKeys: [RedisArgument]

    /// How many due retries and lapsed leases one reap script handles; a reap runs several
    /// scripts when more are due, so that no script blocks the server for long.
    static let reapBatch = 500

    public init(client: RedisClient, keyPrefix: String = "switchboard:", deadLetterCapacity: Int = 10_000) {
        precondition(deadLetterCapacity > 0, "the dead-letter list holds at least one id")
        self.client = client
        self.keyPrefix = keyPrefix
        self.deadLetterCapacity = deadLetterCapacity
        self.fixedKeys = ["task-seq", "queues", "leases", "delayed", "tasks", "dead-letter"].map { RedisArgument(keyPrefix + $0) }
    }

    // MARK: Scripts

    /// Shared by every script: KEYS are `fixedKeys`, ARGV[1] is the key prefix.
    private static let prelude = """
        local P = ARGV[1]
        local SEQUENCE, QUEUES, LEASES, DELAYED, TASKS, DEAD = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
        local SPAN = 1099511627776
        local FIELDS = {'number', 'queue', 'priority', 'state', 'record', 'owner', 'claims', 'max', 'note'}

        local function now()
          local t = redis.call('TIME')
          return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end

        local function taskKey(id) return P .. 'task:' .. id end

        -- {id, FIELDS...} as `decodeTask` reads it, or false when there is no such task.
        local function task(id)
          local fields = redis.call('HMGET', taskKey(id), unpack(FIELDS))
          if not fields[1] then return false end
          return {id, unpack(fields)}
        end

        -- Queues a task PENDING at its place: priority first, then number.
        local function enqueue(id)
          local key = taskKey(id)
          local fields = redis.call('HMGET', key, 'queue', 'priority', 'number')
          redis.call('HSET', key, 'state', 'PENDING')
          redis.call('ZADD', P .. 'queue:' .. fields[1], tonumber(fields[2]) * SPAN + tonumber(fields[3]), id)
          redis.call('SADD', QUEUES, fields[1])
        end

        local function unplace(id, queue)
          redis.call('ZREM', P .. 'queue:' .. queue, id)
          redis.call('ZREM', LEASES, id)
          redis.call('ZREM', DELAYED, id)
        end

        -- Marks a task finished and expires it after the retention; its idempotency key lives
        -- at least as long, so a duplicate submission finds the task while it can be read.
        local function retire(id, retention, at)
          local key = taskKey(id)
          redis.call('HSET', key, 'done', '1')
          redis.call('HDEL', key, 'owner', 'remaining')
          local idem = redis.call('HGET', key, 'idem')
          if idem then
            local idemKey = P .. 'idem:' .. idem
            if redis.call('GET', idemKey) == id then
              local expiry = redis.call('PEXPIRETIME', idemKey)
              if expiry >= 0 and expiry < at + retention then redis.call('PEXPIREAT', idemKey, at + retention) end
            end
          end
          redis.call('PEXPIREAT', key, at + retention)
        end

        -- Releases the tasks waiting for a finished one, or fails them (and theirs in turn)
        -- when it did not complete; appends their ids to released and failed.
        local function settle(id, state, retention, at, released, failed)
          local ended = {{id, state}}
          while #ended > 0 do
            local parent = table.remove(ended)
            local waitingKey = P .. 'waiting:' .. parent[1]
            local dependents = redis.call('SMEMBERS', waitingKey)
            redis.call('DEL', waitingKey)
            for _, dependent in ipairs(dependents) do
              local key = taskKey(dependent)
              local remaining = redis.call('HGET', key, 'remaining')
              if remaining then
                if parent[2] ~= 'COMPLETED' then
                  redis.call('HSET', key, 'state', 'FAILED', 'note', 'dependency ' .. parent[1] .. ' ended ' .. parent[2])
                  retire(dependent, retention, at)
                  failed[#failed + 1] = dependent
                  ended[#ended + 1] = {dependent, 'FAILED'}
                elseif tonumber(remaining) > 1 then
                  redis.call('HINCRBY', key, 'remaining', -1)
                else
                  redis.call('HDEL', key, 'remaining')
                  enqueue(dependent)
                  released[#released + 1] = dependent
                end
              end
            end
          end
        end

        """

    /// ARGV: queue, priority, record, has key (0/1), idempotency key, key TTL (ms), maximum
    /// claims, dependencies... Answers {'created'|'duplicate', task} or {'unknown', id}.
    static let submitScript = RedisScript(prelude + """
        local queue, priority, record = ARGV[2], tonumber(ARGV[3]), ARGV[4]
        local idem = ARGV[5] == '1' and ARGV[6]
        local idemTTL = tonumber(ARGV[7])
        if idem then
          local earlier = redis.call('GET', P .. 'idem:' .. idem)
          if earlier then
            local found = task(earlier)
            if found then return {'duplicate', found} end
          end
        end
        local unfinished, seen, endedOtherwise = {}, {}, false
        for i = 9, #ARGV do
          local dependency = ARGV[i]
          local fields = redis.call('HMGET', taskKey(dependency), 'state', 'done')
          if not fields[1] then return {'unknown', dependency} end
          if fields[2] then
            if fields[1] ~= 'COMPLETED' and not endedOtherwise then
              endedOtherwise = 'dependency ' .. dependency .. ' ended ' .. fields[1]
            end
          elseif not seen[dependency] then
            seen[dependency] = true
            unfinished[#unfinished + 1] = dependency
          end
        end
        -- Never below the time in microseconds: a counter Redis lost starts above every number
        -- given before it was lost.
        local number = redis.call('INCR', SEQUENCE)
        local clock = redis.call('TIME')
        local floor = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
        if number < floor then
          number = floor
          redis.call('SET', SEQUENCE, floor)
        end
        local id = 'task-' .. string.format('%d', number)
        local key = taskKey(id)
        redis.call('HSET', key, 'number', number, 'queue', queue, 'priority', priority, 'record', record,
          'claims', 0, 'max', ARGV[8], 'state', 'PENDING')
        redis.call('ZADD', TASKS, number, id)
        if idem then
          redis.call('SET', P .. 'idem:' .. idem, id, 'PX', idemTTL)
          redis.call('HSET', key, 'idem', idem)
        end
        if endedOtherwise then
          redis.call('HSET', key, 'state', 'FAILED', 'note', endedOtherwise)
          local created = task(id)
          retire(id, idemTTL, now())
          return {'created', created}
        elseif #unfinished == 0 then
          enqueue(id)
        else
          redis.call('HSET', key, 'state', 'WAITING', 'remaining', #unfinished)
          for _, dependency in ipairs(unfinished) do redis.call('SADD', P .. 'waiting:' .. dependency, id) end
        end
        return {'created', task(id)}
        """)

    /// ARGV: queue, owner, lease (ms). Answers the task or nil.
    static let claimScript = RedisScript(prelude + """
        local queueKey = P .. 'queue:' .. ARGV[2]
        while true do
          local first = redis.call('ZPOPMIN', queueKey)
          if #first == 0 then return false end
          local id = first[1]
          local key = taskKey(id)
          if redis.call('EXISTS', key) == 1 then
            redis.call('HSET', key, 'state', 'ASSIGNED', 'owner', ARGV[3])
            redis.call('HINCRBY', key, 'claims', 1)
            redis.call('ZADD', LEASES, now() + tonumber(ARGV[4]), id)
            return task(id)
          end
        end
        """)

    /// ARGV: owner, lease (ms), ids... Answers the ids whose lease the owner does not hold.
    static let renewScript = RedisScript(prelude + """
        local owner = ARGV[2]
        local deadline = now() + tonumber(ARGV[3])
        local lost = {}
        for i = 4, #ARGV do
          local id = ARGV[i]
          if redis.call('HGET', taskKey(id), 'owner') == owner then
            redis.call('ZADD', LEASES, deadline, id)
          else
            lost[#lost + 1] = id
          end
        end
        return lost
        """)

    /// ARGV: id, owner, state, record. Answers 1, or 0 when the owner does not hold the lease.
    static let updateScript = RedisScript(prelude + """
        local key = taskKey(ARGV[2])
        if redis.call('HGET', key, 'owner') ~= ARGV[3] then return 0 end
        redis.call('HSET', key, 'state', ARGV[4], 'record', ARGV[5])
        redis.call('HDEL', key, 'note')
        return 1
        """)

    /// ARGV: id, has owner (0/1), owner, state, record, retention (ms), dead-letter (0/1),
    /// dead-letter capacity. Answers {released, failed}, or nil when refused.
    static let finishScript = RedisScript(prelude + """
        local id = ARGV[2]
        local key = taskKey(id)
        local fields = redis.call('HMGET', key, 'number', 'done', 'owner', 'queue')
        if not fields[1] or fields[2] then return false end
        if ARGV[3] == '1' then
          if fields[3] ~= ARGV[4] then return false end
        elseif fields[3] then
          return false
        end
        local state, retention, at = ARGV[5], tonumber(ARGV[7]), now()
        unplace(id, fields[4])
        redis.call('HSET', key, 'state', state, 'record', ARGV[6])
        redis.call('HDEL', key, 'note')
        if ARGV[8] == '1' then
          redis.call('LPUSH', DEAD, id)
          redis.call('LTRIM', DEAD, 0, tonumber(ARGV[9]) - 1)
        end
        local released, failed = {}, {}
        settle(id, state, retention, at, released, failed)
        retire(id, retention, at)
        return {released, failed}
        """)

    /// ARGV: id, owner, record, delay (ms). Answers 1, or 0 when the owner does not hold the lease.
    static let retryScript = RedisScript(prelude + """
        local id = ARGV[2]
        local key = taskKey(id)
        if redis.call('HGET', key, 'owner') ~= ARGV[3] then return 0 end
        redis.call('ZREM', LEASES, id)
        redis.call('HDEL', key, 'owner', 'note')
        redis.call('HSET', key, 'state', 'PENDING', 'record', ARGV[4])
        local delay = tonumber(ARGV[5])
        if delay > 0 then redis.call('ZADD', DELAYED, now() + delay, id) else enqueue(id) end
        return 1
        """)

    /// ARGV: id, owner. Answers 1, or 0 when the owner does not hold the lease.
    static let putBackScript = RedisScript(prelude + """
        local id = ARGV[2]
        local key = taskKey(id)
        if redis.call('HGET', key, 'owner') ~= ARGV[3] then return 0 end
        redis.call('ZREM', LEASES, id)
        redis.call('HDEL', key, 'owner')
        redis.call('HINCRBY', key, 'claims', -1)
        enqueue(id)
        return 1
        """)

    /// ARGV: reaper, lease (ms), batch. Answers {requeued ids, exhausted tasks, more (0/1)}.
    static let reapScript = RedisScript(prelude + """
        local at, batch = now(), tonumber(ARGV[4])
        local requeued, exhausted = {}, {}
        local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', at, 'LIMIT', 0, batch)
        for _, id in ipairs(due) do
          redis.call('ZREM', DELAYED, id)
          if redis.call('EXISTS', taskKey(id)) == 1 then
            enqueue(id)
            requeued[#requeued + 1] = id
          end
        end
        local lapsed = redis.call('ZRANGEBYSCORE', LEASES, '-inf', at, 'LIMIT', 0, batch)
        for _, id in ipairs(lapsed) do
          local key = taskKey(id)
          local fields = redis.call('HMGET', key, 'owner', 'claims', 'max')
          if not fields[1] then
            redis.call('ZREM', LEASES, id)
          else
            redis.call('HSET', key, 'note', 'lease of ' .. fields[1] .. ' lapsed')
            if tonumber(fields[2]) >= tonumber(fields[3]) then
              redis.call('HSET', key, 'owner', ARGV[2], 'state', 'ASSIGNED')
              redis.call('ZADD', LEASES, at + tonumber(ARGV[3]), id)
              exhausted[#exhausted + 1] = task(id)
            else
              redis.call('ZREM', LEASES, id)
              redis.call('HDEL', key, 'owner')
              enqueue(id)
              requeued[#requeued + 1] = id
            end
          end
        end
        local more = 0
        if #due == batch or #lapsed == batch then more = 1 end
        return {requeued, exhausted, more}
        """)

    /// ARGV: id, record, retention (ms). Answers {'cancelled', owner or nil}, {'finished', task}
    /// or nil.
    static let cancelScript = RedisScript(prelude + """
        local id = ARGV[2]
        local key = taskKey(id)
        local fields = redis.call('HMGET', key, 'number', 'done', 'owner', 'queue')
        if not fields[1] then return false end
        if fields[2] then return {'finished', task(id)} end
        local at, retention = now(), tonumber(ARGV[4])
        unplace(id, fields[4])
        redis.call('HSET', key, 'state', 'CANCELLED', 'record', ARGV[3])
        redis.call('HDEL', key, 'note')
        settle(id, 'CANCELLED', retention, at, {}, {})
        retire(id, retention, at)
        return {'cancelled', fields[3]}
        """)

    /// ARGV: after (number), limit. Answers the tasks.
    static let listScript = RedisScript(prelude + """
        local bound, limit = '(' .. ARGV[2], tonumber(ARGV[3])
        local out = {}
        while #out < limit do
          local batch = redis.call('ZRANGEBYSCORE', TASKS, bound, '+inf', 'WITHSCORES', 'LIMIT', 0, 128)
          if #batch == 0 then break end
          for i = 1, #batch, 2 do
            local found = task(batch[i])
            if not found then
              redis.call('ZREM', TASKS, batch[i])
            elseif #out < limit then
              out[#out + 1] = found
            end
          end
          bound = '(' .. batch[#batch]
        end
        return out
        """)

    /// Answers {queue, depth, ...} for the non-empty queues, dropping the names of empty ones.
    static let queueDepthsScript = RedisScript(prelude + """
        local out = {}
        for _, name in ipairs(redis.call('SMEMBERS', QUEUES)) do
          local depth = redis.call('ZCARD', P .. 'queue:' .. name)
          if depth == 0 then
            redis.call('SREM', QUEUES, name)
          else
            out[#out + 1] = name
            out[#out + 1] = depth
          end
        end
        return out
        """)

    /// The Lua source of each script by operation name, for tools that run the same scripts
    /// outside the board (the Redis benchmark). KEYS and ARGV are as the operations pass them.
    public static var scriptSources: [String: String] {
        [
            "submit": submitScript.source, "claim": claimScript.source, "renew": renewScript.source, "update": updateScript.source,
            "finish": finishScript.source, "retry": retryScript.source, "putBack": putBackScript.source, "reap": reapScript.source,
            "cancel": cancelScript.source, "list": listScript.source, "queueDepths": queueDepthsScript.source,
        ]
    }

    private static let taskFields: [RedisArgument] = ["number", "queue", "priority", "state", "record", "owner", "claims", "max", "note"]

    // MARK: TaskBoard

    public func submit(_ submission: BoardSubmission) async throws -> BoardSubmitOutcome {
        let key = submission.idempotencyKey
        let reply = try await run(
            Self.submitScript,
            [
                RedisArgument(submission.queue), RedisArgument(submission.priority), RedisArgument(submission.record),
                key == nil ? "0" : "1", RedisArgument(key ?? ""), RedisArgument(max(1, submission.idempotencyTTL.millisecondsRoundedUp)),
                RedisArgument(submission.maximumClaims),
            ] + submission.waitingFor.map { RedisArgument($0) })
        guard let fields = reply.array, fields.count == 2, let kind = fields[0].string else { throw Self.unexpected("submit", reply) }
        switch kind {
        case "created": return .created(try Self.decodeTask(fields[1]))
        case "duplicate": return .duplicate(try Self.decodeTask(fields[1]))
        case "unknown":
            guard let id = fields[1].string else { throw Self.unexpected("submit", reply) }
            return .unknownDependency(id)
        default: throw Self.unexpected("submit", reply)
        }
    }

    public func claim(from queue: String, owner: String, lease: Duration) async throws -> BoardTask? {
        let reply = try await run(Self.claimScript, [RedisArgument(queue), RedisArgument(owner), RedisArgument(lease.millisecondsRoundedUp)])
        return reply.isNull ? nil : try Self.decodeTask(reply)
    }

    public func renew(_ ids: [String], owner: String, lease: Duration) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        let reply = try await run(
            Self.renewScript, [RedisArgument(owner), RedisArgument(lease.millisecondsRoundedUp)] + ids.map { RedisArgument($0) })
        guard let lost = reply.array?.compactMap(\.string), lost.count == reply.array?.count else { throw Self.unexpected("renew", reply) }
        return Set(lost)
    }

    public func update(_ id: String, owner: String, state: String, record: ByteBuffer) async throws -> Bool {
        try await flag(
            "update", Self.updateScript, [RedisArgument(id), RedisArgument(owner), RedisArgument(state), RedisArgument(record)])
    }

    public func finish(
        _ id: String, owner: String?, state: String, record: ByteBuffer, retention: Duration, deadLetter: Bool
    ) async throws -> BoardFinishOutcome? {
        let reply = try await run(
            Self.finishScript,
            [
                RedisArgument(id), owner == nil ? "0" : "1", RedisArgument(owner ?? ""), RedisArgument(state), RedisArgument(record),
                RedisArgument(retention.millisecondsRoundedUp), deadLetter ? "1" : "0", RedisArgument(deadLetterCapacity),
            ])
        if reply.isNull { return nil }
        guard let lists = reply.array, lists.count == 2, let released = Self.ids(lists[0]), let failed = Self.ids(lists[1]) else {
            throw Self.unexpected("finish", reply)
        }
        return BoardFinishOutcome(released: Self.byNumber(released), failed: Self.byNumber(failed))
    }

    public func retry(_ id: String, owner: String, record: ByteBuffer, after delay: Duration) async throws -> Bool {
        try await flag(
            "retry", Self.retryScript,
            [RedisArgument(id), RedisArgument(owner), RedisArgument(record), RedisArgument(delay > .zero ? delay.millisecondsRoundedUp : 0)])
    }

    public func putBack(_ id: String, owner: String) async throws -> Bool {
        try await flag("putBack", Self.putBackScript, [RedisArgument(id), RedisArgument(owner)])
    }

    public func reap(owner: String, lease: Duration) async throws -> BoardReapOutcome {
        var outcome = BoardReapOutcome(requeued: [], exhausted: [])
        // Bounded, so that a reaper given a zero lease does not chase its own exhausted tasks.
        for _ in 0..<20 {
            let reply = try await run(
                Self.reapScript, [RedisArgument(owner), RedisArgument(lease.millisecondsRoundedUp), RedisArgument(Self.reapBatch)])
            guard let parts = reply.array, parts.count == 3, let requeued = Self.ids(parts[0]), let exhausted = parts[1].array,
                let more = parts[2].integer
            else { throw Self.unexpected("reap", reply) }
            outcome.requeued += requeued
            outcome.exhausted += try exhausted.map(Self.decodeTask)
            if more == 0 { break }
        }
        return outcome
    }

    public func cancel(_ id: String, record: ByteBuffer, retention: Duration) async throws -> BoardCancelOutcome? {
        let reply = try await run(
            Self.cancelScript, [RedisArgument(id), RedisArgument(record), RedisArgument(retention.millisecondsRoundedUp)])
        if reply.isNull { return nil }
        guard let parts = reply.array, parts.count == 2, let kind = parts[0].string else { throw Self.unexpected("cancel", reply) }
        switch kind {
        case "cancelled": return .cancelled(owner: parts[1].string)
        case "finished": return .alreadyFinished(try Self.decodeTask(parts[1]))
        default: throw Self.unexpected("cancel", reply)
        }
    }

    public func get(_ id: String) async throws -> BoardTask? {
        let reply = try await send(["HMGET", RedisArgument(keyPrefix + "task:" + id)] + Self.taskFields)
        guard let fields = reply.array, fields.count == Self.taskFields.count else { throw Self.unexpected("get", reply) }
        if fields[0].isNull { return nil }
        return try Self.decodeTask(.array([.bulkString(ByteBuffer(string: id))] + fields))
    }

    public func task(withIdempotencyKey key: String) async throws -> BoardTask? {
        let reply = try await send(["GET", RedisArgument(keyPrefix + "idem:" + key)])
        guard let id = reply.string else { return nil }
        return try await get(id)
    }

    public func list(after number: Int64, limit: Int) async throws -> [BoardTask] {
        guard limit > 0 else { return [] }
        let reply = try await run(Self.listScript, [RedisArgument(String(number)), RedisArgument(limit)])
        guard let tasks = reply.array else { throw Self.unexpected("list", reply) }
        return try tasks.map(Self.decodeTask)
    }

    public func deadLetters(limit: Int) async throws -> [String] {
        guard limit > 0 else { return [] }
        let reply = try await send(["LRANGE", RedisArgument(keyPrefix + "dead-letter"), 0, RedisArgument(limit - 1)])
        guard let ids = Self.ids(reply) else { throw Self.unexpected("deadLetters", reply) }
        return ids
    }

    public func queueDepths() async throws -> [String: Int] {
        let reply = try await run(Self.queueDepthsScript, [])
        guard let parts = reply.array, parts.count % 2 == 0 else { throw Self.unexpected("queueDepths", reply) }
        var depths: [String: Int] = [:]
        for index in stride(from: 0, to: parts.count, by: 2) {
            guard let name = parts[index].string, let depth = parts[index + 1].integer else { throw Self.unexpected("queueDepths", reply) }
            depths[name] = Int(depth)
        }
        return depths
    }

    // MARK: Replies

    /// Reads {id, number, queue, priority, state, record, owner, claims, max, note}.
    static func decodeTask(_ reply: RESPReply) throws -> BoardTask {
        guard let fields = reply.array, fields.count == 10, let id = fields[0].string,
            let number = fields[1].string.flatMap({ Int64($0) }), let queue = fields[2].string,
            let priority = fields[3].string.flatMap({ Int($0) }), let state = fields[4].string,
            case .bulkString(let record) = fields[5], let claims = fields[7].string.flatMap({ Int($0) }),
            let maximumClaims = fields[8].string.flatMap({ Int($0) })
        else { throw unexpected("task", reply) }
        return BoardTask(
            id: id, number: number, queue: queue, priority: priority, state: state, record: record, owner: fields[6].string,
            claims: claims, maximumClaims: maximumClaims, note: fields[9].string)
    }

    private static func ids(_ reply: RESPReply) -> [String]? {
        guard let elements = reply.array else { return nil }
        let ids = elements.compactMap(\.string)
        return ids.count == elements.count ? ids : nil
    }

    /// Sets come back from the server in no particular order.
    private static func byNumber(_ ids: [String]) -> [String] {
        ids.sorted { (InMemoryTaskBoard.number(of: $0) ?? 0) < (InMemoryTaskBoard.number(of: $1) ?? 0) }
    }

    private static func unexpected(_ operation: String, _ reply: RESPReply) -> RedisError {
        RedisError(.unexpectedReply, "\(operation) answered \(reply)")
    }

    // MARK: Sending

    private func run(_ script: RedisScript, _ arguments: [RedisArgument]) async throws -> RESPReply {
        do {
            return try await client.evaluate(script, keys: fixedKeys, arguments: [RedisArgument(keyPrefix)] + arguments)
        } catch let error as RedisError {
            throw RedisKeyValueStore.translate(error)
        }
    }

    private func send(_ command: [RedisArgument]) async throws -> RESPReply {
        do {
            return try await client.send(command)
        } catch let error as RedisError {
            throw RedisKeyValueStore.translate(error)
        }
    }

    private func flag(_ operation: String, _ script: RedisScript, _ arguments: [RedisArgument]) async throws -> Bool {
        let reply = try await run(script, arguments)
        guard let value = reply.integer else { throw Self.unexpected(operation, reply) }
        return value == 1
    }
}

extension Duration {
    /// Whole milliseconds rounded up, as `Timestamp.advanced(by:)` rounds; never negative.
    var millisecondsRoundedUp: Int {
        let (seconds, attoseconds) = components
        return max(0, Int(seconds * 1_000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
    }
}
