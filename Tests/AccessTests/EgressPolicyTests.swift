import Access
import JSONRPC
import NIOCore
import Testing

private func address(_ text: String) -> IPAddress {
    guard let address = IPAddress(text) else { fatalError("not an address: \(text)") }
    return address
}

/// The refusal of a connection to a literal address, or nil.
private func refusal(_ policy: EgressPolicy, _ text: String) -> EgressRefusal? {
    policy.check(host: text, addresses: [address(text)], purpose: "callback")
}

@Suite("Egress: what is refused by default")
struct EgressDefaultsTests {
    static let refused: [(String, AddressCategory)] = [
        ("127.0.0.1", .loopback), ("127.255.0.9", .loopback), ("::1", .loopback),
        ("10.1.2.3", .private), ("172.16.0.1", .private), ("172.31.255.255", .private), ("192.168.1.1", .private),
        ("fc00::1", .private), ("fd12:3456::1", .private),
        ("169.254.1.1", .linkLocal), ("fe80::1", .linkLocal), ("febf::1", .linkLocal),
        ("169.254.169.254", .metadata), ("fd00:ec2::254", .metadata),
        ("0.0.0.0", .unspecified), ("0.1.2.3", .unspecified), ("::", .unspecified),
        ("100.64.0.1", .sharedAddressSpace), ("100.127.255.254", .sharedAddressSpace),
        ("224.0.0.1", .multicast), ("239.255.255.250", .multicast), ("ff02::1", .multicast),
        ("255.255.255.255", .broadcast), ("240.0.0.1", .reserved),
    ]

    @Test(arguments: refused)
    func isRefusedAndNamesItsClass(_ text: String, _ category: AddressCategory) throws {
        #expect(AddressClassification(address(text)).category == category)
        let refused = try #require(refusal(EgressPolicy(), text))
        #expect(refused.reason == "\(category.refusal) (egress.allow does not list it)")
    }

    @Test func theRefusalReadsAsASentence() throws {
        let refused = try #require(refusal(EgressPolicy(), "127.0.0.1"))
        #expect(refused.description == "callback to 127.0.0.1 refused: loopback addresses are not allowed (egress.allow does not list it)")
    }

    @Test(arguments: ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "169.255.0.1", "2606:4700:4700::1111", "2001:4860::8888"])
    func publicAddressesAreAllowed(_ text: String) {
        #expect(AddressClassification(address(text)).category == .public)
        #expect(refusal(EgressPolicy(), text) == nil)
    }

    @Test func publicAddressesAreRefusedWhenDenyPublicIsSet() throws {
        let refused = try #require(refusal(EgressPolicy(denyPublic: true), "8.8.8.8"))
        #expect(refused.reason == "public addresses are not allowed (egress.denyPublic is true; egress.allow does not list it)")
    }
}

@Suite("Egress: IPv4 inside IPv6")
struct EgressEmbeddedIPv4Tests {
    static let embedded: [(String, AddressCategory, IPv4Embedding)] = [
        ("::ffff:127.0.0.1", .loopback, .mapped),
        ("::ffff:7f00:1", .loopback, .mapped),
        ("::ffff:10.0.0.1", .private, .mapped),
        ("::ffff:169.254.169.254", .metadata, .mapped),
        ("::ffff:0.0.0.0", .unspecified, .mapped),
        ("::ffff:255.255.255.255", .broadcast, .mapped),
        ("::127.0.0.1", .loopback, .compatible),
        ("::192.168.0.1", .private, .compatible),
        ("64:ff9b::a9fe:a9fe", .metadata, .nat64),
        ("2002:7f00:1::", .loopback, .sixToFour),
    ]

    @Test(arguments: embedded)
    func takesTheCategoryOfTheIPv4Address(_ text: String, _ category: AddressCategory, _ kind: IPv4Embedding) throws {
        let classification = AddressClassification(address(text))
        #expect(classification.category == category)
        #expect(classification.embedded?.kind == kind)
        #expect(refusal(EgressPolicy(), text) != nil)
    }

