/// The roles a gateway knows (built-in and configured) and what an unauthenticated peer may do.
/// Built once from the configuration; principals' grants are resolved from it.
public struct AccessPolicy: Sendable {
    public private(set) var roles: [String: Role]
    /// The role of a peer that has not authenticated; nil: it may do nothing but authenticate.
    public var anonymousRole: String?

    public init(customRoles: [Role] = [], anonymousRole: String? = nil) {
        var roles = Role.builtIn
        for role in customRoles { roles[role.name] = role }
        self.roles = roles
        self.anonymousRole = anonymousRole
    }

    /// The grant of a principal: its roles' rules, resolved once per connection.
    public func grant(for principal: Principal) -> Grant {
        Grant(principal: principal, roles: principal.roles.compactMap { roles[$0] })
    }

    /// Who an unauthenticated peer is.
    public var anonymous: Principal {
        Principal(name: "anonymous", roles: anonymousRole.map { [$0] } ?? [], proof: .anonymous)
    }
}

/// What one principal may do: the decision for a method and what it acts on. A class: every
/// request's method context carries it, and one reference costs one retain where a principal's
/// strings and arrays would cost one each.
public final class Grant: Sendable {
    public let principal: Principal
    public let roles: [Role]
    /// Methods whose decision depends on the target: some rule matching the method has a target
    /// pattern. For the others the method alone decides, and a connection can cache it.
    private let methodsWithTargetRules: [Glob]
    public let isUnrestricted: Bool
    /// The principal works across tenants (roles `admin` and `operator`): it sees every tenant's
    /// tasks and workflow executions.
    public let spansTenants: Bool

    init(principal: Principal, roles: [Role]) {
        self.principal = principal
        self.roles = roles
        self.methodsWithTargetRules = roles.flatMap { $0.allow + $0.deny }.filter { $0.target != nil }.map(\.method)
        self.spansTenants = roles.contains { $0.name == BuiltInRole.admin.rawValue || $0.name == BuiltInRole.operator.rawValue }
        self.isUnrestricted = roles.contains { role in
            role.deny.isEmpty && role.allow.contains { $0.target == nil && $0.method.pattern == "*" }
        }
    }

    /// Everything allowed: the grant of a gateway without an `auth` section.
    public static let unrestricted = Grant(principal: .unconfigured, roles: [Role.builtIn["admin"]!])

    /// Whether `method`'s decision depends on its target.
    public func dependsOnTarget(_ method: String) -> Bool {
        methodsWithTargetRules.contains { $0.matches(method) }
    }

    /// Allowed when a rule of one of the roles allows it and no rule of any denies it; the
    /// refusal names what was refused and the rule (or the lack of one) that decided.
    public func decide(method: String, targets: [String] = []) -> AccessError? {
        if isUnrestricted || Role.alwaysAllowed.contains(method) { return nil }
        if targets.isEmpty { return decide(method: method, target: nil) }
        for target in targets {
            if let refusal = decide(method: method, target: target) { return refusal }
        }
        return nil
    }

    private func decide(method: String, target: String?) -> AccessError? {
        let what = target.map { "\(method) \($0)" } ?? method
        for role in roles {
            if let rule = role.deny.first(where: { $0.matches(method: method, target: target) }) {
                return .forbidden(principal: principal.name, what: what, reason: "role \(role.name) denies \(rule)")
            }
        }
        if roles.contains(where: { role in role.allow.contains { $0.matches(method: method, target: target) } }) {
            return nil
        }
        let reason = roles.isEmpty
            ? (principal.proof == .anonymous ? "authenticate first (auth/authenticate)" : "the principal has no role")
            : "no rule of role\(roles.count == 1 ? "" : "s") \(roles.map(\.name).joined(separator: ", ")) allows it"
        return .forbidden(principal: principal.name, what: what, reason: reason)
    }

    /// Whether the principal may call `method` for some target at least: allowed outright, or a
    /// rule allows it for some targets and no rule denies it for every target. A console shows
    /// an action by this, and the gateway still decides each request with its target.
    public func allowsSomeTarget(_ method: String) -> Bool {
        if decide(method: method) == nil { return true }
        if roles.contains(where: { role in role.deny.contains { ($0.target == nil || $0.target?.pattern == "*") && $0.method.matches(method) } }) {
            return false
        }
        return roles.contains { role in role.allow.contains { $0.target != nil && $0.method.matches(method) } }
    }

    /// Whether the principal may use `name` through `method` (filtering `tools/list` and the
    /// like: a principal sees only what it may call).
    public func mayUse(_ method: String, _ name: String) -> Bool {
        isUnrestricted || decide(method: method, target: name) == nil
    }
}
