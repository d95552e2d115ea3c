import JSONRPC
import JWTKit
import Logging
import NIOCore

/// The signing keys of one JWKS document, as jwt-kit verifiers, indexed by `kid`.
///
/// Only public signing keys of the accepted algorithms are kept, each rebuilt from its public
/// members alone (a JWKS that carries private parts does not turn into signing keys here) and
/// pinned to its algorithm, so a token cannot choose how its key is used.
struct SigningKeySet: Sendable {
    let algorithms: [String: JWTSigningAlgorithm]
    let collection: JWTKeyCollection

    static let empty = SigningKeySet(algorithms: [:], collection: JWTKeyCollection())

    /// Reads a JWKS document. Keys that are not usable are skipped and logged; a document with
    /// none at all is an error, so a broken answer never replaces keys that work.
    static func parse(_ document: ByteBuffer, logger: Logger) async throws(JWKSLoadError) -> SigningKeySet {
        guard let json = try? RawJSON(validating: document), let keys = json.decoded()["keys"]?.resolved else {
            throw JWKSLoadError("the JWKS is not a JSON object")
        }
        guard case .array(let entries) = keys else { throw JWKSLoadError("the JWKS has no \"keys\" list") }
        let collection = JWTKeyCollection()
        var algorithms: [String: JWTSigningAlgorithm] = [:]
        for (index, entry) in entries.enumerated() {
            switch usableKey(entry.resolved) {
            case .failure(let reason):
                logger.debug("JWKS key \(index) skipped: \(reason)")
            case .success(let (kid, algorithm, publicJWK)):
                do {
                    try await collection.add(jwksJSON: JSONValue.object(["keys": [publicJWK]]).encoded)
                    algorithms[kid] = algorithm
                } catch {
                    logger.notice("JWKS key kid=\(RefusalText.quoted(kid)) skipped: jwt-kit refused it: \(error)")
                }
            }
        }
        guard !algorithms.isEmpty else {
            throw JWKSLoadError("the JWKS has no usable signing key (\(JWTSigningAlgorithm.acceptedNames), each with a kid)")
        }
        return SigningKeySet(algorithms: algorithms, collection: collection)
    }

    private struct Skipped: Error, CustomStringConvertible { let description: String }

    /// The key's id, its algorithm and the JWK rebuilt from its public members.
    private static func usableKey(_ entry: JSONValue) -> Result<(String, JWTSigningAlgorithm, JSONValue), Skipped> {
        guard let members = entry.objectValue else { return .failure(Skipped(description: "not an object")) }
        func string(_ name: String) -> String? { members[name]?.resolved.stringValue }
        guard let kid = string("kid"), !kid.isEmpty else { return .failure(Skipped(description: "no kid")) }
        guard let keyType = string("kty"), let algorithm = JWTSigningAlgorithm(keyType: keyType, curve: string("crv")) else {
            let description = "kid=\(RefusalText.quoted(kid)): key type or curve is not one of RSA, EC P-256, OKP Ed25519"
            return .failure(Skipped(description: description))
        }
        if let use = string("use"), use != "sig" {
            return .failure(Skipped(description: "kid=\(RefusalText.quoted(kid)): use is \(RefusalText.quoted(use)), not sig"))
        }
        if let declared = string("alg"), declared != algorithm.rawValue {
            return .failure(Skipped(description: "kid=\(RefusalText.quoted(kid)): alg \(RefusalText.quoted(declared)) is not accepted"))
        }
        let publicMembers: [String] =
            switch algorithm {
            case .rs256: ["n", "e"]
            case .es256: ["crv", "x", "y"]
            case .edDSA: ["crv", "x"]
            }
        var jwk: [String: JSONValue] = ["kty": .string(keyType), "kid": .string(kid), "alg": .string(algorithm.rawValue)]
        for name in publicMembers {
            guard let value = string(name) else { return .failure(Skipped(description: "kid=\(RefusalText.quoted(kid)): no \(name)")) }
            jwk[name] = .string(value)
        }
        return .success((kid, algorithm, .object(jwk)))
    }
}
