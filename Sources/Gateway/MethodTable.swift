import Agents
import JSONRPC
import Logging
import MCPProtocol
import NIOCore
import Transport

/// What a method handler knows about the request's connection.
public struct MethodContext: Sendable {
    public var connectionID: UInt64
    public var era: SessionEra
    public var eventLoop: any EventLoop
    public var logger: Logger
    /// The connection the request came on, to reach its peer later (progress, sampling).
    var connection: ConnectionHandle
    /// The agent behind the connection, when the peer is one.
    public var agentInstance: AgentRegistry.InstanceID?
    /// Who the peer proved to be with a TLS client certificate.
    public var peerIdentity: TLSPeerIdentity?
    /// Marks the connection as the given attached agent (`agents/register`).
    var registerAgent: @Sendable (AgentRegistry.InstanceID) -> Void
}

/// A handler's answer: at once when it can, or later.
public enum MethodReply: Sendable {
    case result(JSONValue)
    case error(JSONRPCError)
    /// Completed on any event loop; a thrown `JSONRPCError` is sent as it is, any other error as
    /// an internal error.
    case later(EventLoopFuture<JSONValue>)
    /// Like `later`, and `cancel` runs if the peer cancels the request (then no reply is sent).
    case cancellable(EventLoopFuture<JSONValue>, cancel: @Sendable () -> Void)
}

/// Errors of the layers above the wire that know their JSON-RPC form.
protocol GatewayErrorConvertible: Error {
    var jsonRPCError: JSONRPCError { get }
}

public typealias MethodHandler = @Sendable (JSONRPCRequest, MethodContext) -> MethodReply

/// Method name → handler. Built once at start-up and read concurrently after that.
public struct MethodTable: Sendable {
    private var handlers: [String: MethodHandler] = [:]

    public init() {}

    public mutating func register(_ method: String, _ handler: @escaping MethodHandler) {
        precondition(handlers[method] == nil, "\(method) registered twice")
        handlers[method] = handler
    }

    public func handler(for method: String) -> MethodHandler? {
        handlers[method]
    }

    public var methods: [String] { handlers.keys.sorted() }
}

extension RawJSON {
    /// Params as an object, or the Invalid params error that says why not.
    func requireObject(for method: String) -> Result<RawJSON, JSONRPCError> {
        guard kind == .object else {
            return .failure(.invalidParams("\(method) takes its params as an object, not \(kind.name)"))
        }
        return .success(self)
    }
}
