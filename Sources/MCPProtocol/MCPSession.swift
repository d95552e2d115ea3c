import JSONRPC

/// Which protocol a connection speaks. Settled by its first lifecycle message and fixed after.
public enum SessionEra: Sendable, Equatable, CustomStringConvertible {
    /// JSON-RPC 2.0 without MCP: every method works, batches allowed.
    case plain
    /// MCP handshake era (`initialize`), at the negotiated version.
    case legacy(protocolVersion: String, initialized: Bool)
    /// MCP 2026-07-28: `server/discover` and a protocol version in each request's `_meta`.
    case modern

    public var description: String {
        switch self {
        case .plain: "plain JSON-RPC"
        case .legacy(let version, _): "MCP \(version)"
        case .modern: "MCP \(ProtocolVersion.latestModern)"
        }
    }
}

/// The MCP lifecycle of one connection, as a pure state machine: it answers the lifecycle
/// methods itself and tells the caller whether any other request may proceed.
public struct MCPSession: Sendable {
    public private(set) var era: SessionEra = .plain
    public private(set) var clientInfo: JSONValue?
    public private(set) var clientCapabilities: JSONValue?
    public let identity: ServerIdentity

    public init(identity: ServerIdentity) {
        self.identity = identity
    }

    public enum Admission: Sendable, Equatable {
        /// A lifecycle method, answered by the session (already stamped for the era).
        case answered(JSONValue)
        /// Not ours: dispatch it, then `stamp` its result.
        case proceed
        case rejected(JSONRPCError)
    }

    /// Decides what happens to `request`, settling the era when this is the first lifecycle
    /// message of the connection.
    public mutating func admit(_ request: JSONRPCRequest) -> Admission {
        switch request.method {
        case "initialize": return initialize(request.params)
        case "server/discover": return discover(request.params)
        default: break
        }
        // A request carrying the modern envelope settles a plain session as modern; a handshake
        // session ignores `_meta` keys it never negotiated.
        if era == .plain || era == .modern, let requested = Self.envelopeVersion(request.params) {
            guard ProtocolVersion.modern.contains(requested) else {
                return .rejected(Self.unsupportedVersion(requested))
            }
            era = .modern
        }
        return .proceed
    }

    public mutating func receive(_ notification: JSONRPCNotification) {
        if notification.method == "notifications/initialized", case .legacy(let version, _) = era {
            era = .legacy(protocolVersion: version, initialized: true)
        }
    }

    /// Nil when this session may send batches, else the error that refuses one.
    public var batchRejection: JSONRPCError? {
        switch era {
        case .plain: return nil
        case .legacy(let version, _):
            if ProtocolVersion.allowingBatches.contains(version) { return nil }
            return .invalidRequest("batches are not allowed in MCP protocol version \(version)")
        case .modern:
            return .invalidRequest("batches are not allowed in MCP protocol version \(ProtocolVersion.latestModern)")
        }
    }

    /// Whether the gateway may send requests (such as keepalive pings) to this peer. The modern
    /// era forbids server-initiated requests; a plain peer never asked for them.
    public var acceptsServerRequests: Bool {
        if case .legacy = era { return true }
        return false
    }

    /// Adds what the session's era requires of every result: in 2026-07-28, `resultType` and
    /// the server identity stamp.
    public func stamp(_ result: JSONValue) -> JSONValue {
        guard era == .modern else { return result }
        if case .raw(let raw) = result, raw.kind == .object {
            // A result relayed from an agent: add the stamp around its bytes.
            var meta = raw.member("_meta")?.objectValueOrEmpty ?? [:]
            meta[MetaKey.serverInfo] = identity.implementation
            var replacements: [String: JSONValue?] = ["_meta": .object(meta)]
            if raw.member("resultType") == nil { replacements["resultType"] = "complete" }
            return .raw(raw.replacingMembers(replacements))
        }
        guard case .object(var members) = result else { return result }
        if members["resultType"] == nil { members["resultType"] = "complete" }
        var meta = members["_meta"]?.objectValue ?? [:]
        meta[MetaKey.serverInfo] = identity.implementation
        members["_meta"] = .object(meta)
        return .object(members)
    }

    // MARK: Lifecycle methods

    private mutating func initialize(_ params: RawJSON?) -> Admission {
        let offered = params?.member("protocolVersion")?.stringValue
        switch era {
        case .legacy:
            return .rejected(.invalidRequest("already initialized: initialize may be sent once per connection"))
        case .modern:
            return .rejected(Self.unsupportedVersion(offered ?? ""))
        case .plain:
            break
        }
        guard let params, params.kind == .object else {
            return .rejected(.invalidParams("initialize takes an object with \"protocolVersion\""))
        }
        guard let offered else {
            return .rejected(.invalidParams("\"protocolVersion\" must be a string"))
        }
        let version = ProtocolVersion.negotiateHandshake(offered: offered)
        clientInfo = params.member("clientInfo").map(JSONValue.raw)
        clientCapabilities = params.member("capabilities").map(JSONValue.raw)
        era = .legacy(protocolVersion: version, initialized: false)
        return .answered(identity.initializeResult(protocolVersion: version))
    }

    private mutating func discover(_ params: RawJSON?) -> Admission {
        if let requested = Self.envelopeVersion(params), !ProtocolVersion.modern.contains(requested) {
            return .rejected(Self.unsupportedVersion(requested))
        }
        if era == .plain {
            era = .modern
            if let meta = params?.member("_meta") {
                clientInfo = meta.member(MetaKey.clientInfo).map(JSONValue.raw)
                clientCapabilities = meta.member(MetaKey.clientCapabilities).map(JSONValue.raw)
            }
        }
        // The discover result has the modern shape whatever era the connection is in.
        var result = identity.discoverResult()
        if case .object(var members) = result {
            members["resultType"] = "complete"
            members["_meta"] = [MetaKey.serverInfo: identity.implementation]
            result = .object(members)
        }
        return .answered(result)
    }

    private static func envelopeVersion(_ params: RawJSON?) -> String? {
        guard let params, params.kind == .object, let meta = params.member("_meta") else { return nil }
        return meta.member(MetaKey.protocolVersion)?.stringValue
    }

    static func unsupportedVersion(_ requested: String) -> JSONRPCError {
        JSONRPCError(
            code: JSONRPCError.Code.unsupportedProtocolVersion,
            message: "Unsupported protocol version \"\(requested)\"; supported: \(ProtocolVersion.all.joined(separator: ", "))",
            data: ["supported": .array(ProtocolVersion.all.map(JSONValue.string)), "requested": .string(requested)]
        )
    }
}

extension RawJSON {
    fileprivate var objectValueOrEmpty: [String: JSONValue] {
        Dictionary(members().map { ($0.name, JSONValue.raw($0.value)) }, uniquingKeysWith: { first, _ in first })
    }
}
