import Agents
import Foundation
import Fleet
import JSONRPC
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Transport

/// Runs the agents of the configuration's templates: starts each instance, performs the MCP
/// handshake, registers what it offers, restarts it with exponential back-off when it exits or
/// fails, and stops it the MCP way. Instances can be added and removed while it runs.
final class AgentSupervisor: Sendable {
    /// The supervisor lives inside the core and never outlives it.
    private unowned let core: GatewayCore
    private let logger: Logger
    private let state = Mutex(State())
    private let (commands, commandSink) = AsyncStream<Command>.makeStream()

    private struct State {
        var templates: [String: AgentTemplate] = [:]
        var running: [AgentRegistry.InstanceID: StopSignal] = [:]
        /// How to end the current run of each instance (to restart one that stopped answering).
        var currentRun: [AgentRegistry.InstanceID: EndSignal] = [:]
        var nextIndex: [String: Int] = [:]
        var stopping = false
        /// Instances scaled to zero, and how to wake each.
        var parked: [AgentRegistry.InstanceID: StopSignal] = [:]
        /// The control group of each running instance, for vertical scaling and use.
        var cgroups: [AgentRegistry.InstanceID: CgroupGroup] = [:]
        /// The template each instance runs: during a rollout the old and the new one differ.
        var instanceTemplates: [AgentRegistry.InstanceID: AgentTemplate] = [:]
        /// Templates being rolled out: the autoscaler and `agents/scale` leave them alone.
        var rollingOut: Set<String> = []
        /// Parking instances a scale-up woke before their drain was over.
        var wokenWhileDraining: Set<AgentRegistry.InstanceID> = []
    }

    private enum Command {
        case start(AgentTemplate, AgentRegistry.InstanceID, StopSignal)
    }

    /// An instance that has run this long is healthy again: its back-off starts over.
    private let stableAfter: Duration = .seconds(60)

    init(core: GatewayCore) {
        self.core = core
        self.logger = core.logger
    }

    /// Puts the templates' instances in the registry as starting, before any client can
    /// connect: a client's first `tools/list` then waits for them instead of finding nothing.
    /// They start when `run` does.
    func prepare(templates: [AgentTemplate]) {
        for template in templates {
            state.withLock { $0.templates[template.name] = template }
            if let prefix = template.toolPrefix { core.agents.setPrefix(prefix, forTemplate: template.name) }
            // A template that may scale to zero still starts one: its offer must be known.
            let count = template.autoscale.map { max(template.instances, $0.minimum, 1) } ?? template.instances
            for _ in 0..<count {
                do {
                    try startInstance(of: template)
                } catch {
                    logger.error("agent template \(template.name): \(error)")
                }
            }
        }
    }

    /// Adds a template at run time (an agent registered by its HTTP endpoint) and starts its
    /// instance; nil when a template or an instance has the name already, or the gateway stops.
    func addRemote(_ template: AgentTemplate) -> AgentRegistry.InstanceID? {
        // An attached agent may hold the name too: then nothing is added (and nothing left behind).
        guard core.agents.instance(named: template.name) == nil else { return nil }
        let added = state.withLock { state -> Bool in
            guard !state.stopping, state.templates[template.name] == nil else { return false }
            state.templates[template.name] = template
            return true
        }
        guard added else { return nil }
        _ = try? startInstance(of: template)
        return AgentRegistry.InstanceID("\(template.name)#\(state.withLock { $0.nextIndex[template.name] ?? 1 })")
    }

