import Synchronization

/// Messages waiting to be published, sent in order by one task, as many at a time as have
/// queued up (one round trip per batch to Redis, however many callers enqueued meanwhile).
/// Enqueueing never waits; beyond `capacity` the oldest waiting message is dropped.
public final class PublishQueue: Sendable {
    private struct State {
        var pending: [PubSubMessage] = []
        var waiter: CheckedContinuation<Void, Never>?
        var dropped = 0
    }

    private let state = Mutex(State())
    private let capacity: Int
    private let batchLimit: Int

    public init(capacity: Int = 100_000, batchLimit: Int = 512) {
        self.capacity = capacity
        self.batchLimit = batchLimit
    }

    public func enqueue(_ message: PubSubMessage) {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
            state.pending.append(message)
            if state.pending.count > capacity {
                state.pending.removeFirst()
                state.dropped += 1
            }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Messages dropped because the queue was full.
    public var dropped: Int { state.withLock { $0.dropped } }

    /// Publishes what is queued until the calling task is cancelled. `failed` hears of every
    /// batch that could not be published (the messages are not retried: every user of the queue
    /// has a slower path that does not depend on them).
    public func run(on events: any PubSub, failed: @Sendable (any Error, Int) -> Void) async {
        while !Task.isCancelled {
            let batch = await nextBatch()
            guard !batch.isEmpty else { continue }
            do {
                try await events.publish(all: batch)
            } catch {
                failed(error, batch.count)
            }
        }
    }

    private func nextBatch() async -> [PubSubMessage] {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if !state.pending.isEmpty || Task.isCancelled { return true }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
            return state.withLock { state in
                let count = min(state.pending.count, batchLimit)
                defer { state.pending.removeFirst(count) }
                return Array(state.pending.prefix(count))
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
