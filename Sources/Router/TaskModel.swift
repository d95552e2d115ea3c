import Agents
import FoundationEssentials
import JSONRPC

/// The seed's task states, plus CANCELLED.
public enum TaskState: String, Sendable, CaseIterable {
    case pending = "PENDING"
    case assigned = "ASSIGNED"
    case running = "RUNNING"
    case completed = "COMPLETED"
    case failed = "FAILED"
    case timeout = "TIMEOUT"
    case cancelled = "CANCELLED"

    public var isFinal: Bool {
        switch self {
        case .completed, .failed, .timeout, .cancelled: true
        case .pending, .assigned, .running: false
        }
    }

    /// The same state in MCP's task vocabulary.
    public var mcpStatus: String {
        switch self {
        case .pending, .assigned, .running: "working"
        case .completed: "completed"
        case .failed, .timeout: "failed"
        case .cancelled: "cancelled"
        }
    }
}

/// How long to wait before attempt `n` (1-based retry number).
public struct BackoffPolicy: Sendable, Equatable {
    public enum Kind: String, Sendable { case fixed, exponential }
    public var kind: Kind = .exponential
    public var delay: Duration = .milliseconds(500)
    public var maximum: Duration = .seconds(60)

    public init(kind: Kind = .exponential, delay: Duration = .milliseconds(500)) {
        self.kind = kind
        self.delay = delay
    }

    /// With full jitter on exponential back-off, so that retries of many tasks spread out.
    public func delay(beforeRetry retry: Int) -> Duration {
        switch kind {
        case .fixed:
            return delay
        case .exponential:
            let factor = Double(1 << min(retry - 1, 20))
            let base = min(delay * factor, maximum)
            let seconds = Double(base.components.seconds) + Double(base.components.attoseconds) / 1e18
            return .seconds(Double.random(in: (seconds / 2)...seconds))
        }
    }
}

/// Where a task may run beyond "any agent with the tool".
public struct RoutingHints: Sendable, Equatable {
    /// Tasks with the same key go to the same agent while it stays healthy.
    public var stickyKey: String?
    /// Only agents tagged with this tenant (capability `tenant:NAME`) may run the task.
    public var tenant: String?

    public init(stickyKey: String? = nil, tenant: String? = nil) {
        self.stickyKey = stickyKey
        self.tenant = tenant
    }
}

/// What `tasks/submit` asks for, validated.
public struct TaskSubmission: Sendable {
    public var taskType: String
    public var taskData: RawJSON
    public var requiredCapabilities: [String] = []
    /// The least share of `requiredCapabilities` an agent must carry (1: all of them).
    public var minimumMatch = 1.0
    public var priority = 5
    public var timeout: Duration = .seconds(300)
    public var maximumRetries = 3
    /// The failures worth another attempt (`retryOn`); invalid requests never are.
    public var retryOn = FailureKind.retriedByDefault
    public var backoff = BackoffPolicy()
    public var idempotencyKey: String?
    public var dependsOn: [String] = []
    public var callback: String?
    /// The W3C trace context of the request that submitted it: each attempt's call carries it
    /// in `_meta`, so the agent's work joins the submitter's trace.
    public var traceparent: String?
    public var routing = RoutingHints()
    /// How long a finished task is kept for `tasks/get`.
    public var retention: Duration = .seconds(3600)
    /// The tenant the task belongs to (with access control): another tenant's requests do not
    /// find it. Nil: no tenancy.
    public var ownerTenant: String?
    /// The principal that submitted it, for the record.
    public var submittedBy: String?
    /// The quota counts the task holds until it ends (given back by whoever ends it), and the
    /// token of the submission that took them: a submission answered with an earlier task (its
    /// idempotency key) sees another token, and gives its own back at once.
    public var heldQuotas: [String] = []
    public var quotaToken: String?

    public init(taskType: String, taskData: RawJSON) {
        self.taskType = taskType
        self.taskData = taskData
    }
}

