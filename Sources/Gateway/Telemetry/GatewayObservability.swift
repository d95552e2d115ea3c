import Agents
import Backend
import JSONRPC
import Logging
import Monitoring
import ServiceLifecycle
import Telemetry

#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What the gateway records about itself, in one place the connections, the call router, the
/// task engine and the workflows reach: the Prometheus families, the tracer, the access log
/// switch, the per-agent history and the message log.
final class GatewayObservability: Sendable {
    let metrics: GatewayMetrics?
    let tracing: GatewayTracing?
    /// Exports the tracer's spans; runs with the gateway and flushes at shutdown.
    let tracingExporter: (any Service)?
    let accessLog: Bool
    let history: PerformanceHistory?
    let messages: MessageLog
    /// The alert rules' state; nil without rules.
    let alerts: AlertEvaluator?
    let settings: TelemetrySettings
    /// This replica's name with a shared backend: its agents' histories are kept under the ids
    /// the other replicas know them by (`ID@REPLICA`), so that every replica reads one history.
    let replica: String?
    private let agents: AgentRegistry?
    private let clock = SystemClock()
    private let callSeries = CallSeriesDirectory()

    /// Whether a request needs its start time and outcome kept (a metric, a span, a log line).
    let observesRequests: Bool

    init(
        metrics: GatewayMetrics?, tracing: (GatewayTracing, any Service)?, accessLog: Bool, history: PerformanceHistory?,
        messages: MessageLog, settings: TelemetrySettings = TelemetrySettings(), replica: String? = nil, agents: AgentRegistry? = nil
    ) {
        self.replica = replica
        self.agents = agents
        self.settings = settings
        self.alerts = settings.alerts.isEmpty ? nil : AlertEvaluator(rules: settings.alerts)
        self.metrics = metrics
        self.tracing = tracing?.0
        self.tracingExporter = tracing?.1
        self.accessLog = accessLog
        self.history = history
        self.messages = messages
        self.observesRequests = metrics != nil || tracing != nil || accessLog
    }

    /// The transport's instruments, nil without metrics.
    func transport(_ name: String) -> TransportInstruments? { metrics?.transport(name) }

    /// A relayed call ended: its metric, its place in the history.
    func callEnded(
        kind: String, name: String, template: String, agent local: String, outcome: CallOutcome, seconds: Double
    ) {
        let agent = historyID(of: local)
        let kindCode: UInt8 = switch kind {
        case "tool": 0
        case "prompt": 1
        default: 2
        }
        let metrics = self.metrics
        guard let series = callSeries.series(agent: agent, kind: kindCode, name: name, make: {
            CallSeries(agent: agent, template: template, tool: name, instruments: metrics?.toolCalls(kind: kind, name: name, template: template))
        }) else {
            // Past the bound of series: the slower way, by name.
            if let metrics { Self.count(outcome, seconds: seconds, in: metrics.toolCalls(kind: kind, name: name, template: template)) }
            if let history, outcome != .cancelled {
                history.recordCall(agent: agent, template: template, tool: name, succeeded: outcome == .succeeded, seconds: seconds, at: clock.now())
            }
            return
        }
        if let instruments = series.instruments { Self.count(outcome, seconds: seconds, in: instruments) }
        guard outcome != .cancelled, history != nil else { return }
        if let closed = series.record(succeeded: outcome == .succeeded, seconds: seconds, now: clock.now()) { handOver(closed, of: series) }
    }

    private static func count(_ outcome: CallOutcome, seconds: Double, in instruments: ToolCallInstruments) {
        switch outcome {
        case .succeeded: instruments.succeeded.increment()
        case .failed: instruments.failed.increment()
        case .unanswered: instruments.unanswered.increment()
        case .cancelled: instruments.cancelled.increment()
        }
        if outcome != .cancelled { instruments.duration.record(seconds) }
    }

    private func handOver(_ tally: CallSeries.Tally, of series: CallSeries) {
        history?.recordCalls(
            agent: series.agent, template: series.template, tool: series.tool, calls: tally.calls, errors: tally.errors, latency: tally.latency,
            at: Timestamp(millisecondsSinceEpoch: tally.minute * 60_000))
    }

    /// Hands every tally to the history: before it is read, written or judged.
    func drainCallSeries() {
        for series in callSeries.all {
            if let tally = series.drain() { handOver(tally, of: series) }
        }
    }

    enum CallOutcome: Sendable {
        case succeeded
        /// The agent answered with an error (or a tool error).
        case failed
        /// No answer: a timeout, a dead agent.
        case unanswered
        case cancelled
    }
}

// MARK: Agents' ids in the history

