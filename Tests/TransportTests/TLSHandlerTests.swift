import NIOCore
import NIOEmbedded
import Testing
import Transport

/// `TLSHandler` driven in memory: two `EmbeddedChannel`s, ciphertext carried between them by hand.
@Suite("TLS handler in memory")
struct TLSHandlerTests {
    let certificates: TLSTestCertificates

    init() throws {
        certificates = try TLSTestCertificates.shared()
    }

    private func pair(
        clientAuthentication: TLSConfiguration.ClientAuthentication = .none,
        clientCertificate: Bool = false,
        serverAllowsHalfClosure: Bool = false
    ) throws -> InMemoryTLSPair {
        try InMemoryTLSPair(
            client: .testClient(certificates, withCertificate: clientCertificate),
            server: .testServer(certificates, clientAuthentication: clientAuthentication),
            serverAllowsHalfClosure: serverAllowsHalfClosure
        )
    }

    // MARK: Handshake

    @Test func handshakeReportsVersionCipherAndTheServersIdentity() throws {
        let pair = try pair()
        try pair.handshake()

        let client = try #require(pair.clientEvents.handshake)
        #expect(client.protocolVersion == "TLSv1.3")
        #expect(client.cipher.hasPrefix("TLS_AES_") || client.cipher.hasPrefix("TLS_CHACHA20"))
        #expect(client.peer == TLSPeerIdentity(subject: "CN=localhost", commonNames: ["localhost"], dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]))

        let server = try #require(pair.serverEvents.handshake)
        #expect(server.protocolVersion == "TLSv1.3")
        #expect(server.cipher == client.cipher)
        #expect(server.peer == nil)
        #expect(pair.clientEvents.errors.isEmpty && pair.serverEvents.errors.isEmpty)
    }

    @Test func negotiatesTLS12WhenTheClientCapsItThere() throws {
        let pair = try InMemoryTLSPair(
            client: .testClient(certificates, maximumVersion: .tls1_2),
            server: .testServer(certificates)
        )
        try pair.handshake()
        let completed = try #require(pair.serverEvents.handshake)
        #expect(completed.protocolVersion == "TLSv1.2")
        // ECDHE key exchange with an AEAD cipher, as the configuration allows for TLS 1.2.
        #expect(completed.cipher.hasPrefix("ECDHE-"))
        #expect(completed.cipher.contains("GCM") || completed.cipher.contains("CHACHA20"))
        try pair.send("over 1.2\n", from: pair.client)
        #expect(pair.serverEvents.receivedText == "over 1.2\n")
    }

    @Test func negotiatesTLS13WhenTheServerRequiresIt() throws {
        let pair = try InMemoryTLSPair(
            client: .testClient(certificates),
            server: .testServer(certificates, minimumVersion: .tls1_3)
        )
        try pair.handshake()
        #expect(pair.clientEvents.handshake?.protocolVersion == "TLSv1.3")
    }

    @Test func refusesAPeerWithNoCommonProtocolVersion() throws {
        let pair = try InMemoryTLSPair(
            client: .testClient(certificates, maximumVersion: .tls1_2),
            server: .testServer(certificates, minimumVersion: .tls1_3)
        )
        try pair.handshake()
        let serverError = try #require(pair.serverEvents.errors.first)
        #expect(serverError.code == .protocolVersionRejected)
        #expect(serverError.reason.hasPrefix("protocol version not supported"))
        #expect(pair.clientEvents.errors.first?.code == .protocolVersionRejected)
        #expect(!pair.server.isActive && !pair.client.isActive)
        #expect(pair.serverEvents.handshake == nil)
    }

