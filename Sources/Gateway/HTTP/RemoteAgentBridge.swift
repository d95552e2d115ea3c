import Access
import HTTPFace
import JSONRPC
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Transport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An agent reached over MCP's Streamable HTTP (a template or `mcpServers` entry with a `url`).
///
/// The gateway talks to it exactly as to a spawned agent's pipes: its connection handler, in
/// the client role, writes JSON-RPC lines to one end of a socket pair; the bridge at the other
/// end POSTs each line to the server and writes what comes back (a JSON body, or the messages of
/// an event stream) as lines. So the handshake, routing, health probes, timeouts, cancellation
/// and circuit breaking are the ones every agent has, and the supervisor's restart policy
/// reconnects a server that went away (a new session, as the specification asks after a 404).
///
/// Each connection resolves the host once and the egress policy judges every address; the
/// bridge connects to those very addresses. POSTs run on a small pool of keep-alive connections.
final class RemoteAgentBridge: Sendable {
    struct Endpoint: Sendable {
        var target: CallbackPoster.Target
        /// For logs and errors: the URL as written (an expanded secret stays out).
        var urlAsWritten: String
        var headers: [String: String]

        /// A URL's `user:password@` becomes Basic authentication (unless the headers carry an
        /// Authorization already); nil for a URL that is not http:// or https://.
        init?(url: String, urlAsWritten: String, headers: [String: String]) {
            var url = url
            var headers = headers
            if let schemeEnd = url.firstRange(of: "://") {
                let rest = url[schemeEnd.upperBound...]
                let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
                if let at = rest[..<authorityEnd].lastIndex(of: "@") {
                    let userinfo = String(rest[..<at]).removingPercentEncoding(plusIsSpace: false)
                    if !headers.keys.contains(where: { $0.lowercased() == "authorization" }) {
                        headers["Authorization"] = "Basic " + Self.base64(Array(userinfo.utf8))
                    }
                    url = String(url[..<schemeEnd.upperBound]) + String(rest[rest.index(after: at)...])
                }
            }
            guard let target = CallbackPoster.Target(url) else { return nil }
            self.target = target
            self.urlAsWritten = urlAsWritten
            self.headers = headers
        }

