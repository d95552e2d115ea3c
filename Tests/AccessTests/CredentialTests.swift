import Access
import Foundation
import JSONRPC
import JWTKit
import Logging
import NIOPosix
import Testing

/// Bearer JWTs verified against a JWKS file: what is accepted, what is refused and why.
@Suite final class JWTCredentialTests: Sendable {
    let keys: TestSigningKeys
    let directory: URL
    let jwksFile: URL

    init() async throws {
        keys = try await TestSigningKeys.shared
        directory = try temporaryDirectory()
        jwksFile = directory.appendingPathComponent("jwks.json")
        try TestSigningKeys.jwks(keys.rsaJWK, keys.ecJWK, keys.edJWK).write(to: jwksFile, atomically: true, encoding: .utf8)
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }

    func authenticator(_ configure: (inout JWTSettings) -> Void = { _ in }) async throws -> Authenticator {
        var settings = JWTSettings(issuer: TestSigningKeys.issuer, audiences: ["other-service", TestSigningKeys.audience], jwksFile: jwksFile.path)
        configure(&settings)
        let authenticator = Authenticator(
            apiKeys: [], jwt: settings, certificates: [], logger: Logger(label: "test"), group: MultiThreadedEventLoopGroup.singleton
        )
        try await authenticator.loadSigningKeys()
        return authenticator
    }