    @Test func theRefusalNamesTheIPv4Address() throws {
        let refused = try #require(refusal(EgressPolicy(), "::ffff:127.0.0.1"))
        #expect(
            refused.description
                == "callback to ::ffff:127.0.0.1 refused: loopback addresses are not allowed (::ffff:127.0.0.1 is the IPv4-mapped form of 127.0.0.1; egress.allow does not list it)"
        )
    }

    @Test func aMappedPublicAddressIsAllowed() {
        #expect(refusal(EgressPolicy(), "::ffff:8.8.8.8") == nil)
    }

    @Test func listingTheIPv4AddressAllowsItsMappedForm() {
        let policy = EgressPolicy(allow: [EgressRule("127.0.0.1")!])
        #expect(refusal(policy, "::ffff:127.0.0.1") == nil)
        #expect(refusal(policy, "::1") != nil)
    }
}

@Suite("Egress: what egress.allow lists")
struct EgressAllowTests {
    @Test func aCIDRRangeAllowsWhatIsInsideIt() {
        let policy = EgressPolicy(allow: [EgressRule("10.20.0.0/16")!, EgressRule("fd00:1::/32")!])
        #expect(refusal(policy, "10.20.0.1") == nil)
        #expect(refusal(policy, "10.20.255.255") == nil)
        #expect(refusal(policy, "10.21.0.1") != nil)
        #expect(refusal(policy, "fd00:1:ffff::9") == nil)
        #expect(refusal(policy, "fd00:2::9") != nil)
    }

    @Test func anAddressAllowsOnlyItself() {
        let policy = EgressPolicy(allow: [EgressRule("127.0.0.1")!])
        #expect(refusal(policy, "127.0.0.1") == nil)
        #expect(refusal(policy, "127.0.0.2") != nil)
    }

    @Test func aListedHostAllowsWhateverItResolvesTo() {
        let policy = EgressPolicy(allow: [EgressRule("hooks.example.com")!])
        #expect(policy.check(host: "hooks.example.com", addresses: [address("10.0.0.5"), address("::1")]) == nil)
        #expect(policy.check(host: "HOOKS.Example.com.", addresses: [address("10.0.0.5")]) == nil)
        #expect(policy.check(host: "other.example.com", addresses: [address("10.0.0.5")]) != nil)
    }

    @Test func aHostGlobAllowsNamesUnderItButNotItself() {
        let policy = EgressPolicy(allow: [EgressRule("*.internal.example.com")!])
        let inside = [address("10.1.1.1")]
        #expect(policy.check(host: "a.internal.example.com", addresses: inside) == nil)
        #expect(policy.check(host: "b.a.internal.example.com", addresses: inside) == nil)
        #expect(policy.check(host: "internal.example.com", addresses: inside) != nil)
        #expect(policy.check(host: "evilinternal.example.com", addresses: inside) != nil)
    }

    @Test func everyResolvedAddressMustPass() throws {
        let policy = EgressPolicy()
        #expect(policy.check(host: "mixed.example", addresses: [address("93.184.216.34"), address("2606:2800::1")]) == nil)
        let refused = try #require(policy.check(host: "mixed.example", addresses: [address("93.184.216.34"), address("127.0.0.1")], purpose: "callback"))
        #expect(refused.address == address("127.0.0.1"))
        #expect(refused.description == "callback to mixed.example (127.0.0.1) refused: loopback addresses are not allowed (egress.allow does not list it)")
    }

    @Test func aHostThatResolvesToNothingIsRefused() {
        #expect(EgressPolicy().check(host: "nowhere.example", addresses: [])?.reason == "it resolves to no address")
    }
}