        private static func base64(_ bytes: [UInt8]) -> String {
            let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
            var output: [UInt8] = []
            var index = 0
            while index < bytes.count {
                let chunk = bytes[index..<min(index + 3, bytes.count)]
                let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << UInt32(16 - 8 * $1.offset) }
                for position in 0..<4 {
                    output.append(position <= chunk.count ? alphabet[Int(value >> UInt32(18 - 6 * position) & 63)] : UInt8(ascii: "="))
                }
                index += 3
            }
            return String(decoding: output, as: UTF8.self)
        }
    }

    private let endpoint: Endpoint
    /// The instance it serves, named in its errors.
    private let agent: String
    private let egress: EgressPolicy
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let maximumMessageBytes: Int
    private let tls: TLSContext?
    private let state = Mutex(State())
    private static let maximumConnections = 16
    private static let connectTimeout: TimeAmount = .seconds(10)

    private struct State {
        var gatewaySide: (any Channel)?
        var sessionID: String?
        var protocolVersion: String?
        var idle: [any Channel] = []
        var open = 0
        var waiting: [Post] = []
        var closed = false
        /// The GET stream of what the server sends on its own (list changes, say), once open.
        var serverStream: (any Channel)?
        /// The server has no GET stream (405), or refused it: not asked again.
        var serverStreamRefused = false
    }

    /// One line to POST, and what it is.
    struct Post: Sendable {
        var line: ByteBuffer
        var requestID: JSONRPCID?
        var isInitialize: Bool
    }

    private init(endpoint: Endpoint, agent: String, egress: EgressPolicy, eventLoop: any EventLoop, logger: Logger, maximumMessageBytes: Int) throws {
        self.endpoint = endpoint
        self.agent = agent
        self.egress = egress
        self.eventLoop = eventLoop
        self.logger = logger
        self.maximumMessageBytes = maximumMessageBytes
        self.tls = endpoint.target.secure ? try TLSContext(client: .client(serverHostname: endpoint.target.host)) : nil
    }

    /// Opens a bridge; returns it and the socket for the gateway's side of the agent connection.
    static func open(
        _ endpoint: Endpoint, agent: String, egress: EgressPolicy, eventLoop: any EventLoop, logger: Logger, maximumMessageBytes: Int
    ) async throws -> (RemoteAgentBridge, CInt) {
        let bridge = try RemoteAgentBridge(
            endpoint: endpoint, agent: agent, egress: egress, eventLoop: eventLoop, logger: logger, maximumMessageBytes: maximumMessageBytes)
        let sockets = try LocalSocketPair.make()
        let reader = GatewayLineReader(bridge: bridge)
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(LineFrameDecoder(maximumLineLength: maximumMessageBytes)), reader)
                }
            }
            .withConnectedSocket(sockets.0)
            .get()
        bridge.state.withLock { $0.gatewaySide = channel }
        channel.closeFuture.whenComplete { _ in bridge.close() }
        return (bridge, sockets.1)
    }

    /// Ends the bridge: the gateway's side closes (the agent is down), and every HTTP connection;
    /// the server is told the session is over (DELETE), as the specification asks of clients.
    func close() {
        _ = finish()
    }

    /// `close`, with a future that completes once the server has answered the DELETE (at most
    /// two seconds), so that a gateway stopping does not exit before the server heard of it.
    @discardableResult
    func finish() -> EventLoopFuture<Void> {
        let (channels, gatewaySide, session) = state.withLock { state -> ([any Channel], (any Channel)?, String?) in
            let session = state.closed ? nil : state.sessionID
            state.closed = true
            defer {
                state.idle = []
                state.waiting = []
                state.serverStream = nil
            }
            return (state.idle + [state.serverStream].compactMap { $0 }, state.gatewaySide, session)
        }
        for channel in channels { channel.close(promise: nil) }
        gatewaySide?.close(promise: nil)
        guard let session else { return eventLoop.makeSucceededVoidFuture() }
        return endSession(session)
    }

    private func endSession(_ session: String) -> EventLoopFuture<Void> {
        let head = requestHead(.DELETE, session: session, version: state.withLock { $0.protocolVersion }, accept: nil, bodyLength: nil)
        let promise = eventLoop.makePromise(of: Void.self)
        // Whichever comes first: the answer, a failure, or the two seconds.
        let settled = Atomic<Bool>(false)
        let done: @Sendable () -> Void = {
            if !settled.exchange(true, ordering: .relaxed) { promise.succeed() }
        }
        eventLoop.scheduleTask(in: .seconds(2)) { done() }
        openConnection().whenComplete { outcome in
            guard case .success(let channel) = outcome else {
                done()
                return
            }
            let response = ResponseReader(post: Post(line: ByteBuffer(), requestID: nil, isInitialize: false), limit: 4096)
            let exchange = Exchange(head: head, body: ByteBuffer(), response: response) { _ in done() } onHead: { _ in } onEvent: { _ in }
            channel.writeAndFlush(exchange).whenFailure { _ in done() }
            promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
        return promise.futureResult
    }

    // MARK: What the server sends on its own

    /// Opens the session's GET stream once the handshake is over: notifications the server
    /// sends outside any request (its tools changed) reach the gateway through it. Reopened a
    /// second after it ends; not asked again of a server that has none.
    private func openServerStream() {
        let ready = state.withLock { state -> (String, String?)? in
            guard !state.closed, !state.serverStreamRefused, state.serverStream == nil, let session = state.sessionID else { return nil }
            return (session, state.protocolVersion)
        }
        guard let (session, version) = ready else { return }
        let head = requestHead(.GET, session: session, version: version, accept: "text/event-stream", bodyLength: nil)
        openConnection().whenComplete { [self] outcome in
            guard case .success(let channel) = outcome else {
                retryServerStream()
                return
            }
            let kept = state.withLock { state -> Bool in
                guard !state.closed, state.serverStream == nil else { return false }
                state.serverStream = channel
                return true
            }
            guard kept else {
                channel.close(promise: nil)
                return
            }
            let response = ResponseReader(post: Post(line: ByteBuffer(), requestID: nil, isInitialize: false), limit: maximumMessageBytes)
            let placeholder = Post(line: ByteBuffer(), requestID: nil, isInitialize: false)
            let exchange = Exchange(head: head, body: ByteBuffer(), response: response) { [self] _ in
                channel.close(promise: nil)
                state.withLock { $0.serverStream = nil }
                retryServerStream()
            } onHead: { [self] head in
                let isStream = head.headers.first(name: "content-type")?.lowercased().hasPrefix("text/event-stream") ?? false
                if head.status != .ok || !isStream {
                    state.withLock { $0.serverStreamRefused = true }
                }
            } onEvent: { [self] line in
                deliver(line, for: placeholder)
            }
            channel.writeAndFlush(exchange).whenFailure { _ in channel.close(promise: nil) }
        }
    }

    private func retryServerStream() {
        guard state.withLock({ !$0.closed && !$0.serverStreamRefused }) else { return }
        eventLoop.scheduleTask(in: .seconds(1)) { [self] in openServerStream() }
    }

    private func requestHead(_ method: HTTPMethod, session: String?, version: String?, accept: String?, bodyLength: Int?) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: endpoint.target.hostHeader)
        if let accept { headers.add(name: "accept", value: accept) }
        if let bodyLength {
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: "\(bodyLength)")
        }
        headers.add(name: "user-agent", value: "switchboard/\(BuildInfo.version)")
        if let session { headers.add(name: "mcp-session-id", value: session) }
        if let version { headers.add(name: "mcp-protocol-version", value: version) }
        for (name, value) in endpoint.headers { headers.replaceOrAdd(name: name, value: value) }
        return HTTPRequestHead(version: .http1_1, method: method, uri: endpoint.target.path, headers: headers)
    }

    // MARK: From the gateway

    fileprivate func received(_ line: ByteBuffer) {
        var post = Post(line: line, requestID: nil, isInitialize: false)
        var handshakeDone = false
        switch MessageDecoder().decode(line: line) {
        case .single(.message(.request(let request))):
            post.requestID = request.id
            post.isInitialize = request.method == "initialize"
        case .single(.message(.notification(let notification))):
            handshakeDone = notification.method == "notifications/initialized"
        default:
            break
        }
        send(post)
        if handshakeDone { openServerStream() }
    }

    private func send(_ post: Post) {
        enum Next { case use(any Channel), open, wait, closed }
        let next = state.withLock { state -> Next in
            if state.closed { return .closed }
            if let channel = state.idle.popLast() { return .use(channel) }
            if state.open < Self.maximumConnections {
                state.open += 1
                return .open
            }
            state.waiting.append(post)
            return .wait
        }
        switch next {
        case .use(let channel): exchange(post, on: channel)
        case .open: connect(for: post)
        case .wait, .closed: break
        }
    }

    private func connect(for post: Post) {
        openConnection().whenComplete { [self] outcome in
            switch outcome {
            case .success(let channel):
                channel.closeFuture.whenComplete { [self] _ in connectionClosed(channel) }
                exchange(post, on: channel)
            case .failure(let error):
                state.withLock { $0.open -= 1 }
                fail(post, reason: "cannot reach \(endpoint.urlAsWritten): \(error)")
                // A server that cannot be reached at all ends the agent's run (the supervisor
                // restarts it with back-off), rather than failing calls one by one forever.
                if error is EgressRefusal || post.isInitialize { close() }
                dispatchWaiting()
            }
        }
    }

    /// A new connection to the server: its host resolved, every address judged by the egress
    /// rules, and only those addresses tried.
    private func openConnection() -> EventLoopFuture<any Channel> {
        let target = endpoint.target
        let egress = self.egress
        let tls = self.tls
        let eventLoop = self.eventLoop
        return HostResolver.resolve(target.host, on: eventLoop).flatMap { addresses -> EventLoopFuture<any Channel> in
            if let refusal = egress.check(host: target.host, addresses: addresses, purpose: "agent") {
                return eventLoop.makeFailedFuture(refusal)
            }
            let bootstrap = ClientBootstrap(group: eventLoop)
                .connectTimeout(Self.connectTimeout)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls { try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverHostname: target.host)) }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ExchangeHandler())
                    }
                }
            return Self.connect(bootstrap, to: addresses[...], port: target.port)
        }
    }

    private static func connect(_ bootstrap: ClientBootstrap, to addresses: ArraySlice<IPAddress>, port: Int) -> EventLoopFuture<any Channel> {
        let first = bootstrap.connect(to: addresses.first!.socketAddress(port: port))
        guard addresses.count > 1 else { return first }
        let rest = UncheckedBootstrap(bootstrap)
        return first.flatMapError { _ in connect(rest.value, to: addresses.dropFirst(), port: port) }
    }

    private func connectionClosed(_ channel: any Channel) {
        state.withLock { state in
            state.open -= 1
            state.idle.removeAll { $0 === channel }
        }
        dispatchWaiting()
    }

    private func release(_ channel: any Channel, keepAlive: Bool) {
        guard keepAlive, channel.isActive else {
            channel.close(promise: nil)
            return
        }
        let next = state.withLock { state -> Post? in
            if state.closed { return nil }
            if !state.waiting.isEmpty { return state.waiting.removeFirst() }
            state.idle.append(channel)
            return nil
        }
        if let next { exchange(next, on: channel) } else if state.withLock({ $0.closed }) { channel.close(promise: nil) }
    }

    private func dispatchWaiting() {
        let next = state.withLock { state -> Post? in
            guard !state.closed, !state.waiting.isEmpty, state.open < Self.maximumConnections else { return nil }
            state.open += 1
            return state.waiting.removeFirst()
        }
        if let next { connect(for: next) }
    }

    // MARK: One POST

    private func exchange(_ post: Post, on channel: any Channel) {
        let (sessionID, version) = state.withLock { ($0.sessionID, $0.protocolVersion) }
        let head = requestHead(.POST, session: sessionID, version: version, accept: "application/json, text/event-stream", bodyLength: post.line.readableBytes)
        let response = ResponseReader(post: post, limit: maximumMessageBytes)
        let exchange = Exchange(head: head, body: post.line, response: response) { [self] outcome in
            finish(post, response: response, outcome: outcome, channel: channel)
        } onHead: { [self] head in
            // Kept before the reply reaches the gateway: its next request (the initialized
            // notification, sent the moment the reply arrives) must carry it.
            if post.isInitialize, let session = head.headers.first(name: "mcp-session-id") {
                state.withLock { $0.sessionID = session }
            }
        } onEvent: { [self] line in
            deliver(line, for: post)
        }
        channel.writeAndFlush(exchange).whenFailure { [self] error in
            finish(post, response: response, outcome: .failure(error), channel: channel)
        }
    }

    private func finish(_ post: Post, response: ResponseReader, outcome: Result<Void, any Error>, channel: any Channel) {
        guard response.markFinished() else { return }
        switch outcome {
        case .failure(let error):
            fail(post, reason: "\(endpoint.urlAsWritten): \(error)")
            channel.close(promise: nil)
            return
        case .success:
            break
        }
        let status = response.status ?? 0
        for line in response.jsonLines() { deliver(line, for: post) }
        if status == 404, state.withLock({ $0.sessionID != nil }), !post.isInitialize {
            // The server ended the session: the agent starts again, with a new one.
            logger.notice("agent at \(endpoint.urlAsWritten): the server no longer knows the session; reconnecting")
            fail(post, reason: "the server ended the session")
            close()
            return
        }
        if !(200..<300).contains(status), !response.answered {
            fail(post, reason: "\(endpoint.urlAsWritten) answered HTTP \(status)")
        } else if post.requestID != nil, !response.answered, status != 202 {
            fail(post, reason: "\(endpoint.urlAsWritten) answered HTTP \(status) without a reply")
        }
        release(channel, keepAlive: response.keepAlive)
    }

    /// A message from the server, to the gateway's side.
    private func deliver(_ line: ByteBuffer, for post: Post) {
        if post.isInitialize, let version = (try? RawJSON(validating: line))?.member("result")?.member("protocolVersion")?.stringValue {
            state.withLock { $0.protocolVersion = version }
        }
        guard let gatewaySide = state.withLock({ $0.gatewaySide }) else { return }
        var framed = line
        framed.writeInteger(UInt8(ascii: "\n"))
        gatewaySide.writeAndFlush(framed, promise: nil)
    }

    /// The request's error, as the gateway reads an agent's failure.
    private func fail(_ post: Post, reason: String) {
        guard let id = post.requestID else {
            logger.debug("agent at \(endpoint.urlAsWritten): a notification was not delivered: \(reason)")
            return
        }
        var line = ByteBuffer()
        let error = JSONRPCError(
            code: JSONRPCError.Code.agentFailed, message: "Agent failed: \(reason)", data: ["agent": .string(agent), "reason": .string(reason)])
        MessageEncoder.writeError(id: id, error: error, to: &line)
        guard let gatewaySide = state.withLock({ $0.gatewaySide }) else { return }
        line.writeInteger(UInt8(ascii: "\n"))
        gatewaySide.writeAndFlush(line, promise: nil)
    }
}

