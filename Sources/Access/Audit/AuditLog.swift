import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The audit log: a record of every state-changing or refused request, appended to a file as a
/// hash chain (protocol-spec 12.9), and handed to an optional extra sink (a Redis stream).
///
/// `record` is what the request path calls, on its event loop: it only puts the event in a
/// bounded queue. One writer — a thread of the log's own — takes whatever is queued as a batch,
/// gives each event its sequence number, time and hashes, appends the batch with one write, and
/// then passes the entries to the sink. When the queue is full the event is dropped and counted:
/// an audit log that blocked requests, or grew without bound, would be a way to stop the gateway.
public final class AuditLog: Sendable {
    public struct Configuration: Sendable {
        /// The audit file, created with mode 0600 when missing, continued when present.
        public var path: String
        /// Events waiting for the writer; more are dropped (and counted).
        public var queueCapacity: Int
        /// The bytes of the strings of the events waiting, at most: a flood of events with long
        /// names fills this before `queueCapacity`.
        public var queueByteLimit: Int
        /// `fsync` after each batch: entries survive a power loss, at the cost of a disk flush per
        /// batch. Without it a batch reaches the kernel with one `write` and the disk when the
        /// kernel writes it back (or at `close`).
        public var syncToDisk: Bool

        public static let defaultQueueCapacity = 65_536
        public static let defaultQueueByteLimit = 32 << 20

        public init(
            path: String,
            queueCapacity: Int = Self.defaultQueueCapacity,
            queueByteLimit: Int = Self.defaultQueueByteLimit,
            syncToDisk: Bool = false
        ) {
            self.path = path
            self.queueCapacity = max(1, queueCapacity)
            self.queueByteLimit = max(1, queueByteLimit)
            self.syncToDisk = syncToDisk
        }
    }

    /// Counters since the log was opened, and where the chain stands.
    public struct Statistics: Sendable, Equatable {
        /// Entries appended to the file.
        public var written: UInt64
        /// Events refused because the queue was full (or the log closed).
        public var dropped: UInt64
        /// Events lost because the file could not be written.
        public var failed: UInt64
        /// Events waiting for the writer.
        public var queued: Int
        /// The sequence and hash of the file's last entry (0 and 64 zeros for an empty file).
        public var lastSequence: UInt64
        public var lastHash: String
    }

    /// The extra sink's signature: called on the writer's thread, in sequence order, after the
    /// entry is in the file. It must not block: it delays every entry after it.
    public typealias Sink = @Sendable (AuditEntry) -> Void

    /// The longest a string of an event may be, in UTF-8 bytes; longer ones are cut (ending in `…`). Names
    /// and methods come from clients: an entry must not grow with what a client sends.
    public static let maximumFieldLength = 1024

    /// Events appended with one `write`.
    static let maximumBatch = 1024

    private let configuration: Configuration
    private let queue: Mutex<QueueState>
    private let file: Mutex<AuditChainFile>
    private let writerThread: NIOThreadPool
    private let sink: Sink?
    private let clock: @Sendable () -> AuditTime
    private let logger: Logger

    /// Opens (or creates) the file and continues its chain; see `AuditChainFile` for a last line
    /// cut short. Throws when the file cannot be opened or its last line is not an entry.
    public init(
        configuration: Configuration,
        sink: Sink? = nil,
        logger: Logger = Logger(label: "switchboard.audit"),
        clock: @escaping @Sendable () -> AuditTime = AuditTime.now
    ) throws(AuditFileError) {
        self.configuration = configuration
        self.file = Mutex(try AuditChainFile(path: configuration.path, logger: logger))
        self.queue = Mutex(QueueState())
        self.sink = sink
        self.clock = clock
        self.logger = logger
        self.writerThread = NIOThreadPool(numberOfThreads: 1)
        writerThread.start()
    }

    deinit {
        // A drain in progress holds the log, so none is: the queue is empty.
        writerThread.shutdownGracefully { _ in }
    }

