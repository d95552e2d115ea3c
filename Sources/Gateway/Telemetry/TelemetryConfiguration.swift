import Monitoring
import Telemetry
import Workflows
import Yams

/// What operators watch the gateway through: `metrics:`, `tracing:`, `logging:`, `history:` and
/// `alerts:` in the config file.
public struct TelemetrySettings: Sendable {
    /// `GET /metrics` and the `metrics/prometheus` method; on unless turned off.
    public var metricsEnabled = true
    public var tracing = TracingSettings()
    /// One log line per request, at info, with its method, outcome, duration, principal and
    /// trace (`logging.accessLog`, or `switchboard serve --access-log`).
    public var accessLog = false
    public var history = HistorySettings()
    public var alerts: [AlertRule] = []
    /// How often alert rules are judged.
    public var alertInterval: Duration = .seconds(5)
    /// Where alert transitions are published when a rule names no topic.
    public var alertTopic = "switchboard.alerts"

    public init() {}
}

/// The per-agent history: how long each resolution is kept, and how often buckets are written
/// and instances sampled.
public struct HistorySettings: Sendable {
    public var retention = HistoryRetention.default
    public var flushInterval: Duration = .seconds(60)
    public var sampleInterval: Duration = .seconds(15)

    public init() {}
}

extension ConfigurationReader {
    /// `metrics: {enabled: false}` turns the Prometheus endpoint off.
    mutating func readMetrics(_ node: Node) {
        guard let fields = mapping(node, "metrics") else { return }
        for (keyNode, value) in fields {
            switch keyNode.string ?? "" {
            case "enabled":
                if let on = value.bool { settings.telemetry.metricsEnabled = on } else { report(value, "metrics.enabled must be true or false") }
            default: report(keyNode, "metrics.\(keyNode.string ?? ""): unknown key (known: enabled)")
            }
        }
    }

    /// `tracing: {endpoint, serviceName, samplingRatio, headers}`.
    mutating func readTracing(_ node: Node) {
        guard let fields = mapping(node, "tracing") else { return }
        var tracing = settings.telemetry.tracing
        for (keyNode, value) in fields {
            let key = keyNode.string ?? ""
            switch key {
            case "endpoint":
                if let url = string(value, "tracing.endpoint") {
                    if url.hasPrefix("http://") || url.hasPrefix("https://") {
                        tracing.endpoint = url
                    } else {
                        report(value, "tracing.endpoint must be an http:// or https:// URL (OTLP over HTTP)")
                    }
                }
            case "serviceName": if let name = string(value, "tracing.serviceName") { tracing.serviceName = name }
            case "samplingRatio":
                if let ratio = number(value, "tracing.samplingRatio", minimum: 0) {
                    if ratio > 1 { report(value, "tracing.samplingRatio must be between 0 and 1") } else { tracing.samplingRatio = ratio }
                }
            case "headers": if let headers = stringMap(value, "tracing.headers") { tracing.headers = headers }
            default: report(keyNode, "tracing.\(key): unknown key (known: endpoint, serviceName, samplingRatio, headers)")
            }
        }
        settings.telemetry.tracing = tracing
    }

    /// `logging: {accessLog: true}`.
    mutating func readLogging(_ node: Node) {
        guard let fields = mapping(node, "logging") else { return }
        for (keyNode, value) in fields {
            switch keyNode.string ?? "" {
            case "accessLog":
                if let on = value.bool { settings.telemetry.accessLog = on } else { report(value, "logging.accessLog must be true or false") }
            default: report(keyNode, "logging.\(keyNode.string ?? ""): unknown key (known: accessLog)")
            }
        }
    }

    /// `history: {minutes, hours, days, flushSeconds, sampleSeconds}`: retention of each
    /// resolution as a duration (`24h`, `30d`).
    mutating func readHistory(_ node: Node) {
        guard let fields = mapping(node, "history") else { return }
        var history = settings.telemetry.history
        for (keyNode, value) in fields {
            let key = keyNode.string ?? ""
            switch key {
            case "minutes": if let kept = duration(value, "history.minutes") { history.retention.minutes = kept }
            case "hours": if let kept = duration(value, "history.hours") { history.retention.hours = kept }
            case "days": if let kept = duration(value, "history.days") { history.retention.days = kept }
            case "flushSeconds":
                if let seconds = number(value, "history.flushSeconds", minimum: 0.05) { history.flushInterval = .milliseconds(Int64(seconds * 1000)) }
            case "sampleSeconds":
                if let seconds = number(value, "history.sampleSeconds", minimum: 0.05) { history.sampleInterval = .milliseconds(Int64(seconds * 1000)) }
            default: report(keyNode, "history.\(key): unknown key (known: minutes, hours, days, flushSeconds, sampleSeconds)")
            }
        }
        settings.telemetry.history = history
    }

