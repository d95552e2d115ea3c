/// What the router has learned about one agent instance serving one tool: moving averages of
/// latency and success, so that faster and more reliable instances get more of the work.
public struct ToolPerformance: Sendable, Equatable {
    /// Weight of the newest observation in the moving averages.
    static let smoothing = 0.2
    /// Until an instance has this many calls it is scored optimistically, so that it gets tried.
    static let warmUpCalls = 5

    public private(set) var calls = 0
    public private(set) var averageLatencyMilliseconds = 0.0
    public private(set) var successRate = 1.0

    public init() {}

    mutating func record(latency: Duration, succeeded: Bool) {
        let milliseconds = Double(latency.components.seconds) * 1000 + Double(latency.components.attoseconds) / 1e15
        calls += 1
        if calls == 1 {
            averageLatencyMilliseconds = milliseconds
            successRate = succeeded ? 1 : 0
        } else {
            averageLatencyMilliseconds += Self.smoothing * (milliseconds - averageLatencyMilliseconds)
            successRate += Self.smoothing * ((succeeded ? 1 : 0) - successRate)
        }
    }
}

/// A circuit breaker per instance: after `threshold` consecutive failures it opens and keeps work
/// away for `openFor`; then one probe call is let through (half-open); its success closes the
/// circuit, its failure opens it again for twice as long (up to `maximumOpen`).
public struct CircuitBreaker: Sendable, Equatable {
    public enum State: String, Sendable { case closed, open, halfOpen = "half-open" }

    public static let threshold = 5
    static let openFor: Duration = .seconds(10)
    static let maximumOpen: Duration = .seconds(300)

    public private(set) var state: State = .closed
    public private(set) var consecutiveFailures = 0
    private(set) var openUntil: ContinuousClock.Instant?
    private var nextOpenDuration = CircuitBreaker.openFor
    private var probeInFlight = false

    public init() {}

    /// Whether a call may go to this instance now (reserving the half-open probe if so).
    mutating func admit(now: ContinuousClock.Instant) -> Bool {
        switch state {
        case .closed:
            return true
        case .open:
            guard let until = openUntil, now >= until else { return false }
            state = .halfOpen
            probeInFlight = true
            return true
        case .halfOpen:
            if probeInFlight { return false }
            probeInFlight = true
            return true
        }
    }

    /// Read-only form of `admit`, for deciding between candidates.
    func wouldAdmit(now: ContinuousClock.Instant) -> Bool {
        switch state {
        case .closed: true
        case .open: openUntil.map { now >= $0 } ?? false
        case .halfOpen: !probeInFlight
        }
    }

    /// A call that never ran gives back the half-open probe without a verdict.
    mutating func release() {
        probeInFlight = false
    }

    mutating func record(succeeded: Bool, now: ContinuousClock.Instant) {
        probeInFlight = false
        if succeeded {
            state = .closed
            consecutiveFailures = 0
            nextOpenDuration = Self.openFor
            return
        }
        consecutiveFailures += 1
        // Calls that were already in flight when it opened fail too; they do not make the
        // pause longer.
        if state == .open { return }
        if state == .halfOpen || consecutiveFailures >= Self.threshold {
            state = .open
            openUntil = now + nextOpenDuration
            nextOpenDuration = min(nextOpenDuration * 2, Self.maximumOpen)
        }
    }

    var jsonState: (state: String, failures: Int, retryInSeconds: Double?) {
        var retry: Double?
        if state == .open, let until = openUntil {
            let left = until - .now
            retry = max(0, Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18)
        }
        return (state.rawValue, consecutiveFailures, retry)
    }
}
