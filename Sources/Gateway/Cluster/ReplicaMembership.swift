import Agents
import Backend
import FoundationEssentials
import JSONRPC
import Logging
import NIOCore
import Synchronization

/// This replica's place among the replicas sharing one backend: every `heartbeat` it announces
/// itself and its agents in the replica directory, reads everyone else's announcements, and
/// mirrors the other replicas' agents into the local registry as remote instances (reached
/// through the `ReplicaBus`). A replica whose announcement lapses is gone: its instances leave
/// the registry and the calls waiting on it fail with -32010.
final class ReplicaMembership: Sendable {
    let replica: String
    private let directory: any ReplicaDirectory
    private let agents: AgentRegistry
    private let bus: ReplicaBus
    private let logger: Logger
    private let heartbeat: Duration
    private let lapse: Duration
    private let startedAt = Date()
    private let listeners: @Sendable () -> [String]

    private struct Known {
        var payload: ByteBuffer
        var announcement: JSONValue
        var expiresAt: Timestamp
    }

    private let known = Mutex<[String: Known]>([:])
    private let onGone = Mutex<[@Sendable (String) -> Void]>([])

    /// Calls `body` with each replica found gone (its announcement lapsed).
    func onReplicaGone(_ body: @escaping @Sendable (String) -> Void) {
        onGone.withLock { $0.append(body) }
    }

    init(
        replica: String, directory: any ReplicaDirectory, agents: AgentRegistry, bus: ReplicaBus, logger: Logger,
        heartbeat: Duration = .seconds(1), lapse: Duration = .seconds(5), listeners: @escaping @Sendable () -> [String]
    ) {
        self.replica = replica
        self.directory = directory
        self.agents = agents
        self.bus = bus
        self.logger = logger
        self.heartbeat = heartbeat
        self.lapse = lapse
        self.listeners = listeners
    }

    /// Announces and reconciles every heartbeat until cancelled, then withdraws.
    func run() async {
        while !Task.isCancelled {
            await beat()
            do { try await Task.sleep(for: heartbeat) } catch { break }
        }
        try? await directory.withdraw(replica)
    }

    func beat() async {
        do {
            try await directory.announce(replica, payload: announcement(), ttl: lapse)
            reconcile(try await directory.replicas())
        } catch {
            logger.warning("replicas: the directory is unreachable: \(error)")
        }
    }

    /// Whether this replica is the one that runs what must run once among them (workflow
    /// schedules and triggers): the live replica with the smallest id.
    func isLeader() -> Bool {
        known.withLock { $0.keys.min() } == replica
    }

    /// The live replicas, this one included, for `gateway/status`.
    func status() -> JSONValue {
        let replicas = known.withLock { $0 }
        return .array(replicas.keys.sorted().map { id in
            let entry = replicas[id]!
            var object: [String: JSONValue] = [
                "replicaId": .string(id), "self": .bool(id == replica),
                "expiresAt": .string(entry.expiresAt.iso8601),
                "agents": .integer(Int64(entry.announcement["agents"].flatMap { if case .array(let list) = $0 { list.count } else { nil } } ?? 0)),
            ]
            for key in ["startedAt", "listeners", "pid", "host"] { if let value = entry.announcement[key] { object[key] = value } }
            return .object(object)
        })
    }

    // MARK: Announcing

    private func announcement() -> ByteBuffer {
        let agents: [JSONValue] = self.agents.localSnapshots().map { snapshot in
            let registration = snapshot.registration
            var announced: [String: JSONValue] = [
                "id": .string(snapshot.id.rawValue), "name": .string(registration.name), "template": .string(registration.template),
                "version": .string(registration.version), "kind": .string(registration.kind.rawValue),
                "agentType": .string(registration.agentType), "capabilities": .array(registration.capabilities.map(JSONValue.string)),
                "maxConcurrency": .integer(Int64(registration.maximumConcurrency)),
                "callTimeoutMs": .integer(registration.callTimeout.components.seconds * 1000 + registration.callTimeout.components.attoseconds / 1_000_000_000_000_000),
                "state": .string(snapshot.state.rawValue), "health": .string(snapshot.health.rawValue),
                "inFlight": .integer(Int64(snapshot.inFlight)),
                "tools": .array(snapshot.offer.tools.map { .raw($0.definition) }),
                "prompts": .array(snapshot.offer.prompts.map { .raw($0.definition) }),
                "resources": .array(snapshot.offer.resources.map(JSONValue.raw)),
                "resourceTemplates": .array(snapshot.offer.resourceTemplates.map(JSONValue.raw)),
            ]
            if let tenants = registration.tenants { announced["tenants"] = .array(tenants.map(JSONValue.string)) }
            if let zone = registration.zone { announced["zone"] = .string(zone) }
            return .object(announced)
        }
        let value: JSONValue = [
            "replicaId": .string(replica), "startedAt": .string(startedAt.formatted(.iso8601)),
            "listeners": .array(listeners().map(JSONValue.string)), "pid": .integer(Int64(ProcessInfo.processInfo.processIdentifier)),
            "host": .string(ProcessInfo.processInfo.hostName), "agents": .array(agents),
        ]
        var buffer = ByteBuffer()
        value.write(to: &buffer)
        return buffer
    }

