/// A `RateLimit` in the terms of the generic cell rate algorithm (GCRA), in nanoseconds.
///
/// GCRA keeps one number per key, the theoretical arrival time (TAT): when the key's spending
/// would be back to zero if it stopped now. A request of `cost` cells moves it `cost ×
/// interval` later, and is allowed when the moved TAT is at most `window` ahead of now, where
/// `window = burst × interval` (the burst tolerance plus one interval). So a fresh key gets
/// `burst` cells at once, then one per `interval`; a TAT in the past is the same as no TAT.
public struct CellRate: Sendable, Hashable {
    /// The emission interval: 1 / `perSecond`, at least 1 ns.
    public let interval: Int64
    public let burst: Int
    /// `burst × interval`: how far ahead of now a TAT may be (bounded so sums cannot overflow).
    public let window: Int64

    /// The largest window kept: about 73 years, far from overflowing a monotonic clock.
    static let maximumWindow: Int64 = 1 << 61

    /// Nil when the limit lets nothing through (a rate or burst that is not positive).
    public init?(_ limit: RateLimit) {
        guard limit.perSecond > 0, limit.burst >= 1 else { return nil }
        let nanoseconds = 1e9 / limit.perSecond
        interval = nanoseconds >= Double(Self.maximumWindow) ? Self.maximumWindow : max(1, Int64(nanoseconds.rounded()))
        burst = limit.burst
        let (product, overflow) = interval.multipliedReportingOverflow(by: Int64(burst))
        window = overflow ? Self.maximumWindow : min(product, Self.maximumWindow)
    }

    /// What GCRA decides for one request.
    public enum Outcome: Sendable, Hashable {
        /// Allowed; the key's TAT becomes `tat` (for a cost of 0 there is nothing to store).
        case allowed(tat: Int64)
        /// Refused; allowed again after `waitNanoseconds`, nil when never (cost above burst).
        case refused(waitNanoseconds: Int64?)
    }

    /// GCRA for `cost` cells at `now`, given the key's stored TAT (nil for an unknown key).
    @inline(__always)
    public func decide(storedTAT: Int64?, now: Int64, cost: Int) -> Outcome {
        guard cost <= burst else { return .refused(waitNanoseconds: nil) }
        let tat = max(storedTAT ?? now, now)
        // A cost of 0 asks about one cell and spends nothing.
        let (product, overflow) = interval.multipliedReportingOverflow(by: Int64(max(cost, 1)))
        let increment = overflow ? window : min(product, window)
        let allowAt = tat + increment - window
        if allowAt > now { return .refused(waitNanoseconds: allowAt - now) }
        return .allowed(tat: cost > 0 ? tat + increment : tat)
    }

    /// The decision a caller sees.
    @inline(__always)
    public static func decision(_ outcome: Outcome) -> RateDecision {
        switch outcome {
        case .allowed: return .allowed
        case .refused(let wait): return .refused(retryAfterSeconds: wait.map { Double($0) / 1e9 })
        }
    }
}
