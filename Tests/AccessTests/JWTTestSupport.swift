import Crypto
import CryptoExtras
import Foundation
import JSONRPC
import JWTKit
import Testing

/// Signing keys made fresh for a test run: one RSA, one P-256 and one Ed25519 key, a jwt-kit
/// collection that signs with them, and the JWKS of their public parts.
struct TestSigningKeys: Sendable {
    static let issuer = "https://login.example.com"
    static let audience = "switchboard"

    let signers: JWTKeyCollection
    let rsaJWK: JSONValue
    let ecJWK: JSONValue
    let edJWK: JSONValue

    /// One set for the whole run: generating an RSA key takes a while in a debug build.
    static var shared: TestSigningKeys {
        get async throws { try await sharedGeneration.value }
    }

    private static let sharedGeneration = Task { try await make() }

    static func make() async throws -> TestSigningKeys {
        let rsa = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        let ec = ES256PrivateKey()
        let ed = Curve25519.Signing.PrivateKey()
        let signers = JWTKeyCollection()
        await signers.add(rsa: rsa, digestAlgorithm: .sha256, kid: "rsa-1")
        await signers.add(ecdsa: ec, kid: "ec-1")
        await signers.add(eddsa: EdDSA.PrivateKey(backing: ed), kid: "ed-1")

        let primitives = try rsa.publicKey.getKeyPrimitives()
        let ecParameters = try #require(ec.parameters)
        return TestSigningKeys(
            signers: signers,
            rsaJWK: ["kty": "RSA", "kid": "rsa-1", "use": "sig", "n": .string(base64URL(primitives.modulus)), "e": .string(base64URL(primitives.publicExponent))],
            ecJWK: ["kty": "EC", "kid": "ec-1", "crv": "P-256", "x": .string(ecParameters.x), "y": .string(ecParameters.y)],
            edJWK: ["kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "alg": "EdDSA", "x": .string(base64URL(ed.publicKey.rawRepresentation))]
        )
    }

    static func jwks(_ keys: JSONValue...) -> String {
        JSONValue.object(["keys": .array(keys)]).encoded
    }

    func sign(_ claims: TestClaims, kid: String) async throws -> String {
        try await signers.sign(claims, kid: JWKIdentifier(string: kid))
    }
}

/// The claims tests put in their tokens; absent ones are left out of the payload.
struct TestClaims: JWTPayload {
    var iss: String? = TestSigningKeys.issuer
    var aud: [String]? = [TestSigningKeys.audience]
    var sub: String? = "alice"
    var exp: Int? = Int(Date().timeIntervalSince1970) + 300
    var nbf: Int?
    var roles: [String]? = ["client"]
    var scope: String?
    var tenant: String? = "acme"

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

func base64URL(_ data: some DataProtocol) -> String {
    Data(data).base64EncodedString()
        .replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// A token built by hand: any header, any payload, the given signature segment.
func handMadeToken(header: String, payload: String, signature: String = "") -> String {
    "\(base64URL(Data(header.utf8))).\(base64URL(Data(payload.utf8))).\(signature)"
}

/// A scratch directory for JWKS files, removed by the caller.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("access-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
