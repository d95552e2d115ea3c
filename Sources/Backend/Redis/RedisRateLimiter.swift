import Access
import NIOCore
import Redis
import Synchronization

/// GCRA rate limits shared by every replica through Redis: one Lua script call per decision.
///
/// Layout (for `keyPrefix` P and a key K): `P K` — a string, the key's theoretical arrival time
/// in microseconds since the epoch on the Redis server's clock, expiring (PX) at that time, so
/// a key that has caught up costs Redis nothing. The script reads the clock with `TIME`, so
/// replicas whose own clocks disagree still agree on every decision (Redis 5 or later, whose
/// scripts replicate their effects rather than their text).
///
/// When Redis cannot be asked (connection refused or lost, a reply later than `timeout`), the
/// decision follows `whenUnavailable`; the default, `.local`, decides on this replica's own
/// `LocalRateLimiter`, so each replica then enforces the whole limit by itself (with K replicas,
/// up to K times the limit passes during an outage). After a failure Redis is not asked again
/// for `retryInterval`; then one decision probes it while the others keep the fallback.
/// `onAvailabilityChange` hears of each outage once, when it starts, and once when it ends.
///
/// An outage is only noticed quickly if the client fails quickly: give the limiter a
/// `RedisClient` with a short `connectTimeout` and `RedisBackoff(maximumAttempts: 1)` (the
/// default backoff retries a refused connection for seconds, and every decision would wait).
public final class RedisRateLimiter: AsyncRateLimiter {
    /// What to decide while Redis cannot be asked.
    public enum UnavailablePolicy: Sendable, Hashable {
        /// Fail open: allow everything.
        case allow
        /// Fail closed: refuse everything, with `retryInterval` as the wait.
        case refuse
        /// Decide on this replica's local limiter (the default).
        case local
    }

    /// A change in whether Redis can be asked; for the log.
    public enum AvailabilityChange: Sendable, Hashable {
        /// Redis could not be asked; decisions follow the policy until it can.
        case unavailable(reason: String)
        /// Redis answered again.
        case available
        /// Redis answered one decision with an error or an unexpected reply (a key of another
        /// type under the prefix, say); that decision followed the policy.
        case decisionFailed(reason: String)
    }

    public static let defaultKeyPrefix = "switchboard:rate:"

    public let client: RedisClient
    public let keyPrefix: String
    public let whenUnavailable: UnavailablePolicy
    public let local: LocalRateLimiter
    public let timeout: TimeAmount
    public let retryInterval: TimeAmount
    private let onAvailabilityChange: @Sendable (AvailabilityChange) -> Void
    private let health = Mutex(Health())

    private struct Health {
        var unavailable = false
        /// While unavailable: when the next decision may ask Redis again.
        var retryAt = NIODeadline.uptimeNanoseconds(0)
    }

    public init(
        client: RedisClient,
        keyPrefix: String = RedisRateLimiter.defaultKeyPrefix,
        whenUnavailable: UnavailablePolicy = .local,
        local: LocalRateLimiter = LocalRateLimiter(),
        timeout: TimeAmount = .milliseconds(500),
        retryInterval: TimeAmount = .seconds(1),
        onAvailabilityChange: @escaping @Sendable (AvailabilityChange) -> Void = { _ in }
    ) {
        self.client = client
        self.keyPrefix = keyPrefix
        self.whenUnavailable = whenUnavailable
        self.local = local
        self.timeout = timeout
        self.retryInterval = retryInterval
        self.onAvailabilityChange = onAvailabilityChange
    }