    @Test func refusesAServerCertificateFromAnotherCA() throws {
        let server = try TLSContext(
            server: .server(certificateChainPath: certificates.otherServerCertificate, privateKeyPath: certificates.otherServerKey)
        )
        let pair = try InMemoryTLSPair(client: .testClient(certificates), server: server)
        try pair.handshake()

        let clientError = try #require(pair.clientEvents.errors.first)
        #expect(clientError.code == .certificateRejected)
        #expect(clientError.reason == "certificate verify failed: unable to get local issuer certificate")
        let serverError = try #require(pair.serverEvents.errors.first)
        #expect(serverError.reason == "the peer rejected our certificate (unknown ca)")
        #expect(!pair.client.isActive && !pair.server.isActive)
    }

    @Test func refusesAServerWhoseCertificateDoesNotNameTheExpectedHost() throws {
        let pair = try InMemoryTLSPair(
            client: .testClient(certificates, serverHostname: "switchboard.example.com"),
            server: .testServer(certificates)
        )
        try pair.handshake()
        let error = try #require(pair.clientEvents.errors.first)
        #expect(error.code == .certificateRejected)
        #expect(error.reason.lowercased() == "certificate verify failed: hostname mismatch")
        #expect(pair.clientEvents.handshake == nil)
    }

    @Test func checksAnIPAddressAgainstTheCertificatesIPAddresses() throws {
        let matching = try InMemoryTLSPair(
            client: .testClient(certificates, serverHostname: "127.0.0.1"),
            server: .testServer(certificates)
        )
        try matching.handshake()
        #expect(matching.clientEvents.handshake != nil)

        let other = try InMemoryTLSPair(
            client: .testClient(certificates, serverHostname: "10.9.8.7"),
            server: .testServer(certificates)
        )
        try other.handshake()
        #expect(other.clientEvents.errors.first?.reason.lowercased() == "certificate verify failed: ip address mismatch")
    }

    @Test func aPerConnectionHostnameOverridesTheConfiguredOne() throws {
        let pair = try InMemoryTLSPair(
            client: .testClient(certificates, serverHostname: "localhost"),
            server: .testServer(certificates),
            serverHostname: "elsewhere.example"
        )
        try pair.handshake()
        #expect(pair.clientEvents.errors.first?.code == .certificateRejected)
    }