/// The gateway's lines, to the bridge.
private final class GatewayLineReader: ChannelInboundHandler, Sendable {
    typealias InboundIn = LineFrame
    let bridge: RemoteAgentBridge

    init(bridge: RemoteAgentBridge) {
        self.bridge = bridge
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let line) = unwrapInboundIn(data) else { return }
        bridge.received(line)
    }
}

private struct UncheckedBootstrap: @unchecked Sendable {
    let value: ClientBootstrap
    init(_ value: ClientBootstrap) { self.value = value }
}

/// One request and what to do with its response.
private struct Exchange: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer
    var response: ResponseReader
    var completion: @Sendable (Result<Void, any Error>) -> Void
    var onHead: @Sendable (HTTPResponseHead) -> Void
    var onEvent: @Sendable (ByteBuffer) -> Void
}

/// What came back for one POST: the status and the body — a JSON reply kept
/// whole, or an event stream whose messages are handed on as they come.
private final class ResponseReader: Sendable {
    private struct State {
        var status: Int?
        var isStream = false
        var keepAlive = true
        var body = ByteBuffer()
        var tooLarge = false
        var answered = false
        var finished = false
        var pendingEventData: [UInt8] = []
        var lineBuffer: [UInt8] = []
    }

    private let state = Mutex(State())
    let post: RemoteAgentBridge.Post
    let limit: Int

