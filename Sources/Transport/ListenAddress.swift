/// Where a listener accepts connections: `tcp://HOST:PORT`, `tls://HOST:PORT`, `unix:///PATH`,
/// or the HTTP face at `http://HOST:PORT` and `https://HOST:PORT`.
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    /// TCP with TLS (system OpenSSL) in front of the protocol.
    case tls(host: String, port: Int)
    case unix(path: String)
    /// HTTP/1.1: MCP's Streamable HTTP, the REST API, WebSockets.
    case http(host: String, port: Int)
    /// HTTP/1.1 over TLS, with the same certificate options as `tls://`.
    case https(host: String, port: Int)

    /// The host and port of a TCP-based listener.
    public var hostAndPort: (host: String, port: Int)? {
        switch self {
        case .tcp(let host, let port), .tls(let host, let port), .http(let host, let port), .https(let host, let port): (host, port)
        case .unix: nil
        }
    }

    /// A listener whose connections speak TLS first.
    /// The transport's name in logs and metrics.
    public var transportName: String {
        switch self {
        case .tcp: "tcp"
        case .tls: "tls"
        case .unix: "unix"
        case .http: "http"
        case .https: "https"
        }
    }

    public var usesTLS: Bool {
        switch self {
        case .tls, .https: true
        case .tcp, .unix, .http: false
        }
    }

    /// A listener of the HTTP face.
    public var isHTTP: Bool {
        switch self {
        case .http, .https: true
        case .tcp, .tls, .unix: false
        }
    }

    /// The same listener on another port (the one the system picked for port 0).
    public func withPort(_ port: Int) -> ListenAddress {
        switch self {
        case .tcp(let host, _): .tcp(host: host, port: port)
        case .tls(let host, _): .tls(host: host, port: port)
        case .http(let host, _): .http(host: host, port: port)
        case .https(let host, _): .https(host: host, port: port)
        case .unix: self
        }
    }

    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var input: String
        public var reason: String
        public var description: String { "invalid listen address \"\(input)\": \(reason)" }
    }

    /// Only peers on this machine can reach it: a Unix socket, or a TCP address on loopback.
    public var isLoopbackOnly: Bool {
        switch self {
        case .unix: return true
        case .tcp(let host, _), .tls(let host, _), .http(let host, _), .https(let host, _):
            return host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
        }
    }

    public init(parsing text: String) throws(ParseError) {
        func fail(_ reason: String) -> ParseError { ParseError(input: text, reason: reason) }
        let parts = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw fail("expected tcp://HOST:PORT, tls://HOST:PORT, unix:///PATH, http://HOST:PORT or https://HOST:PORT")
        }
        let scheme = parts[0].lowercased()
        let rest = String(parts[1])
        switch scheme {
        case "tcp", "tls", "http", "https":
            let host: String
            let portText: Substring
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]") else { throw fail("unclosed '[' in an IPv6 address") }
                host = String(rest[rest.index(after: rest.startIndex)..<close])
                let afterBracket = rest[rest.index(after: close)...]
                guard afterBracket.hasPrefix(":") else { throw fail("expected :PORT after the IPv6 address") }
                portText = afterBracket.dropFirst()
            } else {
                guard let colon = rest.lastIndex(of: ":") else { throw fail("missing :PORT") }
                host = String(rest[..<colon])
                portText = rest[rest.index(after: colon)...]
            }
            guard !host.isEmpty else { throw fail("missing host (use 127.0.0.1 for loopback, 0.0.0.0 for all interfaces)") }
            guard let port = Int(portText), (0...65535).contains(port) else {
                throw fail("port must be a number from 0 to 65535 (0 picks a free port)")
            }
            switch scheme {
            case "tls": self = .tls(host: host, port: port)
            case "http": self = .http(host: host, port: port)
            case "https": self = .https(host: host, port: port)
            default: self = .tcp(host: host, port: port)
            }
        case "unix":
            guard rest.hasPrefix("/") else { throw fail("the socket path must be absolute: unix:///path/to/socket") }
            // sun_path holds 108 bytes including the terminator on Linux.
            guard rest.utf8.count < 108 else { throw fail("the socket path is longer than 107 bytes") }
            self = .unix(path: rest)
        default:
            throw fail("unsupported scheme \"\(scheme)\" (supported: tcp, tls, unix, http, https)")
        }
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        case .tls(let host, let port): host.contains(":") ? "tls://[\(host)]:\(port)" : "tls://\(host):\(port)"
        case .unix(let path): "unix://\(path)"
        case .http(let host, let port): host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        case .https(let host, let port): host.contains(":") ? "https://[\(host)]:\(port)" : "https://\(host):\(port)"
        }
    }
}
