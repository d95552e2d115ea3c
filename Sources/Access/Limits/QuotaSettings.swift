import JSONRPC

/// What a principal or a tenant may hold at once.
public enum QuotaResource: String, Sendable, Hashable, CaseIterable {
    /// Authenticated connections.
    case connections
    /// Open `events/subscribe` subscriptions.
    case subscriptions
    /// Tasks submitted and not yet finished (waiting or running).
    case queuedTasks
    /// Agents registered (`agents/register`) and still connected.
    case agentInstances
    /// Keys in the tenant's memory namespaces (a tenant's quota only; kept by the store).
    case memoryKeys
    /// Bytes in the tenant's memory namespaces: each key's name and value (a tenant's quota only).
    case memoryBytes

    /// Counted by the memory store itself rather than by the quota ledger.
    public var isMemory: Bool { self == .memoryKeys || self == .memoryBytes }
}

/// `auth.quotas`: how much a principal, and a tenant, may hold at once (protocol-spec 12.7.2).
///
/// As for rate limits, a hold must fit both its principal's quota (`principal`) and its
/// tenant's (`tenants.NAME`, else `tenants."*"`, each such tenant on its own); anonymous
/// holdings count only towards their tenant's; the operator on stdio, and every principal of a
/// gateway without `auth`, have none.
public struct QuotaSettings: Sendable, Hashable {
    /// A limit per resource; a resource without one is not counted.
    public struct Limits: Sendable, Hashable {
        public var byResource: [QuotaResource: Int]

        public init(_ byResource: [QuotaResource: Int] = [:]) {
            self.byResource = byResource
        }

        public subscript(resource: QuotaResource) -> Int? { byResource[resource] }
    }

    public var principal: Limits
    public var tenants: [String: Limits]
    /// For each tenant not named in `tenants` (`"*"`).
    public var otherTenants: Limits?

    public init(principal: Limits = Limits(), tenants: [String: Limits] = [:], otherTenants: Limits? = nil) {
        self.principal = principal
        self.tenants = tenants
        self.otherTenants = otherTenants
    }

    /// Whether anything is counted at all.
    public var limitsAnyone: Bool {
        !principal.byResource.isEmpty || tenants.values.contains { !$0.byResource.isEmpty } || !(otherTenants?.byResource.isEmpty ?? true)
    }

    /// Whether `resource` is counted for anyone.
    public func counts(_ resource: QuotaResource) -> Bool {
        principal[resource] != nil || tenants.values.contains { $0[resource] != nil } || otherTenants?[resource] != nil
    }

    /// A tenant's own quota of `resource` (its entry, else `"*"`'s).
    public func tenantLimit(_ resource: QuotaResource, of tenant: String) -> Int? {
        (tenants[tenant] ?? otherTenants)?[resource]
    }

    /// The quotas a hold of `resource` by `principal` must fit, in order; empty when none applies.
    public func checks(_ resource: QuotaResource, for principal: Principal) -> [QuotaCheck] {
        switch principal.proof {
        case .operator, .unconfigured: return []
        case .apiKey, .jwt, .certificate, .anonymous: break
        }
        var checks: [QuotaCheck] = []
        if principal.proof != .anonymous, let limit = self.principal[resource] {
            checks.append(QuotaCheck(resource: resource, scope: .principal, name: principal.name, limit: limit, tenant: principal.tenant))
        }
        if let limit = (tenants[principal.tenant] ?? otherTenants)?[resource] {
            checks.append(QuotaCheck(resource: resource, scope: .tenant, name: principal.tenant, limit: limit))
        }
        return checks
    }
}

/// One quota a hold must fit.
public struct QuotaCheck: Sendable, Hashable {
    public var resource: QuotaResource
    public var scope: RateCheck.Scope
    public var name: String
    public var limit: Int
    /// The principal's tenant, for a principal's quota.
    public var tenant: String

    public init(resource: QuotaResource, scope: RateCheck.Scope, name: String, limit: Int, tenant: String = Principal.defaultTenant) {
        self.resource = resource
        self.scope = scope
        self.name = name
        self.limit = limit
        self.tenant = tenant
    }

    /// The ledger's key: resource, scope, and the tenant's name or the principal's within its
    /// tenant.
    public var key: String {
        scope == .principal ? "\(resource.rawValue):principal:\(tenant)/\(name)" : "\(resource.rawValue):tenant:\(name)"
    }

    /// The refusal a client sees: whose quota, of what, and how much is held.
    public func refusal(principal: String, held: Int) -> AccessError {
        let whose = scope == .principal ? "principal \(name)" : "tenant \(name)"
        return .limited(
            principal: principal, limit: "quota:\(resource.rawValue):\(scope.rawValue)",
            reason: "\(whose) may hold at most \(limit) \(Self.noun(resource, limit)) at once and holds \(held)",
            retryAfterSeconds: nil)
    }

    private static func noun(_ resource: QuotaResource, _ count: Int) -> String {
        switch resource {
        case .connections: count == 1 ? "connection" : "connections"
        case .subscriptions: count == 1 ? "subscription" : "subscriptions"
        case .queuedTasks: count == 1 ? "unfinished task" : "unfinished tasks"
        case .agentInstances: count == 1 ? "registered agent" : "registered agents"
        case .memoryKeys: count == 1 ? "memory key" : "memory keys"
        case .memoryBytes: count == 1 ? "byte of memory" : "bytes of memory"
        }
    }
}

extension QuotaSettings {
    /// Reads `auth.quotas`: `principal` and `tenants` (names, and `"*"`), each a mapping of
    /// `connections`, `subscriptions`, `queuedTasks`, `agentInstances` to a count.
    public init(auth section: [String: JSONValue]) throws(AccessConfigurationError) {
        self.init()
        guard let value = section["quotas"] else { return }
        let object = try ConfigurationObject(value, path: "auth.quotas", allowedKeys: ["principal", "tenants"])
        if let principal = object.value("principal") {
            self.principal = try Limits(json: principal, path: object.path("principal"))
            if let memory = QuotaResource.allCases.first(where: { $0.isMemory && self.principal[$0] != nil }) {
                throw AccessConfigurationError(
                    path: "\(object.path("principal")).\(memory.rawValue)", message: "memory belongs to a tenant: set it under tenants")
            }
        }
        if let tenants = object.value("tenants") {
            (self.tenants, otherTenants) = try TenantEntries.read(tenants, path: object.path("tenants"), of: "quotas") { json, path throws(AccessConfigurationError) in
                try Limits(json: json, path: path)
            }
        }
    }
}

extension QuotaSettings.Limits {
    init(json: JSONValue, path: String) throws(AccessConfigurationError) {
        let object = try ConfigurationObject(json, path: path, allowedKeys: Set(QuotaResource.allCases.map(\.rawValue)))
        var limits: [QuotaResource: Int] = [:]
        for resource in QuotaResource.allCases {
            guard let count = try object.integer(resource.rawValue) else { continue }
            guard count >= 0, count <= 1_000_000_000 else {
                throw AccessConfigurationError(path: object.path(resource.rawValue), message: "must be from 0 to 1000000000")
            }
            limits[resource] = count
        }
        self.init(limits)
    }
}
