import Backend

/// Durable state of the workflow engine: every version of every definition, and every
/// execution (a header and one record per step), written after every transition.
public protocol WorkflowStateStore: Sendable {
    /// Stores a new version; false (and nothing stored) when that name and version exist.
    func saveDefinition(_ definition: StoredWorkflowDefinition) async throws -> Bool
    func definition(name: String, version: String) async throws -> StoredWorkflowDefinition?
    /// Every stored version, of one workflow or of all.
    func definitions(name: String?) async throws -> [StoredWorkflowDefinition]

    /// Writes an execution's header (its steps are written one by one with `saveStep`). An
    /// execution whose status is not final is listed by `unfinishedExecutionIDs`.
    func saveExecution(_ execution: WorkflowExecution) async throws
    func saveStep(_ step: WorkflowStepState, executionID: String) async throws
    /// The header and every step record.
    func execution(_ executionID: String) async throws -> WorkflowExecution?
    func unfinishedExecutionIDs() async throws -> [String]
    /// Executions by start, newest first: up to `limit` after `cursor` (nil: from the newest),
    /// each with the cursor that continues after it; fewer than `limit` when the list ends.
    func executionIDs(after cursor: String?, limit: Int) async throws -> [(id: String, cursor: String)]
}

/// A definition as stored: its text (parsed again when loaded) and who made it when.
public struct StoredWorkflowDefinition: Sendable, Hashable {
    public var name: String
    public var version: String
    public var source: String
    public var createdAt: Timestamp
    public var createdBy: String?

    public init(name: String, version: String, source: String, createdAt: Timestamp, createdBy: String?) {
        self.name = name
        self.version = version
        self.source = source
        self.createdAt = createdAt
        self.createdBy = createdBy
    }
}

/// Orders versions as people expect: "1.10.0" after "1.9.2"; numeric parts by value, others
/// by text.
public enum WorkflowVersionOrder {
    /// Whether version `a` comes before version `b`.
    public static func precedes(_ a: String, _ b: String) -> Bool {
        let left = parts(a), right = parts(b)
        for (x, y) in zip(left, right) where x != y {
            switch (Int(x), Int(y)) {
            case (let m?, let n?): return m < n
            case (nil, _?): return false  // numbers before words
            case (_?, nil): return true
            default: return x < y
            }
        }
        return left.count < right.count
    }

    private static func parts(_ version: String) -> [Substring] {
        version.split { $0 == "." || $0 == "-" || $0 == "+" }
    }
}

/// Where an execution stands in the listing by start: `started/<ms to 10^13, 13 digits>/<id>`.
/// A store lists keys in byte order, which is then newest first; the key of the last execution
/// of a page is the cursor of the next.
public enum WorkflowExecutionListing {
    public static func key(of execution: WorkflowExecution) -> String {
        let remaining = max(0, 9_999_999_999_999 - execution.startedAt.millisecondsSinceEpoch)
        let digits = String(remaining)
        return "started/" + String(repeating: "0", count: max(0, 13 - digits.count)) + digits + "/" + execution.executionID
    }
}
