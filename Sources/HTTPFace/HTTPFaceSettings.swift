import Console
import Crypto
import NIOCore

/// How the HTTP face behaves: who may reach it from a browser, its bounds, and what it says of
/// itself as an OAuth 2.1 protected resource.
public struct HTTPFaceSettings: Sendable {
    /// Browser origins allowed to call (`Origin` header); a request from any other is refused
    /// with 403. Empty: loopback origins only (`http://localhost:*`, `http://127.0.0.1:*`,
    /// `http://[::1]:*` and their https forms). `*` allows every origin.
    public var allowedOrigins: [String] = []
    /// The largest request body; larger ones get 413 before they are read.
    public var maximumBodyBytes: Int = 4 * 1024 * 1024
    /// MCP sessions (2025-03-26 … 2025-11-25) one replica holds at once; the next `initialize`
    /// gets 503 with -32006.
    public var maximumSessions: Int = 10_000
    /// A session unused for this long is ended (its next request gets 404, and the client
    /// initializes again, as the specification has it).
    public var sessionIdleTimeout: TimeAmount = .minutes(30)
    /// The largest JSON-RPC batch a 2025-03-26 session may POST (the gateway's `limits.maxBatchSize`).
    public var maximumBatchSize = 1000
    /// Server-sent events kept per session for resumption with `Last-Event-ID`.
    public var replayedEvents: Int = 256
    /// A connection with no request in progress for this long is closed.
    public var idleTimeout: TimeAmount = .seconds(300)
    /// A request's body must have arrived this long after its head.
    public var bodyTimeout: TimeAmount = .seconds(60)
    /// Response bytes a client may leave unread (a stream it does not read) before the
    /// connection is closed.
    public var maximumUnreadBytes = 32 * 1024 * 1024
    /// Signs session ids, so that any replica sharing the key serves any session. Replicas
    /// that share Redis share it; alone, a key of the process's own.
    public var sessionKey: SymmetricKey = SymmetricKey(size: .bits256)
    /// With access control: requests are decided as their `Authorization` credential's
    /// principal, and a request without one that the anonymous role may not make gets 401.
    public var accessControlled = false
    /// One log line per HTTP exchange at info (method, path, status, duration, trace), besides the
    /// line of the JSON-RPC request it ran (`logging.accessLog`).
    public var accessLog = false
    /// RFC 9728 metadata: the resource's canonical URL (nil: the listener's own URL + `/mcp`).
    public var resource: String?
    /// Authorization servers that issue tokens for this resource.
    public var authorizationServers: [String] = []
    /// Scopes this resource understands.
    public var scopesSupported: [String] = []
    /// The console served at `/console/` (nil: not served, and `/console` is 404).
    public var console: ConsoleAssets? = .embedded

    public init() {}

    /// Whether a browser page from `origin` may call. Requests without `Origin` (not from a
    /// browser) are not judged by it.
    public func allows(origin: String) -> Bool {
        if allowedOrigins.contains("*") || allowedOrigins.contains(origin) { return true }
        guard allowedOrigins.isEmpty else { return false }
        return Self.isLoopback(origin: origin)
    }

    static func isLoopback(origin: String) -> Bool {
        let lowered = origin.lowercased()
        let rest: Substring
        if lowered.hasPrefix("http://") {
            rest = lowered.dropFirst(7)
        } else if lowered.hasPrefix("https://") {
            rest = lowered.dropFirst(8)
        } else {
            return false
        }
        let host: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return false }
            host = rest[rest.startIndex...close]
            let after = rest[rest.index(after: close)...]
            guard after.isEmpty || (after.hasPrefix(":") && after.dropFirst().allSatisfy(\.isNumber)) else { return false }
        } else {
            let parts = rest.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            host = parts[0]
            if parts.count == 2, parts[1].isEmpty || !parts[1].allSatisfy(\.isNumber) { return false }
        }
        return host == "localhost" || host == "[::1]" || isLoopbackIPv4(host)
    }

    /// `127.a.b.c` with four decimal parts of 0 to 255: `127.0.0.1.evil.example` and
    /// `127.x.attacker.io` are names, which may resolve anywhere.
    static func isLoopbackIPv4(_ host: Substring) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "127" else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy { $0.isASCII && $0.isNumber } && Int(part).map { $0 <= 255 } == true
        }
    }
}
