import Agents
import Fleet
import Foundation
import Logging
import Router
import Synchronization

/// The fleet's side of the gateway: what the machine may give (the ledger), how agents are
/// shut in (the isolation host, probed once), and the autoscaler, which looks at each
/// autoscaled template's demand every interval — and at once when a call waits for a template
/// scaled to zero — and asks the supervisor for the count it decides, recording every decision
/// with its reason.
///
/// With replicas, each replica runs its own spawned instances from its own configuration, and
/// one replica decides: the cluster's leader (the replica with the lowest id) autoscales its
/// own instances, counting the tasks queued on the shared board for all of them; the others
/// keep their configured counts. So no template is scaled twice for the same demand; when the
/// leader dies, the next one takes the decisions over.
final class FleetController: Sendable {
    let settings: FleetSettings
    let ledger: ResourceLedger
    let host: IsolationHost
    /// Versions of spawned templates: reloads, rollouts, rollbacks.
    let rollouts: RolloutController
    private let agents: AgentRegistry
    private let logger: Logger
    private let state = Mutex(State())
    /// Reasons to look: the interval's ticks and wakes, coalesced — a burst of calls for a dormant
    /// template asks for one look, and looks never overlap.
    private let (looks, lookSink) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    private let origin = ContinuousClock.now

    /// Decisions kept for `fleet/decisions`.
    static let decisionLimit = 1_000

    struct Decision: Sendable {
        var decision: ScaleDecision
        var template: String
        var at: Date
        var outcome: String
    }

    private struct State {
        var autoscalers: [String: Autoscaler] = [:]
        var decisions: [Decision] = []
        /// How long each template's instances take from launch to ready: a moving average the
        /// forecast's lead takes into account.
        var startSeconds: [String: Double] = [:]
        /// What each template's instances had answered at the previous look: the arrivals since
        /// are what finished meanwhile plus the change in what is in flight and waiting.
        var previous: [String: Reading] = [:]
    }

    private struct Reading {
        var at: Double
        var calls: [AgentRegistry.InstanceID: Int]
        var latency: [AgentRegistry.InstanceID: Double]
        var outstanding: Int
    }

    /// An instance of `template` became ready `duration` after its launch.
    func recordStart(_ template: String, took duration: Duration) {
        let seconds = Self.seconds(duration)
        state.withLock { state in
            state.startSeconds[template] = state.startSeconds[template].map { $0 * 0.7 + seconds * 0.3 } ?? seconds
        }
    }

    /// A template taken out of the configuration: what was learned of it goes too, so that one
    /// added later under its name starts afresh.
    func forget(_ template: String) {
        state.withLock { state in
            state.autoscalers[template] = nil
            state.startSeconds[template] = nil
            state.previous[template] = nil
        }
        rollouts.forget(template)
    }

    func startSeconds(of template: String) -> Double? {
        state.withLock { $0.startSeconds[template] }
    }

    init(settings: FleetSettings, agents: AgentRegistry, supervisor: SupervisorSlot, logger: Logger) {
        self.settings = settings
        let ledger = ResourceLedger(capacity: settings.capacity(), prices: settings.prices)
        self.ledger = ledger
        self.rollouts = RolloutController(agents: agents, supervisor: supervisor, ledger: ledger, logger: logger)
        self.agents = agents
        self.logger = logger
        self.host = IsolationHost.probe(makeCgroups: settings.cgroups)
    }

    struct ReloadFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Reads the configuration file again and brings the spawned templates in line with it
    /// (other sections take effect at the next start).
    func reload(from path: String?) throws(ReloadFailure) -> RolloutController.Report {
        guard let path else {
            throw ReloadFailure(description: "the gateway was started without --config: there is no file to read again")
        }
        let fresh: GatewaySettings
        do {
            fresh = try ConfigurationFile(path: path).load(into: GatewaySettings())
        } catch {
            throw ReloadFailure(description: "\(path) is not reloaded, the running templates stay as they are: \(error.description)")
        }
        let report = rollouts.reload(fresh.agentTemplates)
        routeByCost(fresh.agentTemplates)
        return report
    }

