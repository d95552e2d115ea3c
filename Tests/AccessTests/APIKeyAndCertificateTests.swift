import Access
import JSONRPC
import Logging
import NIOPosix
import Testing
import Transport

@Suite struct APIKeyTests {
    let alice = APIKeyCredential(
        name: "alice",
        sha256: Authenticator.sha256Hex("sk-alice-0123456789"),
        roles: ["client"],
        tenant: "acme",
        rateLimit: RateLimit(perSecond: 50, burst: 100)
    )
    let bot = APIKeyCredential(name: "pricing-bot", sha256: Authenticator.sha256Hex("sk-bot.with.dots"), roles: ["agent"], agentNames: ["pricing"])

    var authenticator: Authenticator {
        Authenticator(apiKeys: [alice, bot], jwt: nil, certificates: [], logger: Logger(label: "test"), group: MultiThreadedEventLoopGroup.singleton)
    }

    @Test func hashIsLowercaseHexOfTheKeysSHA256() {
        #expect(Authenticator.sha256Hex("test") == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    }

    @Test func keyIsAcceptedByItsHashAndCarriesItsEntry() async throws {
        let principal = try await authenticator.authenticate(token: "sk-alice-0123456789")
        #expect(principal == Principal(name: "alice", roles: ["client"], tenant: "acme", proof: .apiKey, rateLimit: RateLimit(perSecond: 50, burst: 100)))
    }

    @Test func keyThatLooksLikeAJWTStillWorksWhenNoJWTIsConfigured() async throws {
        let principal = try await authenticator.authenticate(token: "sk-bot.with.dots")
        #expect(principal.name == "pricing-bot")
        #expect(principal.agentNames == ["pricing"])
    }

    @Test func unknownKeyIsRefusedWithoutRepeatingIt() async {
        let key = "sk-mallory-9876543210"
        await #expect(throws: AccessError.unauthenticated(reason: "unknown API key")) {
            try await authenticator.authenticate(token: key)
        }
    }

    @Test func emptyAndOversizeCredentialsAreRefused() async {
        await #expect(throws: AccessError.unauthenticated(reason: "the credential is empty")) {
            try await authenticator.authenticate(token: "")
        }
        await #expect(throws: AccessError.unauthenticated(reason: "the credential is longer than 16384 bytes")) {
            try await authenticator.authenticate(token: String(repeating: "k", count: 16385))
        }
    }
}

@Suite struct CertificateMappingTests {
    let mappings = [
        CertificateMapping(field: .uri, pattern: "spiffe://example.org/ops/*", name: "ops", roles: ["operator"]),
        CertificateMapping(field: .commonName, pattern: "agent-*", roles: ["agent"], tenant: "acme", agentNames: ["*"]),
        CertificateMapping(field: .subject, pattern: "CN=console,O=Example", roles: ["viewer"]),
    ]

    var authenticator: Authenticator {
        Authenticator(apiKeys: [], jwt: nil, certificates: mappings, logger: Logger(label: "test"), group: MultiThreadedEventLoopGroup.singleton)
    }

    @Test func commonNameGlobMapsToAPrincipalNamedByTheMatchedValue() {
        let identity = TLSPeerIdentity(subject: "CN=agent-7,O=Example", commonNames: ["agent-7"])
        #expect(authenticator.principal(for: identity) == Principal(name: "agent-7", roles: ["agent"], tenant: "acme", proof: .certificate, agentNames: ["*"]))
    }

    @Test func globIsAnchoredAtBothEnds() {
        #expect(authenticator.principal(for: TLSPeerIdentity(subject: "CN=my-agent-7", commonNames: ["my-agent-7"])) == nil)
        #expect(authenticator.principal(for: TLSPeerIdentity(subject: "CN=agent", commonNames: ["agent"])) == nil)
    }

    @Test func commonNameIsMatchedPerAttributeNotInsideTheSubject() {
        // An O attribute that merely contains "CN=agent-1" must not pass for a common name.
        let identity = TLSPeerIdentity(subject: #"CN=intruder,O=CN\=agent-1"#, commonNames: ["intruder"])
        #expect(authenticator.principal(for: identity) == nil)
    }

    @Test func firstMatchingEntryWinsAndItsNameIsUsed() {
        let identity = TLSPeerIdentity(subject: "CN=agent-9", commonNames: ["agent-9"], uris: ["spiffe://example.org/ops/deployer"])
        #expect(authenticator.principal(for: identity)?.name == "ops")
    }

    @Test func exactSubjectMatch() {
        #expect(authenticator.principal(for: TLSPeerIdentity(subject: "CN=console,O=Example"))?.roles == ["viewer"])
        #expect(authenticator.principal(for: TLSPeerIdentity(subject: "CN=console,O=Example2")) == nil)
    }

    @Test func wildcardsInTheMiddleAndManyOfThem() {
        let mapping = CertificateMapping(field: .dnsName, pattern: "*.agents.*.example.com", roles: [])
        #expect(mapping.matchedValue(in: TLSPeerIdentity(subject: "", dnsNames: ["x", "a.agents.eu.example.com"])) == "a.agents.eu.example.com")
        #expect(mapping.matchedValue(in: TLSPeerIdentity(subject: "", dnsNames: ["a.agents.example.com"])) == nil)
        #expect(CertificateMapping(field: .email, pattern: "*", roles: []).matchedValue(in: TLSPeerIdentity(subject: "", emailAddresses: [""])) == "")
    }
}
