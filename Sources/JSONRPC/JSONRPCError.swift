/// A JSON-RPC error object: a code a program can act on, a message a person can read, and data
/// that says exactly what was wrong.
public struct JSONRPCError: Error, Sendable, Hashable {
    public var code: Int
    public var message: String
    public var data: JSONValue?

    public init(code: Int, message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public var jsonValue: JSONValue {
        var object: [String: JSONValue] = ["code": .integer(Int64(code)), "message": .string(message)]
        if let data { object["data"] = data }
        return .object(object)
    }
}

extension JSONRPCError {
    /// The codes this gateway sends. JSON-RPC's own, MCP's, then ours in the band JSON-RPC leaves
    /// to implementations (-32000 … -32099; MCP allocates from -32020 up, we stay below).
    public enum Code {
        public static let parseError = -32700
        public static let invalidRequest = -32600
        public static let methodNotFound = -32601
        public static let invalidParams = -32602
        public static let internalError = -32603
        /// MCP 2026-07-28: the request's protocol version is not supported.
        public static let unsupportedProtocolVersion = -32022
        /// A message longer than the configured limit.
        public static let messageTooLarge = -32003
        /// The gateway is draining for shutdown and takes no new requests.
        public static let shuttingDown = -32004
        /// The peer is not allowed to do this (for example, its certificate does not name it).
        public static let forbidden = -32005
        /// A listener or a peer address is at its connection cap: the connection is refused.
        public static let tooManyConnections = -32006
        /// The agent handling the call went away (exited, disconnected) before answering.
        public static let agentFailed = -32010
        /// No instance of the agent that offers this can take calls (all offline or failed).
        public static let noAgentAvailable = -32011
        /// Every instance stayed busy for longer than the call could wait.
        public static let agentBusy = -32012
        /// The agent did not answer within the call's timeout.
        public static let callTimedOut = -32013
        /// A task ended FAILED or CANCELLED (`tasks/result`); data is the task.
        public static let taskFailed = -32014
        /// A nested call would go back to an agent already in its chain, or too deep.
        public static let callChainRefused = -32015
        /// The shared backend (Redis) cannot be reached; nothing was done. Retry later.
        public static let backendUnavailable = -32016
    }

    public static func parseError(_ syntax: JSONSyntaxError) -> JSONRPCError {
        JSONRPCError(
            code: Code.parseError,
            message: "Parse error: \(syntax.reason) at byte \(syntax.offset)",
            data: ["reason": .string(syntax.reason), "offset": .integer(Int64(syntax.offset))]
        )
    }

    public static func invalidRequest(_ reason: String) -> JSONRPCError {
        JSONRPCError(code: Code.invalidRequest, message: "Invalid Request: \(reason)", data: ["reason": .string(reason)])
    }

    public static func methodNotFound(_ method: String) -> JSONRPCError {
        JSONRPCError(code: Code.methodNotFound, message: "Method not found: \(method)", data: ["method": .string(method)])
    }

    public static func invalidParams(_ reason: String, extra: [String: JSONValue] = [:]) -> JSONRPCError {
        var data = extra
        data["reason"] = .string(reason)
        return JSONRPCError(code: Code.invalidParams, message: "Invalid params: \(reason)", data: .object(data))
    }

    public static func backendUnavailable(_ reason: String) -> JSONRPCError {
        JSONRPCError(code: Code.backendUnavailable, message: "Backend unavailable: \(reason)", data: ["reason": .string(reason)])
    }

    public static func internalError(_ reason: String) -> JSONRPCError {
        JSONRPCError(code: Code.internalError, message: "Internal error: \(reason)", data: ["reason": .string(reason)])
    }

    public static func messageTooLarge(limit: Int, size: Int? = nil) -> JSONRPCError {
        var data: [String: JSONValue] = ["limit": .integer(Int64(limit))]
        if let size { data["size"] = .integer(Int64(size)) }
        return JSONRPCError(
            code: Code.messageTooLarge,
            message: size.map { "Message too large: \($0) bytes, and the limit is \(limit) bytes per message" }
                ?? "Message too large: the limit is \(limit) bytes per message",
            data: .object(data)
        )
    }

    /// An agent answered a call with a reply larger than the gateway accepts from it.
    public static func replyTooLarge(limit: Int, size: Int, method: String) -> JSONRPCError {
        JSONRPCError(
            code: Code.messageTooLarge,
            message: "The agent's reply to \(method) was \(size) bytes, over the limit of \(limit) bytes per message; raise maxMessageBytes for this agent to accept it",
            data: ["limit": .integer(Int64(limit)), "size": .integer(Int64(size)), "reason": "reply too large"]
        )
    }

    /// A batch with more entries than the gateway takes; none of it was executed.
    public static func batchTooLarge(entries: Int, limit: Int) -> JSONRPCError {
        JSONRPCError(
            code: Code.invalidRequest,
            message: "Invalid Request: a batch of \(entries) entries, and the limit is \(limit) entries per batch; nothing was executed",
            data: ["reason": "batch too large", "limit": .integer(Int64(limit)), "size": .integer(Int64(entries))]
        )
    }

    /// A new connection over a connection cap. `scope` is "listener" or "peer".
    public static func tooManyConnections(scope: String, limit: Int) -> JSONRPCError {
        let whose = scope == "peer" ? "from this address" : "on this listener"
        return JSONRPCError(
            code: Code.tooManyConnections,
            message: "Too many connections \(whose): the limit is \(limit); close one and connect again",
            data: ["reason": .string("too many connections \(whose)"), "scope": .string(scope), "limit": .integer(Int64(limit))]
        )
    }

    public static func shuttingDown() -> JSONRPCError {
        JSONRPCError(
            code: Code.shuttingDown,
            message: "The gateway is shutting down and accepts no new requests",
            data: ["reason": "shutting down"]
        )
    }
}
