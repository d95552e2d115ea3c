/// A TLS failure on one connection, fired through the pipeline with `fireErrorCaught`.
///
/// `reason` says in plain words what went wrong, e.g. "certificate verify failed: unable to get
/// local issuer certificate" or "protocol version not supported (peer offered TLS 1.1)".
public struct TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable, Hashable {
            case handshakeFailed, certificateRejected, certificateRequired, protocolVersionRejected
            case handshakeTimedOut, uncleanShutdown, connectionFailed, pendingWritesLimitExceeded
            case invalidServerHostname
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The handshake failed for a reason not covered by a more specific code.
        public static let handshakeFailed = Code(.handshakeFailed)
        /// A certificate did not verify: ours at the peer, or the peer's here.
        public static let certificateRejected = Code(.certificateRejected)
        /// One side required a certificate the other did not present.
        public static let certificateRequired = Code(.certificateRequired)
        /// The two sides share no protocol version.
        public static let protocolVersionRejected = Code(.protocolVersionRejected)
        /// The peer did not finish the handshake in time.
        public static let handshakeTimedOut = Code(.handshakeTimedOut)
        /// The peer closed the transport without sending close_notify. Data already delivered is
        /// intact, but the peer's last message may have been cut short.
        public static let uncleanShutdown = Code(.uncleanShutdown)
        /// A TLS failure after the handshake: a bad record, a fatal alert.
        public static let connectionFailed = Code(.connectionFailed)
        /// More plaintext was written before the handshake finished than the handler will hold.
        public static let pendingWritesLimitExceeded = Code(.pendingWritesLimitExceeded)
        /// The expected server name is neither a DNS name nor an IP address OpenSSL accepts.
        public static let invalidServerHostname = Code(.invalidServerHostname)

        public var description: String { value.rawValue }
    }

    public let code: Code
    public let reason: String

    public init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { reason }
}
