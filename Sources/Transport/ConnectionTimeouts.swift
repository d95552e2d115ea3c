import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How long a socket connection may say nothing, or leave a line unfinished, before the gateway
/// closes it. Nil turns a timeout off. stdio gets none of them: its host owns its life.
public struct ConnectionTimeouts: Sendable, Equatable {
    /// No input, no output and nothing that holds the connection open (a request in flight, a
    /// subscription, a registered agent, keepalive): the peer has gone quiet.
    public var idle: TimeAmount?
    /// The bytes of an unfinished line are older than this (a slowloris peer).
    public var partialLine: TimeAmount?
    /// No complete line since the connection opened (after the TLS handshake, for TLS).
    public var firstMessage: TimeAmount?

    public static let defaultIdle = TimeAmount.seconds(300)
    public static let defaultPartialLine = TimeAmount.seconds(30)
    public static let defaultFirstMessage = TimeAmount.seconds(10)

    public init(
        idle: TimeAmount? = Self.defaultIdle,
        partialLine: TimeAmount? = Self.defaultPartialLine,
        firstMessage: TimeAmount? = Self.defaultFirstMessage
    ) {
        self.idle = idle
        self.partialLine = partialLine
        self.firstMessage = firstMessage
    }

    public var isEmpty: Bool { idle == nil && partialLine == nil && firstMessage == nil }
}

