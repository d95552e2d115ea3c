import NIOCore

/// Encoded commands written together, and the promises for their replies in order.
struct RedisRequest: Sendable {
    var encoded: ByteBuffer
    var promises: [EventLoopPromise<RESPReply>]
    var deadline: NIODeadline
}

/// A message published on a channel this connection subscribed to.
public struct RedisPubSubMessage: Sendable, Hashable {
    public var channel: String
    /// The pattern that matched, for PSUBSCRIBE deliveries.
    public var pattern: String?
    public var payload: ByteBuffer
}

/// Writes requests and matches replies to them first-in first-out, failing every pending command
/// when the connection closes or a deadline passes.
///
/// In pub-sub mode, `message` and `pmessage` arrays are delivered to `onMessage` instead.
final class RedisConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPReply
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<RESPReply>
        var deadline: NIODeadline
    }

    private enum State {
        case active
        case closed(RedisError)
    }

    private var pending = CircularBuffer<Pending>(initialCapacity: 64)
    private var state = State.active
    private var timer: (deadline: NIODeadline, task: Scheduled<Void>)?
    private let onMessage: (@Sendable (RedisPubSubMessage) -> Void)?

    init(onMessage: (@Sendable (RedisPubSubMessage) -> Void)? = nil) {
        self.onMessage = onMessage
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if case .closed(let error) = state {
            let notWritten = RedisError(.notConnected, "the connection is closed (\(error.message)); the command was not sent")
            request.promises.forEach { $0.fail(notWritten) }
            promise?.fail(notWritten)
            return
        }
        for reply in request.promises {
            pending.append(Pending(promise: reply, deadline: request.deadline))
        }
        armTimer(context: context, for: request.deadline)
        context.write(wrapOutboundOut(request.encoded), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        if let onMessage, let message = Self.pubSubMessage(reply) {
            onMessage(message)
            return
        }
        guard let next = pending.popFirst() else {
            fail(context: context, RedisError(.protocolError, "a reply arrived with no command waiting for it"))
            return
        }
        next.promise.succeed(reply)
        if pending.isEmpty { cancelTimer() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "the connection to the server closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let redisError = error as? RedisError ?? RedisError(.connectionClosed, "connection error: \(error)")
        fail(context: context, redisError)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "the connection handler was removed"))
    }

    private func fail(context: ChannelHandlerContext, _ error: RedisError) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        if case .active = state { state = .closed(error) }
        cancelTimer()
        let count = pending.count
        guard count > 0 else { return }
        let described = RedisError(error.code, "\(error.message) (\(count) command\(count == 1 ? "" : "s") pending)")
        while let next = pending.popFirst() {
            next.promise.fail(described)
        }
    }

    // One timer for the earliest deadline. A command that times out leaves the FIFO unmatchable,
    // so the connection is closed and everything pending fails.
    private func armTimer(context: ChannelHandlerContext, for deadline: NIODeadline) {
        if let timer, timer.deadline <= deadline { return }
        timer?.task.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.timerFired(context: context)
        }
        timer = (deadline, task)
    }

    private func timerFired(context: ChannelHandlerContext) {
        timer = nil
        guard let earliest = pending.map(\.deadline).min() else { return }
        if earliest <= .now() {
            fail(context: context, RedisError(.timeout, "a command passed its deadline; the connection was closed"))
        } else {
            armTimer(context: context, for: earliest)
        }
    }

    private func cancelTimer() {
        timer?.task.cancel()
        timer = nil
    }

    private static func pubSubMessage(_ reply: RESPReply) -> RedisPubSubMessage? {
        guard case .array(let parts) = reply, let kind = parts.first?.string else { return nil }
        switch (kind, parts.count) {
        case ("message", 3):
            guard let channel = parts[1].string, case .bulkString(let payload) = parts[2] else { return nil }
            return RedisPubSubMessage(channel: channel, pattern: nil, payload: payload)
        case ("pmessage", 4):
            guard let pattern = parts[1].string, let channel = parts[2].string,
                  case .bulkString(let payload) = parts[3] else { return nil }
            return RedisPubSubMessage(channel: channel, pattern: pattern, payload: payload)
        default:
            return nil
        }
    }
}
