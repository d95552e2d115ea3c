import JSONRPC

/// One step, shaped after the seed's WorkflowStep (`stepId`, `stepType`, `dependencies`,
/// `timeout`, `retryPolicy`), with its type's configuration in `kind`.
public struct WorkflowStep: Sendable {
    public var id: String
    public var kind: Kind
    /// Top-level steps only: the steps that must finish first.
    public var dependencies: [String]
    /// The longest one attempt may take (for `human_approval`, how long to wait for a decision).
    public var timeout: Duration?
    public var retryPolicy: RetryPolicy?
    /// nil: the workflow's `errorHandling`.
    public var errorHandling: WorkflowErrorHandling?
    public var description: String?
    /// Where the step is written, and the positions of its `dependencies` entries.
    public var location: SourceLocation?
    var dependencyLocations: [SourceLocation?] = []
    var sourcePath = ""

    /// The step's type and its type's configuration.
    public enum Kind: Sendable {
        case agentTask(AgentTaskStep)
        case condition(ConditionStep)
        case parallel(ParallelStep)
        case loop(LoopStep)
        case humanApproval(ApprovalStep)
    }

    /// The type as written in a definition: `agent_task`, `condition`, `parallel`, `loop`,
    /// `human_approval`.
    public var typeName: String {
        switch kind {
        case .agentTask: "agent_task"
        case .condition: "condition"
        case .parallel: "parallel"
        case .loop: "loop"
        case .humanApproval: "human_approval"
        }
    }

    /// The steps nested in this one (a parallel's branches, a loop's body).
    public var children: [WorkflowStep] {
        switch kind {
        case .parallel(let parallel): parallel.branches.flatMap { $0 }
        case .loop(let loop): loop.body
        default: []
        }
    }
}

/// Calls one tool of an agent.
public struct AgentTaskStep: Sendable {
    public var tool: String
    /// The tool's arguments; `.literal([:])` when none are given.
    public var input: ValueTemplate
}

/// Chooses between two lists of steps. Steps named in the branch not taken are SKIPPED.
public struct ConditionStep: Sendable {
    public var condition: WorkflowExpression
    public var thenSteps: [String]
    public var elseSteps: [String]
    var thenLocations: [SourceLocation?] = []
    var elseLocations: [SourceLocation?] = []

    /// The branch that names `step`, if any.
    func branch(naming step: String) -> String? {
        if thenSteps.contains(step) { return "then" }
        if elseSteps.contains(step) { return "else" }
        return nil
    }
}

/// Runs branches at the same time; the steps of one branch run in order.
public struct ParallelStep: Sendable {
    public var branches: [[WorkflowStep]]
}

/// Runs its body (in order) again and again.
public struct LoopStep: Sendable {
    public var body: [WorkflowStep]
    /// Checked before each iteration; the loop ends when it is false.
    public var whileCondition: WorkflowExpression?
    /// Checked after each iteration; the loop ends when it is true.
    public var untilCondition: WorkflowExpression?
    /// An array: one iteration per element, bound to `item`.
    public var forEach: WorkflowExpression?
    public var maxIterations: Int
    /// What reaching `maxIterations` does while the loop still wants more.
    public var onLimit: LimitAction

    /// `fail`: the loop step fails; `complete`: it ends normally.
    public enum LimitAction: String, Sendable, CaseIterable {
        case fail, complete
    }
}

/// Waits for a person's decision (`WorkflowExecutor.approve`).
public struct ApprovalStep: Sendable {
    public var message: ValueTemplate
    /// Who may decide; empty: anyone.
    public var approvers: [String]
    public var onTimeout: TimeoutDecision

    /// What an approval that nobody decided in time becomes.
    public enum TimeoutDecision: String, Sendable, CaseIterable {
        case reject, approve
    }
}

/// How often and how soon a failed attempt is tried again.
public struct RetryPolicy: Sendable, Hashable {
    /// `fixed`: the same wait before every retry; `exponential`: doubling waits.
    public enum Backoff: String, Sendable, CaseIterable {
        case fixed, exponential
    }

    public var maxRetries: Int
    public var backoff: Backoff
    /// The first wait; exponential back-off doubles it for each further retry (at most 1 h).
    public var backoffDelay: Duration

    public init(maxRetries: Int, backoff: Backoff = .exponential, backoffDelay: Duration = .seconds(1)) {
        self.maxRetries = maxRetries
        self.backoff = backoff
        self.backoffDelay = backoffDelay
    }

    /// The policy `errorHandling: retry` uses when the step has none.
    public static let standard = RetryPolicy(maxRetries: 3)

    /// The wait before retry number `retry` (1 for the first).
    public func delay(beforeRetry retry: Int) -> Duration {
        guard backoff == .exponential, retry > 1 else { return backoffDelay }
        let factor = 1 << min(retry - 1, 20)
        return min(backoffDelay * factor, .seconds(3_600))
    }
}
