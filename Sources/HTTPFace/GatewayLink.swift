import JSONRPC
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Transport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@Sendable private func systemClose(_ descriptor: CInt) -> CInt {
    #if canImport(Glibc)
    Glibc.close(descriptor)
    #else
    Musl.close(descriptor)
    #endif
}

/// Where the HTTP face reaches the gateway: a connection to its JSON-RPC face, as any socket
/// client has. The gateway serves its end exactly as it serves a TCP connection (the same
/// session, access decisions, limits and method table), so every HTTP route runs the code its
/// JSON-RPC twin runs (DESIGN: one implementation per method).
public protocol GatewayDoor: Sendable {
    /// Serves the gateway's end of a new link: `socket` is a connected stream socket whose peer
    /// is the HTTP face; `peer` names the HTTP client, for the gateway's logs.
    func serveLink(socket: CInt, on eventLoop: any EventLoop, peer: String) -> EventLoopFuture<Void>
    /// Whether the gateway is ready to serve, and each check's state, for `/readyz`.
    func readiness() async -> Readiness
}

public struct Readiness: Sendable {
    public var ready: Bool
    public var checks: [String: String]

    public init(ready: Bool, checks: [String: String]) {
        self.ready = ready
        self.checks = checks
    }
}

/// One in-process connection to the gateway's JSON-RPC face: a stream socket pair, one end
/// served by the gateway, this end framed into lines here.
///
/// Why a socket pair and not a call into the method table: the gateway's connection handler
/// holds the whole session (its era, identity, rate-limit verdicts, quotas, cancellation,
/// requests to the peer, output bounds). A link gets all of it, unchanged, for the price of
/// two local writes per message (measured in docs/benchmarks.md, "HTTP").
///
/// Thread-safe: requests may be sent from any event loop; replies and the gateway's own
/// messages are delivered on the link's event loop.
public final class GatewayLink: Sendable {
    public typealias ReplyHandler = @Sendable (JSONRPCResponse, ByteBuffer) -> Void
    /// A notification or a request the gateway sent on its own (progress, a list change, an
    /// event, a sampling request), with the line it came in.
    public typealias MessageHandler = @Sendable (JSONRPCMessage, ByteBuffer) -> Void

    public let eventLoop: any EventLoop
    private let channel: any Channel
    private let state: Mutex<State>

    private struct State {
        var waiters: [JSONRPCID: ReplyHandler] = [:]
        var onMessage: MessageHandler?
        /// Every line the gateway writes that no internal request waits for (a WebSocket).
        var onOutput: (@Sendable (ByteBuffer) -> Void)?
        var onClose: [@Sendable () -> Void] = []
        var closed = false
        var nextInternalID: UInt64 = 1
        /// The credential the gateway last accepted on this link (nil: none offered).
        var credential: String?
    }

