import Foundation
import NIOCore
import NIOEmbedded
import Transport

/// Certificates made once per test run with the `openssl` command, in a temporary directory:
/// a CA, a server certificate for localhost and 127.0.0.1, a client certificate with every kind
/// of subject alternative name, a second CA with its own server and client certificates, and
/// certificates outside their validity period.
final class TLSTestCertificates: Sendable {
    let directory: String

    var caCertificate: String { path("ca.pem") }
    var serverCertificate: String { path("server.pem") }
    var serverKey: String { path("server.key") }
    /// The server's certificate followed by the CA's: a chain file.
    var serverChain: String { path("server-chain.pem") }
    var clientCertificate: String { path("client.pem") }
    var clientKey: String { path("client.key") }
    var otherCACertificate: String { path("other-ca.pem") }
    var otherServerCertificate: String { path("other-server.pem") }
    var otherServerKey: String { path("other-server.key") }
    var otherClientCertificate: String { path("other-client.pem") }
    var otherClientKey: String { path("other-client.key") }
    var reloadedServerCertificate: String { path("reloaded.pem") }
    var reloadedServerKey: String { path("reloaded.key") }
    var expiredCertificate: String { path("expired.pem") }
    var expiredKey: String { path("expired.key") }
    var futureCertificate: String { path("future.pem") }
    var futureKey: String { path("future.key") }
    var encryptedKey: String { path("encrypted.key") }
    var notPEM: String { path("not-pem.txt") }

    static let clientSubject = "CN=agent-7,O=Switchboard Tests"

    private static let made = Result { try TLSTestCertificates() }
    private static let temporaryDirectory = NSTemporaryDirectory() + "switchboard-tls-\(getpid())"

    /// The certificates of this test run, made on first use.
    static func shared() throws -> TLSTestCertificates {
        try made.get()
    }

    func path(_ name: String) -> String { directory + "/" + name }

    private init() throws {
        directory = Self.temporaryDirectory
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: TLSTestCertificates.temporaryDirectory) }
        try makeCA("ca", subject: "/O=Switchboard Tests/CN=Switchboard Test CA")
        try makeCA("other-ca", subject: "/O=Elsewhere/CN=Other CA")
        try makeLeaf(
            "server", ca: "ca", subject: "/CN=localhost",
            extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
        )
        try makeLeaf(
            "client", ca: "ca", subject: "/O=Switchboard Tests/CN=agent-7",
            extensions: "subjectAltName=DNS:agent-7.example,IP:10.0.0.7,IP:::1,URI:spiffe://switchboard/agent-7,email:agent7@example.com\nextendedKeyUsage=clientAuth"
        )
        try makeLeaf(
            "other-server", ca: "other-ca", subject: "/CN=localhost",
            extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
        )
        try makeLeaf(
            "other-client", ca: "other-ca", subject: "/CN=intruder",
            extensions: "extendedKeyUsage=clientAuth"
        )
        try makeLeaf(
            "reloaded", ca: "ca", subject: "/CN=reloaded.localhost",
            extensions: "subjectAltName=DNS:localhost,DNS:reloaded.localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
        )
        try makeLeaf(
            "expired", ca: "ca", subject: "/CN=expired", extensions: "subjectAltName=DNS:localhost",
            dates: ("20200101000000Z", "20200102000000Z")
        )
        try makeLeaf(
            "future", ca: "ca", subject: "/CN=future", extensions: "subjectAltName=DNS:localhost",
            dates: ("20990101000000Z", "20990102000000Z")
        )
        try openssl(["pkey", "-in", serverKey, "-aes256", "-passout", "pass:secret", "-out", encryptedKey])
        try String(contentsOfFile: serverCertificate, encoding: .utf8)
            .appending(String(contentsOfFile: caCertificate, encoding: .utf8))
            .write(toFile: serverChain, atomically: true, encoding: .utf8)
        try "this is not a certificate\n".write(toFile: notPEM, atomically: true, encoding: .utf8)
    }

    private func makeCA(_ name: String, subject: String) throws {
        try openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", path("\(name).key"), "-out", path("\(name).pem"), "-days", "30", "-subj", subject,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        // `openssl ca` (used for leaves, as it sets arbitrary dates) keeps its state in files.
        try "".write(toFile: path("\(name).index"), atomically: true, encoding: .utf8)
        try "1000\n".write(toFile: path("\(name).serial"), atomically: true, encoding: .utf8)
        let configuration = """
            [ ca ]
            default_ca = signer
            [ signer ]
            database = \(path("\(name).index"))
            serial = \(path("\(name).serial"))
            new_certs_dir = \(directory)
            default_md = sha256
            default_days = 30
            policy = anything
            unique_subject = no
            [ anything ]
            commonName = supplied
            organizationName = optional
            """
        try configuration.write(toFile: path("\(name).cnf"), atomically: true, encoding: .utf8)
    }

    private func makeLeaf(_ name: String, ca: String, subject: String, extensions: String, dates: (String, String)? = nil) throws {
        try openssl([
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", subject,
        ])
        try (extensions + "\nbasicConstraints=CA:FALSE\n").write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
        var arguments = [
            "ca", "-batch", "-notext", "-preserveDN", "-config", path("\(ca).cnf"), "-cert", path("\(ca).pem"), "-keyfile", path("\(ca).key"),
            "-in", path("\(name).csr"), "-out", path("\(name).pem"), "-extfile", path("\(name).ext"),
        ]
        if let dates {
            arguments += ["-startdate", dates.0, "-enddate", dates.1]
        }
        try openssl(arguments)
    }

    private func openssl(_ arguments: [String]) throws {
        let result = try ExternalCommand.runSynchronously(["openssl"] + arguments)
        guard result.status == 0 else {
            throw ExternalCommand.Failure(description: "openssl \(arguments.joined(separator: " ")) failed: \(result.standardError)")
        }
    }
}

