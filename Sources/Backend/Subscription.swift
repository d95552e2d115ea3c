import NIOCore
import Synchronization

/// One subscription's bounded queue, filled by a backend and drained by one consumer.
///
/// A consumer either awaits `next()` (it is an `AsyncSequence`), or — on an event loop, with no
/// task per subscription — calls `poll(orWhenAvailable:)` until it returns nil, and is called
/// back once when the next message arrives. Both backends fill the same type, so its queueing
/// and drop policy are the same everywhere.
public final class Subscription: Sendable {
    public typealias ID = String

    /// A message handed to the consumer, with the subscription's drop count at that moment.
    public struct Delivery: Sendable, Equatable {
        public var message: PubSubMessage
        /// Messages this subscription has dropped so far (oldest first, when its queue was full).
        /// A consumer that sees it grow knows it missed that many messages before this one.
        public var dropped: UInt64
    }

    public struct Statistics: Sendable, Equatable {
        /// Messages published to this subscription (delivered, queued or dropped).
        public var received: UInt64
        /// Messages handed to the consumer.
        public var delivered: UInt64
        /// Messages dropped because the queue was full.
        public var dropped: UInt64
        /// Messages waiting in the queue.
        public var queued: Int

        public init(received: UInt64, delivered: UInt64, dropped: UInt64, queued: Int) {
            self.received = received
            self.delivered = delivered
            self.dropped = dropped
            self.queued = queued
        }
    }

    public let id: ID
    public let filter: TopicFilter
    public let limits: SubscriptionLimits

    private struct State {
        var queue = CircularBuffer<PubSubMessage>()
        var queuedBytes = 0
        var received: UInt64 = 0
        var delivered: UInt64 = 0
        var dropped: UInt64 = 0
        var finished = false
        var waiter: CheckedContinuation<Delivery?, Never>?
        var whenAvailable: (@Sendable () -> Void)?
        var receivedWaiters: [(count: UInt64, continuation: CheckedContinuation<Void, Never>)] = []

        mutating func takeFirst() -> Delivery? {
            guard let message = queue.popFirst() else { return nil }
            queuedBytes -= message.payload.readableBytes
            delivered += 1
            return Delivery(message: message, dropped: dropped)
        }
    }

    private let state = Mutex(State())
    private let unsubscribe: @Sendable (ID) -> Void
    private let droppedCounter: DropCounter?

    /// - Parameters:
    ///   - unsubscribe: removes the subscription from its backend (called by `cancel()`).
    ///   - droppedCounter: a backend-wide count of dropped messages, if the backend keeps one.
    init(id: ID, filter: TopicFilter, limits: SubscriptionLimits, droppedCounter: DropCounter? = nil, unsubscribe: @escaping @Sendable (ID) -> Void) {
        self.id = id
        self.filter = filter
        self.limits = limits
        self.droppedCounter = droppedCounter
        self.unsubscribe = unsubscribe
    }

    // MARK: Consumer

    /// The next message, waiting for one if the queue is empty; nil once the subscription has
    /// ended (or the waiting task is cancelled). One consumer at a time.
    public func next() async -> Delivery? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Delivery?, Never>) in
                let ready: Delivery?? = state.withLock { state in
                    if let delivery = state.takeFirst() { return .some(delivery) }
                    if state.finished || Task.isCancelled { return .some(nil) }
                    precondition(state.waiter == nil, "a subscription has one consumer at a time")
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    /// The next queued message, without waiting. When there is none, `whenAvailable` is called
    /// once (on whatever thread publishes) as soon as one arrives; it is dropped if the
    /// subscription ends first.
    public func poll(orWhenAvailable whenAvailable: @escaping @Sendable () -> Void) -> Delivery? {
        state.withLock { state in
            if let delivery = state.takeFirst() { return delivery }
            if !state.finished { state.whenAvailable = whenAvailable }
            return nil
        }
    }

    /// Ends the subscription: removes it from its backend and discards what is queued.
    public func cancel() {
        unsubscribe(id)
        finish()
    }

    public var isFinished: Bool {
        state.withLock { $0.finished }
    }

    public var statistics: Statistics {
        state.withLock { Statistics(received: $0.received, delivered: $0.delivered, dropped: $0.dropped, queued: $0.queue.count) }
    }

    /// Returns once `count` messages have been published to this subscription (or it ended):
    /// for a consumer that must know everything sent so far has arrived, such as a test.
    public func waitUntilReceived(_ count: UInt64) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.received >= count || state.finished { return true }
                state.receivedWaiters.append((count, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    // MARK: Backend

    /// Queues `message` (dropping the oldest ones if the queue is over its limits); false when
    /// the subscription has ended.
    func offer(_ message: PubSubMessage) -> Bool {
        var handedOver: (CheckedContinuation<Delivery?, Never>, Delivery)?
        var callback: (@Sendable () -> Void)?
        var reached: [CheckedContinuation<Void, Never>] = []
        var droppedNow: UInt64 = 0
        let accepted = state.withLock { state -> Bool in
            guard !state.finished else { return false }
            state.received += 1
            if let waiter = state.waiter {
                state.waiter = nil
                state.delivered += 1
                handedOver = (waiter, Delivery(message: message, dropped: state.dropped))
            } else {
                state.queue.append(message)
                state.queuedBytes += message.payload.readableBytes
                while state.queue.count > 1 && (state.queue.count > limits.messages || state.queuedBytes > limits.bytes) {
                    let oldest = state.queue.removeFirst()
                    state.queuedBytes -= oldest.payload.readableBytes
                    state.dropped += 1
                    droppedNow += 1
                }
                callback = state.whenAvailable
                state.whenAvailable = nil
            }
            let received = state.received
            state.receivedWaiters.removeAll { waiter in
                guard waiter.count <= received else { return false }
                reached.append(waiter.continuation)
                return true
            }
            return true
        }
        if droppedNow > 0 { droppedCounter?.add(droppedNow) }
        if let (waiter, delivery) = handedOver { waiter.resume(returning: delivery) }
        callback?()
        reached.forEach { $0.resume() }
        return accepted
    }

    /// Marks the subscription ended, wakes its consumer, and lets go of what it queued.
    func finish() {
        let (waiter, reached): (CheckedContinuation<Delivery?, Never>?, [CheckedContinuation<Void, Never>]) = state.withLock { state in
            guard !state.finished else { return (nil, []) }
            state.finished = true
            state.queue.removeAll()
            state.queuedBytes = 0
            state.whenAvailable = nil
            defer {
                state.waiter = nil
                state.receivedWaiters = []
            }
            return (state.waiter, state.receivedWaiters.map(\.continuation))
        }
        waiter?.resume(returning: nil)
        reached.forEach { $0.resume() }
    }
}

extension Subscription: AsyncSequence {
    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: Subscription
        public mutating func next() async -> Delivery? { await subscription.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: self) }
}

/// A count of dropped messages shared by every subscription of one backend.
final class DropCounter: Sendable {
    private let value = Atomic<UInt64>(0)
    func add(_ count: UInt64) { value.wrappingAdd(count, ordering: .relaxed) }
    var total: UInt64 { value.load(ordering: .relaxed) }
}