    init(post: RemoteAgentBridge.Post, limit: Int) {
        self.post = post
        self.limit = limit
    }

    var status: Int? { state.withLock { $0.status } }
    var keepAlive: Bool { state.withLock { $0.keepAlive } }
    var answered: Bool { state.withLock { $0.answered } }

    func markFinished() -> Bool {
        state.withLock { state in
            if state.finished { return false }
            state.finished = true
            return true
        }
    }

    func head(_ head: HTTPResponseHead) {
        state.withLock { state in
            state.status = Int(head.status.code)
            state.isStream = head.headers.first(name: "content-type")?.lowercased().hasPrefix("text/event-stream") ?? false
            state.keepAlive = head.isKeepAlive
        }
    }

    /// Body bytes; the messages of an event stream that are complete now.
    func body(_ part: ByteBuffer) -> [ByteBuffer] {
        state.withLock { state in
            guard state.isStream else {
                if state.body.readableBytes + part.readableBytes > limit {
                    state.tooLarge = true
                } else {
                    var part = part
                    state.body.writeBuffer(&part)
                }
                return []
            }
            var messages: [ByteBuffer] = []
            for byte in part.readableBytesView {
                guard byte == UInt8(ascii: "\n") else {
                    if state.lineBuffer.count <= limit { state.lineBuffer.append(byte) }
                    continue
                }
                var line = state.lineBuffer
                state.lineBuffer = []
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if line.isEmpty {
                    // The end of an event: its data is one message.
                    if !state.pendingEventData.isEmpty {
                        messages.append(ByteBuffer(bytes: state.pendingEventData))
                        state.pendingEventData = []
                        state.answered = state.answered || Self.isReply(messages.last!, to: post.requestID)
                    }
                } else if line.starts(with: Array("data:".utf8)) {
                    var data = line.dropFirst(5)
                    if data.first == UInt8(ascii: " ") { data = data.dropFirst() }
                    if !state.pendingEventData.isEmpty { state.pendingEventData.append(UInt8(ascii: "\n")) }
                    state.pendingEventData.append(contentsOf: data)
                }
            }
            return messages
        }
    }

