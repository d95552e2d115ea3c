import Agents
import Fleet
import Foundation
import Logging
import Synchronization

/// Versions of spawned templates: a reload (`gateway/reload`, SIGHUP) starts new templates,
/// drains removed ones and rolls a changed one out instance by instance — new instances beside
/// the old (`maxSurge`), calls shared between the versions by their counts (a canary share
/// first, if set), each step judged against the old version, and a rollback on its own when the
/// new one is worse. `agents/rollback` rolls a spawned template back to what it ran before.
final class RolloutController: Sendable {
    private let agents: AgentRegistry
    private let supervisor: SupervisorSlot
    private let fleetLedger: ResourceLedger?
    private let logger: Logger
    private let state = Mutex(State())

    static let recordLimit = 100

    /// One rollout, as `fleet/rollouts` shows it.
    struct Record: Sendable {
        enum Outcome: String, Sendable { case rolling, completed, rolledBack, failed }
        var template: String
        var from: String
        var to: String
        var outcome: Outcome
        var startedAt: Date
        var endedAt: Date?
        var steps: [String]
        var reason: String?
    }

    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    /// What a reload did.
    struct Report: Sendable {
        var added: [String] = []
        var removed: [String] = []
        var rolling: [String] = []
        var resized: [String] = []
        var unchanged: [String] = []
        /// Being rolled out already: read again once that is over.
        var deferred: [String] = []
    }

    private struct State {
        var records: [Record] = []
        /// What each template ran before its last completed rollout.
        var previous: [String: AgentTemplate] = [:]
        var revision: [String: Int] = [:]
    }

    init(agents: AgentRegistry, supervisor: SupervisorSlot, ledger: ResourceLedger, logger: Logger) {
        self.fleetLedger = ledger
        self.agents = agents
        self.supervisor = supervisor
        self.logger = logger
    }

    var records: [Record] { state.withLock { $0.records.reversed() } }

    /// A removed template has no earlier template to go back to.
    func forget(_ name: String) {
        state.withLock { _ = $0.previous.removeValue(forKey: name) }
    }

    // MARK: Reload

    /// Brings the running templates in line with `templates` (a configuration read again).
    func reload(_ templates: [AgentTemplate]) -> Report {
        let supervisor = supervisor.value
        var report = Report()
        let wanted = Dictionary(templates.filter { $0.remote == nil }.map { ($0.name, $0) }) { first, _ in first }
        let running = Dictionary(supervisor.templates.filter { $0.remote == nil }.map { ($0.name, $0) }) { first, _ in first }
        for (name, _) in running where wanted[name] == nil {
            if isRollingOut(name) {
                report.deferred.append(name)
                logger.notice("reload: template \(name) is being rolled out; it is removed by the next reload once that is over")
                continue
            }
            supervisor.removeTemplate(name)
            report.removed.append(name)
            logger.notice("reload: template \(name) is no longer configured; its instances drain and stop")
        }
        for (name, template) in wanted.sorted(by: { $0.key < $1.key }) {
            guard let current = running[name] else {
                supervisor.addTemplate(template)
                report.added.append(name)
                logger.notice("reload: template \(name) added")
                continue
            }
            if isRollingOut(name) {
                report.deferred.append(name)
                logger.notice("reload: template \(name) is being rolled out; it is read again by the next reload once that is over")
                continue
            }
            // A revision label the gateway gave (`1+r2`) stands for the version the file says;
            // the instances keep their label.
            var compared = current
            if Self.isRevision(current.version, of: template.version) { compared.version = template.version }
            if compared == template {
                report.unchanged.append(name)
            } else if Self.launchesAlike(compared, template) {
                applyInPlace(current, template, supervisor: supervisor)
                report.resized.append(name)
            } else {
                do {
                    try start(from: current, to: template)
                    report.rolling.append(name)
                } catch {
                    logger.error("reload: template \(name) is not rolled out: \(error)")
                }
            }
        }
        return report
    }

    private func isRollingOut(_ name: String) -> Bool {
        state.withLock { $0.records.contains { $0.template == name && $0.outcome == .rolling } }
    }

    /// Whether `label` is a revision the gateway made of `version` ("1+r3" of "1", or of nil).
    static func isRevision(_ label: String?, of version: String?) -> Bool {
        guard let label, let plus = label.range(of: "+r", options: .backwards) else { return false }
        return label[..<plus.lowerBound] == (version ?? "1") && Int(label[plus.upperBound...]) != nil
    }

