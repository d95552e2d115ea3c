import CSwitchboardOpenSSL
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One OpenSSL `SSL` object between two memory BIOs: ciphertext from the network goes into
/// `networkInput`, ciphertext for the network comes out of `networkOutput`, and OpenSSL never
/// touches a socket. It knows nothing about channels; `TLSHandler` drives it.
final class TLSConnection {
    enum HandshakeOutcome {
        case complete
        case wantsMoreData
        case failed(TLSError)
    }

    enum ReadOutcome {
        /// Plaintext was appended to the buffer.
        case bytes
        case wantsMoreData
        /// The peer sent close_notify: it will send nothing more.
        case closeNotify
        case failed(TLSError)
    }

    enum ShutdownOutcome {
        /// Our close_notify is in the output; the peer's has not arrived yet.
        case sent
        /// Both close_notify alerts have been exchanged.
        case complete
        case failed(TLSError)
    }

    /// Largest plaintext of one TLS record; a read needs at least this much room to make progress.
    static let maximumRecordPlaintext = 16 * 1024

    let role: TLSContext.Role
    private let ssl: OpaquePointer
    /// Owned by `ssl` (freed by `SSL_free`); kept to feed and drain them.
    private let networkInput: OpaquePointer
    private let networkOutput: OpaquePointer

    /// - Parameter serverHostname: client side, the name the server's certificate must match and,
    ///   when it is a DNS name, the SNI sent. Nil sends no SNI and checks no name.
    init(context: TLSContext, serverHostname: String?) throws(TLSError) {
        self.role = context.role
        let handle = context.handle()
        OpenSSLErrorQueue.clear()
        guard let ssl = SSL_new(handle.pointer) else {
            throw TLSError(code: .handshakeFailed, reason: "cannot create a TLS connection: \(OpenSSLErrorQueue.drainedDescription(orElse: "out of memory"))")
        }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError(code: .handshakeFailed, reason: "cannot create the TLS connection's buffers: out of memory")
        }
        // A dry input buffer means "wait for more", not "the peer closed": the handler learns
        // of the transport's end from the channel, not from OpenSSL.
        _ = switchboard_BIO_set_mem_eof_return(input, -1)
        SSL_set_bio(ssl, input, output)
        self.ssl = ssl
        self.networkInput = input
        self.networkOutput = output

        switch role {
        case .server:
            SSL_set_accept_state(ssl)
        case .client:
            SSL_set_connect_state(ssl)
            if let serverHostname {
                try expect(serverHostname: serverHostname, verify: context.configuration.verifyServerCertificate)
            }
        }
    }

    deinit {
        SSL_free(ssl)
    }

    private func expect(serverHostname name: String, verify: Bool) throws(TLSError) {
        OpenSSLErrorQueue.clear()
        let isIPAddress = Self.isIPAddress(name)
        // SNI carries DNS names only (RFC 6066 §3).
        if !isIPAddress, switchboard_SSL_set_tlsext_host_name(ssl, name) != 1 {
            throw TLSError(code: .invalidServerHostname, reason: "'\(name)' cannot be sent as a TLS server name")
        }
        guard verify else { return }
        let accepted: Bool
        if isIPAddress {
            accepted = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1
        } else {
            X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(ssl), UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            accepted = SSL_set1_host(ssl, name) == 1
        }
        guard accepted else {
            OpenSSLErrorQueue.clear()
            throw TLSError(code: .invalidServerHostname, reason: "'\(name)' is neither a valid DNS name nor an IP address")
        }
    }

    private static func isIPAddress(_ name: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET, name, &address) == 1 || inet_pton(AF_INET6, name, &address) == 1
    }

    // MARK: Ciphertext in and out

    /// Queues ciphertext from the network for OpenSSL to read.
    func receiveCiphertext(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            var offset = 0
            while offset < bytes.count {
                let length = Int32(clamping: bytes.count - offset)
                let written = BIO_write(networkInput, base + offset, length)
                // A memory BIO only refuses on allocation failure; the next read then fails cleanly.
                guard written > 0 else { return }
                offset += Int(written)
            }
        }
    }

    /// Ciphertext OpenSSL has produced and not yet handed out.
    var hasCiphertextToSend: Bool {
        BIO_ctrl_pending(networkOutput) > 0
    }

    /// Moves all ciphertext OpenSSL has produced to the end of `buffer`.
    func takeCiphertext(appendingTo buffer: inout ByteBuffer) {
        let pending = Int(BIO_ctrl_pending(networkOutput))
        guard pending > 0 else { return }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { space in
            Int(max(0, BIO_read(networkOutput, space.baseAddress, Int32(clamping: pending))))
        }
    }

    // MARK: TLS operations

    func handshake() -> HandshakeOutcome {
        OpenSSLErrorQueue.clear()
        let result = SSL_do_handshake(ssl)
        if result == 1 { return .complete }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantsMoreData
        case let code:
            return .failed(failure(code, duringHandshake: true))
        }
    }

    /// Decrypts at most one buffer's worth of plaintext into `buffer`.
    func readPlaintext(into buffer: inout ByteBuffer) -> ReadOutcome {
        OpenSSLErrorQueue.clear()
        var result: Int32 = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.maximumRecordPlaintext) { space in
            result = SSL_read(ssl, space.baseAddress, Int32(clamping: space.count))
            return Int(max(0, result))
        }
        if result > 0 { return .bytes }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantsMoreData
        case SSL_ERROR_ZERO_RETURN:
            return .closeNotify
        case let code:
            return .failed(failure(code, duringHandshake: false))
        }
    }

    /// Encrypts all of `plaintext` into the output; OpenSSL splits it into records.
    func writePlaintext(_ plaintext: ByteBuffer) -> TLSError? {
        plaintext.withUnsafeReadableBytes { bytes -> TLSError? in
            guard let base = bytes.baseAddress else { return nil }
            var offset = 0
            while offset < bytes.count {
                OpenSSLErrorQueue.clear()
                let written = SSL_write(ssl, base + offset, Int32(clamping: bytes.count - offset))
                guard written > 0 else {
                    return failure(SSL_get_error(ssl, written), duringHandshake: false)
                }
                offset += Int(written)
            }
            return nil
        }
    }

    /// Sends our close_notify (once) and reports whether the peer's has arrived.
    func shutdown() -> ShutdownOutcome {
        OpenSSLErrorQueue.clear()
        let result = SSL_shutdown(ssl)
        switch result {
        case 1:
            return .complete
        case 0:
            return .sent
        default:
            let code = SSL_get_error(ssl, result)
            if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return .sent }
            return .failed(failure(code, duringHandshake: false))
        }
    }

    // MARK: After the handshake

    func handshakeSummary() -> TLSHandshakeCompleted {
        let version = SSL_get_version(ssl).map { String(cString: $0) } ?? "unknown"
        let cipher = SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? "unknown"
        var peer: TLSPeerIdentity?
        if let certificate = SSL_get1_peer_certificate(ssl) {
            defer { X509_free(certificate) }
            peer = CertificateInspection.identity(of: certificate)
        }
        return TLSHandshakeCompleted(protocolVersion: version, cipher: cipher, peer: peer)
    }

    private func failure(_ code: Int32, duringHandshake: Bool) -> TLSError {
        TLSFailureDescription.error(
            sslErrorCode: code,
            queue: OpenSSLErrorQueue.drain(),
            verifyResult: SSL_get_verify_result(ssl),
            peerLegacyVersion: role == .server ? SSL_client_version(ssl) : 0,
            duringHandshake: duringHandshake
        )
    }
}
