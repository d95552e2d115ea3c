import CSwitchboardOpenSSL

/// Turns what OpenSSL reports about a failed operation into a `TLSError` whose reason a person can
/// act on: which certificate check failed and why, which protocol version the peer offered, that
/// the peer is not speaking TLS at all.
enum TLSFailureDescription {
    static func error(
        sslErrorCode: Int32,
        queue: [OpenSSLError],
        verifyResult: Int,
        peerLegacyVersion: Int32,
        duringHandshake: Bool
    ) -> TLSError {
        let fallbackCode: TLSError.Code = duringHandshake ? .handshakeFailed : .connectionFailed

        // The most specific entry is the first SSL-library one; others (e.g. from X509) explain it.
        guard let primary = queue.first(where: { $0.library == ERR_LIB_SSL }) ?? queue.first else {
            // A system-call error with an empty queue: with memory BIOs this only means the
            // transport ended.
            if sslErrorCode == SSL_ERROR_SYSCALL || sslErrorCode == SSL_ERROR_ZERO_RETURN {
                return duringHandshake
                    ? TLSError(code: .handshakeFailed, reason: "the peer closed the connection during the handshake")
                    : uncleanShutdown
            }
            return TLSError(code: fallbackCode, reason: "TLS failed with OpenSSL error \(sslErrorCode) and no detail")
        }
        guard primary.library == ERR_LIB_SSL else {
            return TLSError(code: fallbackCode, reason: queue.map(\.reasonText).joined(separator: "; "))
        }

        switch primary.reason {
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
            let detail = X509_verify_cert_error_string(verifyResult).map { String(cString: $0) } ?? "error \(verifyResult)"
            return TLSError(code: .certificateRejected, reason: "certificate verify failed: \(detail)")
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            return TLSError(code: .certificateRequired, reason: "peer did not present a certificate but one is required")
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
            return TLSError(code: .certificateRequired, reason: "the peer requires a certificate and none was presented")
        case SSL_R_UNSUPPORTED_PROTOCOL, SSL_R_VERSION_TOO_LOW:
            return TLSError(code: .protocolVersionRejected, reason: "protocol version not supported (\(offeredVersion(peerLegacyVersion)))")
        case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
            return TLSError(code: .protocolVersionRejected, reason: "protocol version not supported by the peer (it accepts none of TLS 1.2 and 1.3 that we offered)")
        case SSL_R_NO_SHARED_CIPHER:
            return TLSError(code: .handshakeFailed, reason: "no cipher suite in common with the peer (ECDHE with AES-GCM or ChaCha20-Poly1305 is required)")
        case SSL_R_WRONG_VERSION_NUMBER, SSL_R_HTTP_REQUEST, SSL_R_HTTPS_PROXY_REQUEST, SSL_R_PACKET_LENGTH_TOO_LONG:
            return TLSError(code: .handshakeFailed, reason: "the peer is not speaking TLS (\(primary.reasonText)); is it using plain TCP?")
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA, SSL_R_SSLV3_ALERT_BAD_CERTIFICATE,
            SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED, SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
            return TLSError(code: .certificateRejected, reason: "the peer rejected our certificate (\(alertName(primary.reasonText)))")
        case SSL_R_UNEXPECTED_EOF_WHILE_READING:
            return duringHandshake
                ? TLSError(code: .handshakeFailed, reason: "the peer closed the connection during the handshake")
                : uncleanShutdown
        default:
            if primary.reasonText.contains(" alert ") {
                return TLSError(code: fallbackCode, reason: "the peer sent a fatal alert: \(alertName(primary.reasonText))")
            }
            return TLSError(code: fallbackCode, reason: primary.reasonText)
        }
    }

    static let uncleanShutdown = TLSError(
        code: .uncleanShutdown,
        reason: "the peer closed the connection without sending close_notify"
    )

    /// OpenSSL names received alerts "tlsv1 alert unknown ca"; the alert's own name is the useful part.
    private static func alertName(_ text: String) -> String {
        guard let range = text.firstRange(of: " alert ") else { return text }
        return String(text[range.upperBound...])
    }

    /// A server learns the version in the ClientHello's legacy field; TLS 1.2 and 1.3 clients put
    /// 1.2 there and list the real versions in an extension.
    private static func offeredVersion(_ legacyVersion: Int32) -> String {
        switch legacyVersion {
        case 0x0300: "peer offered SSL 3.0"
        case 0x0301: "peer offered TLS 1.0"
        case 0x0302: "peer offered TLS 1.1"
        case 0x0303, 0x0304: "peer offered only versions outside the accepted range"
        default: "the peer chose a version outside the accepted range"
        }
    }
}
