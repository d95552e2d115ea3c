import NIOCore
import Redis
import Synchronization

/// `PubSub` on Redis: PUBLISH on a pooled `RedisClient`; each subscription has its own
/// `RedisSubscriber` connection (SUBSCRIBE for a topic, PSUBSCRIBE for a pattern).
///
/// One connection per subscription makes the count PUBLISH returns — which `publish` returns
/// unchanged — equal to the number of subscriptions reached, in every process sharing the
/// server, as the contract wants (two subscriptions to one topic count two). Multiplexing
/// subscriptions over one connection would save connections but Redis would count them once.
///
/// Topics map to channels `channelPrefix + topic`; a `TopicPattern` already has Redis
/// PSUBSCRIBE glob semantics, so a pattern maps to the escaped prefix followed by its text.
///
/// A message travels as an envelope: `0x01`, publishedAt (Int64 ms, big-endian), the
/// publisher's UTF-8 length (Int32, -1 for none) and bytes, then the payload. A message in any
/// other shape (published by another tool) is delivered as a raw payload stamped on arrival.
public final class RedisPubSub: PubSub {
    private struct Active: Sendable {
        var subscription: Subscription
        var subscriber: RedisSubscriber
        /// The channel (topic) or glob (pattern) subscribed on the server.
        var redisName: String
        var tasks: [Task<Void, Never>]
    }

    private struct State {
        var active: [Subscription.ID: Active] = [:]
        /// Unsubscriptions in flight (from `Subscription.cancel()`, which cannot wait): a publish
        /// waits for them so that a cancelled subscription is never counted.
        var teardowns: [UInt64: Task<Void, Never>] = [:]
        var lastID: UInt64 = 0
    }

    public let client: RedisClient
    public let configuration: RedisConfiguration
    public let channelPrefix: String
    private let state = Mutex(State())
    private let dropped = DropCounter()

    public init(client: RedisClient, configuration: RedisConfiguration? = nil, channelPrefix: String = "") {
        self.client = client
        self.configuration = configuration ?? client.configuration
        self.channelPrefix = channelPrefix
    }

    @discardableResult
    public func publish(_ message: PubSubMessage) async throws -> Int {
        let pending = state.withLock { Array($0.teardowns.values) }
        for teardown in pending { await teardown.value }
        do {
            let reply = try await client.send(["PUBLISH", RedisArgument(channelPrefix + message.topic), RedisArgument(Self.encode(message))])
            guard let count = reply.integer else { throw RedisError(.unexpectedReply, "PUBLISH answered \(reply)") }
            return Int(count)
        } catch let error as RedisError {
            throw RedisKeyValueStore.translate(error)
        }
    }

    /// One pipeline on one connection: the messages reach Redis in order, with one flush.
    @discardableResult
    public func publish(all messages: [PubSubMessage]) async throws -> [Int] {
        guard messages.count > 1 else { return try await messages.asyncMap { try await publish($0) } }
        let pending = state.withLock { Array($0.teardowns.values) }
        for teardown in pending { await teardown.value }
        do {
            let replies = try await client.pipeline(messages.map { message in
                ["PUBLISH", RedisArgument(channelPrefix + message.topic), RedisArgument(Self.encode(message))]
            })
            return try replies.map { reply in
                guard let count = reply.integer else { throw RedisError(.unexpectedReply, "PUBLISH answered \(reply)") }
                return Int(count)
            }
        } catch let error as RedisError {
            throw RedisKeyValueStore.translate(error)
        }
    }

