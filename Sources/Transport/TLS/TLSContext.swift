import Synchronization

/// The shared, per-listener (or per-client) TLS state: one OpenSSL `SSL_CTX` built from a
/// `TLSConfiguration`, from which every `TLSHandler` makes its connection.
///
/// `reload()` re-reads the certificate, key and CA files and swaps in a new `SSL_CTX` at once:
/// connections made afterwards use it, connections already open keep the one they started with.
/// This is what a SIGHUP after a certificate renewal calls.
public final class TLSContext: Sendable {
    /// Which end of the handshake the context's connections play.
    public enum Role: Sendable, Hashable {
        case server
        case client
    }

    public let role: Role
    public let configuration: TLSConfiguration
    private let current: Mutex<SSLContextHandle>

    /// A server context; throws when a file is missing, unreadable, not PEM, when the key does
    /// not match the certificate, or when the certificate is expired or not yet valid.
    public convenience init(server configuration: TLSConfiguration) throws(TLSConfigurationError) {
        try self.init(role: .server, configuration: configuration)
    }

    /// A client context; it verifies servers against `trustRootsPath` (or the system's store)
    /// unless `verifyServerCertificate` is off.
    public convenience init(client configuration: TLSConfiguration) throws(TLSConfigurationError) {
        try self.init(role: .client, configuration: configuration)
    }

    private init(role: Role, configuration: TLSConfiguration) throws(TLSConfigurationError) {
        self.role = role
        self.configuration = configuration
        self.current = Mutex(try SSLContextFactory.make(configuration, role: role))
    }

    /// Rebuilds the `SSL_CTX` from the same paths and swaps it in. On failure the context in use
    /// stays as it was and the error says which file is at fault.
    public func reload() throws(TLSConfigurationError) {
        var replacement = try SSLContextFactory.make(configuration, role: role)
        current.withLock { swap(&$0, &replacement) }
        // `replacement` now holds the previous context and lets go of it here, outside the lock.
        // Live connections keep its `SSL_CTX` alive through their own references.
    }

    /// The context new connections are made from.
    func handle() -> SSLContextHandle {
        current.withLock { $0 }
    }
}
