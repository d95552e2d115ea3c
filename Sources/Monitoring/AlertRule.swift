/// A condition over the gateway's figures that operators want to hear about, from the
/// configuration.
public struct AlertRule: Sendable, Equatable {
    public enum Measure: String, Sendable, CaseIterable {
        /// Errors over calls of an agent in the window.
        case errorRate
        /// The 99th percentile latency of an agent's calls in the window, in seconds.
        case latencyP99
        /// An agent's calls in the window.
        case calls
        /// Tasks waiting in the queue.
        case queueDepth
        /// Healthy instances of a template (of the fleet without one).
        case healthyInstances
        /// Instances of a template (of the fleet without one).
        case instances

        /// Whether it is judged per agent (rather than per template, or once).
        public var isPerAgent: Bool {
            switch self {
            case .errorRate, .latencyP99, .calls: true
            case .queueDepth, .healthyInstances, .instances: false
            }
        }
    }

    public enum Comparison: Sendable, Equatable {
        case above(Double)
        case below(Double)

        public var threshold: Double {
            switch self {
            case .above(let threshold), .below(let threshold): threshold
            }
        }

        /// "above" or "below".
        public var name: String {
            switch self {
            case .above: "above"
            case .below: "below"
            }
        }

        public func holds(for value: Double) -> Bool {
            switch self {
            case .above(let threshold): value > threshold
            case .below(let threshold): value < threshold
            }
        }
    }

    /// Unique among the rules, of [A-Za-z0-9_.-].
    public var name: String
    public var measure: Measure
    public var comparison: Comparison
    /// Per agent of this template (errorRate, latencyP99, calls), or this template's instances
    /// (healthyInstances, instances); nil: every agent, or the whole fleet.
    public var template: String?
    /// One agent (errorRate, latencyP99, calls).
    public var agent: String?
    /// The figures judged are those of the last `window` (errorRate, latencyP99, calls).
    public var window: Duration
    /// How long the condition must hold before the alert fires; zero: at once.
    public var holdFor: Duration
    /// errorRate and latencyP99 are judged only with at least this many calls in the window.
    public var minimumCalls: Int
    /// The event topic the gateway publishes transitions on (nil: the gateway's default).
    public var topic: String?
    /// The URL the gateway posts transitions to.
    public var webhook: String?
    /// Free text passed along with transitions.
    public var severity: String

    public init(
        name: String, measure: Measure, comparison: Comparison, template: String? = nil, agent: String? = nil,
        window: Duration = .seconds(60), holdFor: Duration = .zero, minimumCalls: Int = 1, topic: String? = nil,
        webhook: String? = nil, severity: String = "warning"
    ) {
        self.name = name
        self.measure = measure
        self.comparison = comparison
        self.template = template
        self.agent = agent
        self.window = window
        self.holdFor = holdFor
        self.minimumCalls = minimumCalls
        self.topic = topic
        self.webhook = webhook
        self.severity = severity
    }

    /// What is wrong with a set of rules, for the configuration to report; empty when they
    /// can be evaluated as meant.
    public static func problems(in rules: [AlertRule]) -> [String] {
        var problems: [String] = []
        var names: Set<String> = []
        for rule in rules {
            let name = rule.name
            if name.isEmpty || !name.unicodeScalars.allSatisfy(Self.isNameCharacter) {
                problems.append("alert rule name \"\(name)\" must be letters, digits, '_', '.' or '-'")
            }
            if !names.insert(name).inserted { problems.append("alert rule \"\(name)\" is defined twice") }
            if !rule.comparison.threshold.isFinite { problems.append("alert rule \"\(name)\": the threshold must be a finite number") }
            if rule.measure.isPerAgent {
                if rule.window <= .zero { problems.append("alert rule \"\(name)\": the window must be longer than zero") }
                if rule.window > .seconds(HistoryLimits.recentMinutes * 60) {
                    problems.append("alert rule \"\(name)\": the window must be at most \(HistoryLimits.recentMinutes) minutes")
                }
            }
            if rule.holdFor < .zero { problems.append("alert rule \"\(name)\": 'for' must not be negative") }
            if rule.minimumCalls < 0 { problems.append("alert rule \"\(name)\": minimumCalls must not be negative") }
        }
        return problems
    }

    private static func isNameCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", ".", "-": true
        default: false
        }
    }
}

/// What the alert rules are judged on, taken at one evaluation.
public struct AlertFigures: Sendable, Equatable {
    /// By agent id, over the window of the rule being judged.
    public var agents: [String: RecentAgentFigures]
    public var queueDepth: Int
    public var instancesByTemplate: [String: InstanceCounts]

    public init(agents: [String: RecentAgentFigures] = [:], queueDepth: Int = 0, instancesByTemplate: [String: InstanceCounts] = [:]) {
        self.agents = agents
        self.queueDepth = queueDepth
        self.instancesByTemplate = instancesByTemplate
    }
}

/// A template's instances.
public struct InstanceCounts: Sendable, Equatable {
    public var healthy: Int
    public var total: Int

    public init(healthy: Int, total: Int) {
        self.healthy = healthy
        self.total = total
    }
}
