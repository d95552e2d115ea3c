/// Who the peer proved to be with its certificate.
///
/// On a server this is the client certificate (mutual TLS), the identity the gateway can
/// authorize on; on a client it is the server's certificate.
public struct TLSPeerIdentity: Sendable, Hashable {
    /// The certificate's subject as an RFC 2253 string, e.g. `CN=agent-7,O=Example`.
    public var subject: String
    /// The subject's common names, read attribute by attribute (never parsed out of `subject`,
    /// where an escaped comma inside another attribute could pass for one).
    public var commonNames: [String]
    /// Subject alternative names of type DNS.
    public var dnsNames: [String]
    /// Subject alternative names of type IP address, in their usual text form.
    public var ipAddresses: [String]
    /// Subject alternative names of type URI (a SPIFFE ID, say).
    public var uris: [String]
    /// Subject alternative names of type email (rfc822Name).
    public var emailAddresses: [String]

    public init(
        subject: String,
        commonNames: [String] = [],
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        uris: [String] = [],
        emailAddresses: [String] = []
    ) {
        self.subject = subject
        self.commonNames = commonNames
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.uris = uris
        self.emailAddresses = emailAddresses
    }
}

/// Fired as a user inbound event by `TLSHandler` when the handshake completes, before any
/// application data is passed on.
public struct TLSHandshakeCompleted: Sendable, Hashable {
    /// The negotiated protocol version as OpenSSL names it: `TLSv1.2` or `TLSv1.3`.
    public var protocolVersion: String
    /// The negotiated cipher suite as OpenSSL names it, e.g. `TLS_AES_256_GCM_SHA384`.
    public var cipher: String
    /// The peer's verified certificate; nil when it presented none.
    public var peer: TLSPeerIdentity?

    public init(protocolVersion: String, cipher: String, peer: TLSPeerIdentity?) {
        self.protocolVersion = protocolVersion
        self.cipher = cipher
        self.peer = peer
    }
}
