/// What a rate limiter answers for one request.
public enum RateDecision: Sendable, Hashable {
    case allowed
    /// Refused. `retryAfterSeconds` is when the same request would be allowed, if nothing else
    /// is spent meanwhile; nil when waiting cannot help (the cost exceeds the burst, or the
    /// limit allows nothing).
    case refused(retryAfterSeconds: Double?)

    public var isAllowed: Bool {
        if case .allowed = self { return true }
        return false
    }
}

/// A rate limiter decided in place: synchronous, so that the request path on an event loop can
/// call it without a hop.
public protocol RateLimiter: Sendable {
    /// Spends `cost` cells of `limit` for `key` when they are available; a refusal spends
    /// nothing. A cost of 0 only asks whether one more cell would be allowed.
    func admit(key: String, limit: RateLimit, cost: Int) -> RateDecision
}

extension RateLimiter {
    public func admit(key: String, limit: RateLimit) -> RateDecision {
        admit(key: key, limit: limit, cost: 1)
    }
}

/// A rate limiter whose decision may need a round trip (to Redis, shared by replicas). It
/// always answers: what happens when the shared state is out of reach is the
/// implementation's policy, not the caller's error handling.
///
/// `LocalRateLimiter` conforms too, so that a gateway can hold either behind one type.
public protocol AsyncRateLimiter: Sendable {
    func admit(key: String, limit: RateLimit, cost: Int) async -> RateDecision
}

/// The first of several limits that refused a request (see `admit(all:)`).
public struct RateRefusal: Sendable, Hashable {
    /// Which limit, by its position in the list.
    public var index: Int
    /// When the request would pass that limit; nil when waiting cannot help.
    public var retryAfterSeconds: Double?

    public init(index: Int, retryAfterSeconds: Double?) {
        self.index = index
        self.retryAfterSeconds = retryAfterSeconds
    }
}
