/// How a changed template replaces its instances: `maxSurge` new ones may run beside the old
/// ones at a time, and at most `maxUnavailable` below the wanted count; with a canary, a share of
/// the calls goes to the new version first; each step compares the new version's error rate and
/// latency with the old one's and, when it is worse, rolls back on its own.
public struct RolloutPolicy: Sendable, Equatable {
    public var maxSurge = 1
    public var maxUnavailable = 0
    /// The share of calls the first new instance takes before the rollout goes on (0: no
    /// canary step; the shares then follow the instance counts).
    public var canaryShare = 0.0
    /// How long the canary runs before it is judged (and at least `minimumCalls` calls).
    public var canarySeconds = 10.0
    /// Calls the new version must have answered before a verdict counts; fewer is undecided.
    public var minimumCalls = 10
    /// Also how long each later step watches before the next.
    public var stepSeconds = 2.0
    /// Worse means: its error rate above the old one's by more than this (0.05: five points)…
    public var maxErrorRateIncrease = 0.05
    /// …or its mean latency above the old one's times this.
    public var maxLatencyRatio = 2.0
    public var automaticRollback = true
    /// The longest a new instance may take to be ready before the rollout is abandoned.
    public var readyTimeout = 60.0

    public init() {}

    public var problems: [String] {
        var problems: [String] = []
        if maxSurge < 1 && maxUnavailable < 1 { problems.append("rollout needs maxSurge or maxUnavailable above 0, or it could never move") }
        if !(0...1).contains(canaryShare) { problems.append("rollout.canaryShare must be from 0 to 1") }
        if maxLatencyRatio < 1 { problems.append("rollout.maxLatencyRatio must be at least 1") }
        return problems
    }
}

/// What one version answered over a span of time.
public struct VersionFigures: Sendable, Equatable {
    public var calls = 0
    /// Calls that failed: the agent crashed or timed out, or answered with an error.
    public var failures = 0
    public var latencySeconds = 0.0

    public init(calls: Int = 0, failures: Int = 0, latencySeconds: Double = 0) {
        self.calls = calls
        self.failures = failures
        self.latencySeconds = latencySeconds
    }

    public var errorRate: Double { calls == 0 ? 0 : Double(failures) / Double(calls) }
    public var meanLatency: Double { calls == 0 ? 0 : latencySeconds / Double(calls) }

    public static func - (lhs: VersionFigures, rhs: VersionFigures) -> VersionFigures {
        VersionFigures(calls: lhs.calls - rhs.calls, failures: lhs.failures - rhs.failures, latencySeconds: lhs.latencySeconds - rhs.latencySeconds)
    }

    public static func + (lhs: VersionFigures, rhs: VersionFigures) -> VersionFigures {
        VersionFigures(calls: lhs.calls + rhs.calls, failures: lhs.failures + rhs.failures, latencySeconds: lhs.latencySeconds + rhs.latencySeconds)
    }
}

public enum RolloutVerdict: Sendable, Equatable {
    case healthy(String)
    case worse(String)
    case undecided(String)
}

/// Compares a new version with the one it replaces, over the same span.
public enum RolloutJudge {
    public static func verdict(new: VersionFigures, old: VersionFigures, policy: RolloutPolicy) -> RolloutVerdict {
        let newRate = percent(new.errorRate)
        // A version that fails most of what it was given is worse however few calls it had.
        if new.calls >= 3, new.failures * 2 > new.calls, old.errorRate < 0.5 {
            return .worse("the new version failed \(new.failures) of \(new.calls) calls (\(newRate)); the old one \(percent(old.errorRate))")
        }
        guard new.calls >= policy.minimumCalls else {
            return .undecided("the new version has answered \(new.calls) of the \(policy.minimumCalls) calls a verdict needs")
        }
        if new.errorRate > old.errorRate + policy.maxErrorRateIncrease {
            return .worse(
                "its error rate is \(newRate) over \(new.calls) calls against \(percent(old.errorRate)) for the old version (more than \(percent(policy.maxErrorRateIncrease)) worse)")
        }
        if old.calls > 0, old.meanLatency > 0, new.meanLatency > old.meanLatency * policy.maxLatencyRatio {
            return .worse(
                "its mean latency is \(milliseconds(new.meanLatency)) against \(milliseconds(old.meanLatency)) for the old version (more than \(policy.maxLatencyRatio)×)")
        }
        return .healthy("error rate \(newRate) against \(percent(old.errorRate)), mean latency \(milliseconds(new.meanLatency)) against \(milliseconds(old.meanLatency)), over \(new.calls) calls")
    }

    private static func percent(_ share: Double) -> String { "\((share * 1000).rounded() / 10)%" }
    private static func milliseconds(_ seconds: Double) -> String { "\((seconds * 10_000).rounded() / 10) ms" }
}