    /// Runs until `stopAll`; every instance task is a child of this call.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.probeHealth() }
            for await command in commands {
                switch command {
                case .start(let template, let id, let stop):
                    group.addTask { await self.runInstance(template, id: id, stop: stop) }
                }
            }
            group.cancelAll()
        }
    }

    /// Stops every instance (MCP shutdown sequence) and returns when all have exited.
    func stopAll() async {
        let signals = state.withLock { state in
            state.stopping = true
            return Array(state.running.values)
        }
        signals.forEach { $0.request() }
        for signal in signals { await signal.waitUntilFinished() }
        commandSink.finish()
    }

    // MARK: Scaling

    enum ScaleError: Error, CustomStringConvertible {
        case unknownTemplate(String)
        case overTemplateLimit(template: String, asked: Int, limit: Int)
        case overGatewayLimit(asked: Int, running: Int, limit: Int)
        case resources(template: String, String)
        case rollingOut(String)
        case resize(template: String, String)
        var description: String {
            switch self {
            case .unknownTemplate(let name): "no agent template \"\(name)\" in the configuration"
            case .overTemplateLimit(let template, let asked, let limit):
                "template \(template) may run at most \(limit) instances (maxInstances), not \(asked)"
            case .overGatewayLimit(let asked, let running, let limit):
                "the gateway runs at most \(limit) spawned instances in all (limits.maxSpawnedInstances); \(running) run, \(asked) more would pass it"
            case .resources(let template, let message): "template \(template) cannot get another instance: it \(message)"
            case .resize(let template, let message): "template \(template) is not resized: \(message)"
            case .rollingOut(let template): "template \(template) is being rolled out to a new version; its instance count changes once that is over"
            }
        }
    }

    /// Starts or stops instances until the template has `count`. Stopped instances drain first.
    /// A template that may scale to zero (`autoscale.min: 0`) keeps its last instance parked:
    /// dormant in the registry, woken by the next call; scaling up wakes it first.
    func scale(_ templateName: String, to count: Int) throws(ScaleError) -> (before: Int, after: Int) {
        guard let template = state.withLock({ $0.templates[templateName] }) else { throw .unknownTemplate(templateName) }
        guard !state.withLock({ $0.rollingOut.contains(templateName) }) else { throw .rollingOut(templateName) }
        // Oldest first, by the instance number (`name#10` comes after `name#9`).
        let (current, parked) = state.withLock { state in
            // Not those already stopping: they are on their way out, and counting them would
            // make room by stopping the ones that stay.
            let all = state.running.filter { Self.template(of: $0.key) == templateName && !$0.value.isRequested }.keys
                .sorted { Self.index(of: $0) < Self.index(of: $1) }
            return (all.filter { state.parked[$0] == nil }, all.filter { state.parked[$0] != nil })
        }
        let maximum = template.autoscale.map { min($0.maximum, template.maximumInstances) } ?? template.maximumInstances
        guard count <= maximum else {
            throw .overTemplateLimit(template: templateName, asked: count, limit: maximum)
        }
        if count > current.count {
            let woken = parked.prefix(count - current.count)
            let added = count - current.count - woken.count
            let running = state.withLock { $0.running.count }
            let limit = core.settings.limits.maximumSpawnedInstances
            guard running + added <= limit else { throw .overGatewayLimit(asked: added, running: running, limit: limit) }
            // Every new instance's resources are granted before any starts: all or none.
            var started: [AgentRegistry.InstanceID] = []
            for id in woken {
                do throws(ResourceLedger.Refusal) {
                    try reserve(template, for: id)
                } catch {
                    started.forEach { core.fleet.ledger.release(instance: $0.rawValue, now: Self.now) }
                    throw .resources(template: templateName, error.description)
                }
                started.append(id)
            }
            for _ in 0..<added {
                do throws(ScaleError) {
                    started.append(try startInstance(of: template))
                } catch {
                    for id in started.dropFirst(woken.count) { _ = stop(id) }
                    woken.forEach { core.fleet.ledger.release(instance: $0.rawValue, now: Self.now) }
                    throw error
                }
            }
            for id in woken { unpark(id) }
        } else if count < current.count {
            let leaving = leavingFirst(current, count: current.count - count, zones: template.zones)
            if count == 0, template.autoscale?.minimum == 0, let last = leaving.first {
                for id in leaving.dropFirst() { try? core.agents.drain(id) }
                park(last)
            } else {
                for id in leaving { try? core.agents.drain(id) }
            }
        }
        return (current.count, count)
    }

    /// The instances to stop: the newest, taken from the zone with the most of them each time,
    /// so that a template spread over zones stays spread as it shrinks.
    private func leavingFirst(_ current: [AgentRegistry.InstanceID], count: Int, zones: [String]) -> [AgentRegistry.InstanceID] {
        guard !zones.isEmpty else { return Array(current.suffix(count)) }
        var byZone = Dictionary(grouping: current) { core.agents.status($0)?["zone"]?.stringValue ?? "" }
        var leaving: [AgentRegistry.InstanceID] = []
        for _ in 0..<count {
            guard let fullest = byZone.max(by: { $0.value.count < $1.value.count || ($0.value.count == $1.value.count && $0.key > $1.key) }),
                let newest = fullest.value.last
            else { break }
            leaving.append(newest)
            byZone[fullest.key]?.removeLast()
        }
        // The parked one, when it comes to zero, is the oldest: leaving is in age order.
        return leaving.sorted { Self.index(of: $0) < Self.index(of: $1) }
    }

    /// Stops the instance's process and keeps it dormant, its resources given back.
    private func park(_ id: AgentRegistry.InstanceID) {
        state.withLock { state in
            guard state.parked[id] == nil else { return }
            state.parked[id] = StopSignal()
        }
        // Drained first, so that the calls it holds are answered; then its run ends (`drained`)
        // and it turns dormant.
        if (try? core.agents.drain(id)) == nil { restart(id, reason: "scaled to zero") }
    }

    /// A drained instance: a parked one's run ends (it turns dormant), any other stops for good.
    /// False when it is not one of ours.
    func drained(_ id: AgentRegistry.InstanceID) -> Bool {
        // Parked, or woken again while it drained to park: its run ends, and its loop parks it
        // or starts it afresh. It is not stopped for good.
        if state.withLock({ state in state.parked[id] != nil || state.wokenWhileDraining.remove(id) != nil }) {
            restart(id, reason: "scaled to zero")
            return true
        }
        return stop(id)
    }

    /// Starts a parked instance again (its resources already granted).
    private func unpark(_ id: AgentRegistry.InstanceID) {
        let stillDraining = core.agents.status(id)?["draining"] == .bool(true)
        state.withLock { state in
            if stillDraining { state.wokenWhileDraining.insert(id) }
            return state.parked.removeValue(forKey: id)
        }?.request()
    }

    /// The templates the autoscaler looks after, and whether each is parked whole.
    var autoscaledTemplates: [AgentTemplate] {
        state.withLock { state in state.templates.values.filter { $0.autoscale != nil }.sorted { $0.name < $1.name } }
    }

    func isParked(_ template: String) -> Bool {
        state.withLock { state in
            let ids = state.running.keys.filter { Self.template(of: $0) == template }
            return !ids.isEmpty && ids.allSatisfy { state.parked[$0] != nil }
        }
    }

    /// Each spawned template as it is now, with its running instances (a parked one not
    /// counted) and whether it is scaled to zero.
    var templatesForStatus: [(template: AgentTemplate, instances: Int, dormant: Bool)] {
        let entries: [(template: AgentTemplate, instances: Int, dormant: Bool)] = state.withLock { state in
            state.templates.values.filter { $0.remote == nil }.sorted { $0.name < $1.name }.map { template in
                let ids = state.running.keys.filter { Self.template(of: $0) == template.name }
                let parked = ids.filter { state.parked[$0] != nil }.count
                return (template, ids.count - parked, !ids.isEmpty && parked == ids.count)
            }
        }
        return entries.map { entry in
            // Dormant once the registry has it so (it drains first), not when it was asked to.
            let ids = instancesIncludingParked(of: entry.template.name)
            return (entry.template, entry.instances, entry.dormant && ids.allSatisfy { core.agents.status($0)?["dormant"] == .bool(true) })
        }
    }

    private func instancesIncludingParked(of templateName: String) -> [AgentRegistry.InstanceID] {
        state.withLock { state in state.running.keys.filter { Self.template(of: $0) == templateName } }
    }

    // MARK: Rollouts

    /// The instances running the template now, oldest first: not one parked, nor one draining
    /// (it is on its way out).
    func instances(of templateName: String) -> [AgentRegistry.InstanceID] {
        let ids = state.withLock { state in
            state.running.filter { Self.template(of: $0.key) == templateName && state.parked[$0.key] == nil && !$0.value.isRequested }.keys
                .sorted { Self.index(of: $0) < Self.index(of: $1) }
        }
        return ids.filter { core.agents.status($0)?["draining"] != .bool(true) }
    }

    /// The template's parked (dormant) instances.
    func parkedInstances(of templateName: String) -> [AgentRegistry.InstanceID] {
        state.withLock { state in state.parked.keys.filter { Self.template(of: $0) == templateName } }
    }

    func template(named name: String) -> AgentTemplate? {
        state.withLock { $0.templates[name] }
    }

    /// The template new instances start from; the running ones keep theirs.
    func replaceTemplate(_ template: AgentTemplate) {
        state.withLock { $0.templates[template.name] = template }
    }

    /// Marks the template as being rolled out (or no longer).
    func setRollingOut(_ templateName: String, _ rolling: Bool) {
        state.withLock { state in
            if rolling { state.rollingOut.insert(templateName) } else { state.rollingOut.remove(templateName) }
        }
    }

    /// Starts one instance of a new version; it takes calls only as the rollout sends them.
    func startNewVersionInstance(of template: AgentTemplate) throws(ScaleError) -> AgentRegistry.InstanceID {
        let running = state.withLock { $0.running.count }
        let limit = core.settings.limits.maximumSpawnedInstances
        guard running < limit else { throw .overGatewayLimit(asked: 1, running: running, limit: limit) }
        return try startInstance(of: template, activatesNewVersion: false)
    }

    /// Starts one instance of the template's active version (a rollback restoring capacity).
    func startActiveVersionInstance(of template: AgentTemplate) throws(ScaleError) -> AgentRegistry.InstanceID {
        try startInstance(of: template)
    }

    /// A template added by a reload: its instances start as at boot.
    func addTemplate(_ template: AgentTemplate) {
        prepare(templates: [template])
    }

    /// A template removed by a reload: its instances drain and stop; it is forgotten.
    func removeTemplate(_ templateName: String) {
        core.fleet.forget(templateName)
        // One added later under the name starts from its own prefix, or none.
        core.agents.setPrefix(nil, forTemplate: templateName)
        let ids = state.withLock { state in
            state.templates[templateName] = nil
            return state.running.keys.filter { Self.template(of: $0) == templateName }
        }
        for id in ids {
            if state.withLock({ $0.parked[id] != nil }) {
                _ = stop(id)
            } else if (try? core.agents.drain(id)) == nil {
                _ = stop(id)
            }
        }
    }

    /// The spawned templates, as they are now.
    var templates: [AgentTemplate] {
        state.withLock { Array($0.templates.values) }.sorted { $0.name < $1.name }
    }

    /// Rolls a spawned template back to the one it ran before its last rollout.
    func rollBackSpawned(_ templateName: String) throws(RolloutController.Refusal) -> RolloutController.Record {
        try core.fleet.rollouts.rollBack(templateName)
    }

    // MARK: Vertical scaling

    struct ResizeOutcome {
        var instances: [AgentRegistry.InstanceID]
        var appliedLive: Bool
        var template: AgentTemplate
    }

    /// Changes a running template's calls per instance and resources: new grants for every
    /// instance (all or none), new limits written to their control groups at once.
    func resize(_ templateName: String, maximumConcurrency: Int?, resources: ResourceRequest?) throws(ScaleError) -> ResizeOutcome {
        guard var template = state.withLock({ $0.templates[templateName] }) else { throw .unknownTemplate(templateName) }
        // Its instances are being replaced by a template of their own: resize after.
        guard !state.withLock({ $0.rollingOut.contains(templateName) }) else { throw .rollingOut(templateName) }
        let instances = state.withLock { state in
            state.running.keys.filter { Self.template(of: $0) == templateName && state.parked[$0] == nil }.sorted { Self.index(of: $0) < Self.index(of: $1) }
        }
        var appliedLive = true
        if let resources {
            if resources.gpus != template.resources.gpus {
                throw .resize(template: templateName, "its GPUs cannot change while it runs (\(template.resources.gpus) to \(resources.gpus)); change the configuration and reload to roll it out")
            }
            let ledger = core.fleet.ledger
            // Held to the whole capacity even with nothing running: its next start would be refused.
            do throws(ResourceLedger.Refusal) {
                try ledger.check(resources)
            } catch {
                throw .resize(template: templateName, "it \(error.description)")
            }
            // All or none: a refusal gives every instance back the grant it had (or none).
            let previous = instances.map { ($0, ledger.grant(of: $0.rawValue)) }
            for id in instances {
                do throws(ResourceLedger.Refusal) {
                    if resources.isEmpty {
                        ledger.release(instance: id.rawValue, now: Self.now)
                    } else {
                        try ledger.reserve(instance: id.rawValue, template: templateName, request: resources, priority: template.priorityClass, now: Self.now)
                    }
                } catch {
                    for (instance, grant) in previous {
                        if let grant {
                            _ = try? ledger.reserve(instance: grant.instance, template: templateName, request: grant.request, priority: grant.priority, now: Self.now)
                        } else {
                            ledger.release(instance: instance.rawValue, now: Self.now)
                        }
                    }
                    throw .resize(template: templateName, "it \(error.description)")
                }
            }
            let groups = state.withLock { state in instances.compactMap { id in state.cgroups[id].map { (id, $0) } } }
            if groups.count < instances.count { appliedLive = false }
            for (id, group) in groups {
                guard (try? group.apply(resources)) != nil else {
                    appliedLive = false
                    continue
                }
                // What agents/get says it is held to follows the new limits.
                guard case .array(let written)? = core.agents.status(id)?["isolation"] else { continue }
                let lines = written.compactMap(\.stringValue).map { line in
                    guard line.hasPrefix("cgroups ") else { return line }
                    let limits = LaunchPlanner.describe(resources)
                    return "cgroups \(group.layout.version.rawValue): \(limits.isEmpty ? "no limits" : limits)"
                }
                core.agents.annotate(id, gpus: core.fleet.ledger.grant(of: id.rawValue)?.gpus ?? [], isolation: lines)
            }
            template.resources = resources
        }
        if let maximumConcurrency {
            template.maximumConcurrency = maximumConcurrency
            core.agents.setMaximumConcurrency(template: templateName, maximumConcurrency)
        }
        let updated = template
        state.withLock { state in
            state.templates[templateName] = updated
            // Parked ones too: woken, they start with the new limits (and are granted them).
            for id in state.instanceTemplates.keys where Self.template(of: id) == templateName {
                state.instanceTemplates[id]?.maximumConcurrency = updated.maximumConcurrency
                state.instanceTemplates[id]?.resources = updated.resources
            }
        }
        return ResizeOutcome(instances: instances, appliedLive: appliedLive, template: updated)
    }

    /// The control group of a running instance.
    func cgroup(of id: AgentRegistry.InstanceID) -> CgroupGroup? {
        state.withLock { $0.cgroups[id] }
    }

    static var now: Double { Date().timeIntervalSince1970 }

    /// Waits (up to a minute) for the resources of preempted instances to come back; nil once
    /// granted, else why not.
    private func waitForResources(_ template: AgentTemplate, id: AgentRegistry.InstanceID, stop: StopSignal) async -> String? {
        let deadline = ContinuousClock.now + .seconds(60)
        var last = ""
        while !stop.isRequested, ContinuousClock.now < deadline {
            do throws(ResourceLedger.Refusal) {
                try reserve(template, for: id)
                return nil
            } catch {
                last = error.description
            }
            await stop.sleep(for: .milliseconds(100))
        }
        return stop.isRequested ? "stopped while it waited for resources" : "its resources were not freed within 60 s: it \(last)"
    }

    /// Grants the template's resources to one instance (nothing to grant: nothing asked).
    private func reserve(_ template: AgentTemplate, for id: AgentRegistry.InstanceID) throws(ResourceLedger.Refusal) {
        guard !template.resources.isEmpty else { return }
        try core.fleet.ledger.reserve(
            instance: id.rawValue, template: template.name, request: template.resources, priority: template.priorityClass, now: Self.now)
    }

    /// A drained spawned instance stops and is not restarted.
    func stop(_ id: AgentRegistry.InstanceID) -> Bool {
        guard let signal = state.withLock({ $0.running[id] }) else { return false }
        signal.request()
        return true
    }

    func isSpawned(_ id: AgentRegistry.InstanceID) -> Bool {
        state.withLock { $0.running[id] != nil }
    }

    @discardableResult
    private func startInstance(of template: AgentTemplate, activatesNewVersion: Bool = true) throws(ScaleError) -> AgentRegistry.InstanceID {
        var preempted: [String] = []
        let started: (id: AgentRegistry.InstanceID, stop: StopSignal)? = try state.withLock { state throws(ScaleError) in
            guard !state.stopping, state.templates[template.name] != nil else { return nil }
            let candidate = AgentRegistry.InstanceID("\(template.name)#\(state.nextIndex[template.name, default: 0] + 1)")
            // Granted before anything starts: what cannot be given is refused, not promised —
            // unless instances of a lower priority class hold it: they are stopped for this one,
            // which starts once their resources are back.
            do throws(ResourceLedger.Refusal) {
                try reserve(template, for: candidate)
            } catch {
                guard case .unavailable(_, let victims) = error, !victims.isEmpty else {
                    throw .resources(template: template.name, error.description)
                }
                preempted = victims
            }
            let index = state.nextIndex[template.name, default: 0] + 1
            state.nextIndex[template.name] = index
            let id = AgentRegistry.InstanceID("\(template.name)#\(index)")
            let stop = StopSignal()
            state.running[id] = stop
            state.instanceTemplates[id] = template
            return (id, stop)
        }
        guard let (id, stop) = started else { throw .unknownTemplate(template.name) }
        for victim in preempted {
            logger.warning("agent \(victim) is stopped to give its resources to \(id) (priority class \(template.priorityClass.rawValue))")
            let victimID = AgentRegistry.InstanceID(victim)
            if (try? core.agents.drain(victimID)) == nil { _ = self.stop(victimID) }
        }
        var registration = AgentRegistry.Registration(
            name: id.rawValue, template: template.name, version: template.version ?? "1", kind: .spawned,
            capabilities: template.capabilities, maximumConcurrency: template.maximumConcurrency, callTimeout: template.callTimeout)
        // As written: expanded variables may hold secrets.
        let configuration: JSONValue =
            if let remote = template.remote {
                ["url": .string(remote.urlAsWritten), "transport": "streamable-http"]
            } else {
                [
                    "command": .string(template.commandAsWritten ?? template.command),
                    "args": .array((template.argumentsAsWritten ?? template.arguments).map(JSONValue.string)),
                ]
            }
        registration.configuration = configuration
        registration.tenants = template.tenants
        registration.zone = zone(forInstance: id, of: template)
        core.agents.add(id, registration, startingUp: true, activatesNewVersion: activatesNewVersion)
        // However long its handshake may take, clients wait for it at most the readiness limit.
        let agents = core.agents
        core.group.any().scheduleTask(in: TimeAmount(core.settings.readinessWait)) { agents.endStartupWindow(id) }
        commandSink.yield(.start(template, id, stop))
        return id
    }

    private static func index(of id: AgentRegistry.InstanceID) -> Int {
        Int(id.rawValue.split(separator: "#").last ?? "") ?? 0
    }

    static func templateName(of id: AgentRegistry.InstanceID) -> String { template(of: id) }

    /// A template's zones in turn, the zone with the fewest of its instances first, so that
    /// the count stays spread as instances come and go; the gateway's own zone otherwise.
    private func zone(forInstance id: AgentRegistry.InstanceID, of template: AgentTemplate) -> String? {
        guard !template.zones.isEmpty else { return core.settings.fleet.zone }
        let counts = Dictionary(grouping: core.agents.list(AgentRegistry.Filter(template: template.name)).compactMap { $0["zone"]?.stringValue }) { $0 }
            .mapValues(\.count)
        return template.zones.min { counts[$0, default: 0] < counts[$1, default: 0] } ?? template.zones[(Self.index(of: id) - 1) % template.zones.count]
    }

    private static func template(of id: AgentRegistry.InstanceID) -> String {
        String(id.rawValue.split(separator: "#").first ?? "")
    }

    // MARK: One instance

    private func runInstance(_ initial: AgentTemplate, id: AgentRegistry.InstanceID, stop: StopSignal) async {
        var logger = self.logger
        logger[metadataKey: "agent"] = "\(id)"
        var delay = initial.restart.initialBackoff
        while !stop.isRequested {
            // Resized while it ran: the next start takes the template as it is now.
            let template = state.withLock { $0.instanceTemplates[id] } ?? initial
            let policy = template.restart
            if let wake = state.withLock({ $0.parked[id] }) {
                core.agents.park(id)
                core.fleet.ledger.release(instance: id.rawValue, now: Self.now)
                logger.info("agent \(id) scaled to zero; it starts again on the next call or task")
                let forwarding = stop.onRequest { wake.request() }
                await wake.sleep(for: .seconds(365 * 24 * 3600))
                stop.removeOnRequest(forwarding)
                core.agents.wake(id)
                delay = policy.initialBackoff
                continue
            }
            if !template.resources.isEmpty, core.fleet.ledger.grant(of: id.rawValue) == nil,
                let refusal = await waitForResources(template, id: id, stop: stop)
            {
                core.agents.down(id, .failed(refusal), staysDown: true)
                logger.error("agent \(id) is not started: \(refusal)")
                await stop.sleep(for: .seconds(365 * 24 * 3600))
                continue
            }
            let started = ContinuousClock.now
            let reason: String
            do {
                reason = try await runOnce(template, id: id, stop: stop, logger: logger)
            } catch {
                // Starting it again would meet the same file, or the same sandbox this machine
                // cannot build: it stays down, whatever its policy.
                core.agents.down(id, .failed("\(error)"), staysDown: true)
                core.fleet.ledger.release(instance: id.rawValue, now: Self.now)
                logger.error("agent \(id) is not started: \(error); it stays down until its file or its template changes")
                await stop.sleep(for: .seconds(365 * 24 * 3600))
                continue
            }
            if stop.isRequested { break }
            if state.withLock({ $0.parked[id] != nil }) { continue }
            core.agents.down(id, .failed(reason))
            guard policy.enabled else {
                core.agents.down(id, .failed(reason), staysDown: true)
                logger.warning("agent \(id) is down (\(reason)); its restart policy is never, so it stays down")
                await stop.sleep(for: .seconds(365 * 24 * 3600))
                continue
            }
            if ContinuousClock.now - started > stableAfter { delay = policy.initialBackoff }
            logger.warning("agent \(id) is down (\(reason)); restarting in \(delay)")
            await stop.sleep(for: delay)
            delay = min(delay * 2, policy.maximumBackoff)
        }
        core.agents.remove(id)
        core.fleet.ledger.release(instance: id.rawValue, now: Self.now)
        state.withLock { state in
            _ = state.running.removeValue(forKey: id)
            state.parked[id] = nil
            state.instanceTemplates[id] = nil
        }
        stop.finished()
        logger.info("agent \(id) stopped")
    }

    /// Starts the process, serves it until it exits or a stop is requested; returns why it ended.
    /// Throws when its pinned executable does not match, or its limits or sandbox cannot be
    /// built here: a start that must not be retried.
    private func runOnce(
        _ template: AgentTemplate, id: AgentRegistry.InstanceID, stop: StopSignal, logger: Logger
    ) async throws -> String {
        if let remote = template.remote { return await runRemote(template, remote, id: id, stop: stop, logger: logger) }
        let gpus = core.fleet.ledger.grant(of: id.rawValue)?.gpus ?? []
        let launched = ContinuousClock.now
        let child: ChildProcess
        do {
            // With a pool, an instance sees its GPUs alone, and one that asked for none sees none.
            let devices: [String: String] =
                core.fleet.ledger.capacity.gpus.isEmpty && gpus.isEmpty ? [:] : ["CUDA_VISIBLE_DEVICES": gpus.joined(separator: ",")]
            child = try ChildProcess.launch(template, extraEnvironment: devices) {
                executable throws(IsolationError) in
                var limits = template.resources
                limits.gpus = 0  // granted by the ledger, named in the environment
                guard !limits.isEmpty || template.sandbox != nil else { return nil }
                return try LaunchPlanner.plan(
                    instance: id.rawValue, command: executable, arguments: template.arguments, resources: limits, sandbox: template.sandbox,
                    gpus: gpus, host: core.fleet.host)
            }
        } catch let mismatch as ExecutablePin.Mismatch {
            throw mismatch
        } catch let refused as IsolationError {
            throw refused
        } catch {
            return "\(error)"
        }
        let group = child.launchPlan?.cgroup
        if let group { state.withLock { $0.cgroups[id] = group } }
        core.agents.annotate(id, gpus: gpus, isolation: child.launchPlan?.enforcement ?? [])
        let eventLoop = core.group.any()
        let channel: any Channel
        let handle: ConnectionHandle
        do {
            try await logStderr(of: child, id: id)
            (channel, handle) = try await connect(to: child, id: id, template: template)
        } catch {
            await child.stop(on: eventLoop)
            await releaseGroup(of: id)
            return "cannot connect to its pipes: \(error)"
        }
        // Whatever ends first: the process, the pipes, or a stop request.
        let ended = EndSignal()
        state.withLock { $0.currentRun[id] = ended }
        defer { state.withLock { _ = $0.currentRun.removeValue(forKey: id) } }
        child.onExit { ended.end($0) }
        channel.closeFuture.whenComplete { _ in ended.end("closed its standard output") }
        let stopping = stop.onRequest { ended.end("stopped") }
        defer { stop.removeOnRequest(stopping) }

        do {
            let offer = try await withDeadline(template.startupTimeout, on: eventLoop) {
                try await AgentDiscovery.handshake(handle, timeout: TimeAmount(template.startupTimeout))
            }
            core.agents.ready(id, endpoint: handle, offer: offer, hidingTools: template.disabledTools, processID: child.processID)
            core.fleet.recordStart(template.name, took: ContinuousClock.now - launched)
            logger.info(
                "agent \(id) ready (pid \(child.processID)): \(offer.tools.count) tools, \(offer.resources.count) resources, \(offer.prompts.count) prompts")
        } catch {
            var reason = "failed its MCP handshake: \(error)"
            if let noise = handle.firstNonJSONOutput {
                // The usual cause: a server that prints a banner or logs on stdout, where only
                // JSON-RPC may go.
                reason += "; it wrote non-JSON on its standard output: \"\(noise)\""
            }
            ended.end(reason)
        }
        var reason = await ended.wait()
        if let group, group.memoryKills > 0 {
            // The kernel counts the kill before the process is gone: this is why it ended.
            let limit = template.resources.memoryBytes.map(ResourceRequest.formatBytes) ?? "?"
            reason = "exceeded its memory limit of \(limit) and was killed by the kernel (out of memory)"
            logger.error("agent \(id) \(reason)")
        }
        // MCP shutdown: close its stdin, then SIGTERM, then SIGKILL. (Closed first: closing its
        // pipes marks it failed, which a requested stop is not.)
        try? await channel.close()
        let parking = state.withLock { $0.parked[id] != nil }
        if !parking { core.agents.down(id, stop.isRequested ? .offline("stopped") : .failed(reason)) }
        await child.stop(on: eventLoop)
        await releaseGroup(of: id)
        if group != nil, reason.hasPrefix("exceeded its memory limit") { return reason }
        return child.hasExited && reason == "closed its standard output" ? await child.waitForExit() : reason
    }

    /// Kills what is left of the instance's processes and removes its control group, off the
    /// cooperative pool: the kernel takes a moment to empty a group, and removing waits for it.
    private func releaseGroup(of id: AgentRegistry.InstanceID) async {
        guard let group = state.withLock({ $0.cgroups.removeValue(forKey: id) }) else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                group.remove()
                continuation.resume()
            }
        }
    }

    /// Serves an agent reached over Streamable HTTP until its bridge closes (the server went
    /// away or ended the session) or a stop is requested; returns why it ended.
    private func runRemote(
        _ template: AgentTemplate, _ remote: AgentTemplate.RemoteAddress, id: AgentRegistry.InstanceID, stop: StopSignal, logger: Logger
    ) async -> String {
        guard let endpoint = RemoteAgentBridge.Endpoint(url: remote.url, urlAsWritten: remote.urlAsWritten, headers: remote.headers) else {
            return "\(remote.urlAsWritten) is not an http:// or https:// URL"
        }
        let eventLoop = core.group.any()
        let maximumMessageBytes = template.maximumMessageBytes ?? core.settings.limits.maximumMessageBytes
        let bridge: RemoteAgentBridge
        let channel: any Channel
        let handle: ConnectionHandle
        do {
            let socket: CInt
            (bridge, socket) = try await RemoteAgentBridge.open(
                endpoint, agent: id.rawValue, egress: core.settings.egress,
                eventLoop: eventLoop, logger: logger, maximumMessageBytes: maximumMessageBytes)
            let core = self.core
            channel = try await ClientBootstrap(group: eventLoop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(LineFrameDecoder(maximumLineLength: maximumMessageBytes)),
                            RPCConnectionHandler(gateway: core, role: .client(agent: id))
                        )
                    }
                }
                .withConnectedSocket(socket)
                .get()
            guard let found = try await channel.eventLoop.submit({ try channel.pipeline.syncOperations.handler(type: RPCConnectionHandler.self).handle }).get() else {
                bridge.close()
                return "the connection closed at once"
            }
            handle = found
        } catch {
            return "cannot connect to \(remote.urlAsWritten): \(error)"
        }
        let ended = EndSignal()
        state.withLock { $0.currentRun[id] = ended }
        defer { state.withLock { _ = $0.currentRun.removeValue(forKey: id) } }
        channel.closeFuture.whenComplete { _ in ended.end("the connection to \(remote.urlAsWritten) closed") }
        let stopping = stop.onRequest { ended.end("stopped") }
        defer { stop.removeOnRequest(stopping) }
        do {
            let offer = try await withDeadline(template.startupTimeout, on: eventLoop) {
                try await AgentDiscovery.handshake(handle, timeout: TimeAmount(template.startupTimeout))
            }
            core.agents.ready(id, endpoint: handle, offer: offer, hidingTools: template.disabledTools)
            logger.info("agent \(id) ready at \(remote.urlAsWritten): \(offer.tools.count) tools, \(offer.resources.count) resources, \(offer.prompts.count) prompts")
        } catch {
            ended.end("failed its MCP handshake: \(error)")
        }
        let reason = await ended.wait()
        // The server hears that the session is over before the gateway moves on (or exits).
        try? await bridge.finish().get()
        try? await channel.close()
        core.agents.down(id, stop.isRequested ? .offline("stopped") : .failed(reason))
        return reason
    }

    private func connect(to child: ChildProcess, id: AgentRegistry.InstanceID, template: AgentTemplate) async throws -> (any Channel, ConnectionHandle) {
        let core = self.core
        let maximumMessageBytes = template.maximumMessageBytes ?? core.settings.limits.maximumMessageBytes
        let channel = try await NIOPipeBootstrap(group: core.group)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(LineFrameDecoder(maximumLineLength: maximumMessageBytes)),
                        RPCConnectionHandler(gateway: core, role: .client(agent: id))
                    )
                }
            }
            .takingOwnershipOfDescriptors(input: child.stdoutRead, output: child.stdinWrite)
            .get()
        let handle = try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: RPCConnectionHandler.self).handle
        }.get()
        guard let handle else { throw ChildProcess.LaunchError(description: "the connection closed at once") }
        return (channel, handle)
    }

    /// An agent's standard error goes to the log under the agent's own name.
    private func logStderr(of child: ChildProcess, id: AgentRegistry.InstanceID) async throws {
        var logger = Logger(label: id.rawValue)
        logger[metadataKey: "agent"] = "\(id)"
        logger[metadataKey: "stream"] = "stderr"
        let stderrLogger = logger
        _ = try await NIOPipeBootstrap(group: core.group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(LineFrameDecoder(maximumLineLength: 16 * 1024)),
                        AgentStderrLogger(logger: stderrLogger)
                    )
                }
            }
            .takingOwnershipOfDescriptor(input: child.stderrRead)
            .get()
    }

    // MARK: Health

    /// Pings every instance each interval; three failed probes in a row make it UNHEALTHY (out of
    /// rotation) until one succeeds, and a spawned instance that stopped answering is restarted.
    private func probeHealth() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: core.settings.healthProbeInterval)
            for (id, endpoint) in core.agents.probeTargets() {
                let registry = core.agents
                endpoint.call("ping", params: nil, timeout: .seconds(5)).result.whenComplete { [self] result in
                    switch result {
                    case .success: registry.recordProbe(id, succeeded: true)
                    case .failure(let error as JSONRPCError) where error.code == JSONRPCError.Code.methodNotFound:
                        registry.recordProbe(id, succeeded: true)  // it answered: alive
                    case .failure:
                        registry.recordProbe(id, succeeded: false)
                        if registry.status(id)?["healthStatus"] == "UNHEALTHY" {
                            restart(id, reason: "stopped answering pings")
                        }
                    }
                }
            }
        }
    }

    /// Ends the current run of a spawned instance; its loop restarts it after the back-off.
    func restart(_ id: AgentRegistry.InstanceID, reason: String) {
        state.withLock { $0.currentRun[id] }?.end(reason)
    }
}

