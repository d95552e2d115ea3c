/// A workflow: named, versioned steps over agents (filled in by the workflow module's files).
public struct WorkflowName: Sendable, Hashable {
    public var rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
}
