import Backend
import JSONRPC
import Synchronization

/// Judges the alert rules, evaluation after evaluation, and says which alerts start or stop
/// firing.
///
/// A rule has one alert instance per subject: the agent id for per-agent measures (errorRate,
/// latencyP99, calls), the template for per-template measures (healthyInstances, instances
/// with a template), "fleet" for those without one, and "queue" for queueDepth. An instance is
/// pending while its condition holds for less than `holdFor`, then firing; a firing instance
/// whose condition no longer holds — or whose subject is gone (an agent without samples in
/// the window) — resolves and is forgotten. A pending one that clears is forgotten silently.
///
/// A per-agent figure that cannot be judged (fewer calls than `minimumCalls`, no latency)
/// leaves the instance as it is: a failing agent that callers stop calling does not resolve
/// and fire again with every lull.
///
/// A rule keeps at most `maximumInstancesPerRule` instances; subjects beyond are not judged
/// until others resolve.
public final class AlertEvaluator: Sendable {
    public static let maximumInstancesPerRule = 1_000

    /// The subject of queueDepth rules.
    public static let queueSubject = "queue"
    /// The subject of instance rules without a template.
    public static let fleetSubject = "fleet"

    private struct Instance: Sendable {
        var isFiring: Bool
        /// When the condition started to hold.
        var since: Timestamp
        var value: Double
    }

    private struct State: Sendable {
        var rules: [AlertRule]
        /// By rule (index in `rules`), by subject.
        var instances: [[String: Instance]]
    }

    private let state: Mutex<State>

    public init(rules: [AlertRule]) {
        state = Mutex(State(rules: rules, instances: Array(repeating: [:], count: rules.count)))
    }

    public var rules: [AlertRule] {
        state.withLock { $0.rules }
    }

    /// Judges every rule at `now`. `figures` is asked once per distinct window of the
    /// per-agent rules (the queue and instance counts do not depend on it).
    public func evaluate(now: Timestamp, figures: (Duration) -> AlertFigures) -> [AlertTransition] {
        let rules = self.rules
        var figuresByWindow: [Duration: AlertFigures] = [:]
        let observations = rules.map { rule -> [String: Double?] in
            let window = rule.measure.isPerAgent ? rule.window : figuresByWindow.keys.first ?? rule.window
            if figuresByWindow[window] == nil { figuresByWindow[window] = figures(window) }
            return Self.observe(rule, in: figuresByWindow[window]!)
        }
        return state.withLock { state in
            // The rules may have been replaced while the figures were taken: judge them next time.
            guard state.rules == rules else { return [] }
            var transitions: [AlertTransition] = []
            for index in rules.indices {
                transitions += Self.judge(rules[index], observations[index], instances: &state.instances[index], now: now)
            }
            return transitions
        }
    }

    /// Every pending and firing alert, by rule then subject.
    public func active() -> [ActiveAlert] {
        state.withLock { state in
            state.rules.indices.flatMap { index in
                state.instances[index].sorted { $0.key < $1.key }.map { subject, instance in
                    ActiveAlert(
                        rule: state.rules[index], subject: subject, state: instance.isFiring ? .firing : .pending,
                        value: instance.value, since: instance.since)
                }
            }
        }
    }

    /// Takes a new set of rules (a configuration reload). Alerts of rules that are still
    /// there, unchanged, carry on; firing alerts of the others resolve.
    public func replaceRules(_ rules: [AlertRule], now: Timestamp) -> [AlertTransition] {
        state.withLock { state in
            var transitions: [AlertTransition] = []
            var instances: [[String: Instance]] = Array(repeating: [:], count: rules.count)
            for (index, old) in state.rules.enumerated() {
                if let kept = rules.firstIndex(of: old), instances[kept].isEmpty {
                    instances[kept] = state.instances[index]
                    continue
                }
                for (subject, instance) in state.instances[index].sorted(by: { $0.key < $1.key }) where instance.isFiring {
                    transitions.append(
                        AlertTransition(rule: old, subject: subject, state: .resolved, value: instance.value, since: instance.since, at: now))
                }
            }
            state.rules = rules
            state.instances = instances
            return transitions
        }
    }

    // MARK: Judging

