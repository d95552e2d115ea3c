/// The JWS algorithms the gateway accepts, each bound to the one kind of key that may verify it.
/// Everything else is refused by name: `none`, the HMAC family (whose "key" would be a public
/// key in the classic confusion attack), PS*, and the larger curves.
enum JWTSigningAlgorithm: String, Sendable, CaseIterable {
    case rs256 = "RS256"
    case es256 = "ES256"
    case edDSA = "EdDSA"

    static var acceptedNames: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The algorithm a JWK's key type and curve verify, when it is one of ours.
    init?(keyType: String, curve: String?) {
        switch (keyType, curve) {
        case ("RSA", _): self = .rs256
        case ("EC", "P-256"): self = .es256
        case ("OKP", "Ed25519"): self = .edDSA
        default: return nil
        }
    }
}