    /// Queues `event` for the writer; never blocks. Dropped (and counted) when the queue is full
    /// or the log is closed; the first drop of a burst is logged as a warning.
    public func record(_ event: AuditEvent) {
        let event = event.bounded(to: Self.maximumFieldLength)
        let size = event.stringBytes
        let capacity = configuration.queueCapacity
        let byteLimit = configuration.queueByteLimit
        let outcome = queue.withLock { state -> RecordOutcome in
            guard !state.closed else {
                state.dropped += 1
                state.droppedAfterClose += 1
                return state.droppedAfterClose == 1 ? .firstDropAfterClose : .dropped
            }
            guard state.pending.count < capacity, state.pendingBytes + size <= byteLimit else {
                state.dropped += 1
                state.droppedInBurst += 1
                return state.droppedInBurst == 1 ? .firstDropOfBurst : .dropped
            }
            state.pending.append(event)
            state.pendingBytes += size
            state.accepted += 1
            if state.draining { return .queued }
            state.draining = true
            return .queuedForIdleWriter
        }
        switch outcome {
        case .queued, .dropped:
            break
        case .queuedForIdleWriter:
            writerThread.submit { _ in self.drain() }
        case .firstDropOfBurst:
            logger.warning(
                "audit log: the queue is full (the writer is behind): dropping events until it catches up",
                metadata: ["file": "\(configuration.path)", "queue.capacity": "\(capacity)", "queue.bytes": "\(byteLimit)"]
            )
        case .firstDropAfterClose:
            logger.warning("audit log: an event was recorded after the log was closed: dropped", metadata: ["file": "\(configuration.path)"])
        }
    }