    /// Each subject's value under the rule; nil for a subject present but not judged.
    private static func observe(_ rule: AlertRule, in figures: AlertFigures) -> [String: Double?] {
        switch rule.measure {
        case .queueDepth:
            return [queueSubject: Double(figures.queueDepth)]
        case .healthyInstances, .instances:
            let counts: InstanceCounts
            let subject: String
            if let template = rule.template {
                // A template without any instance is the case that matters most: it is judged as 0 of 0.
                counts = figures.instancesByTemplate[template] ?? InstanceCounts(healthy: 0, total: 0)
                subject = template
            } else {
                counts = figures.instancesByTemplate.values.reduce(InstanceCounts(healthy: 0, total: 0)) {
                    InstanceCounts(healthy: $0.healthy + $1.healthy, total: $0.total + $1.total)
                }
                subject = fleetSubject
            }
            return [subject: Double(rule.measure == .healthyInstances ? counts.healthy : counts.total)]
        case .errorRate, .latencyP99, .calls:
            var agents: [String: RecentAgentFigures] = [:]
            if let agent = rule.agent {
                if let found = figures.agents[agent] {
                    agents[agent] = found
                } else if rule.measure == .calls {
                    // A silent agent made no calls: "calls below" must see it.
                    agents[agent] = RecentAgentFigures(calls: 0, errors: 0, latencyP99: nil, template: rule.template)
                }
            } else {
                agents = figures.agents
            }
            if let template = rule.template {
                agents = agents.filter { $0.value.template == template }
            }
            return agents.mapValues { agent -> Double? in
                switch rule.measure {
                case .calls: return Double(agent.calls)
                case .errorRate: return agent.calls >= rule.minimumCalls ? agent.errorRate : nil
                default: return agent.calls >= rule.minimumCalls ? agent.latencyP99 : nil
                }
            }
        }
    }

    private static func judge(
        _ rule: AlertRule, _ observation: [String: Double?], instances: inout [String: Instance], now: Timestamp
    ) -> [AlertTransition] {
        var transitions: [AlertTransition] = []
        func transition(_ subject: String, _ state: AlertTransition.State, _ instance: Instance) {
            transitions.append(AlertTransition(rule: rule, subject: subject, state: state, value: instance.value, since: instance.since, at: now))
        }
        let holdFor = rule.holdFor.wholeMilliseconds
        for (subject, value) in observation.sorted(by: { $0.key < $1.key }) {
            guard let value else { continue }
            let holds = rule.comparison.holds(for: value)
            if var instance = instances[subject] {
                instance.value = value
                if !holds {
                    if instance.isFiring { transition(subject, .resolved, instance) }
                    instances[subject] = nil
                    continue
                }
                if !instance.isFiring, now.millisecondsSinceEpoch - instance.since.millisecondsSinceEpoch >= holdFor {
                    instance.isFiring = true
                    transition(subject, .firing, instance)
                }
                instances[subject] = instance
            } else if holds, instances.count < maximumInstancesPerRule {
                let instance = Instance(isFiring: holdFor <= 0, since: now, value: value)
                if instance.isFiring { transition(subject, .firing, instance) }
                instances[subject] = instance
            }
        }
        for (subject, instance) in instances.sorted(by: { $0.key < $1.key }) where observation[subject] == nil {
            if instance.isFiring { transition(subject, .resolved, instance) }
            instances[subject] = nil
        }
        return transitions
    }
}

/// An alert that started or stopped firing.
public struct AlertTransition: Sendable, Equatable {
    public enum State: String, Sendable {
        case firing, resolved
    }

    public var rule: AlertRule
    public var subject: String
    public var state: State
    /// The value judged last.
    public var value: Double
    /// When the condition started to hold.
    public var since: Timestamp
    public var at: Timestamp

    public init(rule: AlertRule, subject: String, state: State, value: Double, since: Timestamp, at: Timestamp) {
        self.rule = rule
        self.subject = subject
        self.state = state
        self.value = value
        self.since = since
        self.at = at
    }

    public var json: JSONValue {
        var members = AlertRule.describe(rule, subject: subject, state: state.rawValue, value: value, since: since)
        members["at"] = .string(at.iso8601)
        return .object(members)
    }
}

/// A pending or firing alert, for the status page.
public struct ActiveAlert: Sendable, Equatable {
    public enum State: String, Sendable {
        case pending, firing
    }

    public var rule: AlertRule
    public var subject: String
    public var state: State
    public var value: Double
    public var since: Timestamp

    public init(rule: AlertRule, subject: String, state: State, value: Double, since: Timestamp) {
        self.rule = rule
        self.subject = subject
        self.state = state
        self.value = value
        self.since = since
    }

    public var json: JSONValue {
        .object(AlertRule.describe(rule, subject: subject, state: state.rawValue, value: value, since: since))
    }
}

extension AlertRule {
    /// What a transition and an active alert both say: the rule, its subject and where it stands.
    static func describe(_ rule: AlertRule, subject: String, state: String, value: Double, since: Timestamp) -> [String: JSONValue] {
        [
            "alert": .string(rule.name),
            "subject": .string(subject),
            "state": .string(state),
            "severity": .string(rule.severity),
            "measure": .string(rule.measure.rawValue),
            "threshold": .double(rule.comparison.threshold),
            "comparison": .string(rule.comparison.name),
            "value": .double(rounded(value, digits: 6)),
            "since": .string(since.iso8601),
        ]
    }
}
