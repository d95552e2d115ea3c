import Access
import JSONRPC
import Yams

/// The `auth` section as the gateway holds it, checked when the configuration is read.
public struct AccessSettings: Sendable {
    public var policy: AccessPolicy
    /// API keys, JWT settings and certificate mappings.
    public var credentials: CredentialSettings
    /// The section as written.
    public var section: [String: JSONValue]
    /// A new version of a known agent takes traffic at once (`auth.activateNewVersions: true`),
    /// or waits for an operator's `agents/activate` (the default with access control).
    public var activatesNewVersions: Bool
    /// `auth.rateLimits`: requests per second per principal and per tenant.
    public var rateLimits: RateLimitSettings
    /// `auth.quotas`: what a principal and a tenant may hold at once.
    public var quotas: QuotaSettings

    public init(
        policy: AccessPolicy, credentials: CredentialSettings, section: [String: JSONValue], activatesNewVersions: Bool = false,
        rateLimits: RateLimitSettings = RateLimitSettings(), quotas: QuotaSettings = QuotaSettings()
    ) {
        self.policy = policy
        self.credentials = credentials
        self.section = section
        self.activatesNewVersions = activatesNewVersions
        self.rateLimits = rateLimits
        self.quotas = quotas
    }
}

extension ConfigurationReader {
    /// `auth:` — roles, the anonymous role and the credentials. A mistake refuses the start:
    /// a gateway that guessed at its access rules would guess wrong in someone's favour.
    mutating func readAuth(_ node: Node) {
        guard case .object(var section) = jsonValue(node) else {
            report(node, "auth must be a mapping (anonymous, apiKeys, jwt, certificates, roles, rateLimits, quotas)")
            return
        }
        // A JWKS file is found beside the configuration, like every other file it names.
        if case .object(var jwt)? = section["jwt"], case .string(let file)? = jwt["jwksFile"], !file.hasPrefix("/") {
            jwt["jwksFile"] = .string("\(directory)/\(file)")
            section["jwt"] = .object(jwt)
        }
        let known: Set<String> = ["anonymous", "apiKeys", "jwt", "certificates", "roles", "activateNewVersions", "rateLimits", "quotas"]
        for key in section.keys.sorted() where !known.contains(key) {
            report(node, "auth.\(key): unknown key (known: \(known.sorted().joined(separator: ", ")))")
        }
        do {
            let policy = try AccessPolicy(auth: section)
            let credentials = try CredentialSettings(auth: section)
            // Every role a credential names exists, and every tenant is a name stores can hold.
            for (index, key) in credentials.apiKeys.enumerated() {
                try policy.checkRoles(key.roles, at: "auth.apiKeys[\(index)].roles")
                try Self.checkTenant(key.tenant, at: "auth.apiKeys[\(index)].tenant")
            }
            for (index, mapping) in credentials.certificates.enumerated() {
                try policy.checkRoles(mapping.roles, at: "auth.certificates[\(index)].roles")
                try Self.checkTenant(mapping.tenant, at: "auth.certificates[\(index)].tenant")
            }
            if let jwt = credentials.jwt { try policy.checkRoles(jwt.defaultRoles, at: "auth.jwt.defaultRoles") }
            var access = AccessSettings(
                policy: policy, credentials: credentials, section: section, rateLimits: try RateLimitSettings(auth: section),
                quotas: try QuotaSettings(auth: section))
            switch section["activateNewVersions"] {
            case nil: break
            case .bool(let automatic)?: access.activatesNewVersions = automatic
            default: report(node, "auth.activateNewVersions must be true or false")
            }
            settings.access = access
        } catch let error as PolicyConfigurationError {
            report(node, error.description)
        } catch let error as AccessConfigurationError {
            report(node, error.description)
        } catch {
            report(node, "\(error)")
        }
    }

    private static func checkTenant(_ tenant: String, at path: String) throws(PolicyConfigurationError) {
        guard Principal.isValidTenant(tenant) else {
            throw PolicyConfigurationError(path, "a tenant is 1 to 128 letters, digits and _ - . : @")
        }
    }

    /// `audit:` — where the trail goes (`file`), whether tool calls are in it (`toolCalls`), and
    /// whether each batch is synced to disk (`syncToDisk`).
    mutating func readAudit(_ node: Node) {
        guard case .object(let section) = jsonValue(node) else {
            report(node, "audit must be a mapping (file, toolCalls, syncToDisk)")
            return
        }
        guard case .string(let file)? = section["file"], !file.isEmpty else {
            report(node, "audit.file must name the audit log file")
            return
        }
        var audit = AuditSettings(file: file.hasPrefix("/") ? file : "\(directory)/\(file)")
        for (key, value) in section.sorted(by: { $0.key < $1.key }) {
            switch (key, value) {
            case ("file", _): break
            case ("toolCalls", .bool(let on)): audit.recordsToolCalls = on
            case ("syncToDisk", .bool(let on)): audit.syncToDisk = on
            case ("toolCalls", _), ("syncToDisk", _): report(node, "audit.\(key) must be true or false")
            default: report(node, "audit.\(key): unknown key (known: file, syncToDisk, toolCalls)")
            }
        }
        settings.audit = audit
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
