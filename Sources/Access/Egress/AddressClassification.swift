/// The address ranges that point inside the gateway's own host or network rather than at a
/// public service: what an outgoing connection the gateway makes on a client's behalf must not
/// reach unless the operator lists it (server-side request forgery).
public enum AddressCategory: String, Sendable, Hashable, CaseIterable {
    case loopback
    case `private`
    case linkLocal
    /// Cloud instance metadata services, which hand out credentials to whoever asks.
    case metadata
    case unspecified
    /// Shared address space of carrier-grade NAT (RFC 6598).
    case sharedAddressSpace
    case multicast
    case broadcast
    /// Reserved for future use (240.0.0.0/4): never a legitimate destination.
    case reserved
    case `public`

    /// What the refusal says: `loopback addresses are not allowed`.
    public var refusal: String {
        switch self {
        case .loopback: "loopback addresses are not allowed"
        case .private: "private addresses are not allowed"
        case .linkLocal: "link-local addresses are not allowed"
        case .metadata: "cloud metadata addresses are not allowed"
        case .unspecified: "unspecified addresses are not allowed"
        case .sharedAddressSpace: "carrier-grade NAT addresses (100.64.0.0/10) are not allowed"
        case .multicast: "multicast addresses are not allowed"
        case .broadcast: "broadcast addresses are not allowed"
        case .reserved: "reserved addresses (240.0.0.0/4) are not allowed"
        case .public: "public addresses are not allowed"
        }
    }
}

/// How an IPv6 address carries an IPv4 one whose category it takes.
public enum IPv4Embedding: String, Sendable, Hashable {
    /// `::ffff:a.b.c.d`: a dual-stack socket connects to the IPv4 address itself.
    case mapped = "IPv4-mapped"
    /// `::a.b.c.d` (deprecated).
    case compatible = "IPv4-compatible"
    /// `64:ff9b::a.b.c.d` (RFC 6052): a NAT64 gateway connects to the IPv4 address.
    case nat64 = "NAT64"
    /// `2002:AABB:CCDD::/48` (RFC 3056): a 6to4 relay forwards to the IPv4 address.
    case sixToFour = "6to4"
}

/// An address's category, and the IPv4 address it was judged by when it embeds one.
public struct AddressClassification: Sendable, Hashable {
    /// An IPv4 address inside an IPv6 one, and how it is carried.
    public struct Embedding: Sendable, Hashable {
        public var kind: IPv4Embedding
        public var address: IPAddress
    }

    public var category: AddressCategory
    public var embedded: Embedding?

    /// The category of `address`: the most specific special-purpose range it is in, else public.
    public init(_ address: IPAddress) {
        if address.isIPv4 {
            self.init(category: Self.category(ofIPv4: address), embedded: nil)
            return
        }
        for (range, category) in Self.ipv6Exact where range.contains(address) {
            self.init(category: category, embedded: nil)
            return
        }
        if let (kind, ipv4) = Self.embeddedIPv4(address) {
            self.init(category: Self.category(ofIPv4: ipv4), embedded: Embedding(kind: kind, address: ipv4))
            return
        }
        let category = Self.ipv6Ranges.first { $0.range.contains(address) }?.category ?? .public
        self.init(category: category, embedded: nil)
    }

    private init(category: AddressCategory, embedded: Embedding?) {
        self.category = category
        self.embedded = embedded
    }

    // Most specific first: the metadata address before the link-local range it sits in.
    private static let ipv4Ranges = table([
        ("169.254.169.254/32", .metadata),  // AWS, GCP, Azure, OCI, DigitalOcean…
        ("100.100.100.200/32", .metadata),  // Alibaba Cloud
        ("255.255.255.255/32", .broadcast),
        ("0.0.0.0/8", .unspecified),
        ("127.0.0.0/8", .loopback),
        ("10.0.0.0/8", .private),
        ("172.16.0.0/12", .private),
        ("192.168.0.0/16", .private),
        ("169.254.0.0/16", .linkLocal),
        ("100.64.0.0/10", .sharedAddressSpace),
        ("224.0.0.0/4", .multicast),
        ("240.0.0.0/4", .reserved),
    ])

    /// Single addresses that must be judged before the embedded forms (`::` and `::1` are in
    /// the IPv4-compatible range) and before the unique-local range (AWS's metadata address).
    private static let ipv6Exact = table([
        ("::/128", .unspecified),
        ("::1/128", .loopback),
        ("fd00:ec2::254/128", .metadata),
    ])

    private static let ipv6Ranges = table([
        ("fc00::/7", .private),  // unique local
        ("fec0::/10", .private),  // site-local, deprecated
        ("fe80::/10", .linkLocal),
        ("ff00::/8", .multicast),
    ])

    private static let embeddings: [(range: IPRange, kind: IPv4Embedding, offset: Int)] = [
        (IPRange(cidr: "::ffff:0:0/96")!, .mapped, 12),
        (IPRange(cidr: "::/96")!, .compatible, 12),
        (IPRange(cidr: "64:ff9b::/96")!, .nat64, 12),
        (IPRange(cidr: "2002::/16")!, .sixToFour, 2),
    ]

    private static func table(_ entries: [(String, AddressCategory)]) -> [(range: IPRange, category: AddressCategory)] {
        entries.map { (IPRange(cidr: $0.0)!, $0.1) }
    }

    private static func category(ofIPv4 address: IPAddress) -> AddressCategory {
        ipv4Ranges.first { $0.range.contains(address) }?.category ?? .public
    }

    private static func embeddedIPv4(_ address: IPAddress) -> (IPv4Embedding, IPAddress)? {
        guard let match = embeddings.first(where: { $0.range.contains(address) }) else { return nil }
        return (match.kind, IPAddress(bytes: Array(address.bytes[match.offset..<match.offset + 4]))!)
    }
}
