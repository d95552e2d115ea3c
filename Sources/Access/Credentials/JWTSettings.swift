import JSONRPC

/// How bearer JWTs are verified (`auth.jwt`): whose tokens, for which audience, signed by which
/// keys, and which claims carry the principal's roles, tenant and agent names.
public struct JWTSettings: Sendable, Hashable {
    /// `iss` must equal this.
    public var issuer: String
    /// `aud` must name at least one of these.
    public var audiences: [String]
    /// A JWKS file, read at start and reread when a token names an unknown `kid`.
    public var jwksFile: String?
    /// A JWKS URL (`http://` or `https://`), fetched at start and refetched on an unknown `kid`.
    public var jwksURL: String?
    /// The claim holding the roles: a list of strings, or one space-separated string like `scope`.
    /// A dotted name (`realm_access.roles`) reaches into nested objects.
    public var rolesClaim: String
    public var tenantClaim: String
    /// The claim naming the principal; `sub` when the token lacks it.
    public var nameClaim: String
    public var agentNamesClaim: String
    /// Clock skew allowed when checking `exp` and `nbf`.
    public var leewaySeconds: Double
    /// Roles of a token that carries no roles claim.
    public var defaultRoles: [String]
    /// An unknown `kid` refetches the keys at most this often, so tokens with made-up key ids
    /// cannot turn the gateway into a load generator against the identity provider.
    public var refetchIntervalSeconds: Double

    public init(
        issuer: String,
        audiences: [String],
        jwksFile: String? = nil,
        jwksURL: String? = nil,
        rolesClaim: String = "roles",
        tenantClaim: String = "tenant",
        nameClaim: String = "sub",
        agentNamesClaim: String = "agent_names",
        leewaySeconds: Double = 60,
        defaultRoles: [String] = [],
        refetchIntervalSeconds: Double = 30
    ) {
        self.issuer = issuer
        self.audiences = audiences
        self.jwksFile = jwksFile
        self.jwksURL = jwksURL
        self.rolesClaim = rolesClaim
        self.tenantClaim = tenantClaim
        self.nameClaim = nameClaim
        self.agentNamesClaim = agentNamesClaim
        self.leewaySeconds = leewaySeconds
        self.defaultRoles = defaultRoles
        self.refetchIntervalSeconds = refetchIntervalSeconds
    }
}

extension JWTSettings {
    static let configurationKeys: Set<String> = [
        "issuer", "audiences", "jwksFile", "jwksURL", "rolesClaim", "tenantClaim", "nameClaim", "agentNamesClaim",
        "leewaySeconds", "defaultRoles", "refetchIntervalSeconds",
    ]

    /// Reads `auth.jwt`.
    public init(json: JSONValue, path: String = "auth.jwt") throws(AccessConfigurationError) {
        let object = try ConfigurationObject(json, path: path, allowedKeys: Self.configurationKeys)
        let audiences = try object.strings("audiences") ?? []
        guard !audiences.isEmpty else {
            throw AccessConfigurationError(path: object.path("audiences"), message: "must list at least one audience")
        }
        let jwksFile = try object.string("jwksFile")
        let jwksURL = try object.string("jwksURL")
        switch (jwksFile, jwksURL) {
        case (nil, nil):
            throw AccessConfigurationError(path: path, message: "needs jwksFile or jwksURL: where the signing keys are")
        case (.some, .some):
            throw AccessConfigurationError(path: path, message: "has both jwksFile and jwksURL; keep one")
        case (nil, .some(let url)):
            guard HTTPEndpoint(url) != nil else {
                throw AccessConfigurationError(path: object.path("jwksURL"), message: "must be an http:// or https:// URL with a host")
            }
        case (.some, nil):
            break
        }
        let leeway = try object.number("leewaySeconds") ?? 60
        guard (0...3600).contains(leeway) else {
            throw AccessConfigurationError(path: object.path("leewaySeconds"), message: "must be between 0 and 3600")
        }
        let interval = try object.number("refetchIntervalSeconds") ?? 30
        guard (0...86400).contains(interval) else {
            throw AccessConfigurationError(path: object.path("refetchIntervalSeconds"), message: "must be between 0 and 86400")
        }
        self.init(
            issuer: try object.requiredString("issuer"),
            audiences: audiences,
            jwksFile: jwksFile,
            jwksURL: jwksURL,
            rolesClaim: try object.string("rolesClaim") ?? "roles",
            tenantClaim: try object.string("tenantClaim") ?? "tenant",
            nameClaim: try object.string("nameClaim") ?? "sub",
            agentNamesClaim: try object.string("agentNamesClaim") ?? "agent_names",
            leewaySeconds: leeway,
            defaultRoles: try object.strings("defaultRoles") ?? [],
            refetchIntervalSeconds: interval
        )
    }
}
