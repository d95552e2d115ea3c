import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A connected pair of local stream sockets (close-on-exec): one process talking to itself as
/// two peers would over a socket, each end served by its own NIO channel.
public enum LocalSocketPair {
    public static func make() throws -> (CInt, CInt) {
        var sockets: [CInt] = [-1, -1]
        #if canImport(Glibc)
        let type = CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue)
        #else
        let type = SOCK_STREAM | SOCK_CLOEXEC
        #endif
        guard socketpair(AF_UNIX, type, 0, &sockets) == 0 else { throw IOError(errnoCode: errno, reason: "socketpair") }
        return (sockets[0], sockets[1])
    }
}
