import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How much output the gateway keeps queued for peers that do not read it: per connection in
/// bytes and in time, and for all connections together. A connection past a bound is closed,
/// and the work it had at agents is cancelled.
///
/// Queued output is what the kernel would not take yet (NIO's buffered writable bytes); it is
/// looked at only while a connection is not writable, so a peer that reads costs nothing here.
final class OutputBudget: Sendable {
    struct Limits: Sendable, Equatable {
        /// Output queued for one connection that does not read.
        var perConnectionBytes = 32 * 1024 * 1024
        /// Output queued for all such connections together: with the gateway's own needs, eight
        /// peers that do not read hold it under 256 MiB resident.
        var totalBytes = 128 * 1024 * 1024
        /// How long a connection may stay unable to take more output.
        var stall: Duration = .seconds(60)

        init() {}
    }

    let limits: Limits
    private let queued = Atomic<Int>(0)
    private let trimScheduled = Atomic<Bool>(false)

    init(limits: Limits) {
        self.limits = limits
    }

    /// Output queued for every connection, as they last reported it.
    var totalQueued: Int { queued.load(ordering: .relaxed) }

    /// Records a connection's change of queued bytes; returns the new total.
    func adjust(by delta: Int) -> Int {
        delta == 0 ? queued.load(ordering: .relaxed) : queued.wrappingAdd(delta, ordering: .relaxed).newValue
    }

    /// After a connection that held much output goes, gives the memory back to the system
    /// soon (glibc keeps freed memory in its arenas otherwise); at most once a second.
    func releaseMemorySoon(on eventLoop: any EventLoop) {
        guard trimScheduled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        eventLoop.scheduleTask(in: .seconds(1)) { [self] in
            trimScheduled.store(false, ordering: .relaxed)
            Self.trimMemory()
        }
    }

    /// glibc's `malloc_trim`, looked up at run time (its header is not part of the Glibc module).
    private static func trimMemory() {
        #if canImport(Glibc)
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let symbol = dlsym(nil, "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
        #endif
    }
}

/// One connection's share of the budget, kept by its handler on its event loop.
struct QueuedOutput {
    /// What this connection last added to the budget's total.
    private(set) var reported = 0
    private var stallTimer: Scheduled<Void>?

    enum Verdict {
        case withinBounds
        case overConnectionBound(queued: Int)
        case overTotalBound(queued: Int, total: Int)
    }

    /// Looks at the bytes queued now (call it while the channel is not writable).
    mutating func check(_ channel: any Channel, budget: OutputBudget) -> Verdict {
        let queued = (try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
        let total = budget.adjust(by: queued - reported)
        reported = queued
        if queued > budget.limits.perConnectionBytes { return .overConnectionBound(queued: queued) }
        if total > budget.limits.totalBytes { return .overTotalBound(queued: queued, total: total) }
        return .withinBounds
    }

    /// The connection can take output again: nothing of it counts any more.
    mutating func drained(budget: OutputBudget) {
        _ = budget.adjust(by: -reported)
        reported = 0
        stallTimer?.cancel()
        stallTimer = nil
    }

    /// The connection stopped taking output: `onStall` runs if it still has not after the
    /// budget's stall time.
    mutating func stalled(on eventLoop: any EventLoop, budget: OutputBudget, _ onStall: @escaping @Sendable () -> Void) {
        guard stallTimer == nil else { return }
        stallTimer = eventLoop.scheduleTask(in: TimeAmount(budget.limits.stall), onStall)
    }
}
