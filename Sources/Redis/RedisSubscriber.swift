import NIOCore
import NIOPosix
import Synchronization

/// A dedicated pub-sub connection. `run()` keeps it connected, reconnecting with backoff and
/// subscribing again to every channel and pattern after each reconnect.
public final class RedisSubscriber: Sendable {
    /// The connection's life, for callers that must know when subscriptions are in place.
    public enum Event: Sendable, Hashable {
        /// Connected, and every channel and pattern subscribed so far is subscribed again.
        case subscribed
        /// The connection closed; `run()` is reconnecting.
        case disconnected(RedisError)
    }

    private struct State {
        var channels: Set<String> = []
        var patterns: Set<String> = []
        var connection: RedisConnection?
    }

    /// Every message published to a subscribed channel or pattern.
    public let messages: AsyncStream<RedisPubSubMessage>
    public let events: AsyncStream<Event>

    private let messageContinuation: AsyncStream<RedisPubSubMessage>.Continuation
    private let eventContinuation: AsyncStream<Event>.Continuation
    private let state = Mutex(State())
    private let configuration: RedisConfiguration
    private let backoff: RedisBackoff
    private let eventLoopGroup: any EventLoopGroup

    public init(
        configuration: RedisConfiguration,
        backoff: RedisBackoff = RedisBackoff(maximumAttempts: nil),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.backoff = backoff
        self.eventLoopGroup = eventLoopGroup
        (messages, messageContinuation) = AsyncStream.makeStream()
        (events, eventContinuation) = AsyncStream.makeStream()
    }

    /// Stays connected until the task is cancelled; then closes and finishes both streams.
    public func run() async throws {
        defer {
            messageContinuation.finish()
            eventContinuation.finish()
        }
        let deliver: @Sendable (RedisPubSubMessage) -> Void = { [messageContinuation] message in
            messageContinuation.yield(message)
        }
        while !Task.isCancelled {
            let connection: RedisConnection
            do {
                connection = try await backoff.connect(configuration, eventLoopGroup: eventLoopGroup, onMessage: deliver)
            } catch is CancellationError {
                return
            }
            let (channels, patterns) = state.withLock { state in
                state.connection = connection
                return (state.channels, state.patterns)
            }
            do {
                try await Self.subscribe(channels: channels, patterns: patterns, on: connection)
                eventContinuation.yield(.subscribed)
            } catch {
                // Subscriptions that failed are retried on the next connection.
                connection.startClose()
            }
            await withTaskCancellationHandler {
                try? await connection.closeFuture.get()
            } onCancel: {
                connection.startClose()
            }
            state.withLock { $0.connection = nil }
            eventContinuation.yield(.disconnected(RedisError(.connectionClosed, "the pub-sub connection closed")))
        }
    }

    /// Subscribes to `channels`, now if connected and again after every reconnect.
    public func subscribe(_ channels: [String]) async throws {
        let connection = state.withLock { state in
            state.channels.formUnion(channels)
            return state.connection
        }
        if let connection { try await Self.subscribe(channels: Set(channels), patterns: [], on: connection) }
    }

    /// Subscribes to glob-style `patterns`, now if connected and again after every reconnect.
    public func psubscribe(_ patterns: [String]) async throws {
        let connection = state.withLock { state in
            state.patterns.formUnion(patterns)
            return state.connection
        }
        if let connection { try await Self.subscribe(channels: [], patterns: Set(patterns), on: connection) }
    }

    /// Unsubscribes from `channels`.
    public func unsubscribe(_ channels: [String]) async throws {
        let connection = state.withLock { state in
            state.channels.subtract(channels)
            return state.connection
        }
        // One channel per command: RESP2 confirms each channel with its own reply.
        if let connection, !channels.isEmpty {
            try await Self.check(connection.pipeline(channels.map { ["UNSUBSCRIBE", RedisArgument($0)] }))
        }
    }

    /// Unsubscribes from `patterns`.
    public func punsubscribe(_ patterns: [String]) async throws {
        let connection = state.withLock { state in
            state.patterns.subtract(patterns)
            return state.connection
        }
        if let connection, !patterns.isEmpty {
            try await Self.check(connection.pipeline(patterns.map { ["PUNSUBSCRIBE", RedisArgument($0)] }))
        }
    }

    private static func subscribe(channels: Set<String>, patterns: Set<String>, on connection: RedisConnection) async throws {
        // One name per command, so each confirmation is matched to one command.
        let commands: [[RedisArgument]] =
            channels.sorted().map { ["SUBSCRIBE", RedisArgument($0)] }
            + patterns.sorted().map { ["PSUBSCRIBE", RedisArgument($0)] }
        guard !commands.isEmpty else { return }
        try check(await connection.pipeline(commands))
    }

    private static func check(_ replies: [RESPReply]) throws {
        for reply in replies {
            if case .error(let message) = reply { throw RedisError(.serverError, message) }
        }
    }
}
