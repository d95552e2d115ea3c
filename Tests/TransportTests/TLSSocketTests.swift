import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import Transport

/// A real NIO server with `TLSHandler` on 127.0.0.1, and real clients: `openssl s_client` and
/// Python's `ssl` module.
@Suite("TLS over sockets", .timeLimit(.minutes(1)))
struct TLSSocketTests {
    let certificates: TLSTestCertificates

    init() throws {
        certificates = try TLSTestCertificates.shared()
    }

    // MARK: openssl s_client

    private func sClient(port: Int, _ options: [String]) async throws -> ExternalCommand.Result {
        try await ExternalCommand.run(
            ["timeout", "20", "openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", certificates.caCertificate,
             "-verify_return_error", "-verify_hostname", "localhost", "-quiet"] + options,
            input: "hello from s_client\n"
        )
    }

    @Test func opensslClientExchangesALineOverTLS13() async throws {
        try await TLSLineServer.with(context: .testServer(certificates)) { server in
            let result = try await sClient(port: server.port, ["-tls1_3"])
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardOutput == "echo: hello from s_client (anonymous, TLSv1.3)\n")
            let completed = await server.log.first { if case .handshake = $0 { true } else { false } }
            #expect(completed == .handshake(version: "TLSv1.3", subject: nil))
        }
    }

    @Test func opensslClientExchangesALineOverTLS12() async throws {
        try await TLSLineServer.with(context: .testServer(certificates)) { server in
            let result = try await sClient(port: server.port, ["-tls1_2"])
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardOutput == "echo: hello from s_client (anonymous, TLSv1.2)\n")
        }
    }

    @Test func opensslClientOfferingTLS11IsRefused() async throws {
        try await TLSLineServer.with(context: .testServer(certificates)) { server in
            // OpenSSL 3 itself refuses TLS 1.1 below security level 0; lower it so that the
            // client really offers TLS 1.1 and the refusal is the server's.
            let result = try await sClient(port: server.port, ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
            #expect(result.status != 0)
            #expect(result.standardOutput.isEmpty)
            let refusal = await server.log.first { if case .error = $0 { true } else { false } }
            #expect(refusal == .error(code: .protocolVersionRejected, reason: "protocol version not supported (peer offered TLS 1.1)"))
        }
    }

    @Test func opensslClientWithAClientCertificateIsIdentified() async throws {
        try await TLSLineServer.with(context: .testServer(certificates, clientAuthentication: .require)) { server in
            let result = try await sClient(port: server.port, ["-cert", certificates.clientCertificate, "-key", certificates.clientKey])
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardOutput == "echo: hello from s_client (\(TLSTestCertificates.clientSubject), TLSv1.3)\n")
        }
    }

    // MARK: Python's ssl module

    private func python(port: Int, certificate: (String, String)? = nil) async throws -> ExternalCommand.Result {
        let script = """
            import socket, ssl, sys
            port, ca = int(sys.argv[1]), sys.argv[2]
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
            if len(sys.argv) > 4:
                context.load_cert_chain(sys.argv[3], sys.argv[4])
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.sendall(b"hello from python\\n")
                        data = b""
                        while not data.endswith(b"\\n"):
                            chunk = tls.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                        print(tls.version(), data.decode().strip())
                        tls.unwrap()
            except Exception as error:
                print("ERROR:", error)
                sys.exit(1)
            """
        var arguments = ["timeout", "20", "python3", "-c", script, "\(port)", certificates.caCertificate]
        if let certificate { arguments += [certificate.0, certificate.1] }
        return try await ExternalCommand.run(arguments)
    }

    @Test func pythonClientWithoutCertificate() async throws {
        try await TLSLineServer.with(context: .testServer(certificates, clientAuthentication: .optional)) { server in
            let result = try await python(port: server.port)
            #expect(result.status == 0, "\(result.standardOutput) \(result.standardError)")
            #expect(result.standardOutput == "TLSv1.3 echo: hello from python (anonymous, TLSv1.3)\n")
        }
    }

    @Test func pythonClientWithCertificateIsIdentified() async throws {
        try await TLSLineServer.with(context: .testServer(certificates, clientAuthentication: .require)) { server in
            let result = try await python(port: server.port, certificate: (certificates.clientCertificate, certificates.clientKey))
            #expect(result.status == 0, "\(result.standardOutput) \(result.standardError)")
            #expect(result.standardOutput == "TLSv1.3 echo: hello from python (\(TLSTestCertificates.clientSubject), TLSv1.3)\n")
            // Python answered our close_notify with its own: no unclean shutdown on either side.
            let closed = await server.log.first { if case .closed = $0 { true } else { false } }
            #expect(closed == .closed)
            #expect(server.log.events.allSatisfy { if case .error = $0 { false } else { true } })
        }
    }

    @Test func aClientVanishingWithoutCloseNotifyIsReportedAndTheServerCarriesOn() async throws {
        try await TLSLineServer.with(context: .testServer(certificates)) { server in
            // Python's SSLSocket.close() closes the socket without sending close_notify.
            let script = """
                import socket, ssl, sys
                context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=sys.argv[2])
                raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
                tls = context.wrap_socket(raw, server_hostname="localhost")
                tls.sendall(b"cut off")
                tls.close()
                """
            let vanished = try await ExternalCommand.run(["timeout", "20", "python3", "-c", script, "\(server.port)", certificates.caCertificate])
            #expect(vanished.status == 0, "\(vanished.standardError)")
            let report = await server.log.first { if case .error = $0 { true } else { false } }
            #expect(report == .error(code: .uncleanShutdown, reason: "the peer closed the connection without sending close_notify"))

            let next = try await python(port: server.port)
            #expect(next.standardOutput == "TLSv1.3 echo: hello from python (anonymous, TLSv1.3)\n")
        }
    }

    @Test func pythonClientWithoutCertificateIsRefusedWhenOneIsRequired() async throws {
        try await TLSLineServer.with(context: .testServer(certificates, clientAuthentication: .require)) { server in
            let result = try await python(port: server.port)
            #expect(result.status == 1)
            #expect(result.standardOutput.contains("certificate required"), "\(result.standardOutput)")
            let refusal = await server.log.first { if case .error = $0 { true } else { false } }
            #expect(refusal == .error(code: .certificateRequired, reason: "peer did not present a certificate but one is required"))
        }
    }
}

