import NIOCore

/// Publish-subscribe: a message published to a topic is queued for every subscription whose
/// filter matches the topic at that moment. Nothing is stored for later subscribers.
///
/// Semantics every implementation keeps (the contract tests in `BackendTests` check them):
/// - Each subscription has its own bounded queue (`SubscriptionLimits`). Publishing never waits
///   for a subscriber: when a queue is full, its *oldest* message is dropped and the
///   subscription's `dropped` counter grows. A slow subscriber loses old messages; publishers
///   and other subscribers do not notice it.
/// - Messages from one publisher reach each subscription in the order they were published.
/// - A subscription that matches a topic twice (a topic and a pattern are two subscriptions)
///   receives the message once per subscription, as Redis does.
/// - After `unsubscribe` (or `Subscription.cancel()`), the subscription receives nothing more
///   and its `next()` returns nil.
public protocol PubSub: Sendable {
    /// Queues `message` for every matching subscription; returns how many it was queued for.
    @discardableResult
    func publish(_ message: PubSubMessage) async throws -> Int

    /// Publishes several messages in order; an implementation over a network sends them in one
    /// round trip. Returns how many subscriptions each was queued for.
    @discardableResult
    func publish(all messages: [PubSubMessage]) async throws -> [Int]

    func subscribe(_ filter: TopicFilter, limits: SubscriptionLimits) async throws -> Subscription

    /// Ends a subscription; false when there is no such subscription (any more).
    @discardableResult
    func unsubscribe(_ id: Subscription.ID) async -> Bool
}

extension PubSub {
    @discardableResult
    public func publish(all messages: [PubSubMessage]) async throws -> [Int] {
        var counts: [Int] = []
        for message in messages { counts.append(try await publish(message)) }
        return counts
    }

    /// Hands every message matching `filter` to `handle` until the calling task is cancelled,
    /// subscribing again a second after a subscription fails or ends (a lost connection), so a
    /// long-lived listener outlives backend outages. `failed` hears of each failure.
    public func listen(
        to filter: TopicFilter, limits: SubscriptionLimits, failed: (any Error) -> Void, _ handle: (PubSubMessage) async -> Void
    ) async {
        while !Task.isCancelled {
            do {
                for await delivery in try await subscribe(filter, limits: limits) { await handle(delivery.message) }
            } catch {
                failed(error)
            }
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
        }
    }

    public func subscribe(_ filter: TopicFilter) async throws -> Subscription {
        try await subscribe(filter, limits: SubscriptionLimits())
    }
}

/// One published message.
public struct PubSubMessage: Sendable, Equatable {
    public var topic: String
    /// Opaque bytes (the gateway puts JSON here).
    public var payload: ByteBuffer
    public var publishedAt: Timestamp
    /// Who published it, when known (an agent id, say).
    public var publisher: String?

    public init(topic: String, payload: ByteBuffer, publishedAt: Timestamp, publisher: String? = nil) {
        self.topic = topic
        self.payload = payload
        self.publishedAt = publishedAt
        self.publisher = publisher
    }
}

/// How much one subscription may hold before it drops its oldest messages. Both limits hold
/// at once; the newest message is always kept, however large.
public struct SubscriptionLimits: Sendable, Hashable {
    public var messages: Int
    public var bytes: Int

    public init(messages: Int = 1_000, bytes: Int = 16 << 20) {
        precondition(messages >= 1 && bytes >= 1, "a subscription holds at least one message")
        self.messages = messages
        self.bytes = bytes
    }
}

/// A publish-subscribe backend that publishes without waiting (it lives in this process): the
/// gateway publishes on the request's event loop rather than from a task, a hop saved per event.
public protocol ImmediatePubSub: PubSub {
    /// `publish`, done before returning.
    @discardableResult
    func publishNow(_ message: PubSubMessage) -> Int
}

extension InMemoryPubSub: ImmediatePubSub {}