    /// Whether two templates start the same processes: then a change is applied to the running
    /// instances (their count, calls at once, CPU and memory), not rolled out.
    static func launchesAlike(_ a: AgentTemplate, _ b: AgentTemplate) -> Bool {
        var a = a
        var b = b
        a.instances = 0; b.instances = 0
        a.maximumInstances = 0; b.maximumInstances = 0
        a.autoscale = nil; b.autoscale = nil
        a.maximumConcurrency = 0; b.maximumConcurrency = 0
        a.priorityClass = .normal; b.priorityClass = .normal
        a.rollout = RolloutPolicy(); b.rollout = RolloutPolicy()
        a.resources.cpu = nil; b.resources.cpu = nil
        a.resources.memoryBytes = nil; b.resources.memoryBytes = nil
        a.resources.processes = nil; b.resources.processes = nil
        return a == b
    }

    private func applyInPlace(_ current: AgentTemplate, _ template: AgentTemplate, supervisor: AgentSupervisor) {
        var updated = current
        updated.autoscale = template.autoscale
        updated.instances = template.instances
        updated.maximumInstances = template.maximumInstances
        updated.priorityClass = template.priorityClass
        updated.rollout = template.rollout
        supervisor.replaceTemplate(updated)
        if template.priorityClass != current.priorityClass { fleetLedger?.setPriority(template.priorityClass, template: template.name) }
        let concurrency = template.maximumConcurrency != current.maximumConcurrency ? template.maximumConcurrency : nil
        let resources = template.resources != current.resources ? template.resources : nil
        if concurrency != nil || resources != nil {
            do {
                _ = try supervisor.resize(template.name, maximumConcurrency: concurrency, resources: resources)
            } catch {
                logger.error("reload: template \(template.name) keeps its resources: \(error)")
            }
        }
        if template.autoscale == nil, template.instances != supervisor.instances(of: template.name).count {
            _ = try? supervisor.scale(template.name, to: template.instances)
        }
        logger.notice("reload: template \(template.name) changed in place (count, concurrency or resources)")
    }

    // MARK: Rolling out

    /// Starts rolling `name` from `current` to `next` in the background.
    func start(from current: AgentTemplate, to next: AgentTemplate, automaticRollback: Bool? = nil) throws(Refusal) {
        let supervisor = supervisor.value
        var next = next
        let from = current.version ?? "1"
        let began = state.withLock { state -> Bool in
            guard !state.records.contains(where: { $0.template == current.name && $0.outcome == .rolling }) else { return false }
            if next.version == nil || next.version == current.version {
                // The same label would make the two indistinguishable to routing: a revision
                // of the version the file names.
                state.revision[current.name, default: 1] += 1
                next.version = "\(next.version ?? "1")+r\(state.revision[current.name]!)"
            }
            state.records.append(Record(template: current.name, from: from, to: next.version!, outcome: .rolling, startedAt: Date(), steps: []))
            // The oldest finished ones go; a rollout still going on is kept whatever its age.
            while state.records.count > Self.recordLimit, let index = state.records.firstIndex(where: { $0.outcome != .rolling }) {
                state.records.remove(at: index)
            }
            return true
        }
        guard began else { throw Refusal(description: "template \(current.name) is already being rolled out") }
        let to = next.version!
        supervisor.setRollingOut(current.name, true)
        var policy = next.rollout
        if let automaticRollback { policy.automaticRollback = automaticRollback }
        let plan = policy
        let target = next
        logger.notice("rollout \(current.name): \(from) → \(to) begins")
        Task { await self.roll(from: current, to: target, policy: plan) }
    }

    /// Rolls back to what the template ran before its last completed rollout.
    func rollBack(_ name: String) throws(Refusal) -> Record {
        let supervisor = supervisor.value
        guard let current = supervisor.template(named: name) else { throw Refusal(description: "no spawned template \"\(name)\"") }
        guard let previous = state.withLock({ $0.previous[name] }) else {
            throw Refusal(description: "template \(name) has not been rolled out: there is no earlier template to go back to")
        }
        try start(from: current, to: previous, automaticRollback: false)
        return state.withLock { $0.records.last { $0.template == name }! }
    }

    private func note(_ name: String, _ step: String) {
        logger.info("rollout \(name): \(step)")
        state.withLock { state in
            guard let index = state.records.lastIndex(where: { $0.template == name && $0.outcome == .rolling }) else { return }
            state.records[index].steps.append(step)
            if state.records[index].steps.count > 200 { state.records[index].steps.removeFirst() }
        }
    }

    private func finish(_ name: String, _ outcome: Record.Outcome, reason: String?) {
        state.withLock { state in
            guard let index = state.records.lastIndex(where: { $0.template == name && $0.outcome == .rolling }) else { return }
            state.records[index].outcome = outcome
            state.records[index].endedAt = Date()
            state.records[index].reason = reason
        }
        supervisor.value.setRollingOut(name, false)
    }

