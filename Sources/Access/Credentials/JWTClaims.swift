#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSONRPC

/// The payload of a JWT whose signature verified, read generically: which claims carry the
/// roles, tenant and name is configuration, not a Codable type.
struct JWTClaims {
    let members: [String: JSONValue]

    /// Checks issuer, audience, expiry and not-before against `settings` at `now` (seconds since
    /// 1970), then maps the claims to a principal.
    func principal(settings: JWTSettings, now: Double) throws(AccessError) -> Principal {
        guard let issuer = members["iss"]?.resolved.stringValue else {
            throw .unauthenticated(reason: "token has no iss claim")
        }
        guard issuer == settings.issuer else {
            throw .unauthenticated(reason: "issuer \(RefusalText.quoted(issuer)) not accepted")
        }
        let audiences = try audiences()
        guard audiences.contains(where: settings.audiences.contains) else {
            let named = audiences.prefix(3).map(RefusalText.quoted).joined(separator: ", ")
            throw .unauthenticated(reason: "audience \(named)\(audiences.count > 3 ? ", …" : "") not accepted")
        }
        guard let expiry = try time("exp") else { throw .unauthenticated(reason: "token has no exp claim") }
        guard now <= expiry + settings.leewaySeconds else {
            throw .unauthenticated(reason: "token expired at \(Self.format(expiry))")
        }
        if let notBefore = try time("nbf"), now + settings.leewaySeconds < notBefore {
            throw .unauthenticated(reason: "token not valid before \(Self.format(notBefore))")
        }
        guard let subject = members["sub"]?.resolved.stringValue, !subject.isEmpty else {
            throw .unauthenticated(reason: "token has no sub claim")
        }
        let name = claim(settings.nameClaim)?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? subject
        let tenant: String
        switch claim(settings.tenantClaim) {
        case nil: tenant = Principal.defaultTenant
        case .string(let value) where !value.isEmpty: tenant = value
        default: throw .unauthenticated(reason: "claim \(settings.tenantClaim) must be a non-empty string")
        }
        return Principal(
            name: name,
            roles: try names(settings.rolesClaim) ?? settings.defaultRoles,
            tenant: tenant,
            proof: .jwt,
            agentNames: try names(settings.agentNamesClaim) ?? [],
            expiresAt: expiry
        )
    }

    /// `aud` is one string or a list of them (RFC 7519, 4.1.3).
    private func audiences() throws(AccessError) -> [String] {
        switch members["aud"]?.resolved {
        case nil: throw .unauthenticated(reason: "token has no aud claim")
        case .string(let audience): return [audience]
        case .array(let elements):
            let strings = elements.compactMap { $0.resolved.stringValue }
            guard strings.count == elements.count, !strings.isEmpty else {
                throw .unauthenticated(reason: "claim aud must be a string or a list of strings")
            }
            return strings
        default: throw .unauthenticated(reason: "claim aud must be a string or a list of strings")
        }
    }

    /// A NumericDate claim, nil when absent.
    private func time(_ name: String) throws(AccessError) -> Double? {
        switch members[name]?.resolved {
        case nil: return nil
        case .integer(let seconds): return Double(seconds)
        case .double(let seconds) where seconds.isFinite: return seconds
        default: throw .unauthenticated(reason: "claim \(name) must be a number of seconds since 1970")
        }
    }

    /// A list of names: a JSON list of strings, or one space-separated string (as `scope` is).
    private func names(_ claimName: String) throws(AccessError) -> [String]? {
        switch claim(claimName) {
        case nil: return nil
        case .string(let text): return text.split(separator: " ").map(String.init)
        case .array(let elements):
            let strings = elements.compactMap { $0.resolved.stringValue }
            guard strings.count == elements.count else {
                throw .unauthenticated(reason: "claim \(claimName) must be a list of strings or a space-separated string")
            }
            return strings
        default:
            throw .unauthenticated(reason: "claim \(claimName) must be a list of strings or a space-separated string")
        }
    }

    /// A claim by name; a dotted name (`realm_access.roles`) that is not itself a claim reaches
    /// into nested objects, as some identity providers nest their roles.
    private func claim(_ name: String) -> JSONValue? {
        if let value = members[name]?.resolved { return value == .null ? nil : value }
        guard name.contains(".") else { return nil }
        var current: JSONValue? = .object(members)
        for component in name.split(separator: ".") {
            current = current?.resolved.objectValue?[String(component)]
        }
        let value = current?.resolved
        return value == .null ? nil : value
    }

    private static func format(_ seconds: Double) -> String {
        Date(timeIntervalSince1970: seconds).ISO8601Format()
    }
}
