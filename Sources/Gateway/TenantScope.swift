/// Where a tenant's data lives in the shared stores: its memory namespaces and event topics
/// carry the tenant's name and a `*`, which no namespace or topic a client writes may hold, so
/// one tenant's names can never reach another's and a pattern cannot cross tenants.
enum TenantScope {
    static let separator: Character = "*"

    static func namespace(_ namespace: String, of tenant: String) -> String {
        "\(tenant)\(separator)\(namespace)"
    }

    static func topic(_ topic: String, of tenant: String?) -> String {
        guard let tenant else { return topic }
        return "\(tenant)\(separator)\(topic)"
    }

    /// The pattern as it must be matched against stored topics: the tenant's prefix, literal.
    static func pattern(_ pattern: String, of tenant: String?) -> String {
        guard let tenant else { return pattern }
        return "\(tenant)\\\(separator)\(pattern)"
    }

    /// The topic as its tenant wrote it.
    static func unscopedTopic(_ stored: String) -> String {
        guard let index = stored.firstIndex(of: separator) else { return stored }
        return String(stored[stored.index(after: index)...])
    }
}
