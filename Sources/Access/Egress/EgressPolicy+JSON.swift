import JSONRPC

/// A problem in the `egress` section, with the path to the value at fault.
public struct EgressConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `egress.allow[1]`.
    public var path: String
    public var message: String

    public var description: String { "\(path): \(message)" }
}

extension EgressPolicy {
    /// Reads `{"allow": [HOST | ADDRESS | CIDR, …], "denyPublic": BOOL}`; both keys optional.
    public init(json: JSONValue) throws(EgressConfigurationError) {
        self.init()
        var json = json
        if case .raw(let raw) = json { json = raw.decoded() }
        guard case .object(let members) = json else {
            throw EgressConfigurationError(path: "egress", message: "must be a mapping (keys: allow, denyPublic)")
        }
        for key in members.keys.sorted() {
            let value = members[key]!
            switch key {
            case "allow":
                guard case .array(let entries) = value else {
                    throw EgressConfigurationError(path: "egress.allow", message: "must be a list of hosts, addresses and CIDR ranges")
                }
                for (index, entry) in entries.enumerated() {
                    allow.append(try Self.rule(entry, path: "egress.allow[\(index)]"))
                }
            case "denyPublic":
                guard case .bool(let flag) = value else {
                    throw EgressConfigurationError(path: "egress.denyPublic", message: "must be true or false")
                }
                denyPublic = flag
            default:
                throw EgressConfigurationError(path: "egress.\(key)", message: "unknown key (known: allow, denyPublic)")
            }
        }
    }

    private static func rule(_ entry: JSONValue, path: String) throws(EgressConfigurationError) -> EgressRule {
        guard case .string(let text) = entry else {
            throw EgressConfigurationError(path: path, message: "not a host, address or CIDR range (it must be a string)")
        }
        if let rule = EgressRule(text) { return rule }
        // The commonest slip, named: a prefix longer than the address.
        if let slash = text.lastIndex(of: "/"), let address = IPAddress(String(text[..<slash])) {
            throw EgressConfigurationError(
                path: path, message: "not a CIDR range (\"\(text)\": the prefix length must be 0 to \(address.bytes.count * 8))")
        }
        throw EgressConfigurationError(path: path, message: "not a host, address or CIDR range (\"\(text)\")")
    }
}
