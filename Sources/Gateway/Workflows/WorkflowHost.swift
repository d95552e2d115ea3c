import Agents
import Backend
import JSONRPC
import Logging
import NIOCore
import Synchronization
import Router
import Telemetry
import Workflows

/// The workflow engine inside the gateway: the `workflows/*` methods, the executor (its agent
/// tasks go to the registry's agents like any `tools/call`), its transitions published as
/// events, event triggers fed by `events/publish`, and cron schedules.
///
/// Where state lives: with Redis, in the shared store; alone, in a journal under the state
/// directory when one is configured (then a restarted gateway resumes every unfinished
/// execution), else in memory. With replicas, schedules run on one replica only (the leader:
/// the live replica with the smallest id), and an event triggers at the replica where it was
/// published, so that a run starts once.
final class WorkflowHost: Sendable {
    let executor: WorkflowExecutor
    private let triggers: WorkflowTriggers
    private let methods: WorkflowMethods
    private let events: any PubSub
    private let isLeader: @Sendable () -> Bool
    private let resumesOnStart: Bool
    private let definitionFiles: [String]
    private let logger: Logger
    private let publishedEvents: AsyncStream<(String, RawJSON)>
    private let publishedSink: AsyncStream<(String, RawJSON)>.Continuation

    init(
        store: any KeyValueStore, events: any PubSub, agents: AgentRegistry, group: any EventLoopGroup, logger: Logger,
        resumesOnStart: Bool, definitionFiles: [String], isLeader: @escaping @Sendable () -> Bool,
        observability: GatewayObservability? = nil
    ) {
        let telemetry = WorkflowTelemetry(metrics: observability?.metrics, tracing: observability?.tracing)
        let executor = WorkflowExecutor(
            store: KeyValueWorkflowStateStore(store: store, namespace: "workflows"),
            runner: AgentWorkflowRunner(agents: agents, group: group, observability: observability, telemetry: telemetry),
            events: ObservedWorkflowEvents(inner: PubSubWorkflowEvents(events: events), telemetry: telemetry), logger: logger)
        self.executor = executor
        self.triggers = WorkflowTriggers(executor: executor, logger: logger)
        self.methods = WorkflowMethods(executor: executor)
        self.events = events
        self.isLeader = isLeader
        self.resumesOnStart = resumesOnStart
        self.definitionFiles = definitionFiles
        self.logger = logger
        (publishedEvents, publishedSink) = AsyncStream.makeStream(of: (String, RawJSON).self, bufferingPolicy: .bufferingNewest(10_000))
    }

    func register(in table: inout MethodTable) {
        for method in WorkflowMethods.methodNames {
            table.register(method) { [methods] request, context in
                let params = request.params.map(JSONValue.raw)
                let principal = context.principal
                var caller: WorkflowMethods.Caller = principal.proof == .unconfigured
                    ? .init(name: context.peerIdentity?.names.first ?? context.agentInstance?.rawValue)
                    : .init(name: principal.name, roles: principal.roles, isAuthenticated: true, tenant: context.tenant)
                // An execution joins the request's trace: the gateway's span, or else the caller's.
                caller.traceparent = context.trace?.context?.traceparent ?? GatewayObservability.traceContext(of: request)?.traceparent
                return .later(context.eventLoop.makeFutureWithTask {
                    try await methods.handle(method: method, params: params, caller: caller)
                })
            }
        }
    }

    /// Loads the configured definitions, resumes unfinished executions, then runs the executor,
    /// the schedules and the event triggers until cancelled.
    private let prepared = Mutex(false)

    /// Stores the configuration's definitions and resumes unfinished executions, once: before
    /// the listeners open when the backend is in this process, so that a client's first
    /// `workflows/execute` finds them; otherwise as `run` begins.
    func prepare() async {
        guard prepared.withLock({ done in defer { done = true }; return !done }) else { return }
        for file in definitionFiles {
            do {
                let source = try String(contentsOfFile: file, encoding: .utf8)
                let entry = try await executor.catalog.create(source: source, createdBy: "config")
                logger.info("workflow \(entry.definition.name) \(entry.definition.version) from \(file)\(entry.created ? "" : " (already stored)")")
            } catch let error as WorkflowError {
                logger.error("workflow file \(file): \(error.message)")
            } catch {
                logger.error("workflow file \(file): \(error)")
            }
        }
        if resumesOnStart {
            do {
                let resumed = try await executor.resumeAll()
                if !resumed.isEmpty { logger.notice("workflows: resumed \(resumed.count) unfinished executions: \(resumed.joined(separator: ", "))") }
            } catch {
                logger.error("workflows: could not resume unfinished executions: \(error.message)")
            }
        }
    }

