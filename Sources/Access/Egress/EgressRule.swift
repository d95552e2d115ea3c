/// One entry of `egress.allow`: a host name (exact, or `*.example.com` for every name under
/// it), an IP address, or a CIDR range.
public enum EgressRule: Sendable, Hashable, CustomStringConvertible {
    /// A name, lower-cased, without a trailing dot.
    case host(String)
    /// `*.example.com`, kept as `example.com`: any name ending in `.example.com`, at any
    /// depth, but not `example.com` itself.
    case hostSuffix(String)
    /// An address is a range of its full length.
    case range(IPRange)

    /// Nil when `text` is none of the three forms.
    public init?(_ text: String) {
        if let range = IPRange(cidr: text) {
            self = .range(range)
        } else if let address = IPAddress(text) {
            self = .range(IPRange(address, prefixLength: address.bytes.count * 8)!)
        } else if text.hasPrefix("*."), let name = Self.hostName(text.dropFirst(2)) {
            self = .hostSuffix(name)
        } else if let name = Self.hostName(Substring(text)) {
            self = .host(name)
        } else {
            return nil
        }
    }

    /// Whether the name itself is listed (then whatever it resolves to is allowed).
    public func matches(host: String) -> Bool {
        let name = Self.normalized(host)
        switch self {
        case .host(let listed): return name == listed
        case .hostSuffix(let parent): return name.hasSuffix(".\(parent)")
        case .range: return false
        }
    }

    /// Whether the address is listed. An IPv4-mapped IPv6 address counts as its IPv4 address:
    /// that is where a socket connecting to it goes.
    public func matches(address: IPAddress) -> Bool {
        guard case .range(let range) = self else { return false }
        return range.contains(address) || address.mappedIPv4.map(range.contains) == true
    }

    public var description: String {
        switch self {
        case .host(let name): name
        case .hostSuffix(let parent): "*.\(parent)"
        case .range(let range): range.prefixLength == range.network.bytes.count * 8 ? "\(range.network)" : "\(range)"
        }
    }

    /// Host names compare without case and without the root's trailing dot.
    static func normalized(_ host: String) -> String {
        let lowered = host.lowercased()
        return lowered.hasSuffix(".") ? String(lowered.dropLast()) : lowered
    }

    /// A DNS name: labels of letters, digits, `-` and `_`, each 1 to 63 long, 253 at most in all.
    /// A last label of digits only is a mistyped address (`300.1.1.1`, `10.0.0.0/33` without
    /// its slash), not a name: no top-level domain is numeric.
    private static func hostName(_ text: Substring) -> String? {
        let name = normalized(String(text))
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        guard !name.isEmpty, name.utf8.count <= 253,
            labels.allSatisfy({ label in
                (1...63).contains(label.utf8.count)
                    && label.utf8.allSatisfy { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || (0x30...0x39).contains($0) || (0x61...0x7a).contains($0) }
            }),
            let last = labels.last, !last.utf8.allSatisfy({ (0x30...0x39).contains($0) })
        else { return nil }
        return name
    }
}
