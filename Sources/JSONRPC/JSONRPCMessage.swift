/// One JSON-RPC 2.0 message. Params, results and error data stay raw.
public enum JSONRPCMessage: Sendable, Hashable {
    case request(JSONRPCRequest)
    case notification(JSONRPCNotification)
    case response(JSONRPCResponse)
}

public struct JSONRPCRequest: Sendable, Hashable {
    public var id: JSONRPCID
    public var method: String
    public var params: RawJSON?

    public init(id: JSONRPCID, method: String, params: RawJSON? = nil) {
        self.id = id
        self.method = method
        self.params = params
    }
}

public struct JSONRPCNotification: Sendable, Hashable {
    public var method: String
    public var params: RawJSON?

    public init(method: String, params: RawJSON? = nil) {
        self.method = method
        self.params = params
    }
}

public struct JSONRPCResponse: Sendable, Hashable {
    /// Nil only for errors about a request whose id could not be read.
    public var id: JSONRPCID?
    public var outcome: Outcome

    public enum Outcome: Sendable, Hashable {
        case result(RawJSON)
        case error(JSONRPCError)
    }

    public init(id: JSONRPCID?, outcome: Outcome) {
        self.id = id
        self.outcome = outcome
    }
}

/// What one entry of a line (the line itself, or one element of a batch) turned out to be.
public enum DecodedEntry: Sendable, Hashable {
    case message(JSONRPCMessage)
    /// Not a valid JSON-RPC message; the reply is `error` under `id` (nil when unreadable).
    case invalid(id: JSONRPCID?, error: JSONRPCError)
}

/// What one line turned out to be.
public enum DecodedLine: Sendable, Hashable {
    /// Only whitespace: ignored.
    case blank
    case single(DecodedEntry)
    /// A non-empty batch, in order.
    case batch([DecodedEntry])
    /// `[]`: answered by a single Invalid Request error.
    case emptyBatch
    /// A batch of more entries than the limit: answered by a single Invalid Request error, and
    /// none of it executed.
    case batchTooLarge(entries: Int, limit: Int)
    /// Not JSON at all: answered by a single Parse error with a null id.
    case parseError(JSONRPCError)
}
