/// What a TLS endpoint presents and what it accepts from its peer.
///
/// One value describes either side: a server needs a certificate chain and a private key; a client
/// needs them only to authenticate itself to a server that asks (mutual TLS). The protocol range
/// is always within TLS 1.2 … TLS 1.3, cipher suites are ECDHE with an AEAD cipher (TLS 1.2) or
/// TLS 1.3's own suites, and renegotiation and compression are off; none of that is configurable,
/// because every alternative is weaker.
public struct TLSConfiguration: Sendable, Hashable {
    /// Whether a server asks its clients for a certificate.
    public enum ClientAuthentication: String, Sendable, Hashable, CaseIterable {
        /// No certificate is asked for.
        case none
        /// A certificate is asked for; a client without one is let in anonymously, a client with
        /// one that does not verify is refused.
        case optional
        /// A client without a verifiable certificate is refused.
        case require
    }

    /// A TLS protocol version this library speaks.
    public enum ProtocolVersion: Int, Sendable, Hashable, Comparable, CustomStringConvertible {
        case tls1_2 = 0x0303
        case tls1_3 = 0x0304

        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

        public var description: String {
            switch self {
            case .tls1_2: "TLS 1.2"
            case .tls1_3: "TLS 1.3"
            }
        }
    }

    /// A PEM file: the leaf certificate first, then any intermediates.
    public var certificateChainPath: String?
    /// A PEM file holding the unencrypted private key of the leaf certificate.
    public var privateKeyPath: String?
    /// A PEM bundle of the certificate authorities that peers' certificates must chain to. On a
    /// server it verifies client certificates; on a client, nil means the system's trust store.
    public var trustRootsPath: String?
    /// Server side: whether clients must, may or need not present a certificate.
    public var clientAuthentication: ClientAuthentication
    /// Client side: whether the server's certificate is verified. Off only for tests and tools.
    public var verifyServerCertificate: Bool
    /// Client side: the name (DNS name or IP address) the server's certificate must match. A DNS
    /// name is also sent as SNI. A handler may override it per connection. Nil checks the chain
    /// but no name: any certificate from a trusted authority is accepted.
    public var serverHostname: String?
    public var minimumProtocolVersion: ProtocolVersion
    public var maximumProtocolVersion: ProtocolVersion
    /// Server side: negotiate `http/1.1` with ALPN (an https:// listener).
    public var selectsHTTP11 = false

    public init(
        certificateChainPath: String? = nil,
        privateKeyPath: String? = nil,
        trustRootsPath: String? = nil,
        clientAuthentication: ClientAuthentication = .none,
        verifyServerCertificate: Bool = true,
        serverHostname: String? = nil,
        minimumProtocolVersion: ProtocolVersion = .tls1_2,
        maximumProtocolVersion: ProtocolVersion = .tls1_3
    ) {
        self.certificateChainPath = certificateChainPath
        self.privateKeyPath = privateKeyPath
        self.trustRootsPath = trustRootsPath
        self.clientAuthentication = clientAuthentication
        self.verifyServerCertificate = verifyServerCertificate
        self.serverHostname = serverHostname
        self.minimumProtocolVersion = minimumProtocolVersion
        self.maximumProtocolVersion = maximumProtocolVersion
    }

    /// A server presenting `certificateChainPath`; with `clientAuthentication` other than `.none`,
    /// client certificates are verified against `trustRootsPath`.
    public static func server(
        certificateChainPath: String,
        privateKeyPath: String,
        trustRootsPath: String? = nil,
        clientAuthentication: ClientAuthentication = .none
    ) -> TLSConfiguration {
        TLSConfiguration(
            certificateChainPath: certificateChainPath,
            privateKeyPath: privateKeyPath,
            trustRootsPath: trustRootsPath,
            clientAuthentication: clientAuthentication
        )
    }

    /// A client that verifies the server against `trustRootsPath` (nil: the system's store) and
    /// `serverHostname`, presenting a certificate of its own when both paths are given.
    public static func client(
        trustRootsPath: String? = nil,
        serverHostname: String? = nil,
        certificateChainPath: String? = nil,
        privateKeyPath: String? = nil
    ) -> TLSConfiguration {
        TLSConfiguration(
            certificateChainPath: certificateChainPath,
            privateKeyPath: privateKeyPath,
            trustRootsPath: trustRootsPath,
            serverHostname: serverHostname
        )
    }
}