    /// With `fleet.costAware`, a tool several templates offer goes to the cheapest that holds
    /// the latency objective (each template's cost per instance from its resources and prices).
    func routeByCost(_ templates: [AgentTemplate]) {
        guard settings.costAware else { return }
        let costs = Dictionary(templates.map { ($0.name, ledger.prices.costPerHour(of: $0.resources)) }) { first, _ in first }
        agents.setCostRouting(latencyObjectiveMilliseconds: settings.latencyObjectiveMilliseconds, costs: costs)
    }

    /// A call or task waits for `template`, none of whose instances is ready: look now.
    func wake(_ template: String) {
        lookSink.yield()
    }

    /// Looks every interval (or when woken) until cancelled; gives back the control groups' base at the end.
    func run(supervisor: AgentSupervisor, agents: AgentRegistry, tasks: any TaskService, isLeader: @escaping @Sendable () -> Bool = { true }) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.settings.autoscaleInterval)
                    self.lookSink.yield()
                }
            }
            group.addTask {
                var wasLeader = true
                for await _ in self.looks {
                    let leads = isLeader()
                    // Leading again: what was learned before is stale (another replica decided).
                    if leads, !wasLeader { self.state.withLock { $0.autoscalers = [:]; $0.previous = [:] } }
                    wasLeader = leads
                    await self.look(supervisor: supervisor, agents: agents, tasks: tasks, isLeader: leads)
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    func finish() {
        lookSink.finish()
        host.cgroups?.removeBases()
    }

    private var seconds: Double {
        let elapsed = ContinuousClock.now - origin
        return Self.seconds(elapsed)
    }

    /// One look at every autoscaled template, the most important class first: when resources
    /// are short, it gets them.
    private func look(supervisor: AgentSupervisor, agents: AgentRegistry, tasks: any TaskService, isLeader: Bool) async {
        recordUse(supervisor: supervisor, agents: agents)
        guard isLeader else {
            wakeDormant(supervisor: supervisor, agents: agents)
            return
        }
        let templates = supervisor.autoscaledTemplates.sorted { $0.priorityClass > $1.priorityClass }
        guard !templates.isEmpty else { return }
        let demand = agents.demand()
        var queued: [String: Int] = [:]
        for (tool, count) in await tasks.statistics().queuedByTaskType {
            if let template = agents.template(offering: tool) { queued[template, default: 0] += count }
        }
        let now = seconds
        for template in templates {
            guard let configured = template.autoscale else { continue }
            let entry = demand[template.name] ?? AgentRegistry.TemplateDemand()
            let waiting = entry.waitingCalls + queued[template.name, default: 0]
            var sample = DemandSample(
                ready: entry.ready, starting: entry.starting, slotsPerInstance: max(entry.slotsPerInstance, template.maximumConcurrency),
                inFlight: entry.inFlight, waiting: waiting)
            measureArrivals(template.name, agents: agents, outstanding: entry.inFlight + waiting, at: now, into: &sample)
            var policy = configured
            if let measured = startSeconds(of: template.name), measured.isFinite, measured >= 0 {
                // The forecast's lead covers the starts measured here (to the half second, so
                // that the policy does not change at every start).
                policy.coldStart = max((measured * 2).rounded(.up) / 2, 0.5)
            }
            let decision: ScaleDecision? = state.withLock { state in
                var autoscaler = state.autoscalers[template.name] ?? Autoscaler(policy: policy)
                if autoscaler.policy != policy { autoscaler.update(policy: policy) }
                defer { state.autoscalers[template.name] = autoscaler }
                return autoscaler.observe(sample, at: now)
            }
            guard let decision else { continue }
            let outcome: String
            do {
                _ = try supervisor.scale(template.name, to: decision.to)
                outcome = "applied"
                logger.notice("autoscale \(template.name): \(decision.from) → \(decision.to) (\(decision.kind.rawValue)): \(decision.reason)")
            } catch {
                outcome = "refused: \(error)"
                logger.warning("autoscale \(template.name): \(decision.from) → \(decision.to) refused: \(error)")
            }
            record(decision, of: template.name, outcome: outcome)
        }
    }

    /// A replica that does not lead still starts a template it scaled to zero (while it led)
    /// when a call waits for it here: nobody else would.
    private func wakeDormant(supervisor: AgentSupervisor, agents: AgentRegistry) {
        let demand = agents.demand()
        for template in supervisor.autoscaledTemplates where supervisor.isParked(template.name) {
            guard let waiting = demand[template.name]?.waitingCalls, waiting > 0 else { continue }
            let decision = ScaleDecision(
                kind: .coldStart, from: 0, to: 1,
                reason: "\(waiting) call\(waiting == 1 ? "" : "s") wait\(waiting == 1 ? "s" : "") at this replica for a template it scaled to zero; the leader decides the rest",
                at: seconds)
            let outcome: String
            do {
                _ = try supervisor.scale(template.name, to: 1)
                outcome = "applied"
            } catch {
                outcome = "refused: \(error)"
            }
            record(decision, of: template.name, outcome: outcome)
        }
    }

    /// The arrival side of a sample: calls finished since the previous look (by the instances'
    /// counters), their mean service time, and arrivals = finished + the change in what is in
    /// flight and waiting. Nil at the first look, or after a pause (leadership regained).
    private func measureArrivals(
        _ template: String, agents: AgentRegistry, outstanding: Int, at now: Double, into sample: inout DemandSample
    ) {
        let figures = agents.figures(template: template, localOnly: true)
        let reading = Reading(
            at: now, calls: Dictionary(figures.map { ($0.id, $0.calls) }) { first, _ in first },
            latency: Dictionary(figures.map { ($0.id, $0.latencySeconds) }) { first, _ in first }, outstanding: outstanding)
        let previous = state.withLock { state in
            defer { state.previous[template] = reading }
            return state.previous[template]
        }
        let interval = settings.autoscaleInterval
        let pause = 3 * Self.seconds(interval)
        guard let previous, now > previous.at, now - previous.at <= max(pause, 1) else { return }
        var finished = 0
        var service = 0.0
        for (id, calls) in reading.calls {
            finished += max(0, calls - (previous.calls[id] ?? 0))
            service += max(0, (reading.latency[id] ?? 0) - (previous.latency[id] ?? 0))
        }
        sample.arrivals = max(0, finished + outstanding - previous.outstanding)
        sample.meanServiceSeconds = finished > 0 ? service / Double(finished) : nil
        sample.interval = now - previous.at
    }

    /// Keeps a decision for `fleet/decisions`, the newest `decisionLimit`.
    private func record(_ decision: ScaleDecision, of template: String, outcome: String) {
        state.withLock { state in
            state.decisions.append(Decision(decision: decision, template: template, at: Date(), outcome: outcome))
            if state.decisions.count > Self.decisionLimit { state.decisions.removeFirst(state.decisions.count - Self.decisionLimit) }
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Each grant's use, as a share of what was granted (the `resource_allocations` rows).
    private func recordUse(supervisor: AgentSupervisor, agents: AgentRegistry) {
        for grant in ledger.grants {
            let id = AgentRegistry.InstanceID(grant.instance)
            let usage = agents.status(id)?["resourceUsage"]
            let memory = supervisor.cgroup(of: id)?.memoryBytes ?? usage?["memory"]?.integerValue
            let cpu: Double? =
                switch usage?["cpu"] {
                case .double(let percent): percent
                case .integer(let percent): Double(percent)
                default: nil
                }
            ledger.recordUse(instance: grant.instance, cpuPercentOfOneCore: cpu, memoryBytes: memory)
        }
    }

    // MARK: Views

    func decisions(template: String?, limit: Int, where visible: (String) -> Bool = { _ in true }) -> [Decision] {
        let all = state.withLock { $0.decisions }
        return Array(all.reversed().filter { (template == nil || $0.template == template) && visible($0.template) }.prefix(limit))
    }

    func autoscalerStatus(_ template: String) -> Autoscaler.Status? {
        state.withLock { $0.autoscalers[template]?.status }
    }
}