/// A stop request for one instance, and word that it has finished stopping.
final class StopSignal: Sendable {
    private struct State {
        var requested = false
        var finished = false
        /// By token: one whose wait is over takes its callback back, so that an instance that
        /// sleeps, parks and restarts many times does not pile them up.
        var onRequest: [Int: @Sendable () -> Void] = [:]
        var nextToken = 0
        var onFinish: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var isRequested: Bool { state.withLock { $0.requested } }

    func request() {
        let callbacks: [@Sendable () -> Void] = state.withLock { state in
            guard !state.requested else { return [] }
            state.requested = true
            defer { state.onRequest = [:] }
            return state.onRequest.sorted { $0.key < $1.key }.map(\.value)
        }
        callbacks.forEach { $0() }
    }

    /// Calls `body` when a stop is requested (at once if it has been); the token takes it back.
    @discardableResult
    func onRequest(_ body: @escaping @Sendable () -> Void) -> Int? {
        let token = state.withLock { state -> Int? in
            if state.requested { return nil }
            state.nextToken += 1
            state.onRequest[state.nextToken] = body
            return state.nextToken
        }
        if token == nil { body() }
        return token
    }

    func removeOnRequest(_ token: Int?) {
        guard let token else { return }
        state.withLock { _ = $0.onRequest.removeValue(forKey: token) }
    }

