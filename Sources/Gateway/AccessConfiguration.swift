import Access
import JSONRPC
import Yams

/// The `auth` section as the gateway holds it, checked when the configuration is read.
public struct AccessSettings: Sendable {
    public var policy: AccessPolicy
    /// The section as written, for the parts read by the credential verifiers.
    public var section: [String: JSONValue]
    /// A new version of a known agent takes traffic at once (`auth.activateNewVersions: true`),
    /// or waits for an operator's `agents/activate` (the default with access control).
    public var activatesNewVersions: Bool

    public init(policy: AccessPolicy, section: [String: JSONValue], activatesNewVersions: Bool = false) {
        self.policy = policy
        self.section = section
        self.activatesNewVersions = activatesNewVersions
    }
}

extension ConfigurationReader {
    /// `auth:` — roles, the anonymous role and the credentials. A mistake refuses the start:
    /// a gateway that guessed at its access rules would guess wrong in someone's favour.
    mutating func readAuth(_ node: Node) {
        guard case .object(let section) = jsonValue(node) else {
            report(node, "auth must be a mapping (anonymous, apiKeys, jwt, certificates, roles)")
            return
        }
        let known: Set<String> = ["anonymous", "apiKeys", "jwt", "certificates", "roles", "activateNewVersions"]
        for key in section.keys.sorted() where !known.contains(key) {
            report(node, "auth.\(key): unknown key (known: \(known.sorted().joined(separator: ", ")))")
        }
        do {
            let policy = try AccessPolicy(auth: section)
            var access = AccessSettings(policy: policy, section: section)
            switch section["activateNewVersions"] {
            case nil: break
            case .bool(let automatic)?: access.activatesNewVersions = automatic
            default: report(node, "auth.activateNewVersions must be true or false")
            }
            settings.access = access
        } catch {
            report(node, error.description)
        }
    }

    /// A node as JSON: plain scalars that YAML reads as booleans or numbers become them,
    /// everything else a string (after `${VAR}` expansion, as elsewhere in the file).
    func jsonValue(_ node: Node) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain {
                if scalar.string == "null" || scalar.string == "~" || scalar.string.isEmpty { return .null }
                if let bool = node.bool { return .bool(bool) }
                if let integer = node.int { return .integer(Int64(integer)) }
                if let double = node.float { return .double(double) }
            }
            return .string(expansion.expand(scalar.string).text)
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping { object[key.string ?? ""] = jsonValue(value) }
            return .object(object)
        case .sequence(let sequence):
            return .array(sequence.map(jsonValue))
        case .alias:
            return .null
        }
    }
}
