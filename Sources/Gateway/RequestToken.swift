import Access
import JSONRPC

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A 2026-07-28-era request has no session to authenticate: it may carry its credential itself,
/// in `params._meta["io.switchboard/token"]` (an API key or a JWT, as `auth/authenticate`
/// takes). The request is then decided, limited and run as the principal the token proves; the
/// connection stays who it was (protocol-spec 12.1.3).
enum RequestToken {
    static let metaKey = "io.switchboard/token"

    static func read(_ params: RawJSON?) -> String? {
        guard let value = params?.member("_meta")?.member(metaKey) else { return nil }
        return value.stringValue ?? ""
    }
}

/// The last token a connection's requests carried, once verified: a client sends the same one
/// with every request, so it is verified once (again when it expires, or when another comes).
final class TokenIdentity {
    let token: String
    /// The decisions of the token's principal, remembered as the connection's own are.
    var decisions: AccessDecisions
    /// A JWT's `exp`, in seconds since 1970.
    let expiresAt: Double?
    /// The method context of its requests.
    var methodContext: MethodContext?

    init(token: String, decisions: AccessDecisions, expiresAt: Double?) {
        self.token = token
        self.decisions = decisions
        self.expiresAt = expiresAt
    }

    func proves(_ token: String) -> Bool {
        token == self.token && expiresAt.map { Date().timeIntervalSince1970 < $0 } ?? true
    }
}