    /// Returns when every event recorded before the call has been written (or has failed to be).
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = queue.withLock { state -> Bool in
                if state.finished || state.processed >= state.accepted { return true }
                state.waiters.append((state.accepted, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Stops taking events; those already queued are still written, then the file is synced and
    /// closed. Returns at once: `await flush()` to wait for that.
    public func close() {
        let startWriter = queue.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.closed = true
            if state.draining { return false }
            state.draining = true
            return true
        }
        if startWriter { writerThread.submit { _ in self.drain() } }
    }

    public var statistics: Statistics {
        let (lastSequence, lastHash) = file.withLock { ($0.lastSequence, $0.lastHash) }
        return queue.withLock { state in
            Statistics(
                written: state.written, dropped: state.dropped, failed: state.failed, queued: state.pending.count,
                lastSequence: lastSequence, lastHash: lastHash
            )
        }
    }

    // MARK: The writer

    private enum RecordOutcome {
        case queued
        /// The writer is idle: it must be started.
        case queuedForIdleWriter
        case dropped
        /// Logged: once per burst of drops is enough to say the writer is behind.
        case firstDropOfBurst
        case firstDropAfterClose
    }

    private struct QueueState {
        var pending: [AuditEvent] = []
        var pendingBytes = 0
        /// Events queued since the log opened; `flush` waits for `processed` to reach it.
        var accepted: UInt64 = 0
        var processed: UInt64 = 0
        var written: UInt64 = 0
        var failed: UInt64 = 0
        var dropped: UInt64 = 0
        /// Drops since the queue was last empty: one warning per burst, one summary at its end.
        var droppedInBurst: UInt64 = 0
        var droppedAfterClose: UInt64 = 0
        /// A drain is submitted or running; at most one is.
        var draining = false
        var closed = false
        /// Closed, drained, and the file closed.
        var finished = false
        var waiters: [(target: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
    }

    /// Writes batches until the queue is empty, on the writer thread.
    private func drain() {
        var batch: [AuditEvent] = []
        while true {
            let (isEmpty, closed, droppedInBurst) = queue.withLock { state -> (Bool, Bool, UInt64) in
                guard state.pending.isEmpty else {
                    swap(&state.pending, &batch)  // the emptied array goes back with its capacity
                    state.pendingBytes = 0
                    return (false, state.closed, 0)
                }
                state.draining = false
                defer { state.droppedInBurst = 0 }
                return (true, state.closed, state.droppedInBurst)
            }
            if isEmpty {
                if droppedInBurst > 0 {
                    logger.warning(
                        "audit log: the writer caught up; \(droppedInBurst == 1 ? "1 event was" : "\(droppedInBurst) events were") dropped while the queue was full",
                        metadata: ["file": "\(configuration.path)"]
                    )
                }
                if closed { finish() }
                return
            }
            var written: UInt64 = 0
            var failed: UInt64 = 0
            var start = batch.startIndex
            while start < batch.endIndex {
                let end = min(start + Self.maximumBatch, batch.endIndex)
                let events = batch[start..<end]
                start = end
                let appended = file.withLock { file in
                    Result { () throws(AuditFileError) in
                        try file.append(events, clock: clock, syncToDisk: configuration.syncToDisk)
                    }
                }
                switch appended {
                case .success(let entries):
                    written += UInt64(entries.count)
                    if let sink { for entry in entries { sink(entry) } }
                case .failure(let error):
                    failed += UInt64(events.count)
                    logger.error("audit log: \(events.count) events lost: \(error)", metadata: ["file": "\(configuration.path)"])
                }
            }
            let count = UInt64(batch.count)
            batch.removeAll(keepingCapacity: true)
            let ready = queue.withLock { state in
                state.processed += count
                state.written += written
                state.failed += failed
                let processed = state.processed
                let ready = state.waiters.filter { $0.target <= processed }.map(\.continuation)
                state.waiters.removeAll { $0.target <= processed }
                return ready
            }
            for continuation in ready { continuation.resume() }
        }
    }

    /// After `close`, once the queue is empty: the file is synced and closed, every waiter goes.
    private func finish() {
        file.withLock { $0.closeFile() }
        let waiters = queue.withLock { state in
            state.finished = true
            defer { state.waiters.removeAll() }
            return state.waiters.map(\.continuation)
        }
        for continuation in waiters { continuation.resume() }
    }
}

extension AuditEvent {
    /// This event with every string cut to `limit` UTF-8 bytes.
    func bounded(to limit: Int) -> AuditEvent {
        var event = self
        event.principal = principal.bounded(to: limit)
        event.tenant = tenant.bounded(to: limit)
        event.proof = proof.bounded(to: limit)
        event.method = method.bounded(to: limit)
        event.target = target?.bounded(to: limit)
        if let message = error?.message { event.error?.message = message.bounded(to: limit) }
        event.replica = replica?.bounded(to: limit)
        switch requestID {
        case .string(let id)?: event.requestID = .string(id.bounded(to: limit))
        case .escapedString(let written)? where written.utf8.count > limit:
            // Cutting an escaped text could split an escape: keep what was written, as a string.
            event.requestID = .string(written.bounded(to: limit))
        default: break
        }
        return event
    }
}

extension AuditEvent {
    /// What the event's strings take, roughly: what the queue's byte limit counts.
    var stringBytes: Int {
        var total = principal.utf8.count + tenant.utf8.count + proof.utf8.count + method.utf8.count
        total += (target?.utf8.count ?? 0) + (error?.message.utf8.count ?? 0) + (replica?.utf8.count ?? 0)
        switch requestID {
        case .string(let id)?, .escapedString(let id)?: total += id.utf8.count
        default: break
        }
        return total
    }
}

extension String {
    /// At most `limit` UTF-8 bytes, cut at a character and marked with `…` when cut.
    fileprivate func bounded(to limit: Int) -> String {
        guard utf8.count > limit else { return self }
        var result = ""
        var length = 0
        let room = limit - "…".utf8.count
        for character in self {
            let size = character.utf8.count
            if length + size > room { break }
            result.append(character)
            length += size
        }
        return result + "…"
    }
}
