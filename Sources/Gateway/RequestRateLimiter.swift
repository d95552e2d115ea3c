import Access
import Backend
import Logging
import NIOCore
import Redis

/// Decides whether a request passes its principal's and its tenant's rate limits
/// (`auth.rateLimits`, protocol-spec 12.7): on this process alone (embedded), or through Redis
/// so that replicas share each limit.
///
/// Alone, the decision is made in place on the event loop (a lookup and a few integer
/// operations). With replicas it is one Redis script call, and the connection waits for it
/// before the request runs (and holds the lines after it, so that requests still run in the
/// order they came).
final class RequestRateLimiter: Sendable {
    enum Verdict {
        case allowed
        case refused(AccessError)
        /// Decided by Redis: the refusal, or nil when the request may run.
        case pending(EventLoopFuture<AccessError?>)
    }

    private let local: LocalRateLimiter
    private let shared: RedisRateLimiter?

    /// `redis`: the replicas' Redis, when there are replicas.
    init(settings: RateLimitSettings, redis: RedisConfiguration?, group: any EventLoopGroup, logger: Logger) {
        let local = LocalRateLimiter()
        self.local = local
        self.shared = redis.map { configuration in
            // A client of its own that fails fast: during an outage every limited request would
            // otherwise wait for the shared client's reconnection attempts.
            var fastFailing = configuration
            fastFailing.connectTimeout = .milliseconds(500)
            let client = RedisClient(configuration: fastFailing, connections: 4, backoff: RedisBackoff(maximumAttempts: 1), eventLoopGroup: group)
            let fallback: RedisRateLimiter.UnavailablePolicy =
                switch settings.whenUnavailable {
                case .local: .local
                case .allow: .allow
                case .refuse: .refuse
                }
            return RedisRateLimiter(
                client: client, whenUnavailable: fallback, local: local,
                onAvailabilityChange: { change in
                    switch change {
                    case .unavailable(let reason):
                        logger.error("rate limits: Redis cannot be asked (\(reason)); each replica decides \(settings.whenUnavailable.rawValue == "local" ? "on its own counts" : "by whenRedisUnavailable: \(settings.whenUnavailable.rawValue)") until it can")
                    case .available:
                        logger.notice("rate limits: Redis answers again; the replicas share the limits again")
                    case .decisionFailed(let reason):
                        logger.warning("rate limits: a decision could not be had from Redis (\(reason)); it followed whenRedisUnavailable")
                    }
                })
        }
        // Keys that have caught up are forgotten as new ones arrive; this gives the memory of a
        // burst of keys back when none arrive.
        let sweeper = local
        group.any().scheduleRepeatedTask(initialDelay: .seconds(60), delay: .seconds(60)) { _ in sweeper.removeExpired() }
    }

    func admit(_ checks: [RateCheck], principal: String, on eventLoop: any EventLoop) -> Verdict {
        guard let shared else { return admitHere(checks, principal: principal) }
        let limits = checks.map { (key: $0.key, limit: $0.limit) }
        let promise = eventLoop.makePromise(of: AccessError?.self)
        promise.completeWithTask {
            guard let refusal = await shared.admit(all: limits) else { return nil }
            return checks[refusal.index].refusal(principal: principal, retryAfterSeconds: refusal.retryAfterSeconds)
        }
        return .pending(promise.futureResult)
    }

    /// Decided in place: one key (the usual case) is one decision; several are each asked first,
    /// then each spent, so that a refusal spends nothing.
    private func admitHere(_ checks: [RateCheck], principal: String) -> Verdict {
        let now = LocalRateLimiter.monotonicClock()
        if checks.count == 1 {
            guard case .refused(let retryAfter) = local.admit(key: checks[0].key, limit: checks[0].limit, cost: 1, now: now) else { return .allowed }
            return .refused(checks[0].refusal(principal: principal, retryAfterSeconds: retryAfter))
        }
        for check in checks {
            if case .refused(let retryAfter) = local.admit(key: check.key, limit: check.limit, cost: 0, now: now) {
                return .refused(check.refusal(principal: principal, retryAfterSeconds: retryAfter))
            }
        }
        for check in checks { _ = local.admit(key: check.key, limit: check.limit, cost: 1, now: now) }
        return .allowed
    }

    func shutdown() async {
        await shared?.client.shutdown()
    }
}
