import CSwitchboardOpenSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns one `SSL_CTX`.
///
/// `@unchecked Sendable`: the context is fully configured before the handle is shared and never
/// changed after; OpenSSL makes `SSL_new` on a shared, unchanging `SSL_CTX` thread-safe, and each
/// `SSL` holds its own reference to its context, so a connection outlives a reload safely.
final class SSLContextHandle: @unchecked Sendable {
    let pointer: OpaquePointer

    init(taking pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        SSL_CTX_free(pointer)
    }
}

/// Builds an `SSL_CTX` from a `TLSConfiguration`, checking each file so that a mistake is
/// reported with the file's name and what is wrong with it, before any connection is made.
enum SSLContextFactory {
    /// ECDHE key exchange with an AEAD cipher, for TLS 1.2; TLS 1.3's suites are all AEAD.
    static let tls12Ciphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")
    static let tls13Ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

    static func make(_ configuration: TLSConfiguration, role: TLSContext.Role) throws(TLSConfigurationError) -> SSLContextHandle {
        try checkSettings(configuration, role: role)
        OpenSSLErrorQueue.clear()
        let method = role == .server ? TLS_server_method() : TLS_client_method()
        guard let pointer = SSL_CTX_new(method) else {
            throw openSSLFailure("cannot create an OpenSSL context")
        }
        // From here on the handle frees the context on every exit, thrown or not.
        let handle = SSLContextHandle(taking: pointer)
        try configureProtocol(pointer, configuration, role: role)
        if let chain = configuration.certificateChainPath, let key = configuration.privateKeyPath {
            try loadIdentity(pointer, chainPath: chain, keyPath: key)
        }
        try configureVerification(pointer, configuration, role: role)
        if role == .server, configuration.selectsHTTP11 { switchboard_SSL_CTX_select_http11(pointer) }
        return handle
    }

    private static func checkSettings(_ configuration: TLSConfiguration, role: TLSContext.Role) throws(TLSConfigurationError) {
        guard configuration.minimumProtocolVersion <= configuration.maximumProtocolVersion else {
            throw TLSConfigurationError(
                code: .missingSetting, path: nil,
                reason: "the minimum protocol version (\(configuration.minimumProtocolVersion)) is above the maximum (\(configuration.maximumProtocolVersion))"
            )
        }
        switch (configuration.certificateChainPath, configuration.privateKeyPath) {
        case (nil, nil):
            if role == .server {
                throw TLSConfigurationError(
                    code: .missingSetting, path: nil,
                    reason: "a TLS server needs a certificate chain file and a private key file"
                )
            }
        case (_?, nil), (nil, _?):
            throw TLSConfigurationError(
                code: .missingSetting, path: nil,
                reason: "a certificate chain file and a private key file go together: give both or neither"
            )
        case (_?, _?):
            break
        }
        if role == .server, configuration.clientAuthentication != .none, configuration.trustRootsPath == nil {
            throw TLSConfigurationError(
                code: .missingSetting, path: nil,
                reason: "client authentication '\(configuration.clientAuthentication.rawValue)' needs a CA bundle to verify client certificates against"
            )
        }
    }

    private static func configureProtocol(_ context: OpaquePointer, _ configuration: TLSConfiguration, role: TLSContext.Role) throws(TLSConfigurationError) {
        var options = switchboard_SSL_OP_NO_RENEGOTIATION | switchboard_SSL_OP_NO_COMPRESSION
        if role == .server { options |= switchboard_SSL_OP_CIPHER_SERVER_PREFERENCE }
        _ = switchboard_SSL_CTX_set_options(context, options)
        // Idle connections give their read and write buffers back; a gateway holds many of them.
        _ = switchboard_SSL_CTX_set_mode(context, switchboard_SSL_MODE_RELEASE_BUFFERS)
        guard switchboard_SSL_CTX_set_min_proto_version(context, Int32(configuration.minimumProtocolVersion.rawValue)) == 1,
              switchboard_SSL_CTX_set_max_proto_version(context, Int32(configuration.maximumProtocolVersion.rawValue)) == 1,
              SSL_CTX_set_cipher_list(context, tls12Ciphers) == 1,
              SSL_CTX_set_ciphersuites(context, tls13Ciphersuites) == 1
        else {
            throw openSSLFailure("OpenSSL refused the protocol versions or cipher suites")
        }
        // Never let OpenSSL prompt on the terminal for a passphrase: an encrypted key is an error.
        SSL_CTX_set_default_passwd_cb(context) { _, _, _, _ in 0 }
    }

    private static func loadIdentity(_ context: OpaquePointer, chainPath: String, keyPath: String) throws(TLSConfigurationError) {
        try checkReadable(chainPath, what: "certificate chain file")
        try checkReadable(keyPath, what: "private key file")

        OpenSSLErrorQueue.clear()
        guard SSL_CTX_use_certificate_chain_file(context, chainPath) == 1 else {
            throw pemError(path: chainPath, what: "certificate chain file", expected: "CERTIFICATE")
        }
        guard let leaf = SSL_CTX_get0_certificate(context) else {
            throw TLSConfigurationError(code: .invalidPEM, path: chainPath, reason: "the certificate chain file \(chainPath) holds no certificate")
        }
        switch CertificateInspection.validity(of: leaf) {
        case .valid:
            break
        case .expired(let notAfter):
            throw TLSConfigurationError(
                code: .certificateExpired, path: chainPath,
                reason: "the certificate in \(chainPath) expired on \(notAfter); renew it"
            )
        case .notYetValid(let notBefore):
            throw TLSConfigurationError(
                code: .certificateNotYetValid, path: chainPath,
                reason: "the certificate in \(chainPath) is not valid until \(notBefore); check its dates and this machine's clock"
            )
        }

        let key = try readPrivateKey(keyPath)
        defer { EVP_PKEY_free(key) }
        OpenSSLErrorQueue.clear()
        guard X509_check_private_key(leaf, key) == 1 else {
            OpenSSLErrorQueue.clear()
            throw TLSConfigurationError(
                code: .keyDoesNotMatchCertificate, path: keyPath,
                reason: "the private key in \(keyPath) does not match the certificate in \(chainPath)"
            )
        }
        guard SSL_CTX_use_PrivateKey(context, key) == 1, SSL_CTX_check_private_key(context) == 1 else {
            throw openSSLFailure("OpenSSL refused the private key in \(keyPath)", path: keyPath)
        }
    }

