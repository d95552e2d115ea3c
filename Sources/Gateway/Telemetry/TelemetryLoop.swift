import Agents
import Backend
import JSONRPC
import Logging
import Monitoring
import NIOCore
import Router

/// The gateway's periodic upkeep of what it records: the history written to the backend each
/// minute, each instance's load and resource use sampled into it, and the alert rules judged.
extension GatewayObservability {
    /// `isLeader`: whether this replica announces the alerts every replica judges alike (the
    /// shared queue, the fleet's instances); alone, always.
    func run(
        agents: AgentRegistry, tasks: any TaskService, events: any PubSub, poster: CallbackPoster, logger: Logger,
        isLeader: @escaping @Sendable () -> Bool = { true }
    ) async {
        await withTaskGroup(of: Void.self) { group in
            if let history {
                group.addTask { await self.flushPeriodically(history) }
                group.addTask { await self.sampleResources(into: history, agents: agents) }
            }
            if let alerts {
                group.addTask {
                    await self.judge(alerts, agents: agents, tasks: tasks, events: events, poster: poster, logger: logger, isLeader: isLeader)
                }
            }
            await group.waitForAll()
        }
    }

    /// At shutdown: what the history has not written yet, the open minute included.
    func flushHistory() async {
        drainCallSeries()
        await history?.flushAll(now: SystemClock().now())
    }

    /// Writes the closed minutes (and the hours and days they roll into) each interval; what a
    /// write could not store is kept for the next one.
    private func flushPeriodically(_ history: PerformanceHistory) async {
        let clock = SystemClock()
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: settings.history.flushInterval)
            } catch {
                return
            }
            drainCallSeries()
            if replica != nil {
                // Replicas read each other's figures from the store: the open minute is written
                // too, so that another replica sees this one's calls within the interval.
                await history.flushAll(now: clock.now())
            } else {
                await history.flush(now: clock.now())
            }
        }
    }

    private func sampleResources(into history: PerformanceHistory, agents: AgentRegistry) async {
        let clock = SystemClock()
        while !Task.isCancelled {
            let now = clock.now()
            for agent in agents.list() {
                // Each replica samples its own agents: the process it runs, or the connection it holds.
                guard let id = agent["agentId"]?.stringValue, agent["currentState"]?.stringValue != "OFFLINE",
                    agents.isLocal(AgentRegistry.InstanceID(id))
                else { continue }
                let usage = agent["resourceUsage"]
                let cpu: Double? = usage?["cpu"].flatMap { value in
                    if case .double(let number) = value { return number }
                    return value.integerValue.map(Double.init)
                }
                history.sampleResources(
                    agent: historyID(of: id), template: agent["template"]?.stringValue, load: Int(agent["inFlight"]?.integerValue ?? 0), cpuPercent: cpu,
                    memoryBytes: usage?["memory"]?.integerValue, at: now)
            }
            try? await Task.sleep(for: settings.history.sampleInterval)
        }
    }

    private func judge(
        _ alerts: AlertEvaluator, agents: AgentRegistry, tasks: any TaskService, events: any PubSub, poster: CallbackPoster, logger: Logger,
        isLeader: @Sendable () -> Bool
    ) async {
        let clock = SystemClock()
        while !Task.isCancelled {
            let queueDepth = await tasks.statistics().queued
            var instances: [String: InstanceCounts] = [:]
            for agent in agents.list() {
                guard let template = agent["template"]?.stringValue else { continue }
                let state = agent["currentState"]?.stringValue ?? ""
                let healthy = (state == "IDLE" || state == "BUSY") && agent["circuit"]?["state"]?.stringValue != "open"
                let counts = instances[template] ?? InstanceCounts(healthy: 0, total: 0)
                instances[template] = InstanceCounts(healthy: counts.healthy + (healthy ? 1 : 0), total: counts.total + 1)
            }
            let now = clock.now()
            let history = self.history
            drainCallSeries()
            let transitions = alerts.evaluate(now: now) { window in
                AlertFigures(
                    agents: history?.recentFigures(window: window, now: now) ?? [:], queueDepth: queueDepth, instancesByTemplate: instances)
            }
            // Replicas sharing Redis see one queue and one fleet: of those alerts, the leader
            // alone announces what they all judge; an agent's alerts come from the replica whose
            // calls they count.
            let leads = isLeader()
            for transition in transitions where leads || transition.rule.measure.isPerAgent {
                announce(transition, events: events, poster: poster, logger: logger)
            }
            try? await Task.sleep(for: settings.alertInterval)
        }
    }

    /// A transition is logged, counted, published on its topic and posted to its webhook.
    private func announce(_ transition: AlertTransition, events: any PubSub, poster: CallbackPoster, logger: Logger) {
        let rule = transition.rule
        let text = "alert \(rule.name) \(transition.state.rawValue) for \(transition.subject): \(rule.measure.rawValue) is \(transition.value)"
        if transition.state == .firing { logger.warning("\(text)") } else { logger.notice("\(text)") }
        metrics?.alertTransitions.increment()
        var payload = ByteBuffer()
        transition.json.write(to: &payload)
        let message = PubSubMessage(topic: rule.topic ?? settings.alertTopic, payload: payload, publishedAt: transition.at, publisher: "alerts")
        Task {
            do {
                _ = try await events.publish(message)
            } catch {
                logger.warning("alert \(rule.name): its event could not be published: \(error)")
            }
        }
        if let webhook = rule.webhook { poster.post(transition.json, to: webhook, subject: "alert \(rule.name)") }
    }
}
