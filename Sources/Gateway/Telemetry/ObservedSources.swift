import Agents
import Fleet
import Backend
import JSONRPC
import Redis
import Router
import Telemetry

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where the figures that are states, not events, come from: read when Prometheus scrapes.
extension GatewayObservability {
    /// Sets the gauge families from the registry, the task engine, the coordination counters
    /// and the Redis client just before each exposition.
    func installScrapeHooks(
        agents: AgentRegistry, tasks: any TaskService, coordination: CoordinationMethods, redis: RedisClient?, fleet: ResourceLedger
    ) {
        guard let metrics else { return }
        let agentsByState = metrics.gaugeFamily("agents", help: "Agent instances, by state and reported health.")
        let instancesByTemplate = metrics.gaugeFamily("template_instances", help: "Instances of each template, by whether they are healthy (idle or busy, circuit not open).")
        let inFlight = metrics.gaugeFamily("agent_calls_in_flight", help: "Calls an instance is serving now.")
        let load = metrics.gaugeFamily("agent_load_ratio", help: "Calls in flight over the instance's maximum concurrency.")
        let openCircuits = metrics.gaugeFamily("circuit_breakers_open", help: "Instances whose circuit breaker is open now.")
        let tasksByState = metrics.gaugeFamily("tasks", help: "Tasks by state, as far as this replica knows them.")
        let queued = metrics.gaugeFamily("tasks_queued", help: "Tasks waiting for an agent: by priority (1 highest) on the embedded backend, by queue with Redis.")
        let deadLettered = metrics.gaugeFamily("tasks_dead_lettered", help: "Tasks moved to the dead-letter list.")
        let subscriptions = metrics.gaugeFamily("event_subscriptions", help: "Event subscriptions open.")
        let memoryKeys = metrics.gaugeFamily("memory_keys", help: "Keys in shared memory (the embedded backend's; Redis reports its own).")
        let build = metrics.gaugeFamily("build_info", help: "The gateway's version, as a label; the value is 1.")
        let cost = metrics.gaugeFamily("fleet_cost_per_hour", help: "What the resources granted to spawned agents cost per hour (fleet.prices), by template.")
        let allocated = metrics.gaugeFamily("fleet_allocated", help: "Resources granted to spawned agents: cpu in cores, memory in bytes, gpu in devices.")
        let capacity = metrics.gaugeFamily("fleet_capacity", help: "Resources the gateway may grant: cpu in cores, memory in bytes, gpu in devices.")
        metrics.onScrape {
            var byState: [[String]: Double] = [:]
            var byTemplate: [[String]: Double] = [:]
            var flights: [(labels: [(String, String)], value: Double)] = []
            var loads: [(labels: [(String, String)], value: Double)] = []
            var open = 0.0
            for agent in agents.list() {
                let state = agent["currentState"]?.stringValue ?? "UNKNOWN"
                let health = agent["healthStatus"]?.stringValue ?? "unknown"
                byState[[state, health], default: 0] += 1
                let template = agent["template"]?.stringValue ?? "?"
                let circuitOpen = agent["circuit"]?["state"]?.stringValue == "open"
                if circuitOpen { open += 1 }
                let healthy = (state == "IDLE" || state == "BUSY") && !circuitOpen
                byTemplate[[template, healthy ? "true" : "false"], default: 0] += 1
                if let id = agent["agentId"]?.stringValue {
                    let labels = [("agent", id), ("template", template)]
                    flights.append((labels, Double(agent["inFlight"]?.integerValue ?? 0)))
                    let ratio = agent["performanceMetrics"]?["currentLoad"].flatMap { value -> Double? in
                        if case .double(let number) = value { return number }
                        return value.integerValue.map(Double.init)
                    }
                    loads.append((labels, ratio ?? 0))
                }
            }
            agentsByState.set(byState.map { (labels: [("state", $0.key[0]), ("health", $0.key[1])], value: $0.value) })
            instancesByTemplate.set(byTemplate.map { (labels: [("template", $0.key[0]), ("healthy", $0.key[1])], value: $0.value) })
            inFlight.set(flights)
            load.set(loads)
            openCircuits.set([(labels: [], value: open)])
            metrics.breakerOpenings.sync(total: Int64(agents.circuitsOpened))

            let statistics = await tasks.statistics()
            tasksByState.set(TaskState.allCases.map { (labels: [("state", $0.rawValue)], value: Double(statistics.byState[$0] ?? 0)) })
            if !statistics.queues.isEmpty {
                queued.set(statistics.queues.map { (labels: [("queue", $0.key)], value: Double($0.value)) })
            } else {
                // Every priority, so that a drained one reads 0 rather than vanishing.
                queued.set((1...10).map { (labels: [("priority", String($0))], value: Double(statistics.queuedByPriority[$0] ?? 0)) })
            }
            if let dead = statistics.deadLettered { deadLettered.set([(labels: [], value: Double(dead))]) }

            let totals = coordination.totals
            metrics.eventsPublished.sync(total: Int64(totals.published))
            metrics.eventsDelivered.sync(total: Int64(totals.delivered))
            metrics.eventsDropped.sync(total: Int64(totals.dropped))
            metrics.messagesSent.sync(total: Int64(totals.messages))
            let snapshot = coordination.statusSnapshot()
            subscriptions.set([(labels: [], value: Double(snapshot["subscriptions"]?.integerValue ?? 0))])
            if let keys = await coordination.memoryKeyCount() { memoryKeys.set([(labels: [], value: Double(keys))]) }
            if let redis {
                let redisTotals = redis.statistics
                metrics.redisRoundTrips.sync(total: redisTotals.roundTrips)
                metrics.redisCommands.sync(total: redisTotals.commands)
                metrics.redisErrors.sync(total: redisTotals.errors)
            }
            build.set([(labels: [("version", BuildInfo.version)], value: 1)])
            var costByTemplate: [String: Double] = [:]
            for grant in fleet.grants { costByTemplate[grant.template, default: 0] += grant.costPerHour }
            cost.set(costByTemplate.map { (labels: [("template", $0.key)], value: $0.value) })
            let granted = fleet.allocated
            allocated.set([
                (labels: [("resource", "cpu")], value: granted.cpu), (labels: [("resource", "memory")], value: Double(granted.memoryBytes)),
                (labels: [("resource", "gpu")], value: Double(granted.gpus)),
            ])
            let limits = fleet.capacity
            capacity.set([
                (labels: [("resource", "cpu")], value: limits.cpu), (labels: [("resource", "memory")], value: Double(limits.memoryBytes)),
                (labels: [("resource", "gpu")], value: Double(limits.gpus.count)),
            ])
        }
    }

