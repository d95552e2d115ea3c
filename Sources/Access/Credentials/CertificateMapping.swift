import JSONRPC
import Transport

/// Maps a verified TLS client certificate to a principal (`auth.certificates[]`): the entry
/// matches one field of the certificate against an exact value or a `*` pattern.
public struct CertificateMapping: Sendable, Hashable {
    /// The certificate field an entry matches on.
    public enum Field: String, Sendable, Hashable, CaseIterable {
        /// The whole subject as an RFC 2253 string (`CN=agent-7,O=Example`).
        case subject
        /// Any one of the subject's common names.
        case commonName
        /// Any one DNS subject alternative name.
        case dnsName
        /// Any one URI subject alternative name (a SPIFFE ID, say).
        case uri
        /// Any one email subject alternative name.
        case email
    }

    public var field: Field
    /// An exact value, or a pattern where `*` matches any run of characters.
    public var pattern: String
    /// The principal's name; nil names it by the value that matched.
    public var name: String?
    public var roles: [String]
    public var tenant: String
    public var agentNames: [String]

    public init(
        field: Field,
        pattern: String,
        name: String? = nil,
        roles: [String],
        tenant: String = Principal.defaultTenant,
        agentNames: [String] = []
    ) {
        self.field = field
        self.pattern = pattern
        self.name = name
        self.roles = roles
        self.tenant = tenant
        self.agentNames = agentNames
    }

    /// The first value of the certificate's `field` that the pattern matches.
    public func matchedValue(in identity: TLSPeerIdentity) -> String? {
        let candidates: [String] =
            switch field {
            case .subject: [identity.subject]
            case .commonName: identity.commonNames
            case .dnsName: identity.dnsNames
            case .uri: identity.uris
            case .email: identity.emailAddresses
            }
        let pattern = WildcardPattern(pattern)
        return candidates.first { pattern.matches($0) }
    }

    /// The principal for `identity` when this entry matches it.
    public func principal(for identity: TLSPeerIdentity) -> Principal? {
        guard let value = matchedValue(in: identity) else { return nil }
        return Principal(name: name ?? value, roles: roles, tenant: tenant, proof: .certificate, agentNames: agentNames)
    }
}

extension CertificateMapping {
    static let configurationKeys: Set<String> = ["match", "name", "roles", "tenant", "agentNames"]

    /// Reads one `auth.certificates[]` entry: `{match: {commonName: "agent-*"}, roles: [agent]}`.
    public init(json: JSONValue, path: String = "auth.certificates[]") throws(AccessConfigurationError) {
        let object = try ConfigurationObject(json, path: path, allowedKeys: Self.configurationKeys)
        guard let matchValue = object.value("match") else {
            throw AccessConfigurationError(
                path: object.path("match"),
                message: "is required: one of \(Field.allCases.map(\.rawValue).joined(separator: ", ")) with the value to match"
            )
        }
        let match = try ConfigurationObject(matchValue, path: object.path("match"), allowedKeys: Set(Field.allCases.map(\.rawValue)))
        var chosen: (Field, String)?
        for field in Field.allCases {
            guard let value = try match.string(field.rawValue) else { continue }
            guard chosen == nil else {
                throw AccessConfigurationError(path: match.path, message: "names more than one field; an entry matches on exactly one")
            }
            chosen = (field, value)
        }
        guard let (field, pattern) = chosen else {
            throw AccessConfigurationError(
                path: match.path,
                message: "must name one of \(Field.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        self.init(
            field: field,
            pattern: pattern,
            name: try object.string("name"),
            roles: try object.strings("roles") ?? [],
            tenant: try object.string("tenant") ?? Principal.defaultTenant,
            agentNames: try object.strings("agentNames") ?? []
        )
    }
}