    /// The JSON body's messages (each element of an array), once the response has ended.
    func jsonLines() -> [ByteBuffer] {
        state.withLock { state in
            guard !state.isStream, !state.tooLarge, state.body.readableBytes > 0, let raw = try? RawJSON(validating: state.body) else { return [] }
            let lines = raw.kind == .array ? raw.elements().map(\.buffer) : [raw.buffer]
            if lines.contains(where: { Self.isReply($0, to: post.requestID) }) { state.answered = true }
            return lines
        }
    }

    private static func isReply(_ line: ByteBuffer, to id: JSONRPCID?) -> Bool {
        guard let id, case .single(.message(.response(let response))) = MessageDecoder().decode(line: line) else { return false }
        return response.id == id
    }
}

/// Writes each exchange's request and reads its response, one at a time per connection.
private final class ExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Exchange
    typealias OutboundOut = HTTPClientRequestPart

    private var current: Exchange?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        current = exchange
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if exchange.body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(exchange.body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange = current else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            exchange.response.head(head)
            exchange.onHead(head)
        case .body(let part):
            for message in exchange.response.body(part) { exchange.onEvent(message) }
        case .end:
            current = nil
            exchange.completion(.success(()))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let exchange = current {
            current = nil
            exchange.completion(.failure(ChannelError.eof))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let exchange = current {
            current = nil
            exchange.completion(.failure(error))
        }
        context.close(promise: nil)
    }
}