    /// Expects a refusal whose reason contains `expected` and nothing of the token.
    func expectRefusal(_ authenticator: Authenticator, _ token: String, reason expected: String, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            let principal = try await authenticator.authenticate(token: token)
            Issue.record("accepted as \(principal); expected a refusal with \"\(expected)\"", sourceLocation: sourceLocation)
        } catch {
            guard case .unauthenticated(let reason) = error else {
                Issue.record("refused with \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(reason.contains(expected), "reason: \(reason)", sourceLocation: sourceLocation)
            #expect(!reason.contains(token), sourceLocation: sourceLocation)
            for segment in token.split(separator: ".") where segment.count > 8 {
                #expect(!reason.contains(segment), "reason repeats part of the token: \(reason)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func rsaTokenIsAcceptedWithRolesTenantAndNameFromItsClaims() async throws {
        let authenticator = try await authenticator()
        let claims = TestClaims(roles: ["client", "viewer"])
        let principal = try await authenticator.authenticate(token: try await keys.sign(claims, kid: "rsa-1"))
        #expect(principal.name == "alice")
        #expect(principal.roles == ["client", "viewer"])
        #expect(principal.tenant == "acme")
        #expect(principal.proof == .jwt)
        #expect(principal.expiresAt == claims.exp.map(Double.init))
    }

    @Test func es256AndEdDSATokensAreAccepted() async throws {
        let authenticator = try await authenticator()
        for kid in ["ec-1", "ed-1"] {
            let principal = try await authenticator.authenticate(token: try await keys.sign(TestClaims(), kid: kid))
            #expect(principal.name == "alice", "kid \(kid)")
        }
    }

    @Test func rolesClaimMayBeASpaceSeparatedStringAndClaimNamesAreConfigurable() async throws {
        let authenticator = try await authenticator {
            $0.rolesClaim = "scope"
            $0.tenantClaim = "iss"
            $0.nameClaim = "tenant"
        }
        let principal = try await authenticator.authenticate(token: try await keys.sign(TestClaims(scope: "operator  viewer"), kid: "ec-1"))
        #expect(principal.roles == ["operator", "viewer"])
        #expect(principal.tenant == TestSigningKeys.issuer)
        #expect(principal.name == "acme")
    }

    @Test func dottedRolesClaimReachesIntoNestedObjects() async throws {
        struct NestedRoles: JWTPayload {
            struct Access: Codable { var roles: [String] }
            var iss = TestSigningKeys.issuer
            var aud = TestSigningKeys.audience
            var sub = "svc-7"
            var exp = Int(Date().timeIntervalSince1970) + 300
            var realm_access = Access(roles: ["operator"])
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        let authenticator = try await authenticator { $0.rolesClaim = "realm_access.roles" }
        let principal = try await authenticator.authenticate(token: try await keys.signers.sign(NestedRoles(), kid: JWKIdentifier(string: "ed-1")))
        #expect(principal.roles == ["operator"])
        #expect(principal.name == "svc-7")
    }

    @Test func onlyPublicSigningKeysOfAcceptedKindsAreLoaded() async throws {
        let hmac: JSONValue = ["kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"]
        guard case .object(var encryption) = keys.rsaJWK else { return }
        encryption["kid"] = "rsa-enc"
        encryption["use"] = "enc"
        let p384: JSONValue = ["kty": "EC", "kid": "ec-384", "crv": "P-384", "x": "AAAA", "y": "AAAA"]
        try TestSigningKeys.jwks(hmac, .object(encryption), p384, keys.rsaJWK).write(to: jwksFile, atomically: true, encoding: .utf8)
        let authenticator = Authenticator(
            apiKeys: [], jwt: JWTSettings(issuer: TestSigningKeys.issuer, audiences: [TestSigningKeys.audience], jwksFile: jwksFile.path),
            certificates: [], logger: Logger(label: "test"), group: MultiThreadedEventLoopGroup.singleton
        )
        #expect(try await authenticator.loadSigningKeys() == 1)
    }

    @Test func tokenWithoutRolesGetsTheDefaultRolesAndTenant() async throws {
        let authenticator = try await authenticator { $0.defaultRoles = ["viewer"] }
        let principal = try await authenticator.authenticate(token: try await keys.sign(TestClaims(roles: nil, tenant: nil), kid: "rsa-1"))
        #expect(principal.roles == ["viewer"])
        #expect(principal.tenant == "default")
    }

    @Test func expiredTokenIsRefusedWithItsExpiry() async throws {
        let authenticator = try await authenticator()
        let expiry = Int(Date().timeIntervalSince1970) - 120
        let token = try await keys.sign(TestClaims(exp: expiry), kid: "rsa-1")
        await expectRefusal(authenticator, token, reason: "token expired at \(Date(timeIntervalSince1970: Double(expiry)).ISO8601Format())")
    }

    @Test func tokenExpiredWithinTheLeewayIsAccepted() async throws {
        let authenticator = try await authenticator()
        let token = try await keys.sign(TestClaims(exp: Int(Date().timeIntervalSince1970) - 30), kid: "rsa-1")
        #expect(try await authenticator.authenticate(token: token).name == "alice")
    }

    @Test func tokenWithoutExpiryIsRefused() async throws {
        let authenticator = try await authenticator()
        await expectRefusal(authenticator, try await keys.sign(TestClaims(exp: nil), kid: "rsa-1"), reason: "token has no exp claim")
    }

    @Test func notBeforeInTheFutureIsRefusedButAcceptedWithinTheLeeway() async throws {
        let authenticator = try await authenticator()
        let now = Int(Date().timeIntervalSince1970)
        await expectRefusal(authenticator, try await keys.sign(TestClaims(nbf: now + 120), kid: "rsa-1"), reason: "token not valid before")
        #expect(try await authenticator.authenticate(token: try await keys.sign(TestClaims(nbf: now + 30), kid: "rsa-1")).name == "alice")
    }

    @Test func wrongAudienceIsRefused() async throws {
        let authenticator = try await authenticator()
        let token = try await keys.sign(TestClaims(aud: ["billing"]), kid: "rsa-1")
        await expectRefusal(authenticator, token, reason: "audience \"billing\" not accepted")
    }

    @Test func wrongIssuerIsRefused() async throws {
        let authenticator = try await authenticator()
        let token = try await keys.sign(TestClaims(iss: "https://evil.example.com"), kid: "rsa-1")
        await expectRefusal(authenticator, token, reason: "issuer \"https://evil.example.com\" not accepted")
    }

    @Test func tokenWithoutSubjectIsRefused() async throws {
        let authenticator = try await authenticator()
        await expectRefusal(authenticator, try await keys.sign(TestClaims(sub: nil), kid: "rsa-1"), reason: "token has no sub claim")
    }

    @Test func tamperedPayloadFailsTheSignature() async throws {
        let authenticator = try await authenticator()
        let token = try await keys.sign(TestClaims(roles: ["viewer"]), kid: "rsa-1")
        let parts = token.split(separator: ".")
        let forged = try await keys.sign(TestClaims(roles: ["admin"]), kid: "rsa-1").split(separator: ".")[1]
        await expectRefusal(authenticator, "\(parts[0]).\(forged).\(parts[2])", reason: "signature does not verify")
    }

    @Test func unknownKidIsRefusedUntilTheJWKSFileGainsTheKey() async throws {
        try TestSigningKeys.jwks(keys.rsaJWK).write(to: jwksFile, atomically: true, encoding: .utf8)
        let authenticator = try await authenticator { $0.refetchIntervalSeconds = 0 }
        let token = try await keys.sign(TestClaims(), kid: "ec-1")
        await expectRefusal(authenticator, token, reason: "signing key kid=\"ec-1\" unknown")

        try TestSigningKeys.jwks(keys.rsaJWK, keys.ecJWK).write(to: jwksFile, atomically: true, encoding: .utf8)
        #expect(try await authenticator.authenticate(token: token).name == "alice")
    }

    @Test func algNoneIsRefused() async throws {
        let authenticator = try await authenticator()
        let exp = Int(Date().timeIntervalSince1970) + 300
        let token = handMadeToken(
            header: #"{"alg":"none","kid":"rsa-1"}"#,
            payload: #"{"iss":"\#(TestSigningKeys.issuer)","aud":"switchboard","sub":"mallory","exp":\#(exp),"roles":["admin"]}"#
        )
        await expectRefusal(authenticator, token, reason: "algorithm none is not accepted")
    }

    @Test func hs256IsRefusedEvenWhenItNamesAKnownKey() async throws {
        let authenticator = try await authenticator()
        let hmac = JWTKeyCollection()
        await hmac.add(hmac: HMACKey(from: String(repeating: "s", count: 32)), digestAlgorithm: .sha256, kid: "rsa-1")
        let token = try await hmac.sign(TestClaims(roles: ["admin"]), kid: "rsa-1")
        await expectRefusal(authenticator, token, reason: "algorithm \"HS256\" is not accepted")
    }

    @Test func algorithmMustMatchTheKeyTheKidNames() async throws {
        let authenticator = try await authenticator()
        let impostor = JWTKeyCollection()
        await impostor.add(ecdsa: ES256PrivateKey(), kid: "rsa-1")
        let token = try await impostor.sign(TestClaims(), kid: "rsa-1")
        await expectRefusal(authenticator, token, reason: "algorithm ES256 does not match signing key kid=\"rsa-1\"")
    }

    @Test func keyFromAnotherSignerWithAKnownKidFailsTheSignature() async throws {
        let authenticator = try await authenticator()
        let impostor = JWTKeyCollection()
        await impostor.add(ecdsa: ES256PrivateKey(), kid: "ec-1")
        await expectRefusal(authenticator, try await impostor.sign(TestClaims(), kid: "ec-1"), reason: "signature does not verify")
    }

    @Test func jwtIsRefusedWhenNoJWTIsConfigured() async throws {
        let authenticator = Authenticator(apiKeys: [], jwt: nil, certificates: [], logger: Logger(label: "test"), group: MultiThreadedEventLoopGroup.singleton)
        await expectRefusal(authenticator, try await keys.sign(TestClaims(), kid: "rsa-1"), reason: "no auth.jwt is configured")
    }
}
