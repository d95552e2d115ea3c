import JSONRPC

/// A named, versioned workflow: steps over agents, shaped after the seed's WorkflowDefinition
/// (`workflowName`, `version`, steps, error handling, triggers). Made by `WorkflowLoader`,
/// which validates it; a definition is never changed once stored (a change is a new version).
public struct WorkflowDefinition: Sendable {
    public var name: String
    public var version: String
    public var description: String?
    /// Declared inputs, in the order written.
    public var inputs: [WorkflowInput]
    /// The top-level steps: a graph ordered by `dependencies`.
    public var steps: [WorkflowStep]
    /// Steps that run only when a `compensate:` handler names them.
    public var compensations: [WorkflowStep]
    /// What a failing step does when it says nothing itself.
    public var errorHandling: WorkflowErrorHandling
    public var triggers: [WorkflowTrigger]
    /// Output names and the expressions that give their values, in the order written.
    public var outputs: [WorkflowOutput]
    /// The longest an execution may take; it then ends TIMED_OUT.
    public var timeout: Duration?
    /// The text the definition was read from (YAML or JSON).
    public var source: String
    /// The definition as JSON, as written.
    public var document: JSONValue

    /// Every step, nested ones and compensations included, by id.
    public var stepsByID: [String: WorkflowStep] {
        var index: [String: WorkflowStep] = [:]
        func add(_ steps: [WorkflowStep]) {
            for step in steps {
                if index[step.id] == nil { index[step.id] = step }
                add(step.children)
            }
        }
        add(steps)
        add(compensations)
        return index
    }

    /// How many steps the definition has, nested ones included, compensations not.
    public var stepCount: Int {
        func count(_ steps: [WorkflowStep]) -> Int { steps.reduce(0) { $0 + 1 + count($1.children) } }
        return count(steps)
    }

    /// The schedules among the triggers.
    public var schedules: [CronSchedule] {
        triggers.compactMap { if case .schedule(let schedule) = $0 { schedule } else { nil } }
    }

    /// The event topics among the triggers.
    public var eventTopics: [String] {
        triggers.compactMap { if case .event(let topic) = $0 { topic } else { nil } }
    }
}

/// A declared input: its type, and a default or whether it must be given.
public struct WorkflowInput: Sendable {
    /// The type an input's value must have; `integer` is a number without a fraction.
    public enum ValueType: String, Sendable, CaseIterable {
        case string, number, integer, boolean, object, array, any
    }

    public var name: String
    public var type: ValueType
    public var defaultValue: JSONValue?
    public var required: Bool
    public var description: String?

    /// Whether `value` is of this input's type.
    public func accepts(_ value: JSONValue) -> Bool {
        switch (type, ExpressionEvaluator.plain(value)) {
        case (.any, _), (.string, .string), (.boolean, .bool), (.object, .object), (.array, .array),
            (.number, .integer), (.number, .double), (.integer, .integer):
            return true
        case (.integer, .double(let number)):
            return number.rounded() == number
        default:
            return false
        }
    }
}

/// A named output and its expression.
public struct WorkflowOutput: Sendable {
    public var name: String
    public var expression: WorkflowExpression
}

/// What starts an execution besides a request.
public enum WorkflowTrigger: Sendable {
    /// Only `workflows/execute` (always allowed; listing it documents the intent).
    case manual
    /// An event published to this topic.
    case event(String)
    /// A cron schedule in a time zone.
    case schedule(CronSchedule)

    public var jsonValue: JSONValue {
        switch self {
        case .manual: return "manual"
        case .event(let topic): return ["event": .string(topic)]
        case .schedule(let schedule):
            return ["schedule": ["cron": .string(schedule.expression.text), "timezone": .string(schedule.timeZone.identifier)]]
        }
    }
}

/// What happens when a step fails (after its retries).
public enum WorkflowErrorHandling: Sendable, Hashable {
    /// The execution fails.
    case fail
    /// The step is marked SKIPPED, with its error kept; the execution goes on.
    case skip
    /// Retry with the step's `retryPolicy` (or 3 exponential retries from 1 s), then fail.
    case retry
    /// Run the named compensation step, then fail.
    case compensate(String)

    public var jsonValue: JSONValue {
        switch self {
        case .fail: "fail"
        case .skip: "skip"
        case .retry: "retry"
        case .compensate(let step): ["compensate": .string(step)]
        }
    }
}
