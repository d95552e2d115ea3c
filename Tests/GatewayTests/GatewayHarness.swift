import Gateway
import JSONRPC
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing
import Transport

/// A gateway running in this process, inside a service group as in production, stopped by a
/// graceful shutdown at the end of the test.
struct RunningGateway {
    var server: GatewayServer
    var serviceGroup: ServiceGroup
    var urls: [String]

    var tcpPort: Int {
        let url = urls.first { $0.hasPrefix("tcp://") }!
        return Int(url.split(separator: ":").last!)!
    }

    var unixPath: String? {
        urls.first { $0.hasPrefix("unix://") }.map { String($0.dropFirst("unix://".count)) }
    }

    func connect() async throws -> LineClient {
        try await LineClient.connect(port: tcpPort)
    }
}

func withGateway(
    configure: (inout GatewaySettings) -> Void = { _ in },
    extraMethods: (inout MethodTable) -> Void = { _ in },
    _ body: (RunningGateway) async throws -> Void
) async throws {
    var settings = GatewaySettings()
    settings.listen = [.tcp(host: "127.0.0.1", port: 0)]
    settings.limits.shutdownGrace = .seconds(5)
    // Tests play agents by hand; health pings would interleave with what they expect.
    settings.healthProbeInterval = .seconds(3600)
    configure(&settings)
    var logger = Logger(label: "test-gateway")
    logger.logLevel = .warning
    let server = GatewayServer(settings: settings, logger: logger, extraMethods: extraMethods)
    let serviceGroup = ServiceGroup(services: [server], logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await serviceGroup.run() }
        let urls = try await server.listeningAddresses()
        do {
            try await body(RunningGateway(server: server, serviceGroup: serviceGroup, urls: urls))
        } catch {
            await serviceGroup.triggerGracefulShutdown()
            throw error
        }
        await serviceGroup.triggerGracefulShutdown()
        try await group.waitForAll()
    }
}

/// A newline-delimited JSON client on a real socket. One task uses a client at a time.
final class LineClient: @unchecked Sendable {
    let channel: any Channel
    private var frames: AsyncStream<LineFrame>.AsyncIterator

    private init(channel: any Channel, frames: AsyncStream<LineFrame>) {
        self.channel = channel
        self.frames = frames.makeAsyncIterator()
    }

    static func connect(port: Int) async throws -> LineClient {
        try await connect { try await $0.connect(host: "127.0.0.1", port: port).get() }
    }

    static func connect(unixPath: String) async throws -> LineClient {
        try await connect { try await $0.connect(unixDomainSocketPath: unixPath).get() }
    }

    private static func connect(_ open: (ClientBootstrap) async throws -> any Channel) async throws -> LineClient {
        let (frames, continuation) = AsyncStream<LineFrame>.makeStream()
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(LineFrameDecoder(maximumLineLength: 1 << 26)),
                        FrameCollector(continuation: continuation)
                    )
                }
            }
        return LineClient(channel: try await open(bootstrap), frames: frames)
    }

    func send(_ line: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: line + "\n")).get()
    }

    func sendRaw(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes).get()
    }

    /// The next message from the gateway, or nil when it closed the connection.
    func receive() async throws -> JSONValue? {
        guard let frame = await frames.next() else { return nil }
        guard case .line(let line) = frame else {
            Issue.record("the gateway sent an oversize line")
            return nil
        }
        return try RawJSON(validating: line).decoded()
    }

    /// Sends a request and returns the next message (the caller knows nothing else is due).
    func call(_ id: Int, _ method: String, _ params: String? = nil) async throws -> JSONValue? {
        let paramsPart = params.map { #","params":\#($0)"# } ?? ""
        try await send(#"{"jsonrpc":"2.0","id":\#(id),"method":"\#(method)"\#(paramsPart)}"#)
        return try await receive()
    }

    /// Half-closes: the gateway sees the end of our input.
    func finishWriting() async throws {
        try await channel.close(mode: .output).get()
    }

    func close() async {
        try? await channel.close()
    }
}

private final class FrameCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = LineFrame
    let continuation: AsyncStream<LineFrame>.Continuation

    init(continuation: AsyncStream<LineFrame>.Continuation) {
        self.continuation = continuation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        continuation.yield(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { continuation.finish() }
        context.fireUserInboundEventTriggered(event)
    }
}

/// A method whose calls complete only when the test says so, to hold requests in flight.
final class HeldCalls: Sendable {
    private struct State {
        var waiting: [EventLoopPromise<JSONValue>] = []
        var arrivals: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func register(in table: inout MethodTable, as method: String = "test/hold") {
        table.register(method) { [self] _, context in
            let promise = context.eventLoop.makePromise(of: JSONValue.self)
            let arrivals: [CheckedContinuation<Void, Never>] = state.withLock { state in
                state.waiting.append(promise)
                let arrivals = state.arrivals
                state.arrivals = []
                return arrivals
            }
            arrivals.forEach { $0.resume() }
            return .later(promise.futureResult)
        }
    }

    /// Returns once `count` calls are being held.
    func waitForHeld(_ count: Int) async {
        while state.withLock({ $0.waiting.count }) < count {
            await withCheckedContinuation { continuation in
                let already = state.withLock { state -> Bool in
                    if state.waiting.count >= count { return true }
                    state.arrivals.append(continuation)
                    return false
                }
                if already { continuation.resume() }
            }
        }
    }

    /// Completes the oldest held call with `result`.
    func releaseOne(_ result: JSONValue = ["released": true]) {
        let promise = state.withLock { $0.waiting.isEmpty ? nil : $0.waiting.removeFirst() }
        promise?.succeed(result)
    }

    func releaseAll() {
        let promises = state.withLock { state in
            defer { state.waiting = [] }
            return state.waiting
        }
        promises.forEach { $0.succeed(["released": true]) }
    }
}

