import JSONRPC
import NIOCore

/// The seed's agent states, plus STARTING (spawned, its MCP handshake not finished yet). Derived
/// from an instance's lifecycle and load, never stored apart.
public enum AgentState: String, Sendable, CaseIterable {
    case starting = "STARTING"
    case idle = "IDLE"
    case busy = "BUSY"
    case overloaded = "OVERLOADED"
    case error = "ERROR"
    case maintenance = "MAINTENANCE"
    case offline = "OFFLINE"
}

public enum AgentHealth: String, Sendable {
    case healthy = "HEALTHY"
    case degraded = "DEGRADED"
    case unhealthy = "UNHEALTHY"
}

public enum AgentKind: String, Sendable {
    /// A child process the gateway started from a template.
    case spawned
    /// A process that connected to the gateway and registered itself.
    case attached
}

/// Where an instance is in its life. `AgentState` is derived from this and the load.
public enum AgentLifecycle: Sendable, Equatable {
    case starting
    case ready
    /// Taken out of rotation by an operator; in-flight calls finish.
    case maintenance
    /// Taking no new work; stops once in-flight calls have finished.
    case draining
    /// Down, with the reason; a spawned instance is restarted after a back-off.
    case failed(String)
    case offline(String)
}

/// How the gateway talks to one agent instance: a JSON-RPC connection where the gateway is the
/// client (over a child's pipes, or over the socket an attached agent opened).
public protocol AgentEndpoint: Sendable {
    /// Sends a request. Its result fails with `AgentEndpointClosed` if the connection goes away
    /// first, with `AgentCallTimedOut` after `timeout`, or with the agent's `JSONRPCError`.
    func call(_ method: String, params: JSONValue?, timeout: TimeAmount) -> PendingCall
    /// The same without a future: `completion` runs once with what `result` would hold, on the
    /// endpoint's event loop (at once, before this returns, if the request cannot be sent). Returns
    /// the id the request went out under.
    func call(
        _ method: String, params: JSONValue?, timeout: TimeAmount,
        completion: @escaping @Sendable (Result<RawJSON, any Error>) -> Void
    ) -> JSONRPCID
    /// Stops waiting for request `id` and tells the agent (`notifications/cancelled`).
    func cancel(_ id: JSONRPCID, reason: String)
    func notify(_ method: String, params: JSONValue?)
    func close()
}

extension AgentEndpoint {
    /// The future form with a callback: for endpoints that have nothing cheaper.
    public func call(
        _ method: String, params: JSONValue?, timeout: TimeAmount,
        completion: @escaping @Sendable (Result<RawJSON, any Error>) -> Void
    ) -> JSONRPCID {
        let pending = call(method, params: params, timeout: timeout)
        pending.result.whenComplete(completion)
        return pending.id
    }
}

/// A request on its way: the id it went out under, and its result to come.
public struct PendingCall: Sendable {
    public var id: JSONRPCID
    public var result: EventLoopFuture<RawJSON>

    public init(id: JSONRPCID, result: EventLoopFuture<RawJSON>) {
        self.id = id
        self.result = result
    }
}

public struct AgentCallTimedOut: Error, Sendable, CustomStringConvertible {
    public var method: String
    public var timeout: TimeAmount
    public init(method: String, timeout: TimeAmount) {
        self.method = method
        self.timeout = timeout
    }
    public var description: String { "no answer to \(method) within \(timeout)" }
}

public struct AgentCallCancelled: Error, Sendable {
    public init() {}
}

public struct AgentEndpointClosed: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// One tool as an agent lists it: its name and its whole definition, kept raw.
public struct ToolDefinition: Sendable, Equatable {
    public var name: String
    public var definition: RawJSON

    public init(name: String, definition: RawJSON) {
        self.name = name
        self.definition = definition
    }
}

/// What an instance offers, as discovered (spawned) or registered (attached).
public struct AgentOffer: Sendable, Equatable {
    public var tools: [ToolDefinition] = []
    public var resources: [RawJSON] = []
    public var resourceTemplates: [RawJSON] = []
    public var prompts: [ToolDefinition] = []
    public var serverInfo: JSONValue?
    public var protocolVersion: String?

    public init() {}

    /// The offer without the tools named: what clients see of a server whose configuration
    /// disables some of its tools.
    public func hiding(tools hidden: Set<String>) -> AgentOffer {
        guard !hidden.isEmpty else { return self }
        var offer = self
        offer.tools.removeAll { hidden.contains($0.name) }
        return offer
    }
}