    /// KEYS[1]: the key's TAT. ARGV: the emission interval (ns), the window (burst × interval,
    /// ns), the cost. Answers {1, 0} when allowed, {0, wait in µs, rounded up} when refused.
    /// A cost of 0 asks about one cell and writes nothing. Times are µs as Lua numbers
    /// (doubles, a quarter of a µs apart at today's epoch): an interval below that (a rate
    /// above some millions per second, for one key) no longer moves the TAT, and such a limit
    /// lets everything through, as it nearly would anyway.
    static let script = RedisScript("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local interval = tonumber(ARGV[1]) / 1000
        local window = tonumber(ARGV[2]) / 1000
        local cost = tonumber(ARGV[3])
        local tat = tonumber(redis.call('GET', KEYS[1])) or now
        if tat < now then tat = now end
        local increment = interval * math.max(cost, 1)
        if increment > window then increment = window end
        local allowAt = tat + increment - window
        if allowAt > now then return {0, math.ceil(allowAt - now)} end
        if cost > 0 then
          local new = tat + increment
          redis.call('SET', KEYS[1], string.format('%.17g', new), 'PX', math.max(1, math.ceil((new - now) / 1000)))
        end
        return {1, 0}
        """)

    public func admit(key: String, limit: RateLimit, cost: Int = 1) async -> RateDecision {
        guard let rate = CellRate(limit), cost <= rate.burst else { return .refused(retryAfterSeconds: nil) }
        guard mayAskRedis() else { return fallback(key: key, limit: limit, cost: cost) }
        let reply: RESPReply
        do {
            reply = try await client.evaluate(
                Self.script, keys: [RedisArgument(keyPrefix + key)],
                arguments: [RedisArgument(Int(rate.interval)), RedisArgument(Int(rate.window)), RedisArgument(max(cost, 0))],
                timeout: timeout)
        } catch let error as RedisError where Self.isUnavailability(error) {
            markUnavailable(reason: error.description)
            return fallback(key: key, limit: limit, cost: cost)
        } catch {
            // A script error or the like: Redis is there, but this decision cannot be had from it.
            onAvailabilityChange(.decisionFailed(reason: "\(error)"))
            return fallback(key: key, limit: limit, cost: cost)
        }
        markAvailable()
        guard let fields = reply.array, fields.count == 2, let allowed = fields[0].integer, let wait = fields[1].integer else {
            onAvailabilityChange(.decisionFailed(reason: "the rate script answered \(reply)"))
            return fallback(key: key, limit: limit, cost: cost)
        }
        return allowed == 1 ? .allowed : .refused(retryAfterSeconds: Double(wait) / 1e6)
    }

    /// KEYS: the limits' TATs. ARGV: for each key, its interval and window (ns). One cell of
    /// each, all or none: answers {1, 0, 0} when every key had one (each is spent), else
    /// {0, wait in µs, the refusing key's position from 1} and writes nothing.
    static let allScript = RedisScript("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local next = {}
        for i = 1, #KEYS do
          local interval = tonumber(ARGV[2 * i - 1]) / 1000
          local window = tonumber(ARGV[2 * i]) / 1000
          local tat = tonumber(redis.call('GET', KEYS[i])) or now
          if tat < now then tat = now end
          local increment = interval
          if increment > window then increment = window end
          local allowAt = tat + increment - window
          if allowAt > now then return {0, math.ceil(allowAt - now), i} end
          next[i] = tat + increment
        end
        for i = 1, #KEYS do
          redis.call('SET', KEYS[i], string.format('%.17g', next[i]), 'PX', math.max(1, math.ceil((next[i] - now) / 1000)))
        end
        return {1, 0, 0}
        """)

    /// One cell of each limit, all or none, decided by Redis in one script call: nil when every
    /// limit had a cell, else the first that refused. While Redis cannot be asked, as
    /// `whenUnavailable` says.
    public func admit(all limits: [(key: String, limit: RateLimit)]) async -> RateRefusal? {
        var arguments: [RedisArgument] = []
        arguments.reserveCapacity(limits.count * 2)
        for (index, entry) in limits.enumerated() {
            guard let rate = CellRate(entry.limit) else { return RateRefusal(index: index, retryAfterSeconds: nil) }
            arguments.append(RedisArgument(Int(rate.interval)))
            arguments.append(RedisArgument(Int(rate.window)))
        }
        guard mayAskRedis() else { return fallback(all: limits) }
        let reply: RESPReply
        do {
            reply = try await client.evaluate(
                Self.allScript, keys: limits.map { RedisArgument(keyPrefix + $0.key) }, arguments: arguments, timeout: timeout)
        } catch let error as RedisError where Self.isUnavailability(error) {
            markUnavailable(reason: error.description)
            return fallback(all: limits)
        } catch {
            onAvailabilityChange(.decisionFailed(reason: "\(error)"))
            return fallback(all: limits)
        }
        markAvailable()
        guard let fields = reply.array, fields.count == 3, let allowed = fields[0].integer, let wait = fields[1].integer,
            let position = fields[2].integer
        else {
            onAvailabilityChange(.decisionFailed(reason: "the rate script answered \(reply)"))
            return fallback(all: limits)
        }
        return allowed == 1 ? nil : RateRefusal(index: max(0, Int(position) - 1), retryAfterSeconds: Double(wait) / 1e6)
    }

    private func fallback(all limits: [(key: String, limit: RateLimit)]) -> RateRefusal? {
        switch whenUnavailable {
        case .allow: return nil
        case .refuse: return RateRefusal(index: 0, retryAfterSeconds: Double(retryInterval.nanoseconds) / 1e9)
        case .local: return local.admit(all: limits)
        }
    }

    private static func isUnavailability(_ error: RedisError) -> Bool {
        switch error.code {
        case .connectFailed, .notConnected, .connectionClosed, .timeout, .handshakeFailed: true
        default: false
        }
    }

    private func fallback(key: String, limit: RateLimit, cost: Int) -> RateDecision {
        switch whenUnavailable {
        case .allow: return .allowed
        case .refuse: return .refused(retryAfterSeconds: Double(retryInterval.nanoseconds) / 1e9)
        case .local: return local.admit(key: key, limit: limit, cost: cost)
        }
    }

    /// True when Redis is thought available, or when this decision is the one to probe it.
    private func mayAskRedis() -> Bool {
        health.withLock { health in
            guard health.unavailable else { return true }
            let now = NIODeadline.now()
            guard now >= health.retryAt else { return false }
            health.retryAt = now + retryInterval
            return true
        }
    }

    private func markUnavailable(reason: String) {
        let started = health.withLock { health in
            defer {
                health.unavailable = true
                health.retryAt = NIODeadline.now() + retryInterval
            }
            return !health.unavailable
        }
        if started { onAvailabilityChange(.unavailable(reason: reason)) }
    }

    private func markAvailable() {
        let ended = health.withLock { health in
            defer { health.unavailable = false }
            return health.unavailable
        }
        if ended { onAvailabilityChange(.available) }
    }
}
