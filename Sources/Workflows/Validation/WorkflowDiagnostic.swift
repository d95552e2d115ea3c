import JSONRPC

/// One problem with a workflow definition: where it is (line and column in the text, and the
/// path to the node), and what to do about it.
public struct WorkflowDiagnostic: Error, Sendable, Hashable, CustomStringConvertible {
    public var location: SourceLocation?
    /// The node's path, such as `steps[2].retryPolicy.backoff`; empty for the whole document.
    public var path: String
    public var message: String
    /// The document bound it passes, when that is the problem.
    public var bound: DocumentBoundExceeded?

    public init(location: SourceLocation?, path: String, message: String) {
        self.location = location
        self.path = path
        self.message = message
    }

    /// A document past one of its bounds, at the place it was noticed.
    init(bound: DocumentBoundExceeded) {
        let location = bound.line.map { SourceLocation(line: $0, column: bound.column ?? 1) }
        self.init(location: location, path: "", message: bound.message)
        self.bound = bound
    }

    /// `line:column: message`.
    public var description: String {
        guard let location else { return message }
        return "\(location): \(message)"
    }

    /// `file:line:column: error: message`, the form compilers and editors understand.
    public func formatted(file: String) -> String {
        guard let location else { return "\(file): error: \(message)" }
        return "\(file):\(location.line):\(location.column): error: \(message)"
    }

    /// `{"line", "column", "path", "message"}` (line and column absent when unknown), with
    /// `"bound"` and `"limit"` when the document passes one of its bounds.
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = ["path": .string(path), "message": .string(message)]
        if let location {
            members["line"] = .integer(Int64(location.line))
            members["column"] = .integer(Int64(location.column))
        }
        if let bound {
            members["bound"] = .string(bound.bound.rawValue)
            members["limit"] = .integer(Int64(bound.limit))
        }
        return .object(members)
    }
}