    /// Returns once the server has confirmed the subscription: a message published after this
    /// returns reaches it.
    public func subscribe(_ filter: TopicFilter, limits: SubscriptionLimits) async throws -> Subscription {
        let id: Subscription.ID = state.withLock { state in
            state.lastID += 1
            return "redis-sub-\(state.lastID)"
        }
        let subscription = Subscription(
            id: id, filter: filter, limits: limits, droppedCounter: dropped,
            unsubscribe: { [weak self] id in self?.startTeardown(id) })
        let subscriber = RedisSubscriber(configuration: configuration)
        let redisName: String
        switch filter {
        case .topic(let topic):
            redisName = channelPrefix + topic
            try await subscriber.subscribe([redisName])
        case .pattern(let pattern):
            redisName = Self.escapeGlob(channelPrefix) + pattern.text
            try await subscriber.psubscribe([redisName])
        }
        var events = subscriber.events.makeAsyncIterator()
        let runner = Task<Void, Never> { _ = try? await subscriber.run() }
        let prefix = channelPrefix
        let forwarder = Task {
            for await raw in subscriber.messages {
                _ = subscription.offer(Self.decode(raw, channelPrefix: prefix))
            }
        }
        state.withLock { $0.active[id] = Active(subscription: subscription, subscriber: subscriber, redisName: redisName, tasks: [runner, forwarder]) }
        // `run()` connects, subscribes, then reports `.subscribed`; a failed attempt reports
        // `.disconnected` and retries with backoff.
        while let event = await events.next() {
            if event == .subscribed { return subscription }
            if Task.isCancelled { break }
        }
        await unsubscribe(id)
        throw CancellationError()
    }

    @discardableResult
    public func unsubscribe(_ id: Subscription.ID) async -> Bool {
        guard let active = state.withLock({ $0.active.removeValue(forKey: id) }) else { return false }
        await Self.tearDown(active)
        return true
    }

    /// Ends every subscription (their connections close).
    public func shutdown() async {
        let all = state.withLock { state in
            defer { state.active = [:] }
            return Array(state.active.values)
        }
        for active in all { await Self.tearDown(active) }
        let pending = state.withLock { Array($0.teardowns.values) }
        for teardown in pending { await teardown.value }
    }

    /// Messages dropped by full subscription queues, over all subscriptions ever.
    public var droppedMessages: UInt64 { dropped.total }

    private func startTeardown(_ id: Subscription.ID) {
        state.withLock { state in
            guard let active = state.active.removeValue(forKey: id) else { return }
            state.lastID += 1
            let key = state.lastID
            state.teardowns[key] = Task { [weak self] in
                await Self.tearDown(active)
                _ = self?.state.withLock { $0.teardowns.removeValue(forKey: key) }
            }
        }
    }

    /// Unsubscribes on the server first (its reply means no later PUBLISH counts it), then
    /// closes the connection and ends the subscription.
    private static func tearDown(_ active: Active) async {
        active.subscription.finish()
        let subscriber = active.subscriber
        switch active.subscription.filter {
        case .topic: try? await subscriber.unsubscribe([active.redisName])
        case .pattern: try? await subscriber.punsubscribe([active.redisName])
        }
        for task in active.tasks { task.cancel() }
        for task in active.tasks { await task.value }
    }

    // MARK: Envelope

    static func encode(_ message: PubSubMessage) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(1 + 8 + 4 + (message.publisher?.utf8.count ?? 0) + message.payload.readableBytes)
        buffer.writeInteger(UInt8(1))
        buffer.writeInteger(message.publishedAt.millisecondsSinceEpoch)
        if let publisher = message.publisher {
            buffer.writeInteger(Int32(publisher.utf8.count))
            buffer.writeString(publisher)
        } else {
            buffer.writeInteger(Int32(-1))
        }
        var payload = message.payload
        buffer.writeBuffer(&payload)
        return buffer
    }

    static func decode(_ raw: RedisPubSubMessage, channelPrefix: String) -> PubSubMessage {
        let topic = raw.channel.hasPrefix(channelPrefix) ? String(raw.channel.dropFirst(channelPrefix.count)) : raw.channel
        var buffer = raw.payload
        if buffer.readInteger(as: UInt8.self) == 1, let at = buffer.readInteger(as: Int64.self),
            let length = buffer.readInteger(as: Int32.self)
        {
            var publisher: String?
            var valid = true
            if length >= 0 {
                publisher = buffer.readString(length: Int(length))
                valid = publisher != nil
            }
            if valid {
                // A copy of its own: the slice would keep the whole frame alive.
                let payload = ByteBuffer(bytes: buffer.readableBytesView)
                return PubSubMessage(topic: topic, payload: payload, publishedAt: Timestamp(millisecondsSinceEpoch: at), publisher: publisher)
            }
        }
        return PubSubMessage(topic: topic, payload: raw.payload, publishedAt: SystemClock().now(), publisher: nil)
    }

    /// `text` as a glob that matches only itself.
    static func escapeGlob(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if "*?[]\\".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async throws -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
