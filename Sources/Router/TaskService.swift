import Agents
import NIOCore

/// What the task methods need of a task engine: the embedded `TaskEngine` (one process) and the
/// `SharedTaskEngine` (replicas sharing a `TaskBoard`) both offer it.
public protocol TaskService: Sendable {
    /// Accepts a task and returns it at once (an earlier task when the idempotency key was seen).
    func submit(_ submission: TaskSubmission) async throws -> TaskRecord
    func get(_ id: String) async throws -> TaskRecord
    /// The task submitted with idempotency key `key`, while the key is remembered.
    func task(withIdempotencyKey key: String) async throws -> TaskRecord?
    /// Returns when the task has ended.
    func result(_ id: String) async throws -> TaskRecord
    /// Tasks in submission order after task number `cursor`.
    func list(state: TaskState?, taskType: String?, cursor: Int, limit: Int) async throws -> TaskPage
    /// A pending task is cancelled at once; a running one is cancelled at its agent too.
    func cancel(_ id: String) async throws -> TaskRecord
    func statistics() async -> TaskStatistics
    /// Called with every task that reaches a final state here (callbacks, metrics).
    func onFinished(_ observer: @escaping @Sendable (TaskRecord) -> Void)
}

public struct TaskPage: Sendable {
    public var tasks: [TaskRecord]
    public var nextCursor: String?

    public init(tasks: [TaskRecord], nextCursor: String?) {
        self.tasks = tasks
        self.nextCursor = nextCursor
    }
}

public struct TaskStatistics: Sendable {
    /// Tasks by state, as far as this process knows them (all of them for the embedded engine,
    /// those it ran for a shared one).
    public var byState: [TaskState: Int]
    public var queued: Int
    public var assignmentLatencyMilliseconds: (p50: Double, p99: Double)?
    /// Per queue, for a shared board.
    public var queues: [String: Int] = [:]
    /// Queued tasks by priority (1 highest … 10), where the engine knows them (the embedded one).
    public var queuedByPriority: [Int: Int] = [:]
    /// Queued tasks by their tool (`taskType`), where the engine knows them: the autoscaler's
    /// measure of work waiting for a template.
    public var queuedByTaskType: [String: Int] = [:]
    public var deadLettered: Int?

    public init(byState: [TaskState: Int], queued: Int, assignmentLatencyMilliseconds: (p50: Double, p99: Double)?) {
        self.byState = byState
        self.queued = queued
        self.assignmentLatencyMilliseconds = assignmentLatencyMilliseconds
    }
}

public enum TaskSubmitError: Error, Sendable, CustomStringConvertible {
    case invalid(String)
    case unknownDependency(String)
    public var description: String {
        switch self {
        case .invalid(let reason): reason
        case .unknownDependency(let id): "dependsOn names an unknown task \"\(id)\""
        }
    }
}

public enum TaskLookupError: Error, Sendable, CustomStringConvertible {
    case unknownTask(String)
    public var description: String {
        switch self {
        case .unknownTask(let id): "no task \"\(id)\""
        }
    }
}

extension TaskEngine: TaskService {
    public func submit(_ submission: TaskSubmission) async throws -> TaskRecord {
        try submitNow(submission)
    }

    public func get(_ id: String) async throws -> TaskRecord {
        try getNow(id)
    }

    public func task(withIdempotencyKey key: String) async throws -> TaskRecord? {
        taskNow(withIdempotencyKey: key)
    }

    public func result(_ id: String) async throws -> TaskRecord {
        try await result(id, on: group.any()).get()
    }

    public func list(state: TaskState?, taskType: String?, cursor: Int, limit: Int) async throws -> TaskPage {
        listNow(state: state, taskType: taskType, cursor: cursor, limit: limit)
    }

    public func cancel(_ id: String) async throws -> TaskRecord {
        try cancelNow(id)
    }

    public func statistics() async -> TaskStatistics {
        statisticsNow()
    }
}
