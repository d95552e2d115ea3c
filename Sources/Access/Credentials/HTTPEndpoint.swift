/// Where a JWKS URL points: scheme, host, port and request target, read from an `http://` or
/// `https://` URL. Nothing else (user info, other schemes) is accepted.
struct HTTPEndpoint: Sendable, Hashable {
    var secure: Bool
    var host: String
    var port: Int
    /// The request target: path and query, `/` when the URL has none.
    var target: String

    /// `host`, or `host:port` when the port is not the scheme's default (RFC 9110, 7.2).
    var hostHeader: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return port == (secure ? 443 : 80) ? host : "\(host):\(port)"
    }

    init?(_ url: String) {
        let rest: Substring
        if url.hasPrefix("http://") {
            secure = false
            rest = url.dropFirst(7)
        } else if url.hasPrefix("https://") {
            secure = true
            rest = url.dropFirst(8)
        } else {
            return nil
        }
        let withoutFragment = rest.prefix { $0 != "#" }
        let authority = withoutFragment.prefix { $0 != "/" && $0 != "?" }
        guard !authority.contains("@"), authority.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
        var host = String(authority)
        var port = secure ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let number = Int(after.dropFirst()) else { return nil }
                port = number
            }
        } else if let colon = authority.lastIndex(of: ":") {
            guard let number = Int(authority[authority.index(after: colon)...]) else { return nil }
            host = String(authority[..<colon])
            port = number
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        let target = withoutFragment.dropFirst(authority.count)
        guard target.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
        self.host = host
        self.port = port
        self.target = target.isEmpty ? "/" : (target.hasPrefix("?") ? "/" + target : String(target))
    }
}
