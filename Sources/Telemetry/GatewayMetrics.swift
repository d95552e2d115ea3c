import Prometheus
import Synchronization

/// The gateway's Prometheus families, served at `GET /metrics`.
///
/// Instruments on hot paths are resolved once (per method at start-up, per tool on its first
/// call) and kept: a request pays a counter increment and a histogram observation, never a
/// lookup by name in the registry. Families whose value is a state of the gateway (agents, tasks,
/// queues, connections) are read when Prometheus scrapes, by the hooks the gateway adds.
///
/// No label takes unbounded values: methods come from the method table, tools and templates are
/// capped (past the cap they count as `other`), agents are bounded by the fleet.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let scrapeHooks = Mutex<[@Sendable () async -> Void]>([])
    private let requestInstruments = Mutex<[String: RequestInstruments]>([:])
    private let toolInstruments = Mutex<[ToolKey: ToolCallInstruments]>([:])
    private let transportInstruments = Mutex<[String: TransportInstruments]>([:])

    /// The most distinct (tool, template) pairs with their own series.
    public static let maximumToolSeries = 2_000

    /// Seconds: from a tenth of a millisecond (a relayed call) to five minutes (a long tool).
    public static let durationBuckets: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
    ]

    public let taskRetries: Counter
    public let taskAttempts: Counter
    public let rateLimitRefusals: Counter
    public let accessRefusals: Counter
    public let auditEntries: Counter
    public let eventsPublished: MirroredCounter
    public let eventsDelivered: MirroredCounter
    public let eventsDropped: MirroredCounter
    public let messagesSent: MirroredCounter
    public let redisCommands: MirroredCounter
    public let redisErrors: MirroredCounter
    public let redisRoundTrips: MirroredCounter
    public let breakerOpenings: MirroredCounter
    public let taskAssignmentLatency: ValueHistogram
    public let alertTransitions: Counter

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
            registry.makeCounter(descriptor: .init(namespace: "switchboard", metricName: name, unitName: "total", helpText: help), labels: labels)
        }
        taskRetries = counter("task_retries", "Task attempts that failed and were tried again.")
        taskAttempts = counter("task_attempts", "Task attempts started on an agent.")
        breakerOpenings = MirroredCounter(counter("circuit_breakers_opened", "Times an agent's circuit breaker opened."))
        rateLimitRefusals = counter("rate_limit_refusals", "Requests refused by a rate limit.")
        accessRefusals = counter("access_refusals", "Requests refused by access control (unauthenticated or not allowed).")
        auditEntries = counter("audit_entries", "Entries written to the audit trail.")
        alertTransitions = counter("alert_transitions", "Alerts that fired or resolved.")
        eventsPublished = MirroredCounter(counter("events_published", "Events published on topics."))
        eventsDelivered = MirroredCounter(counter("events_delivered", "Events delivered to subscribers."))
        eventsDropped = MirroredCounter(counter("events_dropped", "Events dropped because a subscriber's queue was full."))
        messagesSent = MirroredCounter(counter("messages_sent", "Messages sent to agents with messages/send."))
        redisCommands = MirroredCounter(counter("redis_commands", "Commands sent to Redis (round trips carry one or more)."))
        redisRoundTrips = MirroredCounter(counter("redis_round_trips", "Round trips to Redis (a pipeline is one)."))
        redisErrors = MirroredCounter(counter("redis_errors", "Round trips to Redis that failed (an error reply or a lost connection)."))
        taskAssignmentLatency = registry.makeValueHistogram(
            descriptor: .init(
                namespace: "switchboard", metricName: "task_assignment_latency", unitName: "seconds",
                helpText: "Time from a task's submission to its assignment to an agent."),
            labels: [], buckets: Self.durationBuckets)
    }

    // MARK: Requests

    /// The instruments of one JSON-RPC method (`unknown` for methods nobody serves).
    public func requests(method: String) -> RequestInstruments {
        requestInstruments.withLock { instruments in
            if let existing = instruments[method] { return existing }
            let made = RequestInstruments(registry: registry, method: method)
            instruments[method] = made
            return made
        }
    }

    // MARK: Tool calls

    private struct ToolKey: Hashable {
        var kind: String
        var name: String
        var template: String
    }

    /// The instruments of calls to `name` (a tool, prompt or resource) served by `template`.
    public func toolCalls(kind: String, name: String, template: String) -> ToolCallInstruments {
        let key = ToolKey(kind: kind, name: name, template: template)
        return toolInstruments.withLock { instruments in
            if let existing = instruments[key] { return existing }
            // Past the cap, new pairs share one series rather than grow the exposition.
            let labelled = instruments.count < Self.maximumToolSeries ? key : ToolKey(kind: kind, name: "other", template: "other")
            if let shared = instruments[labelled] { return shared }
            let made = ToolCallInstruments(registry: registry, kind: kind, name: labelled.name, template: labelled.template)
            instruments[labelled] = made
            return made
        }
    }

    // MARK: Transports

    /// Bytes and connections of one transport (`tcp`, `unix`, `tls`, `http`, `https`, `stdio`,
    /// `agent` for spawned agents' pipes).
    public func transport(_ name: String) -> TransportInstruments {
        transportInstruments.withLock { instruments in
            if let existing = instruments[name] { return existing }
            let made = TransportInstruments(registry: registry, transport: name)
            instruments[name] = made
            return made
        }
    }

    // MARK: Families read at scrape time

    /// A gauge family whose series the gateway sets in full at each scrape.
    public func gaugeFamily(_ name: String, help: String, unit: String? = nil) -> GaugeFamily {
        GaugeFamily(registry: registry, name: "switchboard_\(name)" + (unit.map { "_\($0)" } ?? ""), help: help)
    }

    /// Runs before every exposition, to set the families that mirror the gateway's state.
    public func onScrape(_ hook: @escaping @Sendable () async -> Void) {
        scrapeHooks.withLock { $0.append(hook) }
    }

    /// The text exposition (version 0.0.4), after the scrape hooks ran.
    public func exposition() async -> [UInt8] {
        for hook in scrapeHooks.withLock({ $0 }) { await hook() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(32_768)
        registry.emit(into: &buffer)
        return buffer
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// A method's instruments, registered on its first request: the exposition lists the methods
/// in use, not every method the gateway serves.
public final class LazyRequestInstruments: Sendable {
    private let metrics: GatewayMetrics
    private let method: String
    private let made = Mutex<RequestInstruments?>(nil)

    public init(metrics: GatewayMetrics, method: String) {
        self.metrics = metrics
        self.method = method
    }

    @inline(__always)
    public var instruments: RequestInstruments {
        made.withLock { made in
            if let made { return made }
            let instruments = metrics.requests(method: method)
            made = instruments
            return instruments
        }
    }
}

/// Requests of one method: how many ended how, and how long they took.
public final class RequestInstruments: Sendable {
    public let succeeded: Counter
    public let failed: Counter
    public let cancelled: Counter
    public let duration: ValueHistogram

    init(registry: PrometheusCollectorRegistry, method: String) {
        let total = MetricNameDescriptor(
            namespace: "switchboard", metricName: "requests", unitName: "total",
            helpText: "JSON-RPC requests answered, by method and outcome (ok, error, cancelled).")
        succeeded = registry.makeCounter(descriptor: total, labels: [("method", method), ("outcome", "ok")])
        failed = registry.makeCounter(descriptor: total, labels: [("method", method), ("outcome", "error")])
        cancelled = registry.makeCounter(descriptor: total, labels: [("method", method), ("outcome", "cancelled")])
        duration = registry.makeValueHistogram(
            descriptor: .init(
                namespace: "switchboard", metricName: "request_duration", unitName: "seconds",
                helpText: "Time from a request's arrival to its answer, by method."),
            labels: [("method", method)], buckets: GatewayMetrics.durationBuckets)
    }

    public enum Outcome: Sendable { case ok, error, cancelled }

    @inline(__always)
    public func record(_ outcome: Outcome, seconds: Double) {
        switch outcome {
        case .ok: succeeded.increment()
        case .error: failed.increment()
        case .cancelled: cancelled.increment()
        }
        duration.record(seconds)
    }
}

/// Calls relayed to agents for one tool (prompt, resource) and template.
public final class ToolCallInstruments: Sendable {
    public let succeeded: Counter
    /// The agent answered with an error, or `isError: true`.
    public let failed: Counter
    /// The call never got an answer: no agent, a timeout, the agent died.
    public let unanswered: Counter
    public let cancelled: Counter
    public let duration: ValueHistogram

    init(registry: PrometheusCollectorRegistry, kind: String, name: String, template: String) {
        let total = MetricNameDescriptor(
            namespace: "switchboard", metricName: "tool_calls", unitName: "total",
            helpText: "Calls relayed to agents, by kind (tool, prompt, resource), name, template and outcome.")
        let labels = [("kind", kind), ("tool", name), ("template", template)]
        succeeded = registry.makeCounter(descriptor: total, labels: labels + [("outcome", "ok")])
        failed = registry.makeCounter(descriptor: total, labels: labels + [("outcome", "error")])
        unanswered = registry.makeCounter(descriptor: total, labels: labels + [("outcome", "failed")])
        cancelled = registry.makeCounter(descriptor: total, labels: labels + [("outcome", "cancelled")])
        duration = registry.makeValueHistogram(
            descriptor: .init(
                namespace: "switchboard", metricName: "tool_call_duration", unitName: "seconds",
                helpText: "Time an agent took to answer a relayed call, by kind, name and template."),
            labels: labels, buckets: GatewayMetrics.durationBuckets)
    }
}

/// Connections and bytes of one transport.
public final class TransportInstruments: Sendable {
    public let opened: Counter
    public let open: Gauge
    public let received: Counter
    public let sent: Counter

    init(registry: PrometheusCollectorRegistry, transport: String) {
        let labels = [("transport", transport)]
        opened = registry.makeCounter(
            descriptor: .init(namespace: "switchboard", metricName: "connections_opened", unitName: "total", helpText: "Connections accepted, by transport."),
            labels: labels)
        open = registry.makeGauge(
            descriptor: .init(namespace: "switchboard", metricName: "connections", unitName: "", helpText: "Connections open, by transport."),
            labels: labels)
        received = registry.makeCounter(
            descriptor: .init(namespace: "switchboard", metricName: "received_bytes", unitName: "total", helpText: "Bytes of messages received, by transport."),
            labels: labels)
        sent = registry.makeCounter(
            descriptor: .init(namespace: "switchboard", metricName: "sent_bytes", unitName: "total", helpText: "Bytes of messages sent, by transport."),
            labels: labels)
    }
}

/// A Prometheus counter that follows a running total kept elsewhere (the pub-sub's counts, the
/// Redis client's): each sync adds what the total gained since the last one.
public final class MirroredCounter: Sendable {
    public let counter: Counter
    private let seen = Mutex<Int64>(0)

    init(_ counter: Counter) { self.counter = counter }

    public func sync(total: Int64) {
        let gained: Int64 = seen.withLock { seen in
            // A total that went back was restarted (a new backend): count it from zero.
            let gained = total >= seen ? total - seen : total
            seen = total
            return gained
        }
        if gained > 0 { counter.increment(by: gained) }
    }
}

/// A gauge family set in full at each scrape: series that are not set again are removed, so a
/// gone agent or an emptied queue leaves no stale value behind.
public final class GaugeFamily: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let name: String
    private let help: String
    private let current = Mutex<[[String]: Gauge]>([:])

    init(registry: PrometheusCollectorRegistry, name: String, help: String) {
        self.registry = registry
        self.name = name
        self.help = help
    }

    /// Sets every series at once: label sets → value.
    public func set(_ series: [(labels: [(String, String)], value: Double)]) {
        current.withLock { current in
            var next: [[String]: Gauge] = [:]
            for (labels, value) in series {
                let key = labels.flatMap { [$0.0, $0.1] }
                let gauge = current[key] ?? registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
                gauge.set(value)
                next[key] = gauge
            }
            for (key, gauge) in current where next[key] == nil { registry.unregisterGauge(gauge) }
            current = next
        }
    }
}
