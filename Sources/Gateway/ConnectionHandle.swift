import Agents
import JSONRPC
import NIOCore
import Synchronization
import Transport

/// A thread-safe way to reach one connection from anywhere: send it requests and notifications,
/// or close it. The gateway uses it to call agents (spawned or attached) and to relay
/// notifications and agent-initiated requests to clients.
final class ConnectionHandle: AgentEndpoint, Sendable {
    let id: UInt64
    let eventLoop: any EventLoop
    private let handler: NIOLoopBound<RPCConnectionHandler>
    private let nextRequestID = Atomic<UInt64>(1)
    private let capabilities = Mutex<JSONValue?>(nil)
    private let identity = Mutex<TLSPeerIdentity?>(nil)
    private let serverRequests = Atomic<Bool>(false)
    private let nonJSONOutput = Mutex<String?>(nil)

    /// Whether the peer's session takes requests from the gateway (an MCP handshake session).
    var acceptsServerRequests: Bool {
        get { serverRequests.load(ordering: .relaxed) }
        set { serverRequests.store(newValue, ordering: .relaxed) }
    }

    /// Who the peer proved to be with its TLS client certificate.
    var peerIdentity: TLSPeerIdentity? {
        get { identity.withLock { $0 } }
        set { identity.withLock { $0 = newValue } }
    }

    init(id: UInt64, eventLoop: any EventLoop, handler: RPCConnectionHandler) {
        self.id = id
        self.eventLoop = eventLoop
        self.handler = NIOLoopBound(handler, eventLoop: eventLoop)
    }

    /// The start of the first line the peer wrote that was not JSON (an agent's banner on its
    /// stdout), to say why its handshake failed.
    var firstNonJSONOutput: String? {
        get { nonJSONOutput.withLock { $0 } }
        set { nonJSONOutput.withLock { if $0 == nil { $0 = newValue } } }
    }

    /// What the peer declared it can do (MCP client capabilities), once it has said.
    var clientCapabilities: JSONValue? {
        get { capabilities.withLock { $0 } }
        set { capabilities.withLock { $0 = newValue } }
    }

    func call(_ method: String, params: JSONValue?, timeout: TimeAmount) -> PendingCall {
        let id = nextID()
        let promise = eventLoop.makePromise(of: RawJSON.self)
        onLoop { $0.sendRequest(id: id, method: method, params: params, timeout: timeout, completion: .promise(promise)) }
        return PendingCall(id: id, result: promise.futureResult)
    }

    func call(
        _ method: String, params: JSONValue?, timeout: TimeAmount,
        completion: @escaping @Sendable (Result<RawJSON, any Error>) -> Void
    ) -> JSONRPCID {
        let id = nextID()
        onLoop { $0.sendRequest(id: id, method: method, params: params, timeout: timeout, completion: .callback(completion)) }
        return id
    }

    /// Ids are strings starting with `sb-`, so they never collide with the peer's own.
    private func nextID() -> JSONRPCID {
        .string("sb-\(nextRequestID.wrappingAdd(1, ordering: .relaxed).oldValue)")
    }

    func cancel(_ id: JSONRPCID, reason: String) {
        onLoop { $0.cancelOutboundRequest(id, reason: reason) }
    }

    func notify(_ method: String, params: JSONValue?) {
        onLoop { $0.sendNotification(method: method, params: params) }
    }

    /// Sends `method` only if the peer is a session that takes unsolicited notifications.
    func notifyIfSubscribed(_ method: String) {
        onLoop { $0.sendListChanged(method) }
    }

    func close() {
        onLoop { $0.close() }
    }

    /// Starts a `subscriptions/listen` stream: the acknowledgement first, then the list changes
    /// in `methods`; `reply` ends it.
    func listen(_ id: JSONRPCID, methods: Set<String>, acknowledging honored: JSONValue, until reply: DeferredReply) {
        onLoop { $0.startListening(id, methods: methods, acknowledging: honored, reply: reply) }
    }

    func stopListening(_ id: JSONRPCID) {
        onLoop { $0.stopListening(id) }
    }

    /// Ends every listen stream gracefully (the gateway is shutting down).
    func endListening() {
        onLoop { $0.endListening() }
    }

    private func onLoop(_ body: @escaping @Sendable (RPCConnectionHandler) -> Void) {
        if eventLoop.inEventLoop {
            body(handler.value)
        } else {
            let handler = self.handler
            eventLoop.execute { body(handler.value) }
        }
    }
}
