import JSONRPC

/// A request to run a workflow, after the seed's WorkflowExecutionRequest (`triggerType`,
/// `triggerData`, `executionContext`), with the workflow, its version and the inputs.
public struct WorkflowExecutionRequest: Sendable {
    public var workflowName: String
    /// nil: the latest version.
    public var version: String?
    public var inputs: [String: JSONValue]
    /// `manual`, `event`, `schedule`, or what the caller says.
    public var triggerType: String
    /// What expressions read as `trigger.payload` (the event's data, say).
    public var triggerData: JSONValue
    /// What expressions read as `context`.
    public var executionContext: JSONValue

    public init(
        workflowName: String, version: String? = nil, inputs: [String: JSONValue] = [:], triggerType: String = "manual",
        triggerData: JSONValue = [:], executionContext: JSONValue = [:]
    ) {
        self.workflowName = workflowName
        self.version = version
        self.inputs = inputs
        self.triggerType = triggerType
        self.triggerData = triggerData
        self.executionContext = executionContext
    }
}