    private static func readPrivateKey(_ path: String) throws(TLSConfigurationError) -> OpaquePointer {
        OpenSSLErrorQueue.clear()
        guard let file = BIO_new_file(path, "r") else {
            throw TLSConfigurationError(code: .unreadableFile, path: path, reason: "cannot open the private key file \(path)")
        }
        defer { BIO_free(file) }
        // The callback declines every passphrase request; see `configureProtocol`.
        guard let key = PEM_read_bio_PrivateKey(file, nil, { _, _, _, _ in 0 }, nil) else {
            let errors = OpenSSLErrorQueue.drain()
            // OpenSSL 3 tries an empty passphrase when the callback declines, so an encrypted
            // key shows up as a failed decryption rather than as a missing passphrase.
            let encrypted = errors.contains { error in
                (error.library == ERR_LIB_PEM && (error.reason == PEM_R_BAD_PASSWORD_READ || error.reason == PEM_R_PROBLEMS_GETTING_PASSWORD))
                    || error.reasonText.contains("bad decrypt")
            }
            if encrypted {
                throw TLSConfigurationError(
                    code: .invalidPEM, path: path,
                    reason: "the private key in \(path) is encrypted; give an unencrypted key (openssl pkey -in KEY -out PLAIN)"
                )
            }
            throw TLSConfigurationError(
                code: .invalidPEM, path: path,
                reason: "the private key file \(path) holds no PEM private key (\(describe(errors)))"
            )
        }
        return key
    }

    private static func configureVerification(_ context: OpaquePointer, _ configuration: TLSConfiguration, role: TLSContext.Role) throws(TLSConfigurationError) {
        if let bundle = configuration.trustRootsPath {
            try checkReadable(bundle, what: "CA bundle")
            OpenSSLErrorQueue.clear()
            guard SSL_CTX_load_verify_locations(context, bundle, nil) == 1 else {
                throw pemError(path: bundle, what: "CA bundle", expected: "CERTIFICATE")
            }
        } else if role == .client {
            OpenSSLErrorQueue.clear()
            guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                throw openSSLFailure("cannot load the system's trusted certificate authorities")
            }
        }

        switch role {
        case .server:
            switch configuration.clientAuthentication {
            case .none:
                SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
            case .optional:
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            case .require:
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            }
            if configuration.clientAuthentication != .none, let bundle = configuration.trustRootsPath {
                // Tells clients which authorities we accept, so that one holding several
                // certificates can pick the right one. The context takes ownership of the list.
                if let names = SSL_load_client_CA_file(bundle) {
                    SSL_CTX_set_client_CA_list(context, names)
                }
                OpenSSLErrorQueue.clear()
            }
            // Session resumption with client certificates needs an id context, or OpenSSL
            // refuses resumed sessions with "session id context uninitialized".
            let idContext = Array("switchboard".utf8)
            _ = SSL_CTX_set_session_id_context(context, idContext, UInt32(idContext.count))
        case .client:
            SSL_CTX_set_verify(context, configuration.verifyServerCertificate ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
        }
    }

    /// A path that does not exist, is not a regular file or cannot be opened is reported as
    /// such, not as the PEM error OpenSSL would make of it.
    private static func checkReadable(_ path: String, what: String) throws(TLSConfigurationError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT {
                throw TLSConfigurationError(code: .unreadableFile, path: path, reason: "the \(what) \(path) does not exist")
            }
            throw TLSConfigurationError(code: .unreadableFile, path: path, reason: "cannot read the \(what) \(path): \(errorText(code))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw TLSConfigurationError(code: .unreadableFile, path: path, reason: "the \(what) \(path) is not a regular file")
        }
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw TLSConfigurationError(code: .unreadableFile, path: path, reason: "cannot read the \(what) \(path): \(errorText(errno))")
        }
        close(descriptor)
    }

    private static func pemError(path: String, what: String, expected: String) -> TLSConfigurationError {
        let errors = OpenSSLErrorQueue.drain()
        if errors.contains(where: { $0.library == ERR_LIB_PEM && $0.reason == PEM_R_NO_START_LINE }) {
            return TLSConfigurationError(
                code: .invalidPEM, path: path,
                reason: "the \(what) \(path) is not PEM: no \"-----BEGIN \(expected)-----\" line"
            )
        }
        return TLSConfigurationError(code: .invalidPEM, path: path, reason: "the \(what) \(path) cannot be parsed (\(describe(errors)))")
    }

    private static func openSSLFailure(_ message: String, path: String? = nil) -> TLSConfigurationError {
        TLSConfigurationError(
            code: .openSSLFailure, path: path,
            reason: "\(message): \(OpenSSLErrorQueue.drainedDescription(orElse: "no detail from OpenSSL"))"
        )
    }

    private static func describe(_ errors: [OpenSSLError]) -> String {
        errors.isEmpty ? "no detail from OpenSSL" : errors.map(\.reasonText).joined(separator: "; ")
    }

    private static func errorText(_ code: Int32) -> String {
        strerror(code).map { String(cString: $0) } ?? "error \(code)"
    }
}
