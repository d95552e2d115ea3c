import JSONRPC
import Logging
import NIOCore
import Synchronization

/// Counts one listener's open connections, in all and per peer address, and says whether a new
/// one may be served. Past a cap the connection is refused (`ConnectionRefusalHandler`), and
/// the refusals of one burst are logged twice: when they start and when one is admitted again.
///
/// Unix-socket peers have no address to tell them apart and are all local: only the listener's
/// cap applies to them.
final class ConnectionAdmission: Sendable {
    enum Refusal: Equatable {
        case listenerFull(limit: Int)
        case peerFull(limit: Int)

        var limit: Int {
            switch self {
            case .listenerFull(let limit), .peerFull(let limit): limit
            }
        }

        var error: JSONRPCError {
            switch self {
            case .listenerFull(let limit): .tooManyConnections(scope: "listener", limit: limit)
            case .peerFull(let limit): .tooManyConnections(scope: "peer", limit: limit)
            }
        }
    }

    private struct State {
        var open = 0
        var openPerPeer: [String: Int] = [:]
        /// Connections refused since the last one admitted; 0: not in a burst of refusals.
        var refusedInBurst = 0
    }

    private let listener: String
    private let maximumPerListener: Int
    private let maximumPerPeer: Int
    private let logger: Logger
    private let state = Mutex(State())

    init(listener: String, maximumPerListener: Int, maximumPerPeer: Int, logger: Logger) {
        self.listener = listener
        self.maximumPerListener = maximumPerListener
        self.maximumPerPeer = maximumPerPeer
        self.logger = logger
    }

    var openConnections: Int { state.withLock { $0.open } }

    /// Counts `channel` in if it fits under the caps, until it closes; otherwise returns why not.
    func admit(_ channel: any Channel) -> Refusal? {
        let peer = Self.peerKey(channel.remoteAddress)
        let (refusal, burstStarted, burstEnded): (Refusal?, Bool, Int) = state.withLock { state in
            var refusal: Refusal?
            if state.open >= maximumPerListener {
                refusal = .listenerFull(limit: maximumPerListener)
            } else if let peer, state.openPerPeer[peer, default: 0] >= maximumPerPeer {
                refusal = .peerFull(limit: maximumPerPeer)
            }
            if refusal != nil {
                state.refusedInBurst += 1
                return (refusal, state.refusedInBurst == 1, 0)
            }
            state.open += 1
            if let peer { state.openPerPeer[peer, default: 0] += 1 }
            defer { state.refusedInBurst = 0 }
            return (nil, false, state.refusedInBurst)
        }
        if let refusal, burstStarted {
            let reason = refusal.error.data?["reason"]?.stringValue ?? "over the cap"
            let first = channel.remoteAddress.map { "; the first refused came from \($0)" } ?? ""
            logger.warning("connection cap reached on \(listenerText(channel)): \(reason) (limit \(refusal.limit)); refusing new connections until one closes\(first)")
        }
        if burstEnded > 0 {
            logger.notice("admitting connections on \(listenerText(channel)) again after refusing \(burstEnded) over the cap")
        }
        guard refusal == nil else { return refusal }
        channel.closeFuture.whenComplete { [self] _ in release(peer) }
        return nil
    }

    /// The listener's bound address (its port is known only once bound).
    private func listenerText(_ channel: any Channel) -> String {
        channel.localAddress.map { "\($0)" } ?? listener
    }

    private func release(_ peer: String?) {
        state.withLock { state in
            state.open -= 1
            guard let peer else { return }
            let remaining = state.openPerPeer[peer, default: 1] - 1
            state.openPerPeer[peer] = remaining > 0 ? remaining : nil
        }
    }

    /// The peer's IP address without its port; nil for a Unix socket.
    private static func peerKey(_ address: SocketAddress?) -> String? {
        switch address {
        case .v4, .v6: address?.ipAddress
        case .unixDomainSocket, nil: nil
        }
    }
}

/// Serves a refused connection: writes its one error line, half-closes, and closes once the
/// peer has closed too (or after `linger`). Reading until then keeps the kernel from answering
/// the peer's unread request with a reset that could destroy the error line before it is read.
final class ConnectionRefusalHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let error: JSONRPCError
    private let linger: TimeAmount
    private var sent = false
    private var lingerTimer: Scheduled<Void>?

    init(_ refusal: ConnectionAdmission.Refusal, linger: TimeAmount = .seconds(2)) {
        self.error = refusal.error
        self.linger = linger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
        context.fireChannelActive()
    }

    private func refuse(_ context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        var line = context.channel.allocator.buffer(capacity: 256)
        MessageEncoder.writeError(id: nil, error: error, to: &line)
        line.writeInteger(UInt8(ascii: "\n"))
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(line)).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
        let loopBound = NIOLoopBound(channel, eventLoop: context.eventLoop)
        lingerTimer = context.eventLoop.scheduleTask(in: linger) { loopBound.value.close(promise: nil) }
    }

    /// Whatever the peer sends is dropped.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        lingerTimer?.cancel()
        lingerTimer = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
