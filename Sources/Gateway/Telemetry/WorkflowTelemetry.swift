import JSONRPC
import Prometheus
import Synchronization
import Telemetry
import Workflows

/// What workflows show of themselves: executions ended by state and steps' durations (metrics),
/// a span per execution and per step under the trace of the request that started it, all read
/// off the executor's transition events, so that every kind of step is covered.
final class WorkflowTelemetry: Sendable {
    private let tracing: GatewayTracing?
    private let executionsEnded: [String: Counter]
    private let stepDurations: [String: ValueHistogram]
    private let clock = ContinuousClock()

    private struct Open {
        var span: TraceSpan?
        var started: ContinuousClock.Instant
    }

    private struct State {
        var executions: [String: Open] = [:]
        var steps: [String: Open] = [:]
    }

    private let state = Mutex(State())
    /// Executions and steps followed at once; past it, new ones get no span (their metrics count).
    static let maximumOpen = 10_000
    /// Final states of steps and executions, as the events spell them.
    static let finalStates = ["COMPLETED", "FAILED", "CANCELLED", "SKIPPED", "TIMED_OUT"]

    init(metrics: GatewayMetrics?, tracing: GatewayTracing?) {
        self.tracing = tracing
        var ended: [String: Counter] = [:]
        var durations: [String: ValueHistogram] = [:]
        if let registry = metrics?.registry {
            for status in Self.finalStates {
                let label = status.lowercased()
                ended[status] = registry.makeCounter(
                    descriptor: .init(
                        namespace: "switchboard", metricName: "workflow_executions", unitName: "total",
                        helpText: "Workflow executions that ended, by final state."),
                    labels: [("state", label)])
                durations[status] = registry.makeValueHistogram(
                    descriptor: .init(
                        namespace: "switchboard", metricName: "workflow_step_duration", unitName: "seconds",
                        helpText: "Duration of workflow steps, by outcome."),
                    labels: [("outcome", label)], buckets: GatewayMetrics.durationBuckets)
            }
        }
        executionsEnded = ended
        stepDurations = durations
    }

    /// The span of a step in progress, for the calls it makes.
    func stepSpan(execution: String, step: String) -> TraceSpan? {
        state.withLock { $0.steps["\(execution)/\(step)"]?.span }
    }

    /// One transition the executor published.
    func observe(_ payload: JSONValue) {
        guard let event = payload["event"]?.stringValue, let execution = payload["executionId"]?.stringValue,
            let status = payload["status"]?.stringValue
        else { return }
        let caller = payload["traceparent"]?.stringValue.flatMap { TraceContext(traceparent: $0) }
        let now = clock.now
        switch event {
        case "execution":
            if Self.finalStates.contains(status) {
                executionsEnded[status]?.increment()
                let open = state.withLock { $0.executions.removeValue(forKey: execution) }
                open?.span?.end(errorType: status == "COMPLETED" ? nil : status.lowercased())
            } else {
                state.withLock { state in
                    guard state.executions[execution] == nil, state.executions.count < Self.maximumOpen else { return }
                    var span: TraceSpan?
                    if let tracing {
                        let name = payload["workflowName"]?.stringValue ?? "workflow"
                        span = tracing.startSpan("workflow \(name)", kind: .internal, parent: TraceParent(caller))
                        span?.setAttribute("switchboard.workflow.name", name)
                        span?.setAttribute("switchboard.workflow.execution_id", execution)
                    }
                    state.executions[execution] = Open(span: span, started: now)
                }
            }
        case "step":
            guard let step = payload["stepId"]?.stringValue else { return }
            let key = "\(execution)/\(step)"
            if status == "RUNNING" {
                state.withLock { state in
                    guard state.steps[key] == nil, state.steps.count < Self.maximumOpen else { return }
                    var span: TraceSpan?
                    if let tracing {
                        let parent: TraceParent = state.executions[execution]?.span.map(TraceParent.span) ?? TraceParent(caller)
                        span = tracing.startSpan("workflow.step \(step)", kind: .internal, parent: parent)
                        span?.setAttribute("switchboard.workflow.step_id", step)
                        span?.setAttribute("switchboard.workflow.execution_id", execution)
                    }
                    state.steps[key] = Open(span: span, started: now)
                }
            } else if Self.finalStates.contains(status) {
                guard let open = state.withLock({ $0.steps.removeValue(forKey: key) }) else { return }
                let elapsed = now - open.started
                stepDurations[status]?.record(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                open.span?.end(
                    errorType: status == "COMPLETED" || status == "SKIPPED" ? nil : status.lowercased(), message: payload["error"]?.stringValue)
            }
        default:
            break
        }
    }
}

/// The executor's events, seen by the telemetry before they are published.
struct ObservedWorkflowEvents: WorkflowEventSink {
    var inner: any WorkflowEventSink
    var telemetry: WorkflowTelemetry

    func publish(topic: String, payload: JSONValue) async {
        telemetry.observe(payload)
        await inner.publish(topic: topic, payload: payload)
    }
}