/// What the test server saw on its connections.
enum ServerEvent: Sendable, Equatable {
    case handshake(version: String, subject: String?)
    case error(code: TLSError.Code, reason: String)
    case closed
}

/// The test server's record of events, which a test can wait on.
final class ServerEventLog: Sendable {
    private struct Waiter {
        let matches: @Sendable (ServerEvent) -> Bool
        let continuation: CheckedContinuation<ServerEvent, Never>
    }

    private let state = Mutex<(events: [ServerEvent], waiters: [Waiter])>(([], []))

    var events: [ServerEvent] { state.withLock { $0.events } }

    func record(_ event: ServerEvent) {
        let ready = state.withLock { state -> [Waiter] in
            state.events.append(event)
            let ready = state.waiters.filter { $0.matches(event) }
            state.waiters.removeAll { $0.matches(event) }
            return ready
        }
        ready.forEach { $0.continuation.resume(returning: event) }
    }

    /// The first event, past or future, for which `matches` holds.
    func first(where matches: @escaping @Sendable (ServerEvent) -> Bool) async -> ServerEvent {
        await withCheckedContinuation { continuation in
            let past = state.withLock { state -> ServerEvent? in
                if let past = state.events.first(where: matches) { return past }
                state.waiters.append(Waiter(matches: matches, continuation: continuation))
                return nil
            }
            if let past { continuation.resume(returning: past) }
        }
    }
}

/// A TLS server on 127.0.0.1 that answers the first line of each connection and closes it.
struct TLSLineServer: Sendable {
    let port: Int
    let log: ServerEventLog

    static func with(context: TLSContext, _ body: (TLSLineServer) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let log = ServerEventLog()
        do {
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            try TLSHandler(context: context),
                            ByteToMessageHandler(LineFrameDecoder(maximumLineLength: 4096)),
                            LineReplyHandler(log: log)
                        )
                    }
                }
                .bind(host: "127.0.0.1", port: 0)
                .get()
            let port = try #require(channel.localAddress?.port)
            do {
                try await body(TLSLineServer(port: port, log: log))
            } catch {
                try? await channel.close()
                throw error
            }
            try await channel.close()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }
}

/// Answers "echo: LINE (WHO, VERSION)" and closes the connection.
final class LineReplyHandler: ChannelInboundHandler {
    typealias InboundIn = LineFrame
    typealias OutboundOut = ByteBuffer

    private let log: ServerEventLog
    private var handshake: TLSHandshakeCompleted?

    init(log: ServerEventLog) {
        self.log = log
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted {
            handshake = completed
            log.record(.handshake(version: completed.protocolVersion, subject: completed.peer?.subject))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let line) = unwrapInboundIn(data) else { return }
        let who = handshake?.peer?.subject ?? "anonymous"
        let reply = "echo: \(String(buffer: line)) (\(who), \(handshake?.protocolVersion ?? "?"))\n"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? TLSError {
            log.record(.error(code: error.code, reason: error.reason))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        log.record(.closed)
    }
}
