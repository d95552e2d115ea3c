import JSONRPC

/// One API key the gateway accepts, as the configuration lists it (`auth.apiKeys[]`).
///
/// Only the SHA-256 of the key is configured, so a leaked configuration file does not leak the
/// keys; `switchboard` prints the hash of a new key for the operator to paste here.
public struct APIKeyCredential: Sendable, Hashable {
    /// The principal's name; several keys may share one (rotation).
    public var name: String
    /// Lowercase hex of the SHA-256 of the key's UTF-8 bytes.
    public var sha256: String
    public var roles: [String]
    public var tenant: String
    /// Agent names (globs) this key may register as.
    public var agentNames: [String]
    public var rateLimit: RateLimit?

    public init(
        name: String,
        sha256: String,
        roles: [String],
        tenant: String = Principal.defaultTenant,
        agentNames: [String] = [],
        rateLimit: RateLimit? = nil
    ) {
        self.name = name
        self.sha256 = sha256.lowercased()
        self.roles = roles
        self.tenant = tenant
        self.agentNames = agentNames
        self.rateLimit = rateLimit
    }

    /// The principal a request presenting this key is.
    public var principal: Principal {
        Principal(name: name, roles: roles, tenant: tenant, proof: .apiKey, agentNames: agentNames, rateLimit: rateLimit)
    }
}

extension APIKeyCredential {
    static let configurationKeys: Set<String> = ["name", "sha256", "roles", "tenant", "agentNames", "rateLimit"]

    /// Reads one `auth.apiKeys[]` entry; `path` is where it sits, for error messages.
    public init(json: JSONValue, path: String = "auth.apiKeys[]") throws(AccessConfigurationError) {
        let object = try ConfigurationObject(json, path: path, allowedKeys: Self.configurationKeys)
        let digest = try object.requiredString("sha256").lowercased()
        guard digest.utf8.count == 64, digest.utf8.allSatisfy({ $0.isHexDigit }) else {
            throw AccessConfigurationError(
                path: object.path("sha256"),
                message: "must be 64 hex digits (the SHA-256 of the key, not the key itself)"
            )
        }
        self.init(
            name: try object.requiredString("name"),
            sha256: digest,
            roles: try object.strings("roles") ?? [],
            tenant: try object.string("tenant") ?? Principal.defaultTenant,
            agentNames: try object.strings("agentNames") ?? [],
            rateLimit: try object.value("rateLimit").map { value throws(AccessConfigurationError) in
                try RateLimit(credentialJSON: value, path: object.path("rateLimit"))
            }
        )
    }
}

extension RateLimit {
    /// Reads `{perSecond: 50, burst: 100}`; `burst` defaults to one second's worth.
    init(credentialJSON json: JSONValue, path: String) throws(AccessConfigurationError) {
        let object = try ConfigurationObject(json, path: path, allowedKeys: ["perSecond", "burst"])
        guard let perSecond = try object.number("perSecond") else {
            throw AccessConfigurationError(path: object.path("perSecond"), message: "is required")
        }
        guard perSecond > 0, perSecond <= 1_000_000_000 else {
            throw AccessConfigurationError(path: object.path("perSecond"), message: "must be greater than 0 and at most 1000000000")
        }
        let burst = try object.integer("burst") ?? max(1, Int(perSecond.rounded(.up)))
        guard burst >= 1 else { throw AccessConfigurationError(path: object.path("burst"), message: "must be at least 1") }
        self.init(perSecond: perSecond, burst: burst)
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
    }
}