    /// Sleeps for `duration`, or less if a stop is requested meanwhile.
    func sleep(for duration: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumed = Mutex(false)
            let resume: @Sendable () -> Void = {
                if resumed.withLock({ done in defer { done = true }; return !done }) { continuation.resume() }
            }
            let token = Mutex<Int?>(nil)
            let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(duration)) { [self] in
                removeOnRequest(token.withLock { $0 })
                resume()
            }
            let registered = onRequest {
                timer.cancel()
                resume()
            }
            token.withLock { $0 = registered }
        }
    }

    func finished() {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { state in
            state.finished = true
            defer { state.onFinish = [] }
            return state.onFinish
        }
        waiters.forEach { $0.resume() }
    }

    func waitUntilFinished() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.finished { return true }
                state.onFinish.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }
}

/// The first of several ways an instance can end, with its reason.
final class EndSignal: Sendable {
    private let state = Mutex<(reason: String?, waiters: [CheckedContinuation<String, Never>])>((nil, []))

    func end(_ reason: String) {
        let waiters: [CheckedContinuation<String, Never>] = state.withLock { state in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume(returning: reason) }
    }

    func wait() async -> String {
        await withCheckedContinuation { continuation in
            let reason: String? = state.withLock { state in
                if let reason = state.reason { return reason }
                state.waiters.append(continuation)
                return nil
            }
            if let reason { continuation.resume(returning: reason) }
        }
    }
}

struct DeadlineExceeded: Error, CustomStringConvertible {
    var duration: Duration
    var description: String { "no answer within \(duration)" }
}

/// Runs `body`, failing with `DeadlineExceeded` if it takes longer than `duration`.
func withDeadline<T: Sendable>(_ duration: Duration, on eventLoop: any EventLoop, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: duration)
            throw DeadlineExceeded(duration: duration)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}