/// Closes a connection whose peer has gone quiet, never finishes its first line, or dribbles a
/// line out too slowly. Sits in front of the line decoder (after TLS), sees the raw bytes.
///
/// Each read only stores a timestamp and looks at its last byte; one timer per connection, set
/// for the earliest deadline, re-checks the timestamps when it fires. A read never schedules a
/// task, except when an unfinished line begins while the timer is set for later than that
/// line's deadline (at most once per timer period).
public final class ConnectionTimeoutHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = NIOAny

    /// Why a connection was closed.
    public enum Expiry: Sendable, Equatable, CustomStringConvertible {
        case firstMessage(TimeAmount)
        case partialLine(TimeAmount)
        case idle(TimeAmount)

        public var description: String {
            switch self {
            case .firstMessage(let limit): "no complete line within \(Self.seconds(limit)) s of opening (first-message timeout)"
            case .partialLine(let limit): "a line left unfinished for \(Self.seconds(limit)) s (partial-line timeout)"
            case .idle(let limit): "idle for \(Self.seconds(limit)) s (idle timeout)"
            }
        }

        private static func seconds(_ amount: TimeAmount) -> String {
            let seconds = Double(amount.nanoseconds) / 1e9
            return seconds == seconds.rounded() ? String(Int64(seconds)) : String(seconds)
        }
    }

    private let timeouts: ConnectionTimeouts
    private let startsAfterTLSHandshake: Bool
    private let keepsOpen: () -> Bool
    private let logger: Logger
    private let onExpiry: ((Expiry) -> Void)?

    /// When the clocks started: the connection opened (or its TLS handshake completed).
    private var started: NIODeadline?
    private var sawCompleteLine = false
    /// The last read or the last flush outside a read.
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    /// When the line still unfinished began; nil while the input ends at a newline.
    private var unfinishedLineSince: NIODeadline?
    private var inReadCycle = false
    private var timer: (task: Scheduled<Void>, deadline: NIODeadline)?
    private var context: ChannelHandlerContext?

    /// - Parameters:
    ///   - startsAfterTLSHandshake: the first-message clock starts at `TLSHandshakeCompleted`
    ///     (the TLS handler has its own handshake deadline).
    ///   - keepsOpen: asked when the idle deadline passes; true means the connection is not
    ///     idle (it waits on a request, is subscribed, is an agent…) and its idle clock restarts.
    ///   - onExpiry: told before the connection is closed (tests).
    public init(
        timeouts: ConnectionTimeouts,
        startsAfterTLSHandshake: Bool = false,
        logger: Logger,
        keepsOpen: @escaping () -> Bool = { false },
        onExpiry: ((Expiry) -> Void)? = nil
    ) {
        self.timeouts = timeouts
        self.startsAfterTLSHandshake = startsAfterTLSHandshake
        self.logger = logger
        self.keepsOpen = keepsOpen
        self.onExpiry = onExpiry
    }

    // MARK: Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive && !startsAfterTLSHandshake { startClocks(context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        if !startsAfterTLSHandshake { startClocks(context) }
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if startsAfterTLSHandshake, event is TLSHandshakeCompleted { startClocks(context) }
        context.fireUserInboundEventTriggered(event)
    }

    private func startClocks(_ context: ChannelHandlerContext) {
        guard started == nil else { return }
        let now = context.eventLoop.now
        started = now
        lastActivity = now
        if let next = nextDeadline() { arm(at: next, context) }
    }

    // MARK: Input and output

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        noteInput(unwrapInboundIn(data), context)
        context.fireChannelRead(data)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        // Replies flushed while the read completes are covered by the read's timestamp.
        context.fireChannelReadComplete()
        inReadCycle = false
    }

    public func flush(context: ChannelHandlerContext) {
        if !inReadCycle { lastActivity = context.eventLoop.now }
        context.flush()
    }

    private func noteInput(_ bytes: ByteBuffer, _ context: ChannelHandlerContext) {
        guard bytes.readableBytes > 0, let last = bytes.getInteger(at: bytes.writerIndex - 1, as: UInt8.self) else { return }
        // The loop's clock: the real one, or a test's.
        let now = context.eventLoop.now
        inReadCycle = true
        lastActivity = now
        if last == UInt8(ascii: "\n") {
            unfinishedLineSince = nil
            sawCompleteLine = true
            return
        }
        // The input now ends inside a line. It began in this read if the input ended at a
        // newline before, or if a line ended within this read.
        if unfinishedLineSince == nil {
            unfinishedLineSince = now
            if !sawCompleteLine && Self.containsNewline(bytes) { sawCompleteLine = true }
        } else if Self.containsNewline(bytes) {
            unfinishedLineSince = now
            sawCompleteLine = true
        } else {
            return
        }
        if let limit = timeouts.partialLine, started != nil, timer.map({ $0.deadline > now + limit }) ?? true {
            arm(at: now + limit, context)
        }
    }

    private static func containsNewline(_ bytes: ByteBuffer) -> Bool {
        bytes.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress else { return false }
            return memchr(base, 0x0A, raw.count) != nil
        }
    }

    // MARK: The timer

    private func nextDeadline() -> NIODeadline? {
        guard let started else { return nil }
        var next: NIODeadline?
        func consider(_ deadline: NIODeadline) { next = min(next ?? deadline, deadline) }
        if !sawCompleteLine, let limit = timeouts.firstMessage { consider(started + limit) }
        if let since = unfinishedLineSince, let limit = timeouts.partialLine { consider(since + limit) }
        if let limit = timeouts.idle { consider(lastActivity + limit) }
        return next
    }

    private func arm(at deadline: NIODeadline, _ context: ChannelHandlerContext) {
        timer?.task.cancel()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(deadline: deadline) { loopBound.value.timerFired() }
        timer = (task, deadline)
    }

    private func cancelTimer() {
        timer?.task.cancel()
        timer = nil
    }

    private func timerFired() {
        timer = nil
        guard let context, context.channel.isActive else { return }
        if let expiry = expired(at: context.eventLoop.now) {
            expire(expiry, context)
        } else if let next = nextDeadline() {
            arm(at: next, context)
        }
    }

    private func expired(at now: NIODeadline) -> Expiry? {
        guard let started else { return nil }
        if !sawCompleteLine, let limit = timeouts.firstMessage, now >= started + limit { return .firstMessage(limit) }
        if let since = unfinishedLineSince, let limit = timeouts.partialLine, now >= since + limit { return .partialLine(limit) }
        if let limit = timeouts.idle, now >= lastActivity + limit {
            // Quiet, but something still holds it open: the idle clock starts again.
            guard keepsOpen() else { return .idle(limit) }
            lastActivity = now
        }
        return nil
    }

    private func expire(_ expiry: Expiry, _ context: ChannelHandlerContext) {
        let peer = context.channel.remoteAddress.map { "\($0)" } ?? "a local peer"
        switch expiry {
        case .idle: logger.debug("closing the connection from \(peer): \(expiry)")
        case .firstMessage, .partialLine: logger.info("closing the connection from \(peer): \(expiry)")
        }
        onExpiry?(expiry)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ConnectionTimeoutHandler: Sendable {}