    init(channel: any Channel) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.state = Mutex(State())
    }

    /// Opens a link on `eventLoop`: a socket pair, the gateway serving one end.
    public static func open(
        door: any GatewayDoor, on eventLoop: any EventLoop, peer: String, maximumMessageBytes: Int
    ) -> EventLoopFuture<GatewayLink> {
        let ours: CInt
        let theirs: CInt
        do {
            (ours, theirs) = try LocalSocketPair.make()
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return door.serveLink(socket: theirs, on: eventLoop, peer: peer).flatMap {
            let reader = LinkReader()
            return ClientBootstrap(group: eventLoop)
                .channelOption(ChannelOptions.allowRemoteHalfClosure, value: false)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(LineFrameDecoder(maximumLineLength: maximumMessageBytes)), reader)
                    }
                }
                .withConnectedSocket(ours)
                .map { channel in
                    let link = GatewayLink(channel: channel)
                    reader.link.withLock { $0 = link }
                    channel.closeFuture.whenComplete { _ in link.closed() }
                    return link
                }
        }.flatMapErrorThrowing { error in
            _ = systemClose(ours)
            throw error
        }
    }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Where the gateway's own notifications and requests go.
    public func setMessageHandler(_ handler: MessageHandler?) {
        state.withLock { $0.onMessage = handler }
    }

    /// Every line the gateway writes, as it is, but the replies to the link's own requests.
    public func setOutputHandler(_ handler: (@Sendable (ByteBuffer) -> Void)?) {
        state.withLock { $0.onOutput = handler }
    }

    /// Stops (or resumes) reading the gateway's output: the gateway then holds it, within its
    /// bounds for a peer that does not read.
    public func setReading(_ reading: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: reading).whenSuccess {
            if reading { self.channel.read() }
        }
    }

    public func onClose(_ body: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.closed { return true }
            state.onClose.append(body)
            return false
        }
        if runNow { body() }
    }

    /// Sends a request line whose reply goes to `reply`. False when the link is closed, or a
    /// request with this id is already waiting (the peer reused an id in flight).
    @discardableResult
    public func send(request line: ByteBuffer, id: JSONRPCID, reply: @escaping ReplyHandler) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.closed, state.waiters[id] == nil else { return false }
            state.waiters[id] = reply
            return true
        }
        guard accepted else { return false }
        write(line)
        return true
    }

    /// Forgets a waiting request: its reply, when it comes, is dropped.
    public func forget(_ id: JSONRPCID) {
        _ = state.withLock { $0.waiters.removeValue(forKey: id) }
    }

    /// No request on the link waits for a reply.
    public var isIdle: Bool { state.withLock { $0.waiters.isEmpty } }

    public func isWaiting(for id: JSONRPCID) -> Bool {
        state.withLock { $0.waiters[id] != nil }
    }

    /// Sends a line that gets no reply: a notification, or a response to the gateway's request.
    public func send(line: ByteBuffer) {
        write(line)
    }

    /// Sends a request the HTTP face makes itself, under an id no client uses.
    public func call(_ method: String, params: JSONValue?, reply: @escaping ReplyHandler) {
        let id = state.withLock { state -> JSONRPCID in
            defer { state.nextInternalID += 1 }
            return .string("~http-\(state.nextInternalID)")
        }
        var line = channel.allocator.buffer(capacity: 128)
        MessageEncoder.writeRequest(id: id, method: method, params: params, to: &line)
        if !send(request: line, id: id, reply: reply) {
            var refusal = ByteBuffer()
            MessageEncoder.writeError(id: id, error: Self.closedError, to: &refusal)
            reply(JSONRPCResponse(id: id, outcome: .error(Self.closedError)), refusal)
        }
    }

    /// Makes the link the principal `credential` proves, once: later requests with the same
    /// credential cost nothing. `completion` gets the gateway's refusal, if any.
    public func authenticate(_ credential: String, completion: @escaping @Sendable (JSONRPCError?) -> Void) {
        if state.withLock({ $0.credential == credential }) {
            completion(nil)
            return
        }
        call("auth/authenticate", params: ["token": .string(credential)]) { [self] response, _ in
            switch response.outcome {
            case .result:
                state.withLock { $0.credential = credential }
                completion(nil)
            case .error(let error):
                completion(error)
            }
        }
    }

    /// The credential the link has proved, if any.
    public var credential: String? { state.withLock { $0.credential } }

    public func close() {
        channel.close(promise: nil)
    }

    static let closedError = JSONRPCError(code: JSONRPCError.Code.internalError, message: "the gateway closed the connection")

    private func write(_ line: ByteBuffer) {
        var framed = line
        framed.writeInteger(UInt8(ascii: "\n"))
        channel.writeAndFlush(framed, promise: nil)
    }

    // MARK: The gateway's output

    fileprivate func received(_ line: ByteBuffer) {
        let (output, waiting) = state.withLock { ($0.onOutput, !$0.waiters.isEmpty) }
        if let output {
            if waiting, case .single(.message(.response(let response))) = MessageDecoder().decode(line: line),
                let id = response.id, let waiter = state.withLock({ $0.waiters.removeValue(forKey: id) })
            {
                waiter(response, line)
            } else {
                output(line)
            }
            return
        }
        switch MessageDecoder().decode(line: line) {
        case .single(.message(.response(let response))):
            deliver(response, line: line)
        case .single(.message(let message)):
            if case .request(let request) = message, request.method == "ping" {
                // The gateway checks that the peer is alive; the link is, whatever the client does.
                var pong = channel.allocator.buffer(capacity: 48)
                MessageEncoder.writeResult(id: request.id, result: .object([:]), to: &pong)
                write(pong)
                return
            }
            let handler = state.withLock { $0.onMessage }
            handler?(message, line)
        case .batch(let entries):
            // A batch's replies come back as one array; each goes to its own waiter.
            for case .message(.response(let response)) in entries {
                var single = channel.allocator.buffer(capacity: 64)
                MessageEncoder.writeResponse(response, to: &single)
                deliver(response, line: single)
            }
        case .single(.invalid), .blank, .emptyBatch, .batchTooLarge, .parseError:
            break
        }
    }

    private func deliver(_ response: JSONRPCResponse, line: ByteBuffer) {
        guard let id = response.id, let waiter = state.withLock({ $0.waiters.removeValue(forKey: id) }) else { return }
        waiter(response, line)
    }

    private func closed() {
        let (waiters, onClose) = state.withLock { state in
            state.closed = true
            defer {
                state.waiters = [:]
                state.onClose = []
                state.onMessage = nil
                state.onOutput = nil
            }
            return (state.waiters, state.onClose)
        }
        for (id, waiter) in waiters {
            var line = ByteBuffer()
            MessageEncoder.writeError(id: id, error: Self.closedError, to: &line)
            waiter(JSONRPCResponse(id: id, outcome: .error(Self.closedError)), line)
        }
        for body in onClose { body() }
    }
}

/// The link's end of the pipeline: lines from the gateway, handed to the link.
private final class LinkReader: ChannelInboundHandler, Sendable {
    typealias InboundIn = LineFrame

    let link = Mutex<GatewayLink?>(nil)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let line) = unwrapInboundIn(data), let link = link.withLock({ $0 }) else { return }
        link.received(line)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
