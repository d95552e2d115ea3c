import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as its bytes in network order: what egress rules and the
/// special-purpose ranges are compared against, whatever text or socket address it came from.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6).
    public let bytes: [UInt8]

    public var isIPv4: Bool { bytes.count == 4 }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Strict text forms only: dotted-quad IPv4 (`127.0.0.1`) and RFC 4291 IPv6 (`::1`,
    /// `::ffff:127.0.0.1`), optionally in brackets. Shorthands such as `127.1` or `2130706433`
    /// are not addresses here (a resolver may still turn them into one, which is then checked).
    public init?(_ text: String) {
        var text = Substring(text)
        if text.hasPrefix("["), text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        // A zone (`fe80::1%eth0`) names an interface, not a different address.
        if let percent = text.firstIndex(of: "%") { text = text[..<percent] }
        guard !text.isEmpty, let address = try? SocketAddress(ipAddress: String(text), port: 0) else { return nil }
        self.init(address)
    }

    /// The address of an IPv4 or IPv6 socket address; nil for a Unix socket.
    public init?(_ address: SocketAddress) {
        switch address {
        case .v4(let v4):
            var raw = v4.address.sin_addr
            bytes = withUnsafeBytes(of: &raw) { Array($0) }
        case .v6(let v6):
            var raw = v6.address.sin6_addr
            bytes = withUnsafeBytes(of: &raw) { Array($0) }
        case .unixDomainSocket:
            return nil
        }
    }

    /// A socket address to connect to: this very address, no name to resolve again.
    public func socketAddress(port: Int) -> SocketAddress {
        // Four or sixteen bytes always make a socket address.
        try! SocketAddress(packedIPAddress: ByteBuffer(bytes: bytes), port: port)
    }

    /// The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) stands for: a socket
    /// connecting to it reaches that IPv4 address.
    public var mappedIPv4: IPAddress? {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else { return nil }
        return IPAddress(bytes: Array(bytes[12..<16]))
    }

    public var description: String {
        socketAddress(port: 0).ipAddress ?? bytes.map(String.init).joined(separator: ".")
    }
}

/// A CIDR range (`10.20.0.0/16`, `fc00::/7`); a single address is a range of its full length.
public struct IPRange: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    /// `prefixLength` bits of `address`; the remaining bits are cleared.
    public init?(_ address: IPAddress, prefixLength: Int) {
        guard (0...address.bytes.count * 8).contains(prefixLength) else { return nil }
        var bytes = address.bytes
        for index in bytes.indices {
            let kept = min(max(prefixLength - index * 8, 0), 8)
            bytes[index] &= kept == 0 ? 0 : ~UInt8(0) << (8 - kept)
        }
        self.network = IPAddress(bytes: bytes)!
        self.prefixLength = prefixLength
    }

    /// `ADDRESS/LENGTH`.
    public init?(cidr text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(String(parts[0])), parts[1].allSatisfy(\.isASCII),
            let length = Int(parts[1])
        else { return nil }
        self.init(address, prefixLength: length)
    }

    /// Whether `address` is in the range; an address of the other family never is.
    public func contains(_ address: IPAddress) -> Bool {
        guard address.bytes.count == network.bytes.count else { return false }
        return IPRange(address, prefixLength: prefixLength)?.network == network
    }

    public var description: String { "\(network)/\(prefixLength)" }
}
