/// A parsed `redis://`, `rediss://` or `unix://` URL.
///
/// `redis://[[user]:password@]host[:port][/db]`, `rediss://…` for TLS, and
/// `unix://[[user]:password@]/path/to/socket[?db=N]`. User and password are percent-decoded.
public struct RedisURL: Sendable, Hashable {
    public enum Endpoint: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public static let defaultPort = 6379

    public var scheme: String
    public var endpoint: Endpoint
    public var username: String?
    public var password: String?
    public var database: Int

    public var usesTLS: Bool { scheme == "rediss" }

    public init(_ string: String) throws {
        let parts = string.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw RedisError(.invalidURL, "'\(string)' has no scheme; expected redis://, rediss:// or unix://")
        }
        scheme = parts[0].lowercased()
        guard ["redis", "rediss", "unix"].contains(scheme) else {
            throw RedisError(.invalidURL, "unsupported scheme '\(scheme)'; expected redis, rediss or unix")
        }
        var rest = parts[1]
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        // Credentials end at the last '@', so a password may contain '@' when not encoded.
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = try Self.percentDecoded(credentials[..<colon])
                username = user.isEmpty ? nil : user
                password = try Self.percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                // A lone credential is a password, as for `AUTH password`.
                username = nil
                password = try Self.percentDecoded(credentials)
            }
        } else {
            username = nil
            password = nil
        }
        database = 0
        if scheme == "unix" {
            guard rest.hasPrefix("/"), rest.count > 1 else {
                throw RedisError(.invalidURL, "unix:// needs an absolute socket path")
            }
            endpoint = .unix(path: String(rest))
        } else {
            var authority = rest
            if let slash = rest.firstIndex(of: "/") {
                authority = rest[..<slash]
                let path = rest[rest.index(after: slash)...]
                if !path.isEmpty {
                    guard let db = Int(path), db >= 0 else {
                        throw RedisError(.invalidURL, "database '\(path)' is not a non-negative number")
                    }
                    database = db
                }
            }
            endpoint = try Self.parseAuthority(authority)
        }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let value = parts.count > 1 ? try Self.percentDecoded(parts[1]) : ""
            switch parts[0] {
            case "db":
                guard let db = Int(value), db >= 0 else {
                    throw RedisError(.invalidURL, "database '\(value)' is not a non-negative number")
                }
                database = db
            case "password": password = value
            case "user", "username": username = value
            default: continue
            }
        }
    }

    private static func parseAuthority(_ authority: Substring) throws -> Endpoint {
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw RedisError(.invalidURL, "unterminated IPv6 address in '\(authority)'")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty {
                throw RedisError(.invalidURL, "unexpected '\(after)' after the IPv6 address")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        if host.isEmpty { host = "localhost" }
        var port = defaultPort
        if let portText {
            guard let parsed = Int(portText), (1...65535).contains(parsed) else {
                throw RedisError(.invalidURL, "port '\(portText)' is not between 1 and 65535")
            }
            port = parsed
        }
        return .tcp(host: String(host), port: port)
    }

    private static func percentDecoded(_ text: Substring) throws -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw RedisError(.invalidURL, "bad percent-encoding in '\(text)'")
            }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
