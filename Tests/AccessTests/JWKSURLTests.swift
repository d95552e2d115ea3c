import Access
import Logging
import NIOPosix
import Testing

/// Signing keys fetched from a JWKS URL: cached, refetched on an unknown kid at most once per
/// interval, kept when a refetch fails.
@Suite struct JWKSURLTests {
    func authenticator(url: String, refetchIntervalSeconds: Double = 30) -> Authenticator {
        Authenticator(
            apiKeys: [],
            jwt: JWTSettings(
                issuer: TestSigningKeys.issuer,
                audiences: [TestSigningKeys.audience],
                jwksURL: url,
                refetchIntervalSeconds: refetchIntervalSeconds
            ),
            certificates: [],
            logger: Logger(label: "test"),
            group: MultiThreadedEventLoopGroup.singleton
        )
    }

    @Test func keysAreFetchedOnceAndCached() async throws {
        let keys = try await TestSigningKeys.shared
        let server = try await JWKSTestServer.start(body: TestSigningKeys.jwks(keys.rsaJWK, keys.edJWK))
        let authenticator = authenticator(url: server.url)
        #expect(try await authenticator.loadSigningKeys() == 2)
        for kid in ["rsa-1", "ed-1", "rsa-1"] {
            #expect(try await authenticator.authenticate(token: try await keys.sign(TestClaims(), kid: kid)).name == "alice")
        }
        #expect(server.fetches == 1)
        try await server.stop()
    }

    @Test func unknownKidRefetchesExactlyOnceWithinTheInterval() async throws {
        let keys = try await TestSigningKeys.shared
        let server = try await JWKSTestServer.start(body: TestSigningKeys.jwks(keys.rsaJWK))
        let authenticator = authenticator(url: server.url)
        try await authenticator.loadSigningKeys()
        #expect(server.fetches == 1)

        // The provider rotates in a new key; the first token signed with it brings it in.
        server.answer(body: TestSigningKeys.jwks(keys.rsaJWK, keys.ecJWK))
        #expect(try await authenticator.authenticate(token: try await keys.sign(TestClaims(), kid: "ec-1")).name == "alice")
        #expect(server.fetches == 2)

        // Within the interval, more unknown kids (concurrent ones too) do not fetch again.
        server.answer(body: TestSigningKeys.jwks(keys.rsaJWK, keys.ecJWK, keys.edJWK))
        let edToken = try await keys.sign(TestClaims(), kid: "ed-1")
        let refusals = await withTaskGroup(of: AccessError?.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    do throws(AccessError) {
                        _ = try await authenticator.authenticate(token: edToken)
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            var refusals: [AccessError] = []
            for await case let refusal? in group { refusals.append(refusal) }
            return refusals
        }
        #expect(refusals == Array(repeating: .unauthenticated(reason: "signing key kid=\"ed-1\" unknown"), count: 5))
        #expect(server.fetches == 2)
        try await server.stop()
    }

    @Test func concurrentTokensWithANewKidShareOneRefetch() async throws {
        let keys = try await TestSigningKeys.shared
        let server = try await JWKSTestServer.start(body: TestSigningKeys.jwks(keys.rsaJWK))
        let authenticator = authenticator(url: server.url, refetchIntervalSeconds: 0)
        try await authenticator.loadSigningKeys()
        server.answer(body: TestSigningKeys.jwks(keys.rsaJWK, keys.ecJWK))
        let token = try await keys.sign(TestClaims(), kid: "ec-1")
        let names = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<4 { group.addTask { try await authenticator.authenticate(token: token).name } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(names == Array(repeating: "alice", count: 4))
        #expect(server.fetches == 2)
        try await server.stop()
    }

    @Test func failedRefetchKeepsTheKeysThereWere() async throws {
        let keys = try await TestSigningKeys.shared
        let server = try await JWKSTestServer.start(body: TestSigningKeys.jwks(keys.rsaJWK))
        let authenticator = authenticator(url: server.url, refetchIntervalSeconds: 0)
        try await authenticator.loadSigningKeys()

        server.answer(.internalServerError, body: "{}")
        let unknown = try await keys.sign(TestClaims(), kid: "ec-1")
        await #expect(throws: AccessError.unauthenticated(reason: "signing key kid=\"ec-1\" unknown")) {
            try await authenticator.authenticate(token: unknown)
        }
        #expect(server.fetches == 2)
        #expect(try await authenticator.authenticate(token: try await keys.sign(TestClaims(), kid: "rsa-1")).name == "alice")

        // A document without usable keys is a failure too.
        server.answer(body: #"{"keys":[{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}]}"#)
        await #expect(throws: JWKSLoadError("the JWKS has no usable signing key (RS256, ES256, EdDSA, each with a kid)")) {
            try await authenticator.loadSigningKeys()
        }
        #expect(try await authenticator.authenticate(token: try await keys.sign(TestClaims(), kid: "rsa-1")).name == "alice")
        try await server.stop()
    }

    @Test func httpsURLIsFetchedOverTLS() async throws {
        // The test server speaks plain HTTP, so the TLS handshake must fail: the request never
        // reaches it as HTTP, and the failure comes back as an error, not a hang.
        let server = try await JWKSTestServer.start(body: "{}")
        let authenticator = authenticator(url: "https://127.0.0.1:\(server.port)/jwks.json")
        await #expect {
            try await authenticator.loadSigningKeys()
        } throws: { error in
            (error as? JWKSLoadError)?.message.hasPrefix("request failed:") == true
        }
        #expect(server.fetches == 0)
        try await server.stop()
    }

    @Test func oversizeAndFailingAnswersAreReported() async throws {
        let server = try await JWKSTestServer.start(body: String(repeating: " ", count: 1024 * 1024 + 1))
        let authenticator = authenticator(url: server.url)
        await #expect(throws: JWKSLoadError("the JWKS is larger than 1048576 bytes")) {
            try await authenticator.loadSigningKeys()
        }
        server.answer(.notFound, body: "")
        await #expect(throws: JWKSLoadError("answered 404 Not Found")) {
            try await authenticator.loadSigningKeys()
        }
        try await server.stop()
        await #expect(throws: JWKSLoadError.self) {
            try await authenticator.loadSigningKeys()
        }
    }
}
