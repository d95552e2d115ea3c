import Crypto
import Logging
import NIOCore
import Transport

/// Settles who a credential belongs to: an API key (by its SHA-256), a bearer JWT (verified
/// against the configured issuer, audiences and JWKS) or a TLS client certificate (by the
/// configured mappings). It decides identity only; what the principal may do is decided later.
///
/// Refusals say which check failed and never repeat the credential.
public final class Authenticator: Sendable {
    private let apiKeys: [String: APIKeyCredential]
    private let jwt: JWTVerifier?
    private let certificates: [CertificateMapping]
    private let logger: Logger

    /// - Parameters:
    ///   - apiKeys: accepted keys; their `sha256` values must differ.
    ///   - jwt: how bearer JWTs are verified; nil accepts none.
    ///   - certificates: client-certificate mappings, tried in order.
    ///   - group: where JWKS URL fetches run.
    public init(
        apiKeys: [APIKeyCredential],
        jwt: JWTSettings?,
        certificates: [CertificateMapping],
        logger: Logger,
        group: any EventLoopGroup
    ) {
        self.apiKeys = Dictionary(apiKeys.map { ($0.sha256.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
        if let jwt, let source = JWKSSource(jwt) {
            self.jwt = JWTVerifier(settings: jwt, source: source, group: group, logger: logger)
        } else {
            if jwt != nil { logger.error("auth.jwt names neither a usable jwksFile nor jwksURL; every JWT will be refused") }
            self.jwt = nil
        }
        self.certificates = certificates
        self.logger = logger
    }

    public convenience init(settings: CredentialSettings, logger: Logger, group: any EventLoopGroup) {
        self.init(apiKeys: settings.apiKeys, jwt: settings.jwt, certificates: settings.certificates, logger: logger, group: group)
    }

    /// Loads the JWT signing keys (call it at start); returns how many were loaded, zero when no
    /// JWT is configured. Failing here is not fatal: a token with an unknown `kid` tries again.
    @discardableResult
    public func loadSigningKeys() async throws(JWKSLoadError) -> Int {
        guard let jwt else { return 0 }
        return try await jwt.keyStore.load()
    }

    /// The principal a bearer credential proves. A token of three dot-separated base64url
    /// segments is a JWT; anything else is an API key.
    public func authenticate(token: String) async throws(AccessError) -> Principal {
        guard !token.isEmpty else { throw .unauthenticated(reason: "the credential is empty") }
        guard token.utf8.count <= CompactJWT.maximumLength else {
            throw .unauthenticated(reason: "the credential is longer than \(CompactJWT.maximumLength) bytes")
        }
        guard let compact = CompactJWT(token) else {
            guard let key = apiKeys[Self.sha256Hex(token)] else { throw .unauthenticated(reason: "unknown API key") }
            return key.principal
        }
        guard let jwt else {
            // Without `auth.jwt` nothing is a JWT; a key that happens to look like one still works.
            if let key = apiKeys[Self.sha256Hex(token)] { return key.principal }
            throw .unauthenticated(reason: "JWTs are not accepted: no auth.jwt is configured")
        }
        return try await jwt.verify(compact)
    }

    /// The principal a verified client certificate maps to: the first mapping that matches, or
    /// nil when none does.
    public func principal(for identity: TLSPeerIdentity) -> Principal? {
        for mapping in certificates {
            if let principal = mapping.principal(for: identity) { return principal }
        }
        return nil
    }

    /// Lowercase hex of the SHA-256 of `key`'s UTF-8 bytes: what `auth.apiKeys[].sha256` holds.
    public static func sha256Hex(_ key: String) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in SHA256.hash(data: Array(key.utf8)) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }
}
