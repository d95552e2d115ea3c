import Access
import JSONRPC
import Testing

/// The `auth` section as users write it (YAML, read into JSON values) and the errors they get.
@Suite struct CredentialConfigurationTests {
    let aliceHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    let botHash = "60303AE22B998861BCE3B28F33EEC1BE758A213C86C93C076DBE9F558C11C752"

    func expectError(_ auth: [String: JSONValue], path: String, message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: AccessConfigurationError(path: path, message: message), sourceLocation: sourceLocation) {
            try parseCredentials(auth: auth)
        }
    }

    @Test func theDocumentedExampleReads() throws {
        let auth: [String: JSONValue] = [
            "anonymous": ["roles": ["viewer"]],
            "roles": ["custom": .object([:])],
            "apiKeys": [
                ["name": "alice", "sha256": .string(aliceHash), "roles": ["client"], "tenant": "acme", "rateLimit": ["perSecond": 50, "burst": 100]],
                ["name": "pricing-bot", "sha256": .string(botHash), "roles": ["agent"], "agentNames": ["pricing"]],
            ],
            "jwt": [
                "issuer": "https://login.example.com", "audiences": ["switchboard"], "jwksFile": "/etc/switchboard/jwks.json",
                "rolesClaim": "roles", "tenantClaim": "tenant",
            ],
            "certificates": [["match": ["commonName": "agent-*"], "roles": ["agent"], "agentNames": ["*"]]],
        ]
        let settings = try parseCredentials(auth: auth)
        #expect(
            settings.apiKeys == [
                APIKeyCredential(name: "alice", sha256: aliceHash, roles: ["client"], tenant: "acme", rateLimit: RateLimit(perSecond: 50, burst: 100)),
                APIKeyCredential(name: "pricing-bot", sha256: botHash.lowercased(), roles: ["agent"], agentNames: ["pricing"]),
            ]
        )
        #expect(settings.jwt == JWTSettings(issuer: "https://login.example.com", audiences: ["switchboard"], jwksFile: "/etc/switchboard/jwks.json"))
        #expect(settings.certificates == [CertificateMapping(field: .commonName, pattern: "agent-*", roles: ["agent"], agentNames: ["*"])])
    }

    @Test func jwtDefaultsAndEveryKey() throws {
        let jwt = try JWTSettings(json: [
            "issuer": "https://id.example.com", "audiences": "gateway", "jwksURL": "https://id.example.com/jwks",
            "nameClaim": "email", "agentNamesClaim": "agents", "leewaySeconds": 5, "defaultRoles": ["viewer"], "refetchIntervalSeconds": 0.5,
        ])
        #expect(jwt.audiences == ["gateway"])
        #expect(jwt.rolesClaim == "roles")
        #expect(jwt.tenantClaim == "tenant")
        #expect(jwt.nameClaim == "email")
        #expect(jwt.agentNamesClaim == "agents")
        #expect(jwt.leewaySeconds == 5)
        #expect(jwt.defaultRoles == ["viewer"])
        #expect(jwt.refetchIntervalSeconds == 0.5)
        let defaults = JWTSettings(issuer: "i", audiences: ["a"])
        #expect(defaults.leewaySeconds == 60 && defaults.refetchIntervalSeconds == 30 && defaults.nameClaim == "sub" && defaults.agentNamesClaim == "agent_names")
    }

    @Test func badHashNamesItsEntry() {
        expectError(
            ["apiKeys": [["name": "a", "sha256": .string(aliceHash)], ["name": "b", "sha256": .string(aliceHash)], ["name": "c", "sha256": "9f86d08"]]],
            path: "auth.apiKeys[1].sha256",
            message: "is the same as auth.apiKeys[0].sha256"
        )
        expectError(
            ["apiKeys": [["name": "a", "sha256": .string(aliceHash)], ["name": "b", "sha256": .string(botHash)], ["name": "c", "sha256": "9f86d08"]]],
            path: "auth.apiKeys[2].sha256",
            message: "must be 64 hex digits (the SHA-256 of the key, not the key itself)"
        )
    }

    @Test func unknownKeysAreNamed() {
        expectError(
            ["apiKeys": [["name": "a", "sha256": .string(aliceHash), "role": ["client"]]]],
            path: "auth.apiKeys[0].role",
            message: "unknown key \"role\"; expected one of: agentNames, name, rateLimit, roles, sha256, tenant"
        )
        #expect(throws: AccessConfigurationError.self) {
            try parseCredentials(auth: ["jwt": ["issuer": "i", "audiences": ["a"], "jwksFile": "f", "audience": "x"]])
        }
    }

    @Test func missingAndWrongTypedValues() {
        expectError(["apiKeys": [["sha256": .string(aliceHash)]]], path: "auth.apiKeys[0].name", message: "is required")
        expectError(["apiKeys": ["alice"]], path: "auth.apiKeys[0]", message: "must be a mapping, not a string")
        expectError(["apiKeys": ["name": "alice"]], path: "auth.apiKeys", message: "must be a list, not a mapping")
        expectError(
            ["apiKeys": [["name": "a", "sha256": .string(aliceHash), "roles": ["client", 7]]]],
            path: "auth.apiKeys[0].roles[1]",
            message: "must be a non-empty string"
        )
        expectError(
            ["apiKeys": [["name": "a", "sha256": .string(aliceHash), "rateLimit": ["perSecond": 0]]]],
            path: "auth.apiKeys[0].rateLimit.perSecond",
            message: "must be greater than 0 and at most 1000000000"
        )
    }

    @Test func jwtNeedsExactlyOneKeySourceAndAUsableURL() {
        expectError(["jwt": ["issuer": "i", "audiences": ["a"]]], path: "auth.jwt", message: "needs jwksFile or jwksURL: where the signing keys are")
        expectError(["jwt": ["issuer": "i", "audiences": ["a"], "jwksFile": "f", "jwksURL": "https://x/"]], path: "auth.jwt", message: "has both jwksFile and jwksURL; keep one")
        expectError(
            ["jwt": ["issuer": "i", "audiences": ["a"], "jwksURL": "ftp://x/jwks"]],
            path: "auth.jwt.jwksURL",
            message: "must be an http:// or https:// URL with a host"
        )
        expectError(["jwt": ["issuer": "i", "audiences": [], "jwksFile": "f"]], path: "auth.jwt.audiences", message: "must list at least one audience")
        expectError(["jwt": ["audiences": ["a"], "jwksFile": "f"]], path: "auth.jwt.issuer", message: "is required")
    }

    @Test func certificateEntryMatchesOnExactlyOneField() {
        expectError(
            ["certificates": [["match": ["commonName": "a", "uri": "b"], "roles": ["agent"]]]],
            path: "auth.certificates[0].match",
            message: "names more than one field; an entry matches on exactly one"
        )
        expectError(
            ["certificates": [["match": ["cn": "a"]]]],
            path: "auth.certificates[0].match.cn",
            message: "unknown key \"cn\"; expected one of: commonName, dnsName, email, subject, uri"
        )
        expectError(
            ["certificates": [["roles": ["agent"]]]],
            path: "auth.certificates[0].match",
            message: "is required: one of subject, commonName, dnsName, uri, email with the value to match"
        )
    }
}
