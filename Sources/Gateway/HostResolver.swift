import Access
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns a host into the addresses the egress policy judges and the connection then uses: one
/// resolution, so that what was judged is what is connected to.
enum HostResolver {
    struct Failure: Error, CustomStringConvertible {
        var host: String
        var message: String
        var description: String { "cannot resolve \(host): \(message)" }
    }

    /// Every address of `host`, looked up on NIO's thread pool: getaddrinfo blocks, and must
    /// not hold up an event loop.
    static func resolve(_ host: String, on eventLoop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
        NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { try addresses(of: host, numericOnly: false) }
    }

    /// The address a literal host names (`127.0.0.1`, `::1`, and what getaddrinfo reads as a
    /// number, such as `127.1` or `2130706433`); nil for a name. No lookup: safe anywhere.
    static func literal(_ host: String) -> [IPAddress]? {
        try? addresses(of: host, numericOnly: true)
    }

    private static func addresses(of host: String, numericOnly: Bool) throws -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_flags = numericOnly ? AI_NUMERICHOST : 0
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0 else { throw Failure(host: host, message: String(cString: gai_strerror(status))) }
        defer { freeaddrinfo(list) }
        var addresses: [IPAddress] = []
        var next = list
        while let info = next {
            next = info.pointee.ai_next
            guard let raw = info.pointee.ai_addr else { continue }
            let address: IPAddress?
            switch info.pointee.ai_family {
            case AF_INET: address = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { IPAddress(SocketAddress($0.pointee)) }
            case AF_INET6: address = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { IPAddress(SocketAddress($0.pointee)) }
            default: address = nil
            }
            if let address, !addresses.contains(address) { addresses.append(address) }
        }
        return addresses
    }
}
