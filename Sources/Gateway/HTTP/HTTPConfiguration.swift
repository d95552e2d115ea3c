import Crypto
import HTTPFace
import NIOCore
import Yams

extension ConfigurationReader {
    /// `http:` — the HTTP face: browser origins, bounds, sessions, and the OAuth metadata.
    mutating func readHTTP(_ node: Node) {
        guard let fields = mapping(node, "http") else { return }
        var http = settings.http
        for (keyNode, value) in fields {
            let key = keyNode.string ?? ""
            switch key {
            case "allowedOrigins":
                if let origins = strings(value, "http.allowedOrigins") { http.allowedOrigins = origins }
            case "maxBodyBytes":
                if let bytes = integer(value, "http.maxBodyBytes", minimum: 1024) { http.maximumBodyBytes = bytes }
            case "maxSessions":
                if let count = integer(value, "http.maxSessions", minimum: 1) { http.maximumSessions = count }
            case "sessionIdleSeconds":
                if let seconds = number(value, "http.sessionIdleSeconds", minimum: 1) {
                    http.sessionIdleTimeout = .milliseconds(Int64(seconds * 1000))
                }
            case "idleSeconds":
                if let seconds = number(value, "http.idleSeconds", minimum: 1) { http.idleTimeout = .milliseconds(Int64(seconds * 1000)) }
            case "bodySeconds":
                if let seconds = number(value, "http.bodySeconds", minimum: 1) { http.bodyTimeout = .milliseconds(Int64(seconds * 1000)) }
            case "maxUnreadBytes":
                if let bytes = integer(value, "http.maxUnreadBytes", minimum: 65536) { http.maximumUnreadBytes = bytes }
            case "replayedEvents":
                if let count = integer(value, "http.replayedEvents", minimum: 0) { http.replayedEvents = count }
            case "sessionKey":
                // Replicas without Redis that must serve each other's sessions share this key.
                if let text = string(value, "http.sessionKey") {
                    if text.utf8.count < 32 {
                        report(value, "http.sessionKey must be at least 32 characters (it signs session ids)")
                    } else {
                        http.sessionKey = SymmetricKey(data: SHA256.hash(data: Array(text.utf8)))
                    }
                }
            case "resource":
                if let text = string(value, "http.resource") { http.resource = text }
            case "authorizationServers":
                if let servers = strings(value, "http.authorizationServers") { http.authorizationServers = servers }
            case "scopesSupported":
                if let scopes = strings(value, "http.scopesSupported") { http.scopesSupported = scopes }
            case "console":
                if let serve = value.bool { http.console = serve ? .embedded : nil } else { report(value, "http.console must be true or false") }
            default:
                report(
                    keyNode,
                    "http.\(key): unknown key (known: allowedOrigins, maxBodyBytes, maxSessions, sessionIdleSeconds, idleSeconds, bodySeconds, maxUnreadBytes, replayedEvents, sessionKey, resource, authorizationServers, scopesSupported, console)"
                )
            }
        }
        settings.http = http
    }
}
