import NIOCore
import Synchronization

/// The embedded pub-sub: subscriptions of this process only.
///
/// A publish looks up exact-topic subscriptions in a dictionary and tries every pattern
/// subscription (as Redis does), then queues the message for each outside the lock. Queueing is
/// O(1) and never waits for a consumer, so a slow subscriber costs a publisher nothing.
public final class InMemoryPubSub: PubSub {
    private struct State {
        var byTopic: [ByteString: [Subscription.ID: Subscription]] = [:]
        var byPattern: [Subscription.ID: Subscription] = [:]
        var topicOf: [Subscription.ID: ByteString] = [:]
        var lastID: UInt64 = 0
        var published: UInt64 = 0
    }

    public struct Statistics: Sendable, Equatable {
        public var subscriptions: Int
        public var published: UInt64
        /// Messages dropped by full subscription queues, over all subscriptions ever.
        public var dropped: UInt64

        public init(subscriptions: Int, published: UInt64, dropped: UInt64) {
            self.subscriptions = subscriptions
            self.published = published
            self.dropped = dropped
        }
    }

    private let state = Mutex(State())
    private let dropped = DropCounter()

    public init() {}

    @discardableResult
    public func publish(_ message: PubSubMessage) async throws -> Int {
        publishNow(message)
    }

    @discardableResult
    public func publishNow(_ message: PubSubMessage) -> Int {
        // One copy shared by every queue; a slice of a request line would keep the line alive.
        var message = message
        message.payload = ByteBuffer(bytes: message.payload.readableBytesView)
        let topic = ByteString(message.topic)
        let targets: [Subscription] = state.withLock { state in
            state.published += 1
            var targets = state.byTopic[topic].map { Array($0.values) } ?? []
            for subscription in state.byPattern.values where subscription.filter.matches(message.topic) {
                targets.append(subscription)
            }
            return targets
        }
        var queued = 0
        for subscription in targets where subscription.offer(message) { queued += 1 }
        return queued
    }

    public func subscribe(_ filter: TopicFilter, limits: SubscriptionLimits) async throws -> Subscription {
        state.withLock { state in
            state.lastID += 1
            let subscription = Subscription(
                id: "sub-\(state.lastID)", filter: filter, limits: limits, droppedCounter: dropped,
                unsubscribe: { [weak self] id in self?.remove(id) })
            switch filter {
            case .topic(let topic):
                let key = ByteString(topic)
                state.byTopic[key, default: [:]][subscription.id] = subscription
                state.topicOf[subscription.id] = key
            case .pattern:
                state.byPattern[subscription.id] = subscription
            }
            return subscription
        }
    }

    @discardableResult
    public func unsubscribe(_ id: Subscription.ID) async -> Bool {
        guard let subscription = remove(id) else { return false }
        subscription.finish()
        return true
    }

    public var statistics: Statistics {
        state.withLock { state in
            Statistics(subscriptions: state.byPattern.count + state.topicOf.count, published: state.published, dropped: dropped.total)
        }
    }

    @discardableResult
    private func remove(_ id: Subscription.ID) -> Subscription? {
        state.withLock { state in
            if let subscription = state.byPattern.removeValue(forKey: id) { return subscription }
            guard let topic = state.topicOf.removeValue(forKey: id) else { return nil }
            let subscription = state.byTopic[topic]?.removeValue(forKey: id)
            if state.byTopic[topic]?.isEmpty == true { state.byTopic[topic] = nil }
            return subscription
        }
    }
}
