import Access
import JSONRPC
import Logging

/// The `audit` section: where the trail goes and what it holds.
public struct AuditSettings: Sendable {
    /// The JSON Lines file, hash-chained (protocol-spec 12.9).
    public var file: String
    /// Tool calls, prompt reads and resource reads too (each is an action at an agent); off by
    /// default: a relayed call would then cost an entry.
    public var recordsToolCalls = false
    /// `fsync` after each batch of entries.
    public var syncToDisk = false

    public init(file: String) {
        self.file = file
    }
}

/// What the gateway records: every request that changes something (or that the access layer
/// refused), with who, what, target, outcome, time and request id. Reads are not recorded.
final class AuditTrail: Sendable {
    let log: AuditLog
    let file: String
    private let recordsToolCalls: Bool
    private let replica: String?

    /// Methods that change nothing: not recorded (unless refused).
    static let readOnlyMethods: Set<String> = [
        "initialize", "ping", "auth/whoami", "tools/list", "prompts/list", "resources/list", "resources/templates/list",
        "agents/list", "agents/get", "gateway/status", "tasks/list", "tasks/get", "tasks/result", "workflows/list",
        "workflows/get", "workflows/status", "memory/get", "memory/list", "audit/query", "completion/complete",
        "workflows/validate", "workflows/executions", "metrics/history", "metrics/prometheus", "messages/list",
        "fleet/status", "fleet/decisions", "fleet/allocations", "fleet/rollouts",
    ]
    /// Actions at an agent, recorded with `recordsToolCalls`.
    static let agentActions: Set<String> = ["tools/call", "prompts/get", "resources/read"]

    init(settings: AuditSettings, replica: String?, logger: Logger, sink: AuditLog.Sink? = nil) throws {
        var configuration = AuditLog.Configuration(path: settings.file)
        configuration.syncToDisk = settings.syncToDisk
        self.log = try AuditLog(configuration: configuration, sink: sink, logger: logger)
        self.file = settings.file
        self.recordsToolCalls = settings.recordsToolCalls
        self.replica = replica
    }

    /// Whether an allowed request of `method` is recorded.
    func records(_ method: String) -> Bool {
        if Self.readOnlyMethods.contains(method) { return false }
        if Self.agentActions.contains(method) { return recordsToolCalls }
        return true
    }

    func record(_ request: JSONRPCRequest, principal: Principal, connection: UInt64, error: JSONRPCError?) {
        let outcome: AuditOutcome = switch error?.code {
        case nil: .ok
        case AccessError.forbiddenCode?, AccessError.unauthenticatedCode?, AccessError.limitedCode?: .refused
        default: .failed
        }
        log.record(AuditEvent(
            principal: principal.name, tenant: principal.tenant, proof: principal.proof.rawValue, method: request.method,
            target: Self.target(of: request), outcome: outcome, error: error.map(AuditedError.init), requestID: request.id,
            connection: connection, replica: replica))
    }

    /// What the request acted on: what the access rules see, else the task, execution or agent
    /// it names.
    static func target(of request: JSONRPCRequest) -> String? {
        let targets = RequestTarget.targets(method: request.method, params: request.params)
        if !targets.isEmpty { return targets.joined(separator: ",") }
        guard let params = request.params, params.kind == .object else { return nil }
        for member in ["taskId", "executionId", "agentId", "template", "workflowName", "key"] {
            if let value = params.member(member)?.stringValue { return value }
        }
        return nil
    }
}
