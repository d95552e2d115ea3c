import JSONRPC

/// Where the gateway may connect on a client's behalf (a task's `callback`, for one): the
/// configuration's `egress` section.
///
/// A connection is judged by the addresses its host resolved to, every one of them, and must
/// then go to the address that was judged: a name resolved twice could answer differently the
/// second time (DNS rebinding). Addresses of the gateway's own host and network (loopback,
/// private, link-local, cloud metadata, …) are refused unless `allow` lists them; public ones
/// are allowed unless `denyPublic` is set.
public struct EgressPolicy: Sendable, Hashable {
    /// Host names allow whatever they resolve to; addresses and ranges allow what is in them.
    public var allow: [EgressRule]
    /// Refuse public addresses too: only what `allow` lists is reachable.
    public var denyPublic: Bool

    public init(allow: [EgressRule] = [], denyPublic: Bool = false) {
        self.allow = allow
        self.denyPublic = denyPublic
    }

    /// Judges a connection to `host` that resolved to `addresses`; nil when it may go ahead.
    /// `purpose` names the connection in the refusal (`callback to … refused: …`).
    public func check(host: String, addresses: [IPAddress], purpose: String = "connection") -> EgressRefusal? {
        if allow.contains(where: { $0.matches(host: host) }) { return nil }
        guard !addresses.isEmpty else {
            return EgressRefusal(purpose: purpose, host: host, address: nil, reason: "it resolves to no address")
        }
        for address in addresses {
            if let reason = refusal(of: address) {
                return EgressRefusal(purpose: purpose, host: host, address: address, reason: reason)
            }
        }
        return nil
    }

    /// Why one address is refused, or nil.
    public func refusal(of address: IPAddress) -> String? {
        if allow.contains(where: { $0.matches(address: address) }) { return nil }
        let classification = AddressClassification(address)
        if classification.category == .public && !denyPublic { return nil }
        var notes: [String] = []
        if let embedded = classification.embedded {
            notes.append("\(address) is the \(embedded.kind.rawValue) form of \(embedded.address)")
        }
        if classification.category == .public { notes.append("egress.denyPublic is true") }
        notes.append("egress.allow does not list it")
        return "\(classification.category.refusal) (\(notes.joined(separator: "; ")))"
    }
}

/// A connection the policy refuses, and why: `callback to 127.0.0.1 refused: loopback addresses
/// are not allowed (egress.allow does not list it)`.
public struct EgressRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    public var purpose: String
    public var host: String
    /// The first address that failed; nil when the host resolved to none.
    public var address: IPAddress?
    public var reason: String

    public init(purpose: String, host: String, address: IPAddress?, reason: String) {
        self.purpose = purpose
        self.host = host
        self.address = address
        self.reason = reason
    }

    public var description: String {
        let target: String
        if let address, IPAddress(host) != address {
            target = "\(host) (\(address))"
        } else {
            target = host
        }
        return "\(purpose) to \(target) refused: \(reason)"
    }
}