/// One try of a task on one agent.
public struct TaskAttempt: Sendable {
    public var agent: String
    /// The replica the agent runs on, when replicas share the tasks (chapter 13).
    public var replica: String?
    /// How well the agent matched the required capabilities (1: all of them).
    public var matchConfidence = 1.0
    public var started: Date
    public var ended: Date?
    public var error: String?

    var jsonValue: JSONValue {
        var object: [String: JSONValue] = [
            "agentId": .string(agent), "startTime": .string(started.formatted(.iso8601)),
            "matchConfidence": .double((matchConfidence * 1000).rounded() / 1000),
        ]
        if let ended { object["endTime"] = .string(ended.formatted(.iso8601)) }
        if let error { object["error"] = .string(error) }
        return .object(object)
    }
}

/// A task and everything that happened to it.
public struct TaskRecord: Sendable {
    public var id: String
    public var submission: TaskSubmission
    public var state: TaskState = .pending
    public var createdAt = Date()
    public var lastUpdatedAt = Date()
    public var startTime: Date?
    public var completionTime: Date?
    public var assignedAgent: (id: String, name: String)?
    public var attempts: [TaskAttempt] = []
    public var result: RawJSON?
    public var errorMessage: String?
    /// Why a task waits: dependencies, a retry's back-off, or capacity.
    public var waitingFor: String?

    public var retryCount: Int { max(0, attempts.count - 1) }

    /// Whether a failed attempt of this kind gets another try.
    public func retries(after failure: FailureKind) -> Bool {
        retryCount < submission.maximumRetries && submission.retryOn.contains(failure) && failure != .invalidRequest
    }

    /// The seed's `TaskStatus`, with MCP's `status` beside the seed's `state`.
    public var jsonValue: JSONValue {
        var object: [String: JSONValue] = [
            "taskId": .string(id),
            "taskType": .string(submission.taskType),
            "state": .string(state.rawValue),
            "status": .string(state.mcpStatus),
            "priority": .integer(Int64(submission.priority)),
            "retryCount": .integer(Int64(retryCount)),
            "maxRetries": .integer(Int64(submission.maximumRetries)),
            "createdAt": .string(createdAt.formatted(.iso8601)),
            "lastUpdatedAt": .string(lastUpdatedAt.formatted(.iso8601)),
            "attempts": .array(attempts.map(\.jsonValue)),
        ]
        if submission.retryOn != FailureKind.retriedByDefault {
            object["retryOn"] = .array(FailureKind.allCases.filter(submission.retryOn.contains).map { .string($0.rawValue) })
        }
        if let agent = assignedAgent {
            var assigned: [String: JSONValue] = ["agentId": .string(agent.id), "agentName": .string(agent.name)]
            if let replica = attempts.last?.replica { assigned["replica"] = .string(replica) }
            object["assignedAgent"] = .object(assigned)
        }
        if let startTime { object["startTime"] = .string(startTime.formatted(.iso8601)) }
        if let completionTime {
            object["completionTime"] = .string(completionTime.formatted(.iso8601))
            if let startTime { object["duration"] = .double((completionTime.timeIntervalSince(startTime) * 1000).rounded() / 1000) }
        }
        if let result { object["result"] = .raw(result) }
        if let errorMessage { object["errorMessage"] = .string(errorMessage) }
        if let waitingFor, !state.isFinal { object["statusMessage"] = .string(waitingFor) }
        if !submission.dependsOn.isEmpty { object["dependsOn"] = .array(submission.dependsOn.map(JSONValue.string)) }
        if let key = submission.idempotencyKey { object["idempotencyKey"] = .string(key) }
        if let owner = submission.ownerTenant { object["ownerTenant"] = .string(owner) }
        if let principal = submission.submittedBy { object["submittedBy"] = .string(principal) }
        return .object(object)
    }
}