/// Runs a program to completion, its output captured in files so that no pipe can fill up.
enum ExternalCommand {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    struct Result: Sendable {
        var status: Int32
        var standardOutput: String
        var standardError: String
    }

    static func runSynchronously(_ arguments: [String], input: String = "") throws -> Result {
        let scratch = NSTemporaryDirectory() + "switchboard-cmd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let inputPath = scratch + "/in", outputPath = scratch + "/out", errorPath = scratch + "/err"
        try input.write(toFile: inputPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inputPath))
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
        try process.run()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            standardOutput: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
            standardError: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        )
    }

    /// The same, off the caller's thread, so that an event loop in the test process keeps serving.
    static func run(_ arguments: [String], input: String = "") async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Swift.Result { try runSynchronously(arguments, input: input) })
            }
        }
    }
}

/// Sits behind a `TLSHandler` in an `EmbeddedChannel` and records what comes out of it.
final class TLSEventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    var received = ByteBuffer()
    var chunkSizes: [Int] = []
    var handshake: TLSHandshakeCompleted?
    var errors: [TLSError] = []
    var otherErrors: [any Error] = []
    var inputClosed = false
    var inactive = false

    var receivedText: String { String(buffer: received) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        chunkSizes.append(chunk.readableBytes)
        received.writeBuffer(&chunk)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted {
            handshake = completed
        } else if case ChannelEvent.inputClosed = event {
            inputClosed = true
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? TLSError {
            errors.append(error)
        } else {
            otherErrors.append(error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        inactive = true
    }
}

/// A client and a server `TLSHandler`, each in its own `EmbeddedChannel`, with the ciphertext
/// carried between them by hand.
final class InMemoryTLSPair {
    let client: EmbeddedChannel
    let server: EmbeddedChannel
    let clientEvents = TLSEventRecorder()
    let serverEvents = TLSEventRecorder()
    /// Every ciphertext buffer the client wrote, in order.
    private(set) var clientWrites: [ByteBuffer] = []
    private(set) var serverWrites: [ByteBuffer] = []

    init(
        client clientContext: TLSContext,
        server serverContext: TLSContext,
        serverHostname: String? = nil,
        serverAllowsHalfClosure: Bool = false,
        handshakeTimeout: TimeAmount = TLSHandler.defaultHandshakeTimeout,
        maximumPendingWriteBytes: Int = TLSHandler.defaultMaximumPendingWriteBytes
    ) throws {
        client = EmbeddedChannel()
        server = EmbeddedChannel()
        server.allowRemoteHalfClosure = serverAllowsHalfClosure
        try client.pipeline.syncOperations.addHandlers(
            try TLSHandler(
                context: clientContext, serverHostname: serverHostname,
                maximumPendingWriteBytes: maximumPendingWriteBytes
            ),
            clientEvents
        )
        try server.pipeline.syncOperations.addHandlers(
            try TLSHandler(context: serverContext, handshakeTimeout: handshakeTimeout),
            serverEvents
        )
    }

    deinit {
        // Closes both ends and runs their loops, so that the pipelines, and the OpenSSL objects
        // their handlers own, are freed: the leak check relies on it.
        _ = client.close()
        _ = server.close()
        try? interact()
        client.embeddedEventLoop.advanceTime(by: TLSHandler.defaultCloseTimeout)
        server.embeddedEventLoop.advanceTime(by: TLSHandler.defaultCloseTimeout)
        client.tearDown()
        server.tearDown()
    }

    /// Activates both channels; the client's first flight waits in its outbound buffer.
    func connect() throws {
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7443)).wait()
    }

    /// Carries ciphertext both ways until neither side has anything more to say.
    func interact() throws {
        var moved = true
        while moved {
            moved = false
            while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                moved = true
                clientWrites.append(bytes)
                if server.isActive { try server.writeInbound(bytes) }
            }
            while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                moved = true
                serverWrites.append(bytes)
                if client.isActive { try client.writeInbound(bytes) }
            }
        }
    }

    func handshake() throws {
        try connect()
        try interact()
    }

    /// Sends `text` from `channel` and carries it across.
    func send(_ text: String, from channel: EmbeddedChannel) throws {
        try channel.writeAndFlush(ByteBuffer(string: text)).wait()
        try interact()
    }
}

