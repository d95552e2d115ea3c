import JSONRPC

/// The credentials the `auth` section accepts: API keys, bearer JWTs and client certificates.
/// (`auth.anonymous` and `auth.roles` are read elsewhere; this reads only its own keys.)
public struct CredentialSettings: Sendable, Hashable {
    public var apiKeys: [APIKeyCredential]
    public var jwt: JWTSettings?
    public var certificates: [CertificateMapping]

    public init(apiKeys: [APIKeyCredential] = [], jwt: JWTSettings? = nil, certificates: [CertificateMapping] = []) {
        self.apiKeys = apiKeys
        self.jwt = jwt
        self.certificates = certificates
    }

    /// Reads `apiKeys`, `jwt` and `certificates` from the members of `auth`, ignoring its other
    /// members; `path` prefixes every error's path.
    public init(auth: [String: JSONValue], path: String = "auth") throws(AccessConfigurationError) {
        var apiKeys: [APIKeyCredential] = []
        var firstPathByDigest: [String: String] = [:]
        for (index, entry) in try Self.list(auth["apiKeys"], path: "\(path).apiKeys").enumerated() {
            let entryPath = "\(path).apiKeys[\(index)]"
            let key = try APIKeyCredential(json: entry, path: entryPath)
            // Two entries with one hash would make the key's principal depend on list order.
            if let earlier = firstPathByDigest[key.sha256] {
                throw AccessConfigurationError(path: "\(entryPath).sha256", message: "is the same as \(earlier).sha256")
            }
            firstPathByDigest[key.sha256] = entryPath
            apiKeys.append(key)
        }
        var jwt: JWTSettings?
        if let value = auth["jwt"]?.resolved, value != .null {
            jwt = try JWTSettings(json: value, path: "\(path).jwt")
        }
        var certificates: [CertificateMapping] = []
        for (index, entry) in try Self.list(auth["certificates"], path: "\(path).certificates").enumerated() {
            certificates.append(try CertificateMapping(json: entry, path: "\(path).certificates[\(index)]"))
        }
        self.init(apiKeys: apiKeys, jwt: jwt, certificates: certificates)
    }

    private static func list(_ value: JSONValue?, path: String) throws(AccessConfigurationError) -> [JSONValue] {
        guard let value = value?.resolved else { return [] }
        switch value {
        case .null: return []
        case .array(let elements): return elements
        default: throw AccessConfigurationError(path: path, message: "must be a list, not \(value.kindName)")
        }
    }
}

/// Reads the credential members of `auth` (`apiKeys`, `jwt`, `certificates`); the same as
/// `CredentialSettings(auth:)`, named for the configuration loader that calls it.
public func parseCredentials(auth: [String: JSONValue]) throws(AccessConfigurationError) -> CredentialSettings {
    try CredentialSettings(auth: auth)
}
