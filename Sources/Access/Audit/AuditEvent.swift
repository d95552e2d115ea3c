import JSONRPC

/// How a recorded request ended.
public enum AuditOutcome: String, Sendable, Hashable, CaseIterable {
    /// The request did what it asked.
    case ok
    /// The access layer said no: unauthenticated, forbidden or limited.
    case refused
    /// It was allowed, and then failed (an agent's error, a backend down, invalid params…).
    case failed
}

/// The error a refused or failed request was answered with: its JSON-RPC code and message. The
/// error's `data` is left out: it may hold what a client sent.
public struct AuditedError: Sendable, Hashable {
    public var code: Int
    public var message: String

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    public init(_ error: JSONRPCError) {
        self.init(code: error.code, message: error.message)
    }
}

/// What happened, as the request path knows it: an audit entry before the log gives it its
/// sequence number, time and hashes (`AuditLog.record`).
public struct AuditEvent: Sendable, Hashable {
    /// The principal's name.
    public var principal: String
    public var tenant: String
    /// How the principal proved who it is: a `Principal.Proof` raw value.
    public var proof: String
    /// The JSON-RPC method (`tools/call`, `agents/register`…).
    public var method: String
    /// What the request acted on: the tool, agent, namespace, workflow, task id…
    public var target: String?
    public var outcome: AuditOutcome
    public var error: AuditedError?
    /// The request's id as the client wrote it.
    public var requestID: JSONRPCID?
    /// The gateway's number for the connection the request came on.
    public var connection: UInt64?
    /// The replica that served the request, when several share a Redis server.
    public var replica: String?

    public init(
        principal: String,
        tenant: String,
        proof: String,
        method: String,
        target: String? = nil,
        outcome: AuditOutcome,
        error: AuditedError? = nil,
        requestID: JSONRPCID? = nil,
        connection: UInt64? = nil,
        replica: String? = nil
    ) {
        self.principal = principal
        self.tenant = tenant
        self.proof = proof
        self.method = method
        self.target = target
        self.outcome = outcome
        self.error = error
        self.requestID = requestID
        self.connection = connection
        self.replica = replica
    }

    /// An event of `principal`: its name, tenant and proof.
    public init(
        principal: Principal,
        method: String,
        target: String? = nil,
        outcome: AuditOutcome,
        error: AuditedError? = nil,
        requestID: JSONRPCID? = nil,
        connection: UInt64? = nil,
        replica: String? = nil
    ) {
        self.init(
            principal: principal.name, tenant: principal.tenant, proof: principal.proof.rawValue, method: method,
            target: target, outcome: outcome, error: error, requestID: requestID, connection: connection, replica: replica
        )
    }
}