    private func roll(from old: AgentTemplate, to new: AgentTemplate, policy: RolloutPolicy) async {
        let supervisor = supervisor.value
        let name = old.name
        let version = new.version!
        let oldInstances = supervisor.instances(of: name)
        supervisor.replaceTemplate(new)
        guard !oldInstances.isEmpty else {
            // Scaled to zero: one instance of the new version starts, so that its offer is
            // known, and the dormant ones of the old go; the autoscaler parks it again once idle.
            // A template that runs none by its count just takes the new template.
            let dormant = supervisor.parkedInstances(of: name)
            guard !dormant.isEmpty else {
                note(name, "no instance runs: the next one starts as \(version)")
                finish(name, .completed, reason: nil)
                state.withLock { $0.previous[name] = old }
                applyBesideProcesses(old, new, running: 0, supervisor: supervisor)
                return
            }
            do {
                let started = try supervisor.startActiveVersionInstance(of: new)
                note(name, "no instance ran: started \(started.rawValue) as \(version)")
            } catch {
                return await rollBack(name, old: old, new: new, started: [], wanted: 0, reason: "cannot start a new instance: \(error)")
            }
            for id in dormant { _ = supervisor.stop(id) }
            finish(name, .completed, reason: nil)
            state.withLock { $0.previous[name] = old }
            applyBesideProcesses(old, new, running: 1, supervisor: supervisor)
            return
        }
        let wanted = oldInstances.count
        var remaining = oldInstances
        var started: [AgentRegistry.InstanceID] = []
        var first = true
        while !remaining.isEmpty || started.count < wanted {
            // Room for new instances: up to maxSurge above the count. Without it, old instances
            // leave first, up to maxUnavailable — but never the last one before its replacement
            // is ready (the template's tools would vanish): then the step surges by one.
            var room = wanted + policy.maxSurge - (started.count + remaining.count)
            if room <= 0, policy.maxUnavailable > 0, remaining.count > 1, started.count < wanted {
                let leaving = Array(remaining.prefix(min(policy.maxUnavailable, remaining.count - 1, wanted - started.count)))
                for id in leaving { try? agents.drain(id) }
                remaining.removeFirst(leaving.count)
                room += leaving.count
                note(name, "draining \(leaving.map(\.rawValue).joined(separator: ", ")) to make room (maxSurge \(policy.maxSurge))")
            }
            let batch = min(max(room, 1), wanted - started.count)
            var batchIDs: [AgentRegistry.InstanceID] = []
            if started.count < wanted {
                for _ in 0..<batch {
                    do {
                        batchIDs.append(try supervisor.startNewVersionInstance(of: new))
                    } catch {
                        return await rollBack(name, old: old, new: new, started: started + batchIDs, wanted: wanted, reason: "cannot start a new instance: \(error)")
                    }
                }
                note(name, "started \(batchIDs.map(\.rawValue).joined(separator: ", ")) (\(version))")
                if let failure = await waitUntilReady(batchIDs, within: policy.readyTimeout) {
                    return await rollBack(name, old: old, new: new, started: started + batchIDs, wanted: wanted, reason: failure)
                }
                started += batchIDs
            }
            // Calls follow the counts; the first step gives the canary its own share.
            let share = first && policy.canaryShare > 0 ? policy.canaryShare : Double(started.count) / Double(started.count + remaining.count)
            agents.setCanary(template: name, version: version, share: share)
            note(name, "\(version) takes \(Int((share * 100).rounded()))% of calls (\(started.count) new, \(remaining.count) old)")
            let watch = first && policy.canaryShare > 0 ? policy.canarySeconds : policy.stepSeconds
            let verdict = await judge(name, newVersion: version, policy: policy, watching: watch)
            switch verdict {
            case .worse(let reason) where policy.automaticRollback:
                return await rollBack(name, old: old, new: new, started: started, wanted: wanted, reason: "\(version) is worse: \(reason)")
            case .worse(let reason): note(name, "\(version) looks worse (\(reason)), automatic rollback is off: going on")
            case .healthy(let reason): note(name, "\(version) holds: \(reason)")
            case .undecided(let reason): note(name, "no verdict yet: \(reason)")
            }
            first = false
            // Old instances leave as new ones took their place.
            let leaving = min(remaining.count, max(0, started.count + remaining.count - wanted))
            for id in remaining.prefix(leaving) { try? agents.drain(id) }
            if leaving > 0 { note(name, "draining \(remaining.prefix(leaving).map(\.rawValue).joined(separator: ", "))") }
            remaining.removeFirst(leaving)
            agents.setCanary(template: name, version: version, share: Double(started.count) / Double(started.count + remaining.count))
        }
        agents.promote(template: name, version: version)
        agents.setCanary(template: name, version: nil)
        state.withLock { $0.previous[name] = old }
        supervisor.setRollingOut(name, false)
        applyBesideProcesses(old, new, running: started.count, supervisor: supervisor)
        note(name, "\(version) is active on \(started.count) instance\(started.count == 1 ? "" : "s")")
        finish(name, .completed, reason: nil)
        logger.notice("rollout \(name): \(old.version ?? "1") → \(version) completed")
    }

