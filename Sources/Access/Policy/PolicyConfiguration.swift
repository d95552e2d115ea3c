import JSONRPC

/// A mistake in the `auth` (or `audit`, `egress`) section, with where it is.
public struct PolicyConfigurationError: Error, Sendable, CustomStringConvertible {
    /// Where: `auth.roles.trader.allow[2]`.
    public var path: String
    public var message: String

    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

extension AccessPolicy {
    /// `auth.anonymous` and `auth.roles` of the configuration:
    ///
    /// ```yaml
    /// auth:
    ///   anonymous: none                 # or a role name
    ///   roles:
    ///     trader: {allow: ["tools/call:trading__*", "tasks/*"], deny: ["agents/*"]}
    /// ```
    public init(auth: [String: JSONValue]) throws(PolicyConfigurationError) {
        var custom: [Role] = []
        if let roles = auth["roles"] {
            guard case .object(let entries) = roles else { throw PolicyConfigurationError("auth.roles", "must be a mapping of role names to {allow, deny}") }
            for (name, value) in entries.sorted(by: { $0.key < $1.key }) {
                let path = "auth.roles.\(name)"
                guard case .object(let members) = value else { throw PolicyConfigurationError(path, "must be a mapping with allow and deny lists") }
                for key in members.keys where key != "allow" && key != "deny" {
                    throw PolicyConfigurationError("\(path).\(key)", "unknown key (a role has allow and deny)")
                }
                custom.append(Role(
                    name: name, allow: try Self.rules(members["allow"], "\(path).allow"), deny: try Self.rules(members["deny"], "\(path).deny")))
            }
        }
        var anonymous: String?
        switch auth["anonymous"] {
        case nil, .null?, .string("none")?: anonymous = nil
        case .string(let role)?: anonymous = role
        default: throw PolicyConfigurationError("auth.anonymous", "must be none or a role name")
        }
        self.init(customRoles: custom, anonymousRole: anonymous)
        if let anonymous, roles[anonymous] == nil {
            throw PolicyConfigurationError("auth.anonymous", "no role \"\(anonymous)\" (roles: \(roles.keys.sorted().joined(separator: ", ")))")
        }
    }

    /// Refuses a principal's role that no definition backs: a typo would otherwise grant nothing
    /// silently.
    public func checkRoles(_ names: [String], at path: String) throws(PolicyConfigurationError) {
        for name in names where roles[name] == nil {
            throw PolicyConfigurationError(path, "no role \"\(name)\" (roles: \(roles.keys.sorted().joined(separator: ", ")))")
        }
    }

    private static func rules(_ value: JSONValue?, _ path: String) throws(PolicyConfigurationError) -> [String] {
        guard let value else { return [] }
        guard case .array(let items) = value else { throw PolicyConfigurationError(path, "must be a list of rules such as \"tools/call:trading__*\"") }
        var rules: [String] = []
        for (index, item) in items.enumerated() {
            guard case .string(let text) = item, !text.isEmpty, !text.hasPrefix(":") else {
                throw PolicyConfigurationError("\(path)[\(index)]", "a rule is \"METHOD\" or \"METHOD:TARGET\", with * and ? as wildcards")
            }
            rules.append(text)
        }
        return rules
    }
}