extension EmbeddedChannel {
    /// Closes the channel if still open and runs its loop, which takes the handlers out of the
    /// pipeline and breaks the channel's reference cycles.
    func tearDown() {
        _ = try? finish(acceptAlreadyClosed: true)
    }
}

extension TLSContext {
    static func testServer(
        _ certificates: TLSTestCertificates,
        clientAuthentication: TLSConfiguration.ClientAuthentication = .none,
        minimumVersion: TLSConfiguration.ProtocolVersion = .tls1_2,
        maximumVersion: TLSConfiguration.ProtocolVersion = .tls1_3
    ) throws -> TLSContext {
        var configuration = TLSConfiguration.server(
            certificateChainPath: certificates.serverCertificate,
            privateKeyPath: certificates.serverKey,
            trustRootsPath: certificates.caCertificate,
            clientAuthentication: clientAuthentication
        )
        configuration.minimumProtocolVersion = minimumVersion
        configuration.maximumProtocolVersion = maximumVersion
        return try TLSContext(server: configuration)
    }

    static func testClient(
        _ certificates: TLSTestCertificates,
        withCertificate: Bool = false,
        trustRoots: String? = nil,
        serverHostname: String? = "localhost",
        minimumVersion: TLSConfiguration.ProtocolVersion = .tls1_2,
        maximumVersion: TLSConfiguration.ProtocolVersion = .tls1_3
    ) throws -> TLSContext {
        var configuration = TLSConfiguration.client(
            trustRootsPath: trustRoots ?? certificates.caCertificate,
            serverHostname: serverHostname,
            certificateChainPath: withCertificate ? certificates.clientCertificate : nil,
            privateKeyPath: withCertificate ? certificates.clientKey : nil
        )
        configuration.minimumProtocolVersion = minimumVersion
        configuration.maximumProtocolVersion = maximumVersion
        return try TLSContext(client: configuration)
    }
}
