import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import Transport

/// What TLS costs: connections per second with a full handshake, and ping round trips over a TLS
/// connection, each beside the same measurement over plain TCP, against one `switchboard serve`
/// process listening on both.
struct TLSBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls",
        abstract: "TLS handshakes per second, and ping over TLS against plain TCP, through switchboard.",
        discussion: """
            Makes a test CA, a server certificate and a client certificate with the openssl command in a \
            temporary directory, starts `switchboard serve` with a tcp:// and a tls:// listener, and \
            measures on each: connections per second (connect, handshake, one ping, close), one at a \
            time and --concurrency at once; then ping round trips on one connection, sequential and \
            --in-flight at once. Every TLS connection does a full handshake (no session resumption).
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Connections per connection-rate measurement.")
    var connections: Int = 2_000

    @Option(help: "Connections opened at once in the concurrent connection-rate measurement.")
    var concurrency: Int = 16

    @Option(help: "Key type of the certificates: ec (P-256) or rsa (2048 bits).")
    var keyType: KeyType = .ec

    @Flag(help: "Mutual TLS: the gateway requires a client certificate and the client presents one.")
    var mutual = false

    enum KeyType: String, ExpressibleByArgument, CaseIterable {
        case ec, rsa
    }

    func validate() throws {
        guard connections > 0, concurrency > 0, options.requests > 0, options.sequentialRequests > 0, options.inFlight > 0 else {
            throw ValidationError("counts must be positive")
        }
    }

    func run() async throws {
        let certificates = try TestCertificates(keyType: keyType)
        defer { certificates.remove() }

        var serverArguments = [
            "--listen", "tls://127.0.0.1:0", "--tls-cert", certificates.serverCertificate, "--tls-key", certificates.serverKey,
        ]
        if mutual {
            serverArguments += ["--tls-ca", certificates.caCertificate, "--tls-client-auth", "require"]
        }
        let gateway = try JSONRPCProcess.startGateway(binary: options.binary, transport: "tcp", extraArguments: serverArguments)
        defer { gateway.stop() }
        let ports = try await GatewayListeners.ports(of: gateway)

        let context = try TLSContext(
            client: .client(
                trustRootsPath: certificates.caCertificate, serverHostname: "localhost",
                certificateChainPath: mutual ? certificates.clientCertificate : nil,
                privateKeyPath: mutual ? certificates.clientKey : nil))
        let tcp = GatewayEndpoint(port: ports.tcp, tls: nil)
        let tls = GatewayEndpoint(port: ports.tls, tls: context)
        let tlsLabel = mutual ? "tls (mutual)" : "tls"

        let probe = try await tls.connect()
        let handshake = try await probe.handshake.get()
        try await probe.channel.close()
        print("TLS: \(handshake.protocolVersion) \(handshake.cipher), \(keyType == .ec ? "ECDSA P-256" : "RSA 2048") certificates"
            + (mutual ? ", mutual (client certificate required)" : ""))

        // Connections per second.
        var connectionRows: [ConnectionRate] = []
        for (label, endpoint) in [("tcp", tcp), (tlsLabel, tls)] {
            for workers in [1, concurrency] {
                _ = try await ConnectionRate.measure(label: label, endpoint: endpoint, count: max(1, connections / 10), workers: workers, gateway: gateway)
                let row = try await ConnectionRate.measure(label: label, endpoint: endpoint, count: connections, workers: workers, gateway: gateway)
                print(row.summary)
                connectionRows.append(row)
            }
        }

        // Ping round trips on one connection.
        var pings = ResultTable()
        for (label, endpoint) in [("tcp", tcp), (tlsLabel, tls)] {
            let connection = try await endpoint.connect()
            _ = try await connection.handshake.get()
            try await pings.measure(label: label, channel: connection.channel, request: .ping, options: options, processes: [("gateway", gateway)])
            try await connection.channel.close()
        }

        print()
        print("Connections (connect, \(mutual ? "mutual " : "")TLS handshake, one ping, close):")
        print()
        ConnectionRate.printTable(connectionRows, baseline: "tcp")
        print()
        print("Ping round trips on one connection:")
        print()
        Self.printPingTable(pings.rows, baseline: "tcp")
    }

    private static func printPingTable(_ rows: [Measurement], baseline: String) {
        print("| transport | mode | calls/s | p50 µs | p99 µs | p999 µs | gateway CPU µs/call | TLS/TCP calls/s | TLS/TCP p50 |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in rows {
            let cpu = row.cpuPerCall.first?.1 ?? 0
            var line = "| \(row.label) | \(row.mode) | \(Int(row.callsPerSecond)) | \(format(row.micros(50))) | \(format(row.micros(99))) | "
                + "\(format(row.micros(99.9))) | \(String(format: "%.2f", cpu)) |"
            if row.label != baseline, let base = rows.first(where: { $0.label == baseline && $0.mode == row.mode }) {
                line += " \(ratio(row.callsPerSecond, base.callsPerSecond)) | \(ratio(row.micros(50), base.micros(50))) |"
            } else {
                line += " — | — |"
            }
            print(line)
        }
    }
}

func ratio(_ value: Double, _ base: Double) -> String {
    base > 0 ? String(format: "%.2f×", value / base) : "—"
}

// MARK: - Connection rate

/// Connections opened, used for one ping and closed, `workers` at a time.
struct ConnectionRate {
    var label: String
    var workers: Int
    var count: Int
    var seconds: Double
    /// Sorted, in nanoseconds: from the start of `connect` to the end of `close`.
    var latencies: [UInt64]
    var gatewayCPUMicrosPerConnection: Double

    var mode: String { workers == 1 ? "sequential" : "\(workers) at once" }
    var perSecond: Double { Double(count) / seconds }

    func micros(_ percentile: Double) -> Double {
        guard !latencies.isEmpty else { return 0 }
        let index = min(latencies.count - 1, Int((percentile / 100 * Double(latencies.count)).rounded(.up)) - 1)
        return Double(latencies[max(0, index)]) / 1000
    }

    var summary: String {
        "\(label) connections \(mode): \(Int(perSecond))/s, p50 \(format(micros(50))) µs, p99 \(format(micros(99))) µs, "
            + "gateway CPU \(format(gatewayCPUMicrosPerConnection)) µs/connection"
    }

    static func measure(label: String, endpoint: GatewayEndpoint, count: Int, workers: Int, gateway: JSONRPCProcess) async throws -> ConnectionRate {
        let cpuBefore = gateway.cpuTime()
        let started = DispatchTime.now().uptimeNanoseconds
        let latencies = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for worker in 0..<workers {
                // Worker `w` makes every `workers`-th connection, so the counts add up to `count`.
                let share = count / workers + (worker < count % workers ? 1 : 0)
                group.addTask {
                    var times: [UInt64] = []
                    times.reserveCapacity(share)
                    for _ in 0..<share {
                        let start = DispatchTime.now().uptimeNanoseconds
                        try await endpoint.connectPingClose()
                        times.append(DispatchTime.now().uptimeNanoseconds - start)
                    }
                    return times
                }
            }
            var all: [UInt64] = []
            for try await times in group { all += times }
            return all.sorted()
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let cpu = (gateway.cpuTime() - cpuBefore) * 1e6 / Double(count)
        return ConnectionRate(
            label: label, workers: workers, count: count, seconds: seconds, latencies: latencies, gatewayCPUMicrosPerConnection: cpu)
    }

    static func printTable(_ rows: [ConnectionRate], baseline: String) {
        print("| transport | mode | connections/s | p50 µs | p99 µs | gateway CPU µs/connection | TLS/TCP connections/s | TLS/TCP gateway CPU |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in rows {
            var line = "| \(row.label) | \(row.mode) | \(Int(row.perSecond)) | \(format(row.micros(50))) | \(format(row.micros(99))) | "
                + "\(format(row.gatewayCPUMicrosPerConnection)) |"
            if row.label != baseline, let base = rows.first(where: { $0.label == baseline && $0.workers == row.workers }) {
                line += " \(ratio(row.perSecond, base.perSecond)) | \(ratio(row.gatewayCPUMicrosPerConnection, base.gatewayCPUMicrosPerConnection)) |"
            } else {
                line += " — | — |"
            }
            print(line)
        }
    }
}

// MARK: - Endpoints and connections

/// A listener of the gateway: plain TCP, or TLS with the client context.
struct GatewayEndpoint: Sendable {
    var port: Int
    var tls: TLSContext?

    struct Connection {
        var channel: any Channel
        /// Completed when the TLS handshake is; at once on plain TCP.
        var handshake: EventLoopFuture<TLSHandshakeCompleted>
    }

    /// A connection with the reply line decoder, ready for `RoundTripDriver`.
    func connect() async throws -> Connection {
        let tls = self.tls
        let channel = try await bootstrap()
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        try sync.addHandler(TLSHandler(context: tls))
                        try sync.addHandler(HandshakeObserver(promise: channel.eventLoop.makePromise()))
                    }
                    try sync.addHandler(ByteToMessageHandler(ReplyLineDecoder()))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        let handshake: EventLoopFuture<TLSHandshakeCompleted>
        if tls != nil {
            handshake = try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.handler(type: HandshakeObserver.self).promise.futureResult
            }.get()
        } else {
            handshake = channel.eventLoop.makeSucceededFuture(TLSHandshakeCompleted(protocolVersion: "none", cipher: "none", peer: nil))
        }
        return Connection(channel: channel, handshake: handshake)
    }

    /// Connects, sends one ping, waits for its reply, and closes (over TLS: close_notify both ways).
    func connectPingClose() async throws {
        let tls = self.tls
        let channel = try await bootstrap()
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    // The ping is written when the channel becomes active; TLSHandler holds it
                    // until the handshake is done and sends it with the client's Finished.
                    if let tls { try sync.addHandler(TLSHandler(context: tls)) }
                    try sync.addHandler(ByteToMessageHandler(ReplyLineDecoder()))
                    try sync.addHandler(SinglePing(reply: channel.eventLoop.makePromise()))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        let reply = try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: SinglePing.self).reply.futureResult
        }.get()
        do {
            try await reply.get()
        } catch {
            channel.close(promise: nil)
            throw error
        }
        try await channel.close()
    }

    private func bootstrap() -> ClientBootstrap {
        ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    }
}

/// Completes its promise with the handshake's summary, or fails it with the first error.
private final class HandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let promise: EventLoopPromise<TLSHandshakeCompleted>
    private var done = false

    init(promise: EventLoopPromise<TLSHandshakeCompleted>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let summary = event as? TLSHandshakeCompleted, !done {
            done = true
            promise.succeed(summary)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(ChannelError.eof)
        context.fireChannelInactive()
    }

    private func finish(_ error: any Error) {
        guard !done else { return }
        done = true
        promise.fail(error)
    }
}

/// Writes one ping when the channel becomes active and completes `reply` when the answer comes.
private final class SinglePing: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let reply: EventLoopPromise<Void>
    private var done = false

    init(reply: EventLoopPromise<Void>) { self.reply = reply }

    func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        BenchmarkRequest.ping.line(id: 1, now: 0, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        finish(nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After the reply, a TLS error on close (a peer that skips close_notify) changes nothing.
        finish(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(ChannelError.eof)
        context.fireChannelInactive()
    }

    private func finish(_ error: (any Error)?) {
        guard !done else { return }
        done = true
        if let error { reply.fail(error) } else { reply.succeed(()) }
    }
}

// MARK: - The gateway's listeners

enum GatewayListeners {
    /// The ports of the gateway's tcp:// and tls:// listeners, from `gateway/status` over the
    /// TCP one. It is bound first, so the TLS one may not be listed yet: ask until it is.
    static func ports(of gateway: JSONRPCProcess) async throws -> (tcp: Int, tls: Int) {
        let channel = try await gateway.connect()
        defer { channel.close(promise: nil) }
        for _ in 0..<500 {
            let reply = try await exchange(channel, #"{"jsonrpc":"2.0","id":"status","method":"gateway/status"}"#)
            if let tcp = port(in: reply, scheme: "tcp"), let tls = port(in: reply, scheme: "tls") { return (tcp, tls) }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ValidationError("the gateway did not report a tls:// listener")
    }

    private static func port(in reply: String, scheme: String) -> Int? {
        guard let range = reply.range(of: "\"\(scheme)://127.0.0.1:") else { return nil }
        return Int(reply[range.upperBound...].prefix { $0.isNumber })
    }

    private static func exchange(_ channel: any Channel, _ line: String) async throws -> String {
        let promise = channel.eventLoop.makePromise(of: String.self)
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(ReplyCollector(promise: promise))
        }.get()
        try await channel.writeAndFlush(ByteBuffer(string: line + "\n"))
        let reply = try await promise.futureResult.get()
        try await channel.eventLoop.submit {
            let collector = try channel.pipeline.syncOperations.handler(type: ReplyCollector.self)
            channel.pipeline.syncOperations.removeHandler(collector, promise: nil)
        }.get()
        return reply
    }

    private final class ReplyCollector: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<String>
        init(promise: EventLoopPromise<String>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let line = String(buffer: unwrapInboundIn(data))
            if line.contains(#""id":"status""#) { promise.succeed(line) }
        }
    }
}

// MARK: - Certificates

/// A throw-away CA, a server certificate for localhost and 127.0.0.1, and a client certificate,
/// made with the openssl command in a temporary directory.
struct TestCertificates {
    let directory: URL
    var caCertificate: String { path("ca.pem") }
    var serverCertificate: String { path("server.pem") }
    var serverKey: String { path("server.key") }
    var clientCertificate: String { path("client.pem") }
    var clientKey: String { path("client.key") }

    init(keyType: TLSBenchmark.KeyType) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-bench-tls-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let keyOptions = keyType == .ec
            ? ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
            : ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        for name in ["ca", "server", "client"] {
            try openssl(["genpkey"] + keyOptions + ["-out", path("\(name).key")])
        }
        try openssl([
            "req", "-x509", "-new", "-key", path("ca.key"), "-out", path("ca.pem"), "-days", "1",
            "-subj", "/CN=switchboard-bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        try issue("server", subject: "/CN=localhost", extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        try issue("client", subject: "/CN=bench-client", extensions: "extendedKeyUsage=clientAuth\n")
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }

    private func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    private func issue(_ name: String, subject: String, extensions: String) throws {
        try ("basicConstraints=CA:FALSE\n" + extensions).write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
        try openssl(["req", "-new", "-key", path("\(name).key"), "-out", path("\(name).csr"), "-subj", subject])
        try openssl([
            "x509", "-req", "-in", path("\(name).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
            "-CAcreateserial", "-days", "1", "-sha256", "-extfile", path("\(name).ext"), "-out", path("\(name).pem"),
        ])
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("openssl \(arguments.joined(separator: " ")) failed:\n\(String(decoding: message, as: UTF8.self))")
        }
    }
}
