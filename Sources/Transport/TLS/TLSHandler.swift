import Logging
import NIOCore

/// TLS on a channel, through the system's OpenSSL: ciphertext below, plaintext above.
///
/// Its role (server or client) is its context's. It starts the handshake when the channel becomes
/// active and closes a peer that has not finished it within `handshakeTimeout`. On success it
/// fires `TLSHandshakeCompleted` as a user inbound event, then passes plaintext on in chunks of at
/// most 64 KiB. Writes made before the handshake completes are held (up to
/// `maximumPendingWriteBytes`) and sent after it; all writes up to a flush are encrypted into one
/// buffer and written once.
///
/// Closing sends close_notify and waits up to `closeTimeout` for the peer's before closing the
/// transport. A peer's close_notify closes the channel, or, with `allowRemoteHalfClosure`, fires
/// `ChannelEvent.inputClosed`. Every failure is fired as a `TLSError` through `errorCaught`; a
/// peer that vanishes without close_notify is such an error (`.uncleanShutdown`), not a crash.
public final class TLSHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public static let defaultHandshakeTimeout = TimeAmount.seconds(10)
    public static let defaultCloseTimeout = TimeAmount.seconds(5)
    public static let defaultMaximumPendingWriteBytes = 8 * 1024 * 1024

    /// Plaintext is passed on when this much has been decrypted, or when the input runs dry.
    static let plaintextChunkSize = 64 * 1024

    private enum State {
        /// The channel is not active yet.
        case idle
        case handshaking(timeout: Scheduled<Void>)
        case active
        /// The peer's close_notify arrived (or its transport half-closed) and half-closure is
        /// allowed: we may still write.
        case inputClosed
        /// We sent close_notify and half-closed the transport; we may still read.
        case outputClosed
        /// We sent close_notify and are waiting for the peer's, or for the timeout.
        case closing(timeout: Scheduled<Void>, promise: EventLoopPromise<Void>?)
        case closed
    }

    private enum DeferredCloseOutput {
        case none
        case requested(EventLoopPromise<Void>?)
    }

    private var state = State.idle
    private let connection: TLSConnection
    private var pendingWrites = PendingWrites()
    /// `close(mode: .output)` asked for during the handshake: done once the writes before it are sent.
    private var deferredCloseOutput = DeferredCloseOutput.none
    private var deliveredPlaintextSinceReadComplete = false
    /// Where plaintext is decrypted into; kept between reads to reuse its memory.
    private var readBuffer: ByteBuffer?
    private let handshakeTimeout: TimeAmount
    private let closeTimeout: TimeAmount
    private let maximumPendingWriteBytes: Int
    private var logger: Logger

    /// - Parameters:
    ///   - context: the shared context; its current `SSL_CTX` is used for this connection.
    ///   - serverHostname: client side, overrides the configuration's expected server name.
    ///   - handshakeTimeout: how long a peer may take to complete the handshake.
    ///   - closeTimeout: how long to wait for the peer's close_notify after sending ours.
    ///   - maximumPendingWriteBytes: plaintext that may be written before the handshake completes.
    /// - Throws: `TLSError` with `.invalidServerHostname` for a name OpenSSL cannot check.
    public init(
        context: TLSContext,
        serverHostname: String? = nil,
        handshakeTimeout: TimeAmount = TLSHandler.defaultHandshakeTimeout,
        closeTimeout: TimeAmount = TLSHandler.defaultCloseTimeout,
        maximumPendingWriteBytes: Int = TLSHandler.defaultMaximumPendingWriteBytes,
        logger: Logger = Logger(label: "switchboard.tls")
    ) throws(TLSError) {
        self.connection = try TLSConnection(
            context: context,
            serverHostname: serverHostname ?? context.configuration.serverHostname
        )
        self.handshakeTimeout = handshakeTimeout
        self.closeTimeout = closeTimeout
        self.maximumPendingWriteBytes = maximumPendingWriteBytes
        self.logger = logger
        self.logger[metadataKey: "tls.role"] = "\(context.role)"
    }

    // MARK: Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            startHandshake(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
        state = .closed
        failPendingWrites(ChannelError.ioOnClosedChannel)
        failDeferredCloseOutput(ChannelError.ioOnClosedChannel)
    }

    public func channelActive(context: ChannelHandlerContext) {
        // Passed on first, so that a handshake failing at once is seen after the activation.
        context.fireChannelActive()
        startHandshake(context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let previous = state
        state = .closed
        switch previous {
        case .idle, .closed, .inputClosed:
            break
        case .handshaking(let timeout):
            timeout.cancel()
            let error = TLSError(code: .handshakeFailed, reason: "the peer closed the connection during the handshake")
            failDeferredCloseOutput(error)
            report(error, context: context)
        case .active, .outputClosed:
            report(TLSFailureDescription.uncleanShutdown, context: context)
        case .closing(let timeout, let promise):
            // The peer closed the transport after our close_notify without sending its own:
            // common, and nothing was lost, since we were the one closing.
            timeout.cancel()
            promise?.succeed(())
        }
        failPendingWrites(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.receiveCiphertext(unwrapInboundIn(data))
        switch state {
        case .idle:
            // Bytes before activation happen only in tests that skip `connect`; start anyway.
            startHandshake(context: context)
        case .handshaking:
            advanceHandshake(context: context)
        case .active, .outputClosed, .closing:
            decodePlaintext(context: context)
        case .inputClosed, .closed:
            // Nothing may follow the peer's close_notify; OpenSSL would only discard it.
            break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if deliveredPlaintextSinceReadComplete {
            deliveredPlaintextSinceReadComplete = false
            context.fireChannelReadComplete()
        } else if case .closed = state {
            return
        } else if !isAutoReadOn(context) {
            // The read the next handler asked for produced only handshake or protocol bytes:
            // ask for another, or it would wait forever for plaintext.
            context.read()
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch state {
        case .idle, .closed, .inputClosed:
            context.fireUserInboundEventTriggered(event)
        case .handshaking:
            fail(TLSError(code: .handshakeFailed, reason: "the peer closed the connection during the handshake"), context: context)
        case .active:
            // The transport's input ended without close_notify: report it, then treat it as the
            // end of input, which is what the peer most likely meant.
            state = .inputClosed
            report(TLSFailureDescription.uncleanShutdown, context: context)
            context.fireUserInboundEventTriggered(event)
        case .outputClosed:
            report(TLSFailureDescription.uncleanShutdown, context: context)
            closeTransport(context: context, promise: nil)
        case .closing(let timeout, let promise):
            timeout.cancel()
            state = .closed
            context.close(promise: promise)
        }
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        switch state {
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        case .outputClosed, .closing:
            promise?.fail(ChannelError.outputClosed)
        case .idle, .handshaking:
            if case .requested = deferredCloseOutput {
                promise?.fail(ChannelError.outputClosed)
                return
            }
            guard pendingWrites.bytes + plaintext.readableBytes <= maximumPendingWriteBytes else {
                promise?.fail(
                    TLSError(
                        code: .pendingWritesLimitExceeded,
                        reason: "more than \(maximumPendingWriteBytes) bytes were written before the TLS handshake completed"
                    )
                )
                return
            }
            pendingWrites.append(plaintext, promise: promise)
        case .active, .inputClosed:
            pendingWrites.append(plaintext, promise: promise)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        pendingWrites.markFlushed()
        switch state {
        case .active, .inputClosed:
            encryptFlushedWrites(context: context)
        case .idle, .handshaking, .outputClosed, .closing, .closed:
            break
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .all:
            closeAll(context: context, promise: promise)
        case .output:
            closeOutput(context: context, promise: promise)
        case .input:
            promise?.fail(ChannelError.operationUnsupported)
        }
    }

    private func closeAll(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch state {
        case .idle, .closed:
            state = .closed
            context.close(promise: promise)
        case .handshaking(let timeout):
            // No close_notify before the handshake is done; there is no session to close.
            timeout.cancel()
            state = .closed
            failPendingWrites(ChannelError.ioOnClosedChannel)
            context.close(promise: promise)
        case .closing(let timeout, let existing):
            // Already closing: the new promise completes with the first one.
            if let existing {
                if let promise { existing.futureResult.cascade(to: promise) }
            } else {
                state = .closing(timeout: timeout, promise: promise)
            }
        case .inputClosed:
            // The peer will send nothing more, so there is no close_notify to wait for.
            failPendingWrites(ChannelError.ioOnClosedChannel)
            _ = connection.shutdown()
            sendCiphertext(context: context)
            closeTransport(context: context, promise: promise)
        case .active, .outputClosed:
            failPendingWrites(ChannelError.ioOnClosedChannel)
            switch connection.shutdown() {
            case .sent:
                sendCiphertext(context: context)
                let timeout = context.eventLoop.assumeIsolated().scheduleTask(in: closeTimeout) { [self] in
                    closeTimedOut(context: context)
                }
                state = .closing(timeout: timeout, promise: promise)
            case .complete:
                sendCiphertext(context: context)
                closeTransport(context: context, promise: promise)
            case .failed(let error):
                logger.debug("close_notify could not be sent", metadata: ["reason": "\(error.reason)"])
                closeTransport(context: context, promise: promise)
            }
        }
    }

    private func closeOutput(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch state {
        case .idle, .handshaking:
            if case .requested = deferredCloseOutput {
                promise?.fail(ChannelError.outputClosed)
                return
            }
            // Writes made so far still have to go out after the handshake, then close_notify.
            pendingWrites.markFlushed()
            deferredCloseOutput = .requested(promise)
        case .active:
            // Flushed writes are already encrypted and sent; unflushed ones die with the output.
            failPendingWrites(ChannelError.outputClosed)
            _ = connection.shutdown()
            state = .outputClosed
            sendCiphertext(context: context)
            context.close(mode: .output, promise: promise)
        case .inputClosed:
            closeAll(context: context, promise: promise)
        case .outputClosed, .closing:
            promise?.fail(ChannelError.outputClosed)
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    // MARK: Handshake

    private func startHandshake(context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        let timeout = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [self] in
            handshakeTimedOut(context: context)
        }
        state = .handshaking(timeout: timeout)
        if !isAutoReadOn(context) {
            context.read()
        }
        advanceHandshake(context: context)
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        guard case .handshaking(let timeout) = state else { return }
        switch connection.handshake() {
        case .wantsMoreData:
            sendCiphertext(context: context)
        case .failed(let error):
            // The alert telling the peer why goes out before the transport closes.
            sendCiphertext(context: context)
            fail(error, context: context)
        case .complete:
            timeout.cancel()
            state = .active
            let summary = connection.handshakeSummary()
            logger.debug(
                "TLS handshake completed",
                metadata: [
                    "tls.version": "\(summary.protocolVersion)", "tls.cipher": "\(summary.cipher)",
                    "tls.peer": "\(summary.peer?.subject ?? "none")",
                ]
            )
            context.fireUserInboundEventTriggered(summary)
            // Application data may have arrived right behind the peer's Finished message.
            decodePlaintext(context: context)
            guard case .active = state else { return }
            // The rest of the handshake flight goes out with the first writes, in one buffer.
            encryptFlushedWrites(context: context)
            sendCiphertext(context: context)
            if case .requested(let promise) = deferredCloseOutput {
                deferredCloseOutput = .none
                closeOutput(context: context, promise: promise)
            }
        }
    }

    private func handshakeTimedOut(context: ChannelHandlerContext) {
        guard case .handshaking = state else { return }
        fail(
            TLSError(code: .handshakeTimedOut, reason: "the peer did not complete the TLS handshake within \(Self.words(handshakeTimeout))"),
            context: context
        )
    }

    private func closeTimedOut(context: ChannelHandlerContext) {
        guard case .closing(_, let promise) = state else { return }
        logger.debug("the peer did not answer close_notify within \(Self.words(closeTimeout)); closing anyway")
        state = .closed
        context.close(promise: promise)
    }

    // MARK: Plaintext in

    /// Decrypts everything OpenSSL can from the ciphertext received so far and passes it on.
    private func decodePlaintext(context: ChannelHandlerContext) {
        // Taken out of `self` while in use so that writing into it never copies it.
        var plaintext = readBuffer.take() ?? context.channel.allocator.buffer(capacity: TLSConnection.maximumRecordPlaintext)
        defer { readBuffer = plaintext }
        while true {
            switch connection.readPlaintext(into: &plaintext) {
            case .bytes:
                // Bounded: pass a chunk on before another record could push it past the limit.
                if plaintext.readableBytes + TLSConnection.maximumRecordPlaintext > Self.plaintextChunkSize {
                    deliver(&plaintext, context: context)
                    if case .closed = state { return }
                }
            case .wantsMoreData:
                deliver(&plaintext, context: context)
                // OpenSSL may have written while reading: a key update answer, say.
                sendCiphertext(context: context)
                return
            case .closeNotify:
                deliver(&plaintext, context: context)
                peerSentCloseNotify(context: context)
                return
            case .failed(let error):
                deliver(&plaintext, context: context)
                sendCiphertext(context: context)
                fail(error, context: context)
                return
            }
        }
    }

    private func deliver(_ plaintext: inout ByteBuffer, context: ChannelHandlerContext) {
        guard plaintext.readableBytes > 0 else { return }
        let chunk = plaintext
        // Reuses the storage if the next handler lets go of the chunk, as most do.
        plaintext.clear()
        deliveredPlaintextSinceReadComplete = true
        context.fireChannelRead(wrapInboundOut(chunk))
    }

    private func peerSentCloseNotify(context: ChannelHandlerContext) {
        switch state {
        case .active:
            if isHalfClosureAllowed(context) {
                state = .inputClosed
                flushReadComplete(context: context)
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            } else {
                flushReadComplete(context: context)
                failPendingWrites(ChannelError.ioOnClosedChannel)
                _ = connection.shutdown()
                sendCiphertext(context: context)
                closeTransport(context: context, promise: nil)
            }
        case .outputClosed:
            flushReadComplete(context: context)
            closeTransport(context: context, promise: nil)
        case .closing(let timeout, let promise):
            timeout.cancel()
            flushReadComplete(context: context)
            closeTransport(context: context, promise: promise)
        case .idle, .handshaking, .inputClosed, .closed:
            break
        }
    }

    /// Ends a read burst early, so that the next handler sees its data before the close.
    private func flushReadComplete(context: ChannelHandlerContext) {
        if deliveredPlaintextSinceReadComplete {
            deliveredPlaintextSinceReadComplete = false
            context.fireChannelReadComplete()
        }
    }

    // MARK: Ciphertext out

    /// Encrypts every flushed write into one buffer and writes it with one flush.
    private func encryptFlushedWrites(context: ChannelHandlerContext) {
        guard pendingWrites.hasFlushedWrites else { return }
        // Room for the plaintext plus a little per-record overhead; it grows if needed.
        var ciphertext = context.channel.allocator.buffer(capacity: pendingWrites.flushedBytes + 1024)
        var promises: [EventLoopPromise<Void>] = []
        while let write = pendingWrites.popFlushed() {
            if let promise = write.promise { promises.append(promise) }
            if let error = connection.writePlaintext(write.data) {
                sendCiphertext(context: context)
                fail(error, context: context)
                promises.forEach { $0.fail(error) }
                return
            }
            // Taken after each write so that OpenSSL's buffer holds one write's records at most.
            connection.takeCiphertext(appendingTo: &ciphertext)
        }
        context.writeAndFlush(wrapOutboundOut(ciphertext), promise: Self.combine(promises, on: context.eventLoop))
    }

    /// Writes and flushes whatever ciphertext OpenSSL has produced (handshake messages, alerts).
    private func sendCiphertext(context: ChannelHandlerContext) {
        guard connection.hasCiphertextToSend else { return }
        var buffer = context.channel.allocator.buffer(capacity: 0)
        connection.takeCiphertext(appendingTo: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private static func combine(_ promises: [EventLoopPromise<Void>], on eventLoop: any EventLoop) -> EventLoopPromise<Void>? {
        switch promises.count {
        case 0:
            return nil
        case 1:
            return promises[0]
        default:
            let combined = eventLoop.makePromise(of: Void.self)
            combined.futureResult.whenComplete { result in
                switch result {
                case .success: promises.forEach { $0.succeed(()) }
                case .failure(let error): promises.forEach { $0.fail(error) }
                }
            }
            return combined
        }
    }

    // MARK: Failure and close

    /// Fires `error` and closes the transport; nothing more is sent.
    private func fail(_ error: TLSError, context: ChannelHandlerContext) {
        if case .closed = state { return }
        let closePromise: EventLoopPromise<Void>?
        if case .closing(_, let promise) = state { closePromise = promise } else { closePromise = nil }
        cancelTimers()
        state = .closed
        failPendingWrites(error)
        failDeferredCloseOutput(error)
        report(error, context: context)
        context.close(promise: closePromise)
    }

    private func report(_ error: TLSError, context: ChannelHandlerContext) {
        logger.debug("TLS error", metadata: ["tls.error": "\(error.code)", "reason": "\(error.reason)"])
        context.fireErrorCaught(error)
    }

    private func closeTransport(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        cancelTimers()
        state = .closed
        context.close(promise: promise)
    }

    private func cancelTimers() {
        switch state {
        case .handshaking(let timeout): timeout.cancel()
        case .closing(let timeout, _): timeout.cancel()
        case .idle, .active, .inputClosed, .outputClosed, .closed: break
        }
    }

    private func failPendingWrites(_ error: any Error) {
        pendingWrites.removeAll().forEach { $0.fail(error) }
    }

    private func failDeferredCloseOutput(_ error: any Error) {
        guard case .requested(let promise) = deferredCloseOutput else { return }
        deferredCloseOutput = .none
        promise?.fail(error)
    }

    // MARK: Channel options

    private func isHalfClosureAllowed(_ context: ChannelHandlerContext) -> Bool {
        (try? context.channel.syncOptions?.getOption(ChannelOptions.allowRemoteHalfClosure)) ?? false
    }

    private func isAutoReadOn(_ context: ChannelHandlerContext) -> Bool {
        (try? context.channel.syncOptions?.getOption(ChannelOptions.autoRead)) ?? true
    }

    private static func words(_ amount: TimeAmount) -> String {
        let milliseconds = amount.nanoseconds / 1_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