    func run() async {
        await prepare()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.executor.run() }
            group.addTask { await self.scheduleWhileLeader() }
            group.addTask { await self.triggerOnEvents() }
            await group.next()
            group.cancelAll()
        }
    }

    /// Cron schedules fire on the leader only; leadership is checked every few seconds.
    private func scheduleWhileLeader() async {
        while !Task.isCancelled {
            guard isLeader() else {
                do { try await Task.sleep(for: .seconds(2)) } catch { return }
                continue
            }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.triggers.run() }
                group.addTask {
                    while !Task.isCancelled, self.isLeader() {
                        do { try await Task.sleep(for: .seconds(2)) } catch { return }
                    }
                }
                await group.next()
                group.cancelAll()
            }
        }
    }

    /// Every event published through `events/publish` may start workflows whose trigger names
    /// its topic. Events reach this through `eventPublished`, from the replica where they were
    /// published, so each starts its workflows once.
    private func triggerOnEvents() async {
        for await (topic, data) in publishedEvents {
            let started = await triggers.eventPublished(topic: topic, data: data.decoded())
            if !started.isEmpty { logger.info("event \(topic) started \(started.joined(separator: ", "))") }
        }
    }

    /// Takes an event published at this gateway (called on the publishing path: it only queues,
    /// a copy of the bytes, which would otherwise keep the request's whole read buffer alive;
    /// the decoding happens in the consumer).
    func eventPublished(topic: String, data: RawJSON) {
        publishedSink.yield((topic, RawJSON(unchecked: ByteBuffer(bytes: data.buffer.readableBytesView))))
    }
}

/// Runs a workflow's agent task as a `tools/call` to the agent the registry picks (waiting up to
/// a minute for a free one), and cancels it at the agent when the step is cancelled.
struct AgentWorkflowRunner: WorkflowStepRunner {
    var agents: AgentRegistry
    var group: any EventLoopGroup
    var observability: GatewayObservability?
    var telemetry: WorkflowTelemetry?

    func run(_ task: AgentTaskInvocation) async throws -> JSONValue {
        let lease: AgentRegistry.Lease
        do {
            lease = try await agents.acquire(.tool, task.tool, on: group.any(), timeout: .seconds(60)).get()
        } catch {
            throw AgentTaskFailure("\(error)")
        }
        var params: [String: JSONValue] = ["name": .string(lease.originalName), "arguments": task.arguments]
        var meta: [String: JSONValue] = ["workflowExecutionId": .string(task.executionID), "workflowStepId": .string(task.stepID)]
        // The agent's work hangs from the gateway's span of this call, under the step's span;
        // without tracing it still joins the execution's trace.
        let span: TraceSpan? = observability?.tracing.map { tracing in
            let parent: TraceParent = telemetry?.stepSpan(execution: task.executionID, step: task.stepID).map(TraceParent.span)
                ?? TraceParent(task.traceparent.flatMap { TraceContext(traceparent: $0) })
            return tracing.callSpan(.tool, name: task.tool, lease: lease, parent: parent)
        }
        if let context = span?.context ?? task.traceparent.flatMap({ TraceContext(traceparent: $0) }) {
            for (key, value) in context.metaMembers { meta[key] = .string(value) }
        }
        params["_meta"] = .object(meta)
        let timeout = task.timeout ?? lease.callTimeout
        let started = ContinuousClock.now
        let call = lease.endpoint.call("tools/call", params: .object(params), timeout: TimeAmount(timeout))
        @Sendable func ended(_ outcome: GatewayObservability.CallOutcome) {
            let elapsed = ContinuousClock.now - started
            observability?.callEnded(
                kind: "tool", name: task.tool, template: lease.template, agent: lease.instance.rawValue, outcome: outcome,
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            span?.end(outcome: outcome)
        }
        let result: RawJSON
        do {
            result = try await withTaskCancellationHandler {
                try await call.result.get()
            } onCancel: {
                lease.endpoint.cancel(call.id, reason: "the workflow step was cancelled")
            }
        } catch is AgentCallCancelled {
            lease.release()
            ended(.cancelled)
            throw CancellationError()
        } catch let error as JSONRPCError {
            lease.finish(succeeded: true)
            ended(.failed)
            throw AgentTaskFailure("the agent answered with error \(error.code): \(error.message)")
        } catch {
            lease.finish(succeeded: false)
            ended(.unanswered)
            throw AgentTaskFailure("\(error)")
        }
        lease.finish(succeeded: true)
        let verdict = AttemptVerdict(.success(result))
        if case .failed = verdict { ended(.failed) } else { ended(.succeeded) }
        if case .failed(let message, _) = verdict { throw AgentTaskFailure(message) }
        if let structured = result.member("structuredContent") { return structured.decoded() }
        return result.decoded()
    }
}

/// Publishes the executor's transitions on the gateway's pub-sub (subscribers see them as
/// `notifications/events/message`).
struct PubSubWorkflowEvents: WorkflowEventSink {
    var events: any PubSub
    private let clock = SystemClock()

    init(events: any PubSub) {
        self.events = events
    }

    func publish(topic: String, payload: JSONValue) async {
        var buffer = ByteBuffer()
        payload.write(to: &buffer)
        _ = try? await events.publish(PubSubMessage(topic: topic, payload: buffer, publishedAt: clock.now(), publisher: "workflows"))
    }
}