    /// What the new template changed beside its processes, once it runs: its names, and its
    /// count when no autoscaler sets it.
    private func applyBesideProcesses(_ old: AgentTemplate, _ new: AgentTemplate, running: Int, supervisor: AgentSupervisor) {
        let name = new.name
        supervisor.setRollingOut(name, false)
        if new.toolPrefix != old.toolPrefix { agents.setPrefix(new.toolPrefix, forTemplate: name) }
        guard new.autoscale == nil, new.instances != running else { return }
        do {
            _ = try supervisor.scale(name, to: new.instances)
            note(name, "scaled from \(running) to \(new.instances) instances, as the new template says")
        } catch {
            note(name, "not scaled to \(new.instances): \(error)")
        }
    }

    /// Waits until every instance is ready; the reason when one is not within `seconds`.
    private func waitUntilReady(_ ids: [AgentRegistry.InstanceID], within seconds: Double) async -> String? {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            let ready = Set(agents.readyInstances(template: AgentSupervisor.templateName(of: ids[0])).map(\.id))
            if ids.allSatisfy(ready.contains) { return nil }
            // Failing already (its handshake, its sandbox): no need to wait out the timeout.
            for id in ids {
                if let status = agents.status(id), status["currentState"]?.stringValue == "ERROR", let error = status["lastError"]?.stringValue {
                    return "\(id) failed to start: \(error)"
                }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return "the new instances \(ids.map(\.rawValue).joined(separator: ", ")) were not ready within \(seconds) s"
    }

    /// Watches the versions for `seconds` (longer, up to five times, while the new one has too
    /// few calls for a verdict) and compares what each answered meanwhile.
    private func judge(_ name: String, newVersion: String, policy: RolloutPolicy, watching seconds: Double) async -> RolloutVerdict {
        let before = figuresByInstance(name)
        let start = ContinuousClock.now
        var verdict = RolloutVerdict.undecided("nothing watched")
        repeat {
            try? await Task.sleep(for: .milliseconds(100))
            let (new, old) = compare(before, figuresByInstance(name), newVersion: newVersion)
            verdict = RolloutJudge.verdict(new: new, old: old, policy: policy)
            if case .worse = verdict { return verdict }
            let elapsed = ContinuousClock.now - start
            if elapsed >= .seconds(seconds), case .healthy = verdict { return verdict }
            if elapsed >= .seconds(seconds * 5) { return verdict }
        } while true
    }

    private func figuresByInstance(_ name: String) -> [AgentRegistry.InstanceID: (version: String, figures: VersionFigures)] {
        Dictionary(
            agents.figures(template: name).map { ($0.id, ($0.version, VersionFigures(calls: $0.calls, failures: $0.failures, latencySeconds: $0.latencySeconds))) }
        ) { first, _ in first }
    }

    private func compare(
        _ before: [AgentRegistry.InstanceID: (version: String, figures: VersionFigures)],
        _ after: [AgentRegistry.InstanceID: (version: String, figures: VersionFigures)], newVersion: String
    ) -> (new: VersionFigures, old: VersionFigures) {
        var new = VersionFigures()
        var old = VersionFigures()
        for (id, now) in after {
            let change = now.figures - (before[id]?.figures ?? VersionFigures())
            if now.version == newVersion { new = new + change } else { old = old + change }
        }
        return (new, old)
    }

    /// Back to the old template: calls to the old version only, the new instances stopped, the
    /// old count started again where instances were drained.
    private func rollBack(_ name: String, old: AgentTemplate, new: AgentTemplate, started: [AgentRegistry.InstanceID], wanted: Int, reason: String) async {
        let supervisor = supervisor.value
        agents.setCanary(template: name, version: nil)
        supervisor.replaceTemplate(old)
        // Drained, not killed: calls they hold are answered (or fail) as they would have.
        for id in started where (try? agents.drain(id)) == nil { _ = supervisor.stop(id) }
        let running = supervisor.instances(of: name).filter { !started.contains($0) }.count
        for _ in running..<max(running, wanted) { _ = try? supervisor.startActiveVersionInstance(of: old) }
        note(name, "rolled back to \(old.version ?? "1"): \(reason)")
        finish(name, .rolledBack, reason: reason)
        logger.error("rollout \(name): \(new.version ?? "?") rolled back to \(old.version ?? "1"): \(reason)")
    }
}