    /// `alerts: {evaluateSeconds, topic, rules: [...]}`, or the list of rules alone.
    mutating func readAlerts(_ node: Node) {
        var ruleNodes: [Node] = []
        if case .sequence = node {
            ruleNodes = sequence(node, "alerts") ?? []
        } else if let fields = mapping(node, "alerts") {
            for (keyNode, value) in fields {
                let key = keyNode.string ?? ""
                switch key {
                case "rules": ruleNodes = sequence(value, "alerts.rules") ?? []
                case "evaluateSeconds":
                    if let seconds = number(value, "alerts.evaluateSeconds", minimum: 0.05) {
                        settings.telemetry.alertInterval = .milliseconds(Int64(seconds * 1000))
                    }
                case "topic": if let topic = string(value, "alerts.topic") { settings.telemetry.alertTopic = topic }
                default: report(keyNode, "alerts.\(key): unknown key (known: rules, evaluateSeconds, topic)")
                }
            }
        }
        var names: Set<String> = []
        for ruleNode in ruleNodes {
            guard let rule = alertRule(ruleNode) else { continue }
            guard names.insert(rule.name).inserted else {
                report(ruleNode, "alert \"\(rule.name)\" is defined twice")
                continue
            }
            // What the rule's own checks find (a window beyond what the history keeps at hand, say).
            let problems = AlertRule.problems(in: [rule])
            for problem in problems { report(ruleNode, problem) }
            if problems.isEmpty { settings.telemetry.alerts.append(rule) }
        }
    }

    private mutating func alertRule(_ node: Node) -> AlertRule? {
        guard let fields = mapping(node, "an alert rule") else { return nil }
        var name: String?
        var measure: AlertRule.Measure?
        var comparison: AlertRule.Comparison?
        var template: String?
        var agent: String?
        var window: Duration = .seconds(60)
        var holdFor: Duration = .zero
        var minimumCalls = 1
        var topic: String?
        var webhook: String?
        var severity = "warning"
        let measures = "errorRate, latencyP99, calls, queueDepth, healthyInstances, instances"
        for (keyNode, value) in fields {
            let key = keyNode.string ?? ""
            switch key {
            case "name": name = string(value, "alert name")
            case "measure":
                if let text = string(value, "alert measure") {
                    measure = AlertRule.Measure(rawValue: text)
                    if measure == nil { report(value, "unknown measure \"\(text)\" (known: \(measures))") }
                }
            case "above", "below":
                guard comparison == nil else {
                    report(keyNode, "an alert has one threshold: above or below, not both")
                    continue
                }
                if let threshold = number(value, "alert threshold", minimum: -Double.greatestFiniteMagnitude) {
                    comparison = key == "above" ? .above(threshold) : .below(threshold)
                }
            case "template": template = string(value, "alert template")
            case "agent": agent = string(value, "alert agent")
            case "window": if let span = duration(value, "alert window") { window = span }
            case "for": if let span = duration(value, "alert for") { holdFor = span }
            case "minimumCalls": if let count = integer(value, "alert minimumCalls", minimum: 1) { minimumCalls = count }
            case "topic": topic = string(value, "alert topic")
            case "webhook":
                if let url = string(value, "alert webhook") {
                    if url.hasPrefix("http://") || url.hasPrefix("https://") { webhook = url } else { report(value, "an alert's webhook must be an http:// or https:// URL") }
                }
            case "severity": if let text = string(value, "alert severity") { severity = text }
            default:
                report(keyNode, "alert key \"\(key)\" is unknown (known: name, measure, above, below, template, agent, window, for, minimumCalls, topic, webhook, severity)")
            }
        }
        guard let name else {
            report(node, "an alert rule needs a name")
            return nil
        }
        guard let measure else {
            report(node, "alert \(name) needs a measure (\(measures))")
            return nil
        }
        guard let comparison else {
            report(node, "alert \(name) needs a threshold: above: N or below: N")
            return nil
        }
        return AlertRule(
            name: name, measure: measure, comparison: comparison, template: template, agent: agent, window: window, holdFor: holdFor,
            minimumCalls: minimumCalls, topic: topic, webhook: webhook, severity: severity)
    }

    /// `90s`, `2m`, `24h`, `30d`, or a number of seconds: a duration as workflow files write one.
    mutating func duration(_ node: Node, _ what: String) -> Duration? {
        guard let text = string(node, what) else { return nil }
        if let duration = WorkflowDuration.parse(text) { return duration }
        report(node, "\(what) must be a duration such as 90s, 2m, 24h or 30d")
        return nil
    }
}
