import JSONRPC

/// `auth.rateLimits`: how many requests per second a principal, and a tenant, may make
/// (protocol-spec chapter 12, 12.7).
///
/// A request passes every limit that applies to it or none spends anything: its principal's
/// (its credential's own `rateLimit`, else `principal`), then its tenant's (`tenants.NAME`,
/// else `tenants."*"`, a bucket for each such tenant). Anonymous requests have no principal
/// limit (they would all share one); their tenant's applies. The operator on stdio, and every
/// principal of a gateway without `auth`, are not limited.
public struct RateLimitSettings: Sendable, Hashable {
    /// For every authenticated principal whose credential sets no `rateLimit` of its own.
    public var principal: RateLimit?
    /// By tenant name.
    public var tenants: [String: RateLimit]
    /// For each tenant not named in `tenants` (`"*"`).
    public var otherTenants: RateLimit?
    /// What replicas decide while Redis, which they share the limits through, cannot be asked.
    public var whenUnavailable: RateLimitFallback

    public init(principal: RateLimit? = nil, tenants: [String: RateLimit] = [:], otherTenants: RateLimit? = nil, whenUnavailable: RateLimitFallback = .local) {
        self.principal = principal
        self.tenants = tenants
        self.otherTenants = otherTenants
        self.whenUnavailable = whenUnavailable
    }

    /// Requests no limit counts: keeping a session alive, and proving who one is.
    public static let exemptMethods: Set<String> = ["ping", "auth/authenticate", "auth/whoami"]

    /// Whether any principal could meet a limit.
    public var limitsAnyone: Bool {
        principal != nil || !tenants.isEmpty || otherTenants != nil
    }

    /// The limits `principal`'s requests must pass, in order; empty when none applies.
    public func checks(for principal: Principal) -> [RateCheck] {
        switch principal.proof {
        case .operator, .unconfigured: return []
        case .apiKey, .jwt, .certificate, .anonymous: break
        }
        var checks: [RateCheck] = []
        if principal.proof != .anonymous, let limit = principal.rateLimit ?? self.principal {
            checks.append(RateCheck(scope: .principal, name: principal.name, limit: limit, tenant: principal.tenant))
        }
        if let limit = tenants[principal.tenant] ?? otherTenants {
            checks.append(RateCheck(scope: .tenant, name: principal.tenant, limit: limit))
        }
        return checks
    }
}

/// What replicas decide while the shared limiter state (Redis) is out of reach.
public enum RateLimitFallback: String, Sendable, Hashable, CaseIterable {
    /// Each replica decides alone, on its own counts: with K replicas up to K times a limit
    /// passes during the outage. The default.
    case local
    /// Fail open: everything passes.
    case allow
    /// Fail closed: everything limited is refused.
    case refuse
}

/// One limit a request must pass.
public struct RateCheck: Sendable, Hashable {
    public enum Scope: String, Sendable, Hashable {
        case principal
        case tenant
    }

    public let scope: Scope
    /// The principal's or the tenant's name.
    public let name: String
    public let limit: RateLimit
    /// The limiter's key: the scope, and the tenant's name or the principal's within its tenant
    /// (two tenants' principals of one name are two). Made once, when a connection learns its
    /// principal, not on every request.
    public let key: String

    /// `tenant`: the principal's, for a principal's limit.
    public init(scope: Scope, name: String, limit: RateLimit, tenant: String = Principal.defaultTenant) {
        self.scope = scope
        self.name = name
        self.limit = limit
        self.key = scope == .principal ? "principal:\(tenant)/\(name)" : "tenant:\(name)"
    }

    /// The refusal a client sees: which limit, the rate, and when to retry.
    public func refusal(principal: String, retryAfterSeconds: Double?) -> AccessError {
        let rate = limit.perSecond.rounded() == limit.perSecond && abs(limit.perSecond) < 1e15
            ? String(Int64(limit.perSecond)) : String(limit.perSecond)
        let whose = scope == .principal ? "principal \(name)" : "tenant \(name)"
        return .limited(
            principal: principal, limit: "rate:\(scope.rawValue)",
            reason: "\(whose) may make \(rate) requests per second, in bursts of at most \(limit.burst)",
            retryAfterSeconds: retryAfterSeconds)
    }
}

extension RateLimitSettings {
    /// Reads `auth.rateLimits`: `principal`, `tenants` (names, and `"*"` for the others), and
    /// `whenRedisUnavailable` (`local`, `allow` or `refuse`).
    public init(auth section: [String: JSONValue]) throws(AccessConfigurationError) {
        self.init()
        guard let value = section["rateLimits"] else { return }
        let object = try ConfigurationObject(value, path: "auth.rateLimits", allowedKeys: ["principal", "tenants", "whenRedisUnavailable"])
        if let principal = object.value("principal") {
            self.principal = try RateLimit(credentialJSON: principal, path: object.path("principal"))
        }
        if let tenants = object.value("tenants") {
            (self.tenants, otherTenants) = try TenantEntries.read(tenants, path: object.path("tenants"), of: "{perSecond, burst}") { json, path throws(AccessConfigurationError) in
                try RateLimit(credentialJSON: json, path: path)
            }
        }
        if let fallback = try object.string("whenRedisUnavailable") {
            guard let parsed = RateLimitFallback(rawValue: fallback) else {
                throw AccessConfigurationError(
                    path: object.path("whenRedisUnavailable"),
                    message: "must be one of \(RateLimitFallback.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(fallback)\"")
            }
            whenUnavailable = parsed
        }
    }
}

/// A mapping of tenant names (and `"*"` for the others) to settings of each, as `rateLimits` and
/// `quotas` write it.
enum TenantEntries {
    static func read<Value>(
        _ json: JSONValue, path: String, of what: String, _ parse: (JSONValue, String) throws(AccessConfigurationError) -> Value
    ) throws(AccessConfigurationError) -> (named: [String: Value], others: Value?) {
        guard case .object(let entries) = json else {
            throw AccessConfigurationError(path: path, message: "must map tenant names (or \"*\") to \(what)")
        }
        var named: [String: Value] = [:]
        var others: Value?
        for (tenant, value) in entries.sorted(by: { $0.key < $1.key }) {
            let entryPath = "\(path).\(tenant)"
            let parsed = try parse(value, entryPath)
            if tenant == "*" {
                others = parsed
            } else {
                guard Principal.isValidTenant(tenant) else {
                    throw AccessConfigurationError(path: entryPath, message: "a tenant is 1 to 128 letters, digits and _ - . : @")
                }
                named[tenant] = parsed
            }
        }
        return (named, others)
    }
}
