import Agents
import Backend
import JSONRPC
import Logging
import NIOCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The seed's agent communication stream: each agent's status changes and the messages it sends
/// and receives, published as events on the topic `switchboard.agents.AGENT_ID` in the seed's
/// AgentCommunicationEvent shape (`eventType`, `timestamp`, `data`). Subscribers get them like
/// any event (`events/subscribe`, `/ws/events`, `/ws/agents/{agentId}/communications`); with
/// replicas, the replica an agent runs at publishes for it, once.
final class AgentCommunications: Sendable {
    static let topicPrefix = "switchboard.agents."

    private let agents: AgentRegistry
    private let outbox = PublishQueue(capacity: 10_000)
    private let logger: Logger

    init(agents: AgentRegistry, coordination: CoordinationMethods, logger: Logger) {
        self.agents = agents
        self.logger = logger
        agents.onStatusChange { [weak self] ids in self?.statusChanged(ids) }
        coordination.onMessageSent { [weak self] sent in self?.messageSent(sent) }
    }

    static func topic(of agent: String) -> String { topicPrefix + agent }

    /// Publishes until cancelled.
    func run(on events: any PubSub) async {
        let logger = self.logger
        await outbox.run(on: events) { error, count in
            logger.warning("agent communication events: \(count) not published: \(error)")
        }
    }

    private func statusChanged(_ ids: [AgentRegistry.InstanceID]) {
        var seen = Set<AgentRegistry.InstanceID>()
        for id in ids where seen.insert(id).inserted && agents.isLocal(id) {
            let status = agents.status(id) ?? ["agentId": .string(id.rawValue), "currentState": "OFFLINE", "removed": true]
            publish("agent_status_changed", about: id.rawValue, data: status, tenants: Self.tenants(of: status))
        }
    }

    private func messageSent(_ sent: CoordinationMethods.SentMessage) {
        if let sender = sent.sender {
            publish("message_sent", about: sender.rawValue, data: sent.delivery, recipients: sent.recipients, tenants: Self.tenants(of: agents.status(sender)))
        }
        for recipient in sent.recipients where agents.isLocal(recipient) {
            publish("message_received", about: recipient.rawValue, data: sent.delivery, tenants: Self.tenants(of: agents.status(recipient)))
        }
    }

    /// The tenants an agent is kept to: its events go to each of them too (a tenant's
    /// subscriptions see only its own topics), besides the topic admins and operators see.
    private static func tenants(of status: JSONValue?) -> [String] {
        guard case .array(let names)? = status?["tenants"] else { return [] }
        return names.compactMap(\.stringValue)
    }

    private func publish(
        _ eventType: String, about agent: String, data: JSONValue, recipients: [AgentRegistry.InstanceID] = [], tenants: [String] = []
    ) {
        var event: [String: JSONValue] = [
            "eventType": .string(eventType),
            "timestamp": .string(Date().formatted(.iso8601)),
            "agentId": .string(agent),
            "data": data,
        ]
        if !recipients.isEmpty { event["recipients"] = .array(recipients.map { .string($0.rawValue) }) }
        var payload = ByteBuffer()
        JSONValue.object(event).write(to: &payload)
        let now = SystemClock().now()
        for topic in [Self.topic(of: agent)] + tenants.map({ TenantScope.topic(Self.topic(of: agent), of: $0) }) {
            outbox.enqueue(PubSubMessage(topic: topic, payload: payload, publishedAt: now, publisher: "gateway"))
        }
    }
}