extension GatewayObservability {
    /// The id an agent's history is kept under: with replicas, a local agent's id as the others
    /// know it (`ID@REPLICA`); otherwise the id itself.
    func historyID(of agent: String) -> String {
        guard let replica, let agents, agents.isKnownLocal(AgentRegistry.InstanceID(agent)) else { return agent }
        return "\(agent)@\(replica)"
    }
}

// MARK: Requests

extension GatewayObservability {
    /// The trace a request's caller put it in: `params._meta.traceparent` (and `tracestate`).
    static func traceContext(of request: JSONRPCRequest) -> TraceContext? {
        guard let meta = request.params?.member("_meta"), meta.kind == .object,
            let traceparent = meta.member("traceparent")?.stringValue
        else { return nil }
        return TraceContext(traceparent: traceparent, tracestate: meta.member("tracestate")?.stringValue)
    }

    /// The access log's line for a request: at info, its facts as metadata (members of the JSON
    /// line), the principal and connection from the connection's logger.
    func logAccess(
        _ logger: Logger, method: String, id: JSONRPCID, error: JSONRPCError?, cancelled: Bool, seconds: Double, transport: String,
        span: TraceSpan?, callerTrace: TraceContext?
    ) {
        var metadata: Logger.Metadata = [
            "method": "\(method)",
            "id": "\(id)",
            "outcome": "\(cancelled ? "cancelled" : error == nil ? "ok" : "error")",
            "durationMs": "\((seconds * 1_000_000).rounded() / 1000)",
            "transport": "\(transport)",
        ]
        if let error { metadata["code"] = "\(error.code)" }
        if let trace = span?.context ?? callerTrace {
            metadata["trace_id"] = "\(trace.traceID)"
            metadata["span_id"] = "\(trace.spanID)"
        }
        logger.info("request", metadata: metadata)
    }
}

extension GatewayTracing {
    /// A request's span, named after the MCP conventions: `{method} {target}` where the request
    /// names a tool, prompt or resource.
    func requestSpan(for request: JSONRPCRequest, transport: String, parent: TraceContext?) -> TraceSpan {
        let method = request.method
        var target: String?
        switch method {
        case "tools/call", "prompts/get": target = request.params?.member("name")?.stringValue
        case "resources/read": target = request.params?.member("uri")?.stringValue
        default: break
        }
        let span = startSpan(target.map { "\(method) \($0)" } ?? method, kind: .server, parent: TraceParent(parent))
        span.setAttribute("mcp.method.name", method)
        span.setAttribute("jsonrpc.request.id", "\(request.id)")
        span.setAttribute("network.transport", transport == "stdio" || transport == "agent" ? "pipe" : transport == "unix" ? "unix" : "tcp")
        if method == "tools/call", let target {
            span.setAttribute("gen_ai.tool.name", target)
            span.setAttribute("gen_ai.operation.name", "execute_tool")
        } else if method == "prompts/get", let target {
            span.setAttribute("gen_ai.prompt.name", target)
        } else if method == "resources/read", let target {
            span.setAttribute("mcp.resource.uri", target)
        }
        return span
    }
}

// MARK: Making it

extension GatewayObservability {
    struct StartupError: Error, CustomStringConvertible {
        var description: String
    }

    /// From the settings: metrics unless turned off, tracing when an endpoint is configured or
    /// in the environment, the history in `backendStore` (Redis, shared by the replicas) or, on
    /// the embedded backend, in a journal in the state directory (in memory without one).
    static func make(
        settings: GatewaySettings, backendStore: (any KeyValueStore)?, replica: String?, agents: AgentRegistry, logger: Logger
    ) throws -> GatewayObservability {
        let telemetry = settings.telemetry
        let metrics = telemetry.metricsEnabled ? GatewayMetrics() : nil
        let tracing: (GatewayTracing, any Service)?
        do {
            tracing = try GatewayTracing.make(settings: telemetry.tracing, environment: ProcessInfo.processInfo.environment, logger: logger)
        } catch {
            throw StartupError(description: "tracing: \(error)")
        }
        let store: any KeyValueStore
        if let backendStore {
            store = backendStore
        } else if let directory = settings.workflows.stateDirectory {
            _ = mkdir(directory, 0o700)
            do {
                store = try JournaledKeyValueStore(path: "\(directory)/history.journal")
            } catch {
                throw StartupError(description: "history journal: \(error)")
            }
        } else {
            store = InMemoryKeyValueStore()
        }
        let history = PerformanceHistory(
            store: store, replica: replica ?? "local", retention: telemetry.history.retention, logger: logger)
        return GatewayObservability(
            metrics: metrics, tracing: tracing, accessLog: telemetry.accessLog, history: history, messages: MessageLog(), settings: telemetry,
            replica: replica, agents: agents)
    }
}
