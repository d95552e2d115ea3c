import JSONRPC

/// Why a catalog or executor request was refused, with the JSON-RPC error to answer it with.
public struct WorkflowError: Error, Sendable, CustomStringConvertible {
    /// What kind of refusal, which decides the JSON-RPC code.
    public enum Code: Sendable, Hashable {
        /// The definition is not valid; `data.problems` lists every problem.
        case invalidDefinition
        /// The request is wrong (missing inputs, a step that is not waiting, …).
        case invalidRequest
        /// That name and version exist with other content; definitions are immutable.
        case versionExists
        case unknownWorkflow
        case unknownExecution
        /// The store failed.
        case storageFailed
    }

    public var code: Code
    public var message: String
    /// An object: `reason`, and what names the problem (`workflowName`, `executionId`, …).
    public var data: [String: JSONValue]

    public init(_ code: Code, _ message: String, data: [String: JSONValue] = [:]) {
        self.code = code
        self.message = message
        self.data = data
        self.data["reason"] = .string(message)
    }

    public var description: String { message }

    /// -32602 for invalid params and definitions, -32002 for an unknown workflow or execution,
    /// -32603 when the store failed.
    public var jsonRPCError: JSONRPCError {
        switch code {
        case .invalidDefinition, .invalidRequest, .versionExists:
            JSONRPCError(code: JSONRPCError.Code.invalidParams, message: "Invalid params: \(message)", data: .object(data))
        case .unknownWorkflow, .unknownExecution:
            JSONRPCError(code: -32002, message: message, data: .object(data))
        case .storageFailed:
            JSONRPCError(code: JSONRPCError.Code.internalError, message: "Internal error: \(message)", data: .object(data))
        }
    }

    static func storage(_ error: any Error) -> WorkflowError {
        WorkflowError(.storageFailed, "the workflow store failed: \(error)")
    }
}