    // MARK: Mirroring the others

    private func reconcile(_ announcements: [ReplicaAnnouncement]) {
        var live: Set<String> = []
        for announcement in announcements {
            live.insert(announcement.replica)
            let previous = known.withLock { $0[announcement.replica] }
            if let previous, previous.payload == announcement.payload {
                known.withLock { $0[announcement.replica]?.expiresAt = announcement.expiresAt }
                continue
            }
            guard let raw = try? RawJSON(validating: announcement.payload) else {
                logger.warning("replicas: ignoring a malformed announcement from \(announcement.replica)")
                continue
            }
            let decoded = raw.decoded()
            known.withLock { $0[announcement.replica] = Known(payload: announcement.payload, announcement: decoded, expiresAt: announcement.expiresAt) }
            if previous == nil { logger.info("replicas: \(announcement.replica) joined") }
            if announcement.replica != replica { mirror(announcement.replica, raw) }
        }
        let gone = known.withLock { known -> [String] in
            let gone = known.keys.filter { !live.contains($0) }
            for id in gone { known[id] = nil }
            return gone
        }
        let goneObservers = onGone.withLock { $0 }
        for lapsed in gone where lapsed != replica {
            logger.warning("replicas: \(lapsed) is gone (no heartbeat within \(lapse))")
            for instance in agents.instances(onReplica: lapsed) { agents.remove(instance) }
            bus.replicaLapsed(lapsed)
            goneObservers.forEach { $0(lapsed) }
        }
    }

    /// Makes the registry's view of `other`'s agents match its announcement.
    private func mirror(_ other: String, _ announcement: RawJSON) {
        var listed: Set<AgentRegistry.InstanceID> = []
        for agent in announcement.member("agents")?.elements() ?? [] {
            guard let localID = agent.member("id")?.stringValue, let template = agent.member("template")?.stringValue else { continue }
            let id = AgentRegistry.InstanceID("\(localID)@\(other)")
            listed.insert(id)
            var offer = AgentOffer()
            for tool in agent.member("tools")?.elements() ?? [] {
                if let name = tool.member("name")?.stringValue { offer.tools.append(ToolDefinition(name: name, definition: tool)) }
            }
            for prompt in agent.member("prompts")?.elements() ?? [] {
                if let name = prompt.member("name")?.stringValue { offer.prompts.append(ToolDefinition(name: name, definition: prompt)) }
            }
            offer.resources = agent.member("resources")?.elements() ?? []
            offer.resourceTemplates = agent.member("resourceTemplates")?.elements() ?? []
            let state = agent.member("state")?.stringValue ?? "IDLE"
            let health = AgentHealth(rawValue: agent.member("health")?.stringValue ?? "") ?? .healthy
            if agents.templateOf(id) == nil {
                var registration = AgentRegistry.Registration(
                    name: agent.member("name")?.stringValue ?? localID, template: template,
                    version: agent.member("version")?.stringValue ?? "1",
                    kind: AgentKind(rawValue: agent.member("kind")?.stringValue ?? "") ?? .attached,
                    agentType: agent.member("agentType")?.stringValue ?? "mcp",
                    capabilities: (agent.member("capabilities")?.elements() ?? []).compactMap(\.stringValue),
                    maximumConcurrency: Int(agent.member("maxConcurrency")?.decoded().integerValue ?? 1),
                    callTimeout: .milliseconds(agent.member("callTimeoutMs")?.decoded().integerValue ?? 300_000))
                registration.replica = other
                registration.tenants = agent.member("tenants").map { $0.elements().compactMap(\.stringValue) }
                registration.zone = agent.member("zone")?.stringValue
                let endpoint = RemoteAgentEndpoint(bus: bus, replica: other, instance: localID)
                agents.add(id, registration, endpoint: endpoint)
                agents.ready(id, endpoint: endpoint, offer: offer)
            } else {
                agents.updateOfferIfChanged(id, offer)
            }
            agents.setReported(id, health: health, takesWork: !["MAINTENANCE", "OFFLINE", "ERROR"].contains(state))
        }
        for instance in agents.instances(onReplica: other) where !listed.contains(instance) {
            agents.remove(instance)
        }
    }
}
