import Access
import Agents
import JSONRPC
import Logging
import MCPProtocol
import NIOCore
import Synchronization
import Telemetry
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
    /// Who the peer is and what it may do. The request has been allowed before its handler
    /// runs; handlers use the grant to scope what they show (lists, the tenant's data).
    public var grant: Grant
    public var principal: Principal { grant.principal }
    /// Who the connection itself is: the request's principal too, unless the request carried
    /// its own token (12.1.3).
    public var connectionPrincipal: Principal
    /// The tenant whose data this request sees, with access control; nil without (one space
    /// for everyone, as before), and for admins and operators, who work across tenants.
    public var tenant: String? { grant.principal.proof == .unconfigured || grant.spansTenants ? nil : grant.principal.tenant }
    /// Makes the connection the given principal (`auth/authenticate`), holding `hold` of its
    /// connection quota from now on (nil: the same principal again, the hold it has stays).
    var authenticated: @Sendable (Principal, QuotaHold?) -> Void
    /// Marks the connection as the given attached agent (`agents/register`), holding `hold` of
    /// its principal's agent quota until it closes. False (and the hold given back) when the
    /// connection is closing or already an agent.
    var registerAgent: @Sendable (AgentRegistry.InstanceID, QuotaHold) -> Bool
    /// The request's span, when tracing is on: what the spans its handler starts hang from.
    public var trace: TraceSpan? = nil
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
    /// Like `cancellable`, completed through a `DeferredReply` instead of a future.
    case deferred(DeferredReply, cancel: @Sendable () -> Void)
}

/// A reply that its method completes later, once, from any event loop: `later` without a future.
///
/// The relay path uses it: on Linux a future costs more than the rest of a relayed call's
/// bookkeeping (an allocation, a callback list, and run-time lookups of its generic metadata when
/// it is made and freed), and a relayed call would need two.
public final class DeferredReply: Sendable {
    public typealias Outcome = Result<JSONValue, any Error>

    private enum State {
        case pending
        case completed(Outcome)
        case awaited(any EventLoop, @Sendable (Outcome) -> Void)
        case delivered
    }

    private let state = Mutex(State.pending)

    public init() {}

    public func succeed(_ value: JSONValue) { complete(.success(value)) }

    public func fail(_ error: any Error) { complete(.failure(error)) }

    /// The first completion counts; later ones are ignored.
    public func complete(_ outcome: Outcome) {
        let waiter: (any EventLoop, @Sendable (Outcome) -> Void)? = state.withLock { state in
            switch state {
            case .pending:
                state = .completed(outcome)
                return nil
            case .awaited(let eventLoop, let body):
                state = .delivered
                return (eventLoop, body)
            case .completed, .delivered:
                return nil
            }
        }
        guard let (eventLoop, body) = waiter else { return }
        if eventLoop.inEventLoop {
            body(outcome)
        } else {
            eventLoop.execute { body(outcome) }
        }
    }

    /// Runs `body` on `eventLoop` with the outcome once there is one: at once when the reply is
    /// already complete (the caller is on `eventLoop`). One waiter only: the connection.
    func whenComplete(on eventLoop: any EventLoop, _ body: @escaping @Sendable (Outcome) -> Void) {
        let ready: Outcome? = state.withLock { state in
            switch state {
            case .pending:
                state = .awaited(eventLoop, body)
                return nil
            case .completed(let outcome):
                state = .delivered
                return outcome
            case .awaited, .delivered:
                preconditionFailure("a deferred reply has one waiter")
            }
        }
        if let ready { body(ready) }
    }
}

/// Errors of the layers above the wire that know their JSON-RPC form.
protocol GatewayErrorConvertible: Error {
    var jsonRPCError: JSONRPCError { get }
}

public typealias MethodHandler = @Sendable (JSONRPCRequest, MethodContext) -> MethodReply

/// Method name → handler. Built once at start-up and read concurrently after that.
public struct MethodTable: Sendable {
    /// A method's handler, and its request metrics when metrics are on: one lookup by name
    /// finds both.
    public struct Entry: Sendable {
        public var handler: MethodHandler
        public var instruments: LazyRequestInstruments?
    }

    private var entries: [String: Entry] = [:]

    public init() {}

    public mutating func register(_ method: String, _ handler: @escaping MethodHandler) {
        precondition(entries[method] == nil, "\(method) registered twice")
        entries[method] = Entry(handler: handler)
    }

    public func handler(for method: String) -> MethodHandler? {
        entries[method]?.handler
    }

    @inline(__always)
    public func entry(for method: String) -> Entry? {
        entries[method]
    }

    /// Gives every method its request instruments.
    public mutating func instrument(_ make: (String) -> LazyRequestInstruments) {
        for method in entries.keys { entries[method]?.instruments = make(method) }
    }

    public var methods: [String] { entries.keys.sorted() }
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
