import Access
import JSONRPC

/// The egress rule applied to a callback at `tasks/submit`, where it can be without a lookup: a
/// host that is an address, or `localhost`, is judged at once, so that the client learns now
/// rather than never hearing back. Other names are judged when the callback is delivered, on
/// the addresses they resolve to then.
enum CallbackEgress {
    /// -32005 with `reason` and `callback` when the policy certainly refuses `url`; nil otherwise.
    static func refusal(of url: String, policy: EgressPolicy, purpose: String = "callback") -> JSONRPCError? {
        guard let target = CallbackPoster.Target(url) else { return nil }
        // A name that may resolve to either loopback address is refused when both are.
        let candidates: [[IPAddress]]
        if let literal = HostResolver.literal(target.host) {
            candidates = [literal]
        } else if isLocalhost(target.host) {
            candidates = [[IPAddress("127.0.0.1")!], [IPAddress("::1")!]]
        } else {
            return nil
        }
        let refusals = candidates.map { policy.check(host: target.host, addresses: $0, purpose: purpose) }
        guard let first = refusals.first ?? nil, refusals.allSatisfy({ $0 != nil }) else { return nil }
        return JSONRPCError(
            code: AccessError.forbiddenCode, message: "Forbidden: \(first)",
            data: ["reason": .string(first.description), purpose == "callback" ? "callback" : "endpoint": .string(url)])
    }

    /// `localhost` and names under it, which resolve to loopback (RFC 6761, 6.3).
    private static func isLocalhost(_ host: String) -> Bool {
        var name = host.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        return name == "localhost" || name.hasSuffix(".localhost")
    }
}
