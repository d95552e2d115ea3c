/// Who a request is: settled once per connection (or per request, for a token carried in a
/// modern-era request's `_meta`), before any handler runs.
public struct Principal: Sendable, Hashable, CustomStringConvertible {
    /// How the principal proved who it is.
    public enum Proof: String, Sendable, Hashable {
        /// An API key whose SHA-256 the configuration lists.
        case apiKey
        /// A JWT verified against the configured issuer, audiences and keys.
        case jwt
        /// A TLS client certificate mapped to a principal by the configuration.
        case certificate
        /// The operator who started the process and speaks on its stdio.
        case `operator`
        /// No credential: what `auth.anonymous` allows.
        case anonymous
        /// No `auth` section: the gateway runs for local use and everyone is an admin.
        case unconfigured
    }

    /// The principal's name: an API key's `name`, a JWT's `sub`, a certificate's mapped name.
    public var name: String
    public var roles: [String]
    /// Data of one tenant is invisible to another. `default` when the credential names none.
    public var tenant: String
    public var proof: Proof
    /// Agent names (globs) this principal may register as (`agents/register`).
    public var agentNames: [String]
    /// Requests per second allowed to this principal, when its credential sets a limit.
    public var rateLimit: RateLimit?
    /// When the credential stops being valid (a JWT's `exp`), in seconds since 1970.
    public var expiresAt: Double?

    public static let defaultTenant = "default"

    /// A tenant name is 1 to 128 letters, digits and `_ - . : @`: it becomes part of stored
    /// names, so it may hold nothing a namespace, topic or pattern gives a meaning to.
    public static func isValidTenant(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 128
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.:@".unicodeScalars.contains($0)) }
    }

    public init(
        name: String,
        roles: [String],
        tenant: String = Principal.defaultTenant,
        proof: Proof,
        agentNames: [String] = [],
        rateLimit: RateLimit? = nil,
        expiresAt: Double? = nil
    ) {
        self.name = name
        self.roles = roles
        self.tenant = tenant
        self.proof = proof
        self.agentNames = agentNames
        self.rateLimit = rateLimit
        self.expiresAt = expiresAt
    }

    /// Everyone, when no `auth` section is configured.
    public static let unconfigured = Principal(name: "local", roles: [BuiltInRole.admin.rawValue], proof: .unconfigured)

    /// The operator on stdio.
    public static let stdioOperator = Principal(name: "operator", roles: [BuiltInRole.admin.rawValue], proof: .operator)

    public var description: String { "\(name) (\(proof.rawValue), tenant \(tenant))" }
}

/// A request rate: `perSecond` on average, bursts of up to `burst`.
public struct RateLimit: Sendable, Hashable {
    public var perSecond: Double
    public var burst: Int

    public init(perSecond: Double, burst: Int) {
        self.perSecond = perSecond
        self.burst = burst
    }
}

/// The roles every gateway knows.
public enum BuiltInRole: String, Sendable, CaseIterable {
    /// Everything.
    case admin
    /// The fleet, workflows and approvals; reads everything.
    case `operator`
    /// Tools, tasks, patterns; memory, events and messages in its tenant.
    case client
    /// Registers as the names it is given, serves calls, uses its own namespaces.
    case agent
    /// Lists and status, read-only.
    case viewer
    /// What a Prometheus scraper needs: the metrics, and the status and history behind them.
    case monitor
}
