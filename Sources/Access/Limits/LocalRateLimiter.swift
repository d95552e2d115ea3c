import NIOCore
import Synchronization

/// GCRA rate limits kept in this process: one theoretical arrival time per key (see `CellRate`).
///
/// Built for the request path on an event loop: a decision is a read of the clock, one hash of
/// the key, one uncontended lock of the key's shard, and a few integer operations; a key
/// already known is decided without allocating. Keys are spread over `shards` independently
/// locked tables so that event loops deciding different keys rarely wait for each other.
///
/// Memory is bounded: an expired key is forgotten (it is the same as a fresh one), swept a few
/// slots at a time by each new key, and the whole table never holds more than `maximumKeys`
/// (beyond it a new key makes another be forgotten, an expired one if the sweep finds one near,
/// else a live one). See `ArrivalTable`.
///
/// Keys are Swift strings, equal when canonically equivalent; `RedisRateLimiter` compares
/// their UTF-8 bytes. Keys the gateway builds from names it has checked are the same either way.
public final class LocalRateLimiter: RateLimiter, AsyncRateLimiter {
    public static let defaultMaximumKeys = 1_000_000

    /// Monotonic nanoseconds; injectable so that tests decide time.
    public typealias Clock = @Sendable () -> Int64

    /// CLOCK_MONOTONIC in nanoseconds (what NIO's deadlines use).
    public static let monotonicClock: Clock = { Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds) }

    private let shards: [Shard]
    private let shardShift: UInt
    private let clock: Clock
    public let maximumKeys: Int

    /// - Parameters:
    ///   - maximumKeys: the most keys held at once, over all shards.
    ///   - shards: independently locked tables; rounded up to a power of two.
    ///   - clock: now, in monotonic nanoseconds.
    public init(maximumKeys: Int = LocalRateLimiter.defaultMaximumKeys, shards: Int = 16, clock: @escaping Clock = LocalRateLimiter.monotonicClock) {
        precondition(maximumKeys > 0, "a rate limiter holds at least one key")
        var count = 1
        while count < max(1, shards) { count *= 2 }
        let perShard = (maximumKeys + count - 1) / count
        self.shards = (0..<count).map { _ in Shard(ArrivalTable(maximumCount: perShard)) }
        // The shard comes from the hash's top bits, the slot within it from the bottom ones.
        self.shardShift = UInt(Int.bitWidth - count.trailingZeroBitCount)
        self.clock = clock
        self.maximumKeys = perShard * count
    }

    public func admit(key: String, limit: RateLimit, cost: Int = 1) -> RateDecision {
        admit(key: key, limit: limit, cost: cost, now: clock())
    }

    /// As `admit(key:limit:cost:)`, at `now` (monotonic nanoseconds) taken by the caller, which
    /// may already have read the clock for something else.
    public func admit(key: String, limit: RateLimit, cost: Int = 1, now: Int64) -> RateDecision {
        guard let rate = CellRate(limit) else { return .refused(retryAfterSeconds: nil) }
        let hash = key.hashValue
        let outcome = shard(for: hash).table.withLock { table in
            let index = table.find(key, hash: hash)
            let outcome = rate.decide(storedTAT: index.map { table.tat(at: $0) }, now: now, cost: cost)
            if case .allowed(let tat) = outcome, cost > 0 {
                if let index { table.setTAT(tat, at: index) } else { table.insert(key, hash: hash, tat: tat, now: now) }
            }
            return outcome
        }
        return CellRate.decision(outcome)
    }

    /// One cell of each limit, all or none: nil when every limit had a cell (each is spent), else
    /// the first that refused (nothing is spent). Checked first, then spent: another thread may
    /// spend between the two, and this request then takes the last cell of a limit that just
    /// ran out — one request, never a run of them.
    public func admit(all limits: [(key: String, limit: RateLimit)], now: Int64? = nil) -> RateRefusal? {
        let now = now ?? clock()
        if limits.count == 1 {
            guard case .refused(let retryAfter) = admit(key: limits[0].key, limit: limits[0].limit, cost: 1, now: now) else { return nil }
            return RateRefusal(index: 0, retryAfterSeconds: retryAfter)
        }
        for (index, entry) in limits.enumerated() {
            if case .refused(let retryAfter) = admit(key: entry.key, limit: entry.limit, cost: 0, now: now) {
                return RateRefusal(index: index, retryAfterSeconds: retryAfter)
            }
        }
        for entry in limits { _ = admit(key: entry.key, limit: entry.limit, cost: 1, now: now) }
        return nil
    }

    /// Keys held now, expired ones not yet swept included.
    public var keyCount: Int {
        shards.reduce(0) { total, shard in total + shard.table.withLock { $0.count } }
    }

    /// Slots allocated over all shards (each a key, a hash and a TAT).
    public var capacity: Int {
        shards.reduce(0) { total, shard in total + shard.table.withLock { $0.capacity } }
    }

    /// Drops every expired key and shrinks the tables to fit: for a periodic timer, so that
    /// memory returns after a burst of keys even when no new keys arrive to sweep it.
    public func removeExpired() {
        let now = clock()
        for shard in shards {
            shard.table.withLock { $0.removeExpired(now: now) }
        }
    }

    @inline(__always)
    private func shard(for hash: Int) -> Shard {
        shards[Int(truncatingIfNeeded: UInt(bitPattern: hash) >> shardShift)]
    }
}

/// One lock and the table it guards.
private final class Shard: Sendable {
    let table: Mutex<ArrivalTable>

    init(_ table: ArrivalTable) {
        self.table = Mutex(table)
    }
}
