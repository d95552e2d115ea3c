/// Where a listener accepts connections: `tcp://HOST:PORT`, `tls://HOST:PORT` or `unix:///PATH`.
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    /// TCP with TLS (system OpenSSL) in front of the protocol.
    case tls(host: String, port: Int)
    case unix(path: String)

    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var input: String
        public var reason: String
        public var description: String { "invalid listen address \"\(input)\": \(reason)" }
    }

    /// Only peers on this machine can reach it: a Unix socket, or a TCP address on loopback.
    public var isLoopbackOnly: Bool {
        switch self {
        case .unix: return true
        case .tcp(let host, _), .tls(let host, _):
            return host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
        }
    }

    public init(parsing text: String) throws(ParseError) {
        func fail(_ reason: String) -> ParseError { ParseError(input: text, reason: reason) }
        let parts = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw fail("expected tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH")
        }
        let scheme = parts[0].lowercased()
        let rest = String(parts[1])
        switch scheme {
        case "tcp", "tls":
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
            self = scheme == "tls" ? .tls(host: host, port: port) : .tcp(host: host, port: port)
        case "unix":
            guard rest.hasPrefix("/") else { throw fail("the socket path must be absolute: unix:///path/to/socket") }
            // sun_path holds 108 bytes including the terminator on Linux.
            guard rest.utf8.count < 108 else { throw fail("the socket path is longer than 107 bytes") }
            self = .unix(path: rest)
        default:
            throw fail("unsupported scheme \"\(scheme)\" (supported: tcp, tls, unix)")
        }
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        case .tls(let host, let port): host.contains(":") ? "tls://[\(host)]:\(port)" : "tls://\(host):\(port)"
        case .unix(let path): "unix://\(path)"
        }
    }
}
