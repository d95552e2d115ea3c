import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps a listener from spinning when the process runs out of file descriptors.
///
/// When `accept` fails with EMFILE or ENFILE, NIO's server channel reports the error and, having
/// accepted nothing, stays registered for reading; the connection still waiting in the backlog
/// keeps the socket readable, so the event loop calls `accept` again at once, forever: one core
/// at 100 %, nothing logged (the tail of the pipeline drops the error). This handler, on the
/// server channel, turns `autoRead` off on such an error, which takes the socket out of the
/// poll set, and turns it on again after a pause that grows from `initialPause` to
/// `maximumPause` while accepts keep failing. It logs once when accepts start failing and once
/// when one succeeds again; the connections already open are served throughout.
public final class DescriptorExhaustionBackoff: ChannelDuplexHandler {
    public typealias InboundIn = NIOAny
    public typealias OutboundIn = NIOAny

    public static let defaultInitialPause = TimeAmount.milliseconds(50)
    public static let defaultMaximumPause = TimeAmount.seconds(1)

    private let initialPause: TimeAmount
    private let maximumPause: TimeAmount
    private let logger: Logger
    private let listener: String

    /// Set while accepts fail: the current pause, how many failed, since when.
    private var exhaustion: (pause: TimeAmount, failures: Int, since: NIODeadline)?
    private var scheduledResume: Scheduled<Void>?

    public init(
        listener: String,
        logger: Logger,
        initialPause: TimeAmount = DescriptorExhaustionBackoff.defaultInitialPause,
        maximumPause: TimeAmount = DescriptorExhaustionBackoff.defaultMaximumPause
    ) {
        self.listener = listener
        self.logger = logger
        self.initialPause = initialPause
        self.maximumPause = maximumPause
    }

    /// Whether the error says that no descriptor (or kernel memory for one) is left.
    public static func isExhaustion(_ error: any Error) -> Bool {
        guard let error = error as? IOError else { return false }
        switch error.errnoCode {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM: return true
        default: return false
        }
    }

    /// Reads wait for the pause to end.
    public func read(context: ChannelHandlerContext) {
        guard scheduledResume == nil else { return }
        context.read()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard Self.isExhaustion(error), let ioError = error as? IOError else {
            context.fireErrorCaught(error)
            return
        }
        let now = context.eventLoop.now
        if var current = exhaustion {
            current.pause = min(current.pause + current.pause, maximumPause)
            current.failures += 1
            exhaustion = current
        } else {
            exhaustion = (initialPause, 1, now)
            let (open, limit) = Self.descriptorUsage()
            let what = switch ioError.errnoCode {
            case ENFILE: "the system is out of file descriptors"
            case EMFILE: "out of file descriptors"
            default: "accept failed for lack of kernel memory (\(String(cString: strerror(ioError.errnoCode))))"
            }
            logger.warning(
                "\(what): \(open) open, limit \(limit); pausing accepts on \(listenerText(context)) (retrying every \(Self.milliseconds(initialPause)) to \(Self.milliseconds(maximumPause)) ms); open connections are still served")
        }
        pause(context, until: now + exhaustion!.pause)
    }

    private func pause(_ context: ChannelHandlerContext, until resumeAt: NIODeadline) {
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        scheduledResume?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        scheduledResume = context.eventLoop.scheduleTask(deadline: resumeAt) {
            let (handler, context) = loopBound.value
            handler.resume(context)
        }
    }

    private func resume(_ context: ChannelHandlerContext) {
        scheduledResume = nil
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        context.read()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let exhaustion {
            self.exhaustion = nil
            let seconds = Double((context.eventLoop.now - exhaustion.since).nanoseconds) / 1e9
            logger.notice(
                "file descriptors available again: accepting connections on \(listenerText(context)) (paused for \((seconds * 10).rounded() / 10) s, \(exhaustion.failures) failed accepts)")
        }
        context.fireChannelRead(data)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        scheduledResume?.cancel()
        scheduledResume = nil
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        if scheduledResume != nil {
            // A paused listener must not stay paused without its handler.
            resume(context)
        }
    }

    /// The bound address, once there is one.
    private func listenerText(_ context: ChannelHandlerContext) -> String {
        context.channel.localAddress.map { "\($0)" } ?? listener
    }

    private static func milliseconds(_ amount: TimeAmount) -> Int64 { amount.nanoseconds / 1_000_000 }

    /// Descriptors open in this process and its limit. Counted without opening anything
    /// (there is no descriptor to spare): one `fcntl` per possible descriptor, up to 65,536.
    public static func descriptorUsage() -> (open: String, limit: String) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return ("?", "?") }
        let ceiling = Int32(clamping: min(UInt64(limit.rlim_cur), 65_536))
        var open = 0
        for descriptor in 0..<ceiling where fcntl(descriptor, F_GETFD) != -1 { open += 1 }
        let shownLimit = limit.rlim_cur == rlim_t.max ? "unlimited" : String(limit.rlim_cur)
        return (UInt64(limit.rlim_cur) > 65_536 ? "at least \(open)" : String(open), shownLimit)
    }
}

@available(*, unavailable)
extension DescriptorExhaustionBackoff: Sendable {}
