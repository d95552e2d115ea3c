/// A named set of rules. A request is allowed when one of the principal's roles allows it and
/// none denies it; a deny wins over any allow.
public struct Role: Sendable, Hashable {
    public var name: String
    public var allow: [AccessRule]
    public var deny: [AccessRule]

    public init(name: String, allow: [String], deny: [String] = []) {
        self.name = name
        self.allow = allow.map(AccessRule.init)
        self.deny = deny.map(AccessRule.init)
    }

    /// Methods every principal may call whatever its roles: the session's own housekeeping.
    public static let alwaysAllowed: Set<String> = ["initialize", "ping", "auth/authenticate", "auth/whoami"]

    /// Methods that only read.
    static let reading = [
        "tools/list", "prompts/list", "resources/list", "resources/templates/list", "agents/list", "agents/get",
        "gateway/status", "tasks/list", "tasks/get", "workflows/list", "workflows/get", "workflows/status", "subscriptions/listen",
        "metrics/history", "messages/list", "workflows/executions", "workflows/validate",
        "fleet/status", "fleet/decisions", "fleet/allocations", "fleet/rollouts",
        // Status as it changes: the agents' and the executions' events (a console's live view),
        // not every topic (clients' own events and messages are theirs).
        "events/subscribe:switchboard.agents.*", "events/subscribe:workflows.*", "events/unsubscribe",
    ]

    /// What a client does: use tools and patterns, run tasks, use memory, events and messages
    /// (its tenant's alone: tenancy is in the stores' keys, not in these rules).
    static let using = [
        "tools/*", "prompts/*", "resources/*", "completion/*", "logging/setLevel", "tasks/*",
        "memory/*", "events/*", "messages/send", "messages/list", "messages/acknowledge", "subscriptions/listen",
    ]

    public static let builtIn: [String: Role] = [
        BuiltInRole.admin.rawValue: Role(name: "admin", allow: ["*"]),
        BuiltInRole.operator.rawValue: Role(
            name: "operator",
            allow: reading + ["agents/*", "workflows/*", "tasks/*", "memory/get", "memory/list", "audit/query", "metrics/*", "fleet/*", "gateway/reload"]),
        BuiltInRole.client.rawValue: Role(name: "client", allow: using + ["agents/list", "agents/get", "gateway/status"]),
        BuiltInRole.agent.rawValue: Role(
            name: "agent",
            // It registers (as the names its principal may), serves calls, and reaches other
            // agents' tools and its own memory and events like a client does.
            allow: ["agents/register", "agents/heartbeat", "agents/deregister"] + using),
        BuiltInRole.viewer.rawValue: Role(name: "viewer", allow: reading),
        BuiltInRole.monitor.rawValue: Role(
            name: "monitor",
            allow: ["metrics/prometheus", "metrics/history", "gateway/status", "agents/list", "agents/get", "fleet/status", "fleet/decisions", "fleet/allocations", "fleet/rollouts"]),
    ]
}