    @Test func refusesBytesThatAreNotTLS() throws {
        let server = EmbeddedChannel()
        defer { server.tearDown() }
        let events = TLSEventRecorder()
        try server.pipeline.syncOperations.addHandlers(try TLSHandler(context: .testServer(certificates)), events)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try server.writeInbound(ByteBuffer(string: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"))

        let error = try #require(events.errors.first)
        #expect(error.code == .handshakeFailed)
        #expect(error.reason.hasPrefix("the peer is not speaking TLS"))
        #expect(!server.isActive)
    }

    @Test func closesAPeerThatSaysNothingWithinTheHandshakeTimeout() throws {
        let server = EmbeddedChannel()
        defer { server.tearDown() }
        let events = TLSEventRecorder()
        try server.pipeline.syncOperations.addHandlers(
            try TLSHandler(context: .testServer(certificates), handshakeTimeout: .seconds(10)),
            events
        )
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()

        server.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(server.isActive)
        server.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!server.isActive)
        let error = try #require(events.errors.first)
        #expect(error.code == .handshakeTimedOut)
        #expect(error.reason == "the peer did not complete the TLS handshake within 10 s")
    }

    @Test func aCompletedHandshakeCancelsTheTimeout() throws {
        let pair = try InMemoryTLSPair(
            client: .testClient(certificates),
            server: .testServer(certificates),
            handshakeTimeout: .seconds(1)
        )
        try pair.handshake()
        pair.server.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(pair.server.isActive)
        #expect(pair.serverEvents.errors.isEmpty)
    }

    // MARK: Data

    @Test func carriesDataBothWays() throws {
        let pair = try pair()
        try pair.handshake()
        try pair.send("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n", from: pair.client)
        #expect(pair.serverEvents.receivedText == "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
        try pair.send("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n", from: pair.server)
        #expect(pair.clientEvents.receivedText == "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n")
    }

    @Test func holdsWritesMadeBeforeTheHandshakeAndSendsThemAfter() throws {
        let pair = try pair()
        try pair.connect()
        let written = pair.client.writeAndFlush(ByteBuffer(string: "early\n"))
        #expect(pair.clientWrites.isEmpty)
        try pair.interact()
        try written.wait()
        #expect(pair.serverEvents.receivedText == "early\n")
    }

    @Test func refusesWritesBeyondTheLimitBeforeTheHandshake() throws {
        let pair = try InMemoryTLSPair(
            client: .testClient(certificates),
            server: .testServer(certificates),
            maximumPendingWriteBytes: 1024
        )
        try pair.connect()
        pair.client.write(ByteBuffer(repeating: 0x61, count: 1000), promise: nil)
        let refused = pair.client.write(ByteBuffer(repeating: 0x62, count: 100))
        #expect(throws: TLSError.self) { try refused.wait() }
        pair.client.flush()
        try pair.interact()
        #expect(pair.serverEvents.received.readableBytes == 1000)
    }

    @Test func splitsALargeWriteIntoRecordsAndDeliversItWhole() throws {
        let pair = try pair()
        try pair.handshake()
        let before = pair.clientWrites.count
        var payload = ByteBuffer()
        for index in 0..<(1 << 20) { payload.writeInteger(UInt8(truncatingIfNeeded: index &* 7)) }
        try pair.client.writeAndFlush(payload).wait()
        try pair.interact()

        // One network write, holding one record per 16 KiB of plaintext.
        let sent = pair.clientWrites[before...]
        #expect(sent.count == 1)
        let records = try #require(sent.first).tlsRecordLengths()
        #expect(records.count >= 64)
        #expect(records.allSatisfy { $0 <= 16 * 1024 + 256 })
        #expect(pair.serverEvents.received == payload)
        #expect(pair.serverEvents.chunkSizes.allSatisfy { $0 <= 64 * 1024 })
    }

    @Test func coalescesManyWritesIntoOneNetworkWritePerFlush() throws {
        let pair = try pair()
        try pair.handshake()
        let before = pair.clientWrites.count
        var promises: [EventLoopFuture<Void>] = []
        for index in 0..<10 {
            promises.append(pair.client.write(ByteBuffer(string: "message \(index)\n")))
        }
        pair.client.flush()
        try pair.interact()
        #expect(pair.clientWrites.count == before + 1)
        for promise in promises { try promise.wait() }
        #expect(pair.serverEvents.receivedText == (0..<10).map { "message \($0)\n" }.joined())
    }

    // MARK: Closing

    @Test func clientCloseExchangesCloseNotifyBothWays() throws {
        let pair = try pair()
        try pair.handshake()
        let closed = pair.client.close()
        try pair.interact()
        try closed.wait()
        #expect(!pair.client.isActive && !pair.server.isActive)
        #expect(pair.clientEvents.errors.isEmpty && pair.serverEvents.errors.isEmpty)
        // Two alerts crossed: the client's close_notify and the server's answer.
        #expect(pair.clientWrites.last?.tlsRecordTypes() == [23])
        #expect(pair.serverWrites.last?.tlsRecordTypes() == [23])
    }

    @Test func serverCloseExchangesCloseNotifyBothWays() throws {
        let pair = try pair()
        try pair.handshake()
        try pair.send("bye\n", from: pair.server)
        let closed = pair.server.close()
        try pair.interact()
        try closed.wait()
        #expect(!pair.client.isActive && !pair.server.isActive)
        #expect(pair.clientEvents.receivedText == "bye\n")
        #expect(pair.clientEvents.errors.isEmpty && pair.serverEvents.errors.isEmpty)
    }

    @Test func withHalfClosureTheServerAnswersAfterTheClientsCloseNotify() throws {
        let pair = try pair(serverAllowsHalfClosure: true)
        try pair.handshake()
        pair.client.write(ByteBuffer(string: "last request\n"), promise: nil)
        let closed = pair.client.close()
        try pair.interact()
        #expect(pair.serverEvents.inputClosed)
        #expect(pair.server.isActive)

        try pair.server.writeAndFlush(ByteBuffer(string: "last answer\n")).wait()
        _ = pair.server.close()
        try pair.interact()
        try closed.wait()
        #expect(pair.serverEvents.receivedText == "")
        #expect(pair.clientEvents.receivedText == "last answer\n")
        #expect(!pair.server.isActive && !pair.client.isActive)
    }

    @Test func closeOutputDuringTheHandshakeSendsEarlierWritesFirst() throws {
        let pair = try pair()
        try pair.connect()
        pair.client.write(ByteBuffer(string: "early\n"), promise: nil)
        let closedOutput = pair.client.close(mode: .output)
        #expect(throws: ChannelError.self) { try pair.client.writeAndFlush(ByteBuffer(string: "too late\n")).wait() }
        try pair.interact()
        try closedOutput.wait()
        #expect(pair.serverEvents.receivedText == "early\n")
        #expect(pair.serverEvents.errors.isEmpty)
    }

    @Test func closesAfterTheCloseTimeoutWhenThePeerNeverAnswers() throws {
        let pair = try pair()
        try pair.handshake()
        let closed = pair.client.close()
        #expect(pair.client.isActive)
        pair.client.embeddedEventLoop.advanceTime(by: TLSHandler.defaultCloseTimeout)
        try closed.wait()
        #expect(!pair.client.isActive)
        #expect(pair.clientEvents.errors.isEmpty)
    }

    @Test func aPeerVanishingWithoutCloseNotifyIsReportedNotFatal() throws {
        let pair = try pair()
        try pair.handshake()
        try pair.send("partial", from: pair.client)
        // The transport ends under the server with no close_notify.
        pair.server.pipeline.fireChannelInactive()
        #expect(pair.serverEvents.receivedText == "partial")
        let error = try #require(pair.serverEvents.errors.first)
        #expect(error.code == .uncleanShutdown)
        #expect(error.reason == "the peer closed the connection without sending close_notify")
        #expect(pair.serverEvents.inactive)
    }

    @Test func aHalfClosedTransportWithoutCloseNotifyEndsInputAndIsReported() throws {
        let pair = try pair(serverAllowsHalfClosure: true)
        try pair.handshake()
        pair.server.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(pair.serverEvents.errors.map(\.code) == [.uncleanShutdown])
        #expect(pair.serverEvents.inputClosed)
        // The server may still answer, then closes without waiting for a close_notify.
        try pair.server.writeAndFlush(ByteBuffer(string: "still here\n")).wait()
        try pair.server.close().wait()
        try pair.interact()
        #expect(pair.clientEvents.receivedText == "still here\n")
    }

    @Test func writesAfterCloseFail() throws {
        let pair = try pair()
        try pair.handshake()
        _ = pair.client.close()
        #expect(throws: ChannelError.self) { try pair.client.writeAndFlush(ByteBuffer(string: "late")).wait() }
    }

    // MARK: Mutual TLS

    @Test func requireAcceptsAClientCertificateAndReportsItsIdentity() throws {
        let pair = try pair(clientAuthentication: .require, clientCertificate: true)
        try pair.handshake()
        let peer = try #require(pair.serverEvents.handshake?.peer)
        #expect(peer.subject == TLSTestCertificates.clientSubject)
        #expect(peer.dnsNames == ["agent-7.example"])
        #expect(peer.ipAddresses == ["10.0.0.7", "::1"])
        #expect(peer.uris == ["spiffe://switchboard/agent-7"])
        #expect(peer.emailAddresses == ["agent7@example.com"])
        try pair.send("hello\n", from: pair.client)
        #expect(pair.serverEvents.receivedText == "hello\n")
    }

    @Test func requireRefusesAClientWithoutCertificate() throws {
        let pair = try pair(clientAuthentication: .require)
        try pair.handshake()
        let serverError = try #require(pair.serverEvents.errors.first)
        #expect(serverError.code == .certificateRequired)
        #expect(serverError.reason == "peer did not present a certificate but one is required")
        #expect(pair.serverEvents.handshake == nil)
        // In TLS 1.3 the client learns it after its side of the handshake, from the alert.
        #expect(pair.clientEvents.errors.first?.code == .certificateRequired)
        #expect(!pair.client.isActive && !pair.server.isActive)
    }

    @Test func requireRefusesAClientWithoutCertificateOverTLS12() throws {
        let pair = try InMemoryTLSPair(
            client: .testClient(certificates, maximumVersion: .tls1_2),
            server: .testServer(certificates, clientAuthentication: .require)
        )
        try pair.handshake()
        #expect(pair.serverEvents.errors.first?.reason == "peer did not present a certificate but one is required")
        #expect(pair.clientEvents.handshake == nil)
        #expect(pair.clientEvents.errors.first?.reason.hasPrefix("the peer sent a fatal alert") == true)
    }

    @Test func requireRefusesAClientCertificateFromAnotherCA() throws {
        let client = try TLSContext(
            client: .client(
                trustRootsPath: certificates.caCertificate, serverHostname: "localhost",
                certificateChainPath: certificates.otherClientCertificate, privateKeyPath: certificates.otherClientKey
            )
        )
        let pair = try InMemoryTLSPair(client: client, server: .testServer(certificates, clientAuthentication: .require))
        try pair.handshake()
        let error = try #require(pair.serverEvents.errors.first)
        #expect(error.code == .certificateRejected)
        #expect(error.reason == "certificate verify failed: unable to get local issuer certificate")
        #expect(pair.clientEvents.errors.first?.reason == "the peer rejected our certificate (unknown ca)")
    }

    @Test func optionalLetsAClientWithoutCertificateInAnonymously() throws {
        let pair = try pair(clientAuthentication: .optional)
        try pair.handshake()
        let completed = try #require(pair.serverEvents.handshake)
        #expect(completed.peer == nil)
        try pair.send("anonymous\n", from: pair.client)
        #expect(pair.serverEvents.receivedText == "anonymous\n")
    }

    @Test func optionalStillVerifiesACertificateThatIsPresented() throws {
        let pair = try pair(clientAuthentication: .optional, clientCertificate: true)
        try pair.handshake()
        #expect(pair.serverEvents.handshake?.peer?.subject == TLSTestCertificates.clientSubject)

        let intruder = try TLSContext(
            client: .client(
                trustRootsPath: certificates.caCertificate, serverHostname: "localhost",
                certificateChainPath: certificates.otherClientCertificate, privateKeyPath: certificates.otherClientKey
            )
        )
        let refused = try InMemoryTLSPair(client: intruder, server: .testServer(certificates, clientAuthentication: .optional))
        try refused.handshake()
        #expect(refused.serverEvents.errors.first?.code == .certificateRejected)
    }

    @Test func noneDoesNotAskForTheClientsCertificate() throws {
        let pair = try pair(clientAuthentication: .none, clientCertificate: true)
        try pair.handshake()
        #expect(pair.serverEvents.handshake != nil)
        #expect(pair.serverEvents.handshake?.peer == nil)
    }
}

extension ByteBuffer {
    /// The content types of the TLS records in this buffer (23 is application data, which is how
    /// TLS 1.3 disguises alerts).
    func tlsRecordTypes() -> [UInt8] {
        tlsRecords().map(\.type)
    }

    func tlsRecordLengths() -> [Int] {
        tlsRecords().map(\.length)
    }

    private func tlsRecords() -> [(type: UInt8, length: Int)] {
        var buffer = self
        var records: [(UInt8, Int)] = []
        while let type = buffer.readInteger(as: UInt8.self),
              buffer.readInteger(as: UInt16.self) != nil,
              let length = buffer.readInteger(as: UInt16.self) {
            records.append((type, Int(length)))
            buffer.moveReaderIndex(forwardBy: min(Int(length), buffer.readableBytes))
        }
        return records
    }
}