    /// Each task that ends: its attempts in the metrics and the history, and as spans of the
    /// trace that submitted it (told from the task's record, after the fact, on the replica
    /// that sees it end).
    func observeTasks(_ tasks: any TaskService, agents: AgentRegistry) {
        guard metrics != nil || history != nil || tracing != nil else { return }
        let metrics = self.metrics
        let history = self.history
        let tracing = self.tracing
        tasks.onFinished { task in
            if let metrics {
                metrics.taskAttempts.increment(by: Int64(task.attempts.count))
                if task.retryCount > 0 { metrics.taskRetries.increment(by: Int64(task.retryCount)) }
                if let first = task.attempts.first {
                    metrics.taskAssignmentLatency.record(max(0, first.started.timeIntervalSince(task.createdAt)))
                }
            }
            let parent = task.submission.traceparent.flatMap { TraceContext(traceparent: $0) }
            for (number, attempt) in task.attempts.enumerated() {
                let ended = attempt.ended ?? task.completionTime ?? Date()
                let template = agents.templateOf(AgentRegistry.InstanceID(attempt.agent))
                if let history {
                    history.recordCall(
                        agent: self.historyID(of: attempt.agent), template: template, tool: task.submission.taskType, succeeded: attempt.error == nil,
                        seconds: max(0, ended.timeIntervalSince(attempt.started)), at: Timestamp(ended))
                }
                if let tracing, let parent {
                    let span = tracing.startSpan(
                        "task.attempt \(task.submission.taskType)", kind: .client, parent: .remote(parent),
                        millisecondsSinceEpoch: Timestamp(attempt.started).millisecondsSinceEpoch)
                    span.setAttribute("switchboard.task.id", task.id)
                    span.setAttribute("switchboard.task.attempt", number + 1)
                    span.setAttribute("switchboard.agent.id", attempt.agent)
                    span.setAttribute("gen_ai.tool.name", task.submission.taskType)
                    span.setAttribute("gen_ai.operation.name", "execute_tool")
                    span.end(millisecondsSinceEpoch: Timestamp(ended).millisecondsSinceEpoch, errorType: attempt.error == nil ? nil : "attempt_failed", message: attempt.error)
                }
            }
        }
    }
}

extension Timestamp {
    init(_ date: Date) {
        self.init(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1000).rounded()))
    }
}
