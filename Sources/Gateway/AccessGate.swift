import Access
import JSONRPC
import Logging
import NIOCore
import Redis
import Transport

/// The access layer as the connections meet it: who a new connection is before it proves
/// anything, and the decision for each request, made here and nowhere else, before its handler
/// runs. Present only when the configuration has an `auth` section; without one the gateway
/// serves everyone as it always has (for local use) and warns when it listens beyond loopback.
final class AccessGate: Sendable {
    let policy: AccessPolicy
    let authenticator: Authenticator
    let rateLimits: RateLimitSettings
    /// Present when some principal or tenant has a rate limit.
    let rateLimiter: RequestRateLimiter?

    /// `redis`: the replicas' Redis, through which they share the rate limits.
    init(settings: AccessSettings, redis: RedisConfiguration?, logger: Logger, group: any EventLoopGroup) {
        self.policy = settings.policy
        self.authenticator = Authenticator(settings: settings.credentials, logger: logger, group: group)
        self.rateLimits = settings.rateLimits
        let someKeyIsLimited = settings.credentials.apiKeys.contains { $0.rateLimit != nil }
        self.rateLimiter = settings.rateLimits.limitsAnyone || someKeyIsLimited
            ? RequestRateLimiter(settings: settings.rateLimits, redis: redis, group: group, logger: logger) : nil
    }

    /// The rate limits a grant's requests must pass.
    func rateChecks(for grant: Grant) -> [RateCheck] {
        rateLimiter == nil ? [] : rateLimits.checks(for: grant.principal)
    }

    func shutdown() async {
        await rateLimiter?.shutdown()
    }

    /// The grant a connection starts with: the operator's on stdio; a certificate's principal
    /// when its TLS client certificate maps to one (set when the handshake completes); the
    /// anonymous role's otherwise.
    func initialGrant(isStdio: Bool) -> Grant {
        policy.grant(for: isStdio ? .stdioOperator : policy.anonymous)
    }

    func grant(for principal: Principal) -> Grant {
        policy.grant(for: principal)
    }

    /// The grant of a TLS client certificate that an `auth.certificates` entry maps.
    func grant(forCertificate identity: TLSPeerIdentity) -> Grant? {
        authenticator.principal(for: identity).map(policy.grant(for:))
    }
}

/// One connection's decisions, remembered: for a method whose rules name no target, the method
/// alone decides, so the second request of a kind costs a dictionary lookup.
struct AccessDecisions {
    private(set) var grant: Grant
    /// The rate limits the grant's requests must pass (usually none).
    private(set) var rateChecks: [RateCheck]
    private var allowedMethods: Set<String> = []
    /// Targets already allowed, per method, for methods whose rules name targets: a host calls
    /// the same few tools over and over. Bounded: emptied when full.
    private var allowedTargets: Set<MethodTarget> = []
    private static let maximumRememberedTargets = 1_024

    private struct MethodTarget: Hashable {
        var method: String
        var target: String
    }

    init(grant: Grant, rateChecks: [RateCheck] = []) {
        self.grant = grant
        self.rateChecks = rateChecks
    }

    /// The refusal of `request`, or nil when it may run.
    @inline(__always)
    mutating func refusal(of request: JSONRPCRequest) -> AccessError? {
        if grant.isUnrestricted { return nil }
        return slowRefusal(of: request)
    }

    private mutating func slowRefusal(of request: JSONRPCRequest) -> AccessError? {
        if allowedMethods.contains(request.method) { return nil }
        if grant.dependsOnTarget(request.method) {
            guard case .some(let single) = RequestTarget.single(method: request.method, params: request.params) else {
                return grant.decide(method: request.method, targets: RequestTarget.targets(method: request.method, params: request.params))
            }
            guard let target = single else { return grant.decide(method: request.method) }
            let key = MethodTarget(method: request.method, target: target)
            if allowedTargets.contains(key) { return nil }
            let refusal = grant.decide(method: request.method, targets: [target])
            if refusal == nil {
                if allowedTargets.count >= Self.maximumRememberedTargets { allowedTargets.removeAll(keepingCapacity: true) }
                allowedTargets.insert(key)
            }
            return refusal
        }
        let refusal = grant.decide(method: request.method)
        // Bounded: a peer inventing method names must not grow the set (unknown methods are
        // answered -32601 before they get here, so this holds the table's methods at most).
        if refusal == nil, allowedMethods.count < 256 { allowedMethods.insert(request.method) }
        return refusal.map { Self.naming(RequestTarget.targets(method: request.method, params: request.params), in: $0) }
    }

    /// A refusal decided by the method alone still says what it refused (12.3.2: the method and
    /// its target), as one decided by a target rule does.
    private static func naming(_ targets: [String], in refusal: AccessError) -> AccessError {
        guard case .forbidden(let principal, let what, let reason) = refusal, !targets.isEmpty, !what.contains(" ") else { return refusal }
        return .forbidden(principal: principal, what: "\(what) \(targets.joined(separator: ", "))", reason: reason)
    }

    mutating func change(to grant: Grant, rateChecks: [RateCheck]) {
        self.grant = grant
        self.rateChecks = rateChecks
        allowedMethods.removeAll()
        allowedTargets.removeAll()
    }
}