@Suite("Egress: the configuration")
struct EgressConfigurationTests {
    @Test func theContractExampleParses() throws {
        let policy = try EgressPolicy(json: [
            "allow": ["hooks.example.com", "10.20.0.0/16", "*.internal.example.com", "127.0.0.1"], "denyPublic": false,
        ])
        #expect(policy.allow.map(\.description) == ["hooks.example.com", "10.20.0.0/16", "*.internal.example.com", "127.0.0.1"])
        #expect(!policy.denyPublic)
        #expect(try EgressPolicy(json: ["denyPublic": true]).denyPublic)
        #expect(try EgressPolicy(json: [:]) == EgressPolicy())
    }

    @Test func bracketedAndIPv6EntriesParse() throws {
        let policy = try EgressPolicy(json: ["allow": ["[::1]", "fc00::/7", "::ffff:10.0.0.0/104"]])
        #expect(refusal(policy, "::1") == nil)
        #expect(refusal(policy, "fd00::5") == nil)
    }

    static let badSections: [(JSONValue, String)] = [
        (["allow": ["hooks.example.com", "not a host"]], "egress.allow[1]: not a host, address or CIDR range (\"not a host\")"),
        (["allow": ["10.0.0.0/33"]], "egress.allow[0]: not a CIDR range (\"10.0.0.0/33\": the prefix length must be 0 to 32)"),
        (["allow": ["::/129"]], "egress.allow[0]: not a CIDR range (\"::/129\": the prefix length must be 0 to 128)"),
        (["allow": ["300.1.1.1"]], "egress.allow[0]: not a host, address or CIDR range (\"300.1.1.1\")"),
        (["allow": ["*"]], "egress.allow[0]: not a host, address or CIDR range (\"*\")"),
        (["allow": ["a.*.example.com"]], "egress.allow[0]: not a host, address or CIDR range (\"a.*.example.com\")"),
        (["allow": ["http://hooks.example.com"]], "egress.allow[0]: not a host, address or CIDR range (\"http://hooks.example.com\")"),
        (["allow": [5]], "egress.allow[0]: not a host, address or CIDR range (it must be a string)"),
        (["allow": "10.0.0.0/8"], "egress.allow: must be a list of hosts, addresses and CIDR ranges"),
        (["denyPublic": "yes"], "egress.denyPublic: must be true or false"),
        (["deny": []], "egress.deny: unknown key (known: allow, denyPublic)"),
        (["10.0.0.0/8"], "egress: must be a mapping (keys: allow, denyPublic)"),
    ]

    @Test(arguments: badSections)
    func aBadEntryIsRefusedWithItsPath(_ json: JSONValue, _ message: String) {
        let error = #expect(throws: EgressConfigurationError.self) { try EgressPolicy(json: json) }
        #expect(error?.description == message)
    }
}

@Suite("Egress: addresses")
struct IPAddressTests {
    @Test func textAndSocketAddressesAgree() throws {
        let v6 = try #require(IPAddress("2001:db8::1"))
        #expect(v6.bytes.count == 16)
        #expect(IPAddress(v6.socketAddress(port: 443)) == v6)
        #expect(v6.socketAddress(port: 443).port == 443)
        #expect(IPAddress("127.0.0.1")?.bytes == [127, 0, 0, 1])
        #expect(IPAddress("fe80::1%eth0") == IPAddress("fe80::1"))
        #expect(IPAddress("[::1]")?.description == "::1")
    }

    @Test(arguments: ["127.1", "2130706433", "localhost", "", "1.2.3.4.5", "::g"])
    func shorthandsAndNamesAreNotAddresses(_ text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func rangesClearTheirHostBits() throws {
        let range = try #require(IPRange(cidr: "10.20.30.40/16"))
        #expect(range.description == "10.20.0.0/16")
        #expect(range.contains(address("10.20.99.1")))
        #expect(!range.contains(address("::ffff:10.20.99.1")))  // another family; rules map it
        #expect(IPRange(cidr: "0.0.0.0/0")?.contains(address("8.8.8.8")) == true)
    }
}
