import NIOCore
import NIOPosix

/// Exponential backoff between connection attempts.
public struct RedisBackoff: Sendable, Hashable {
    public var initialDelay: Duration
    public var maximumDelay: Duration
    /// Attempts before giving up; nil retries until the task is cancelled.
    public var maximumAttempts: Int?

    public init(initialDelay: Duration = .milliseconds(50), maximumDelay: Duration = .seconds(5), maximumAttempts: Int? = 8) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.maximumAttempts = maximumAttempts
    }

    /// Connects, retrying refused or failed connections with growing delays. A refused AUTH or
    /// SELECT is not retried: it will not succeed by waiting.
    public func connect(
        _ configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup,
        onMessage: (@Sendable (RedisPubSubMessage) -> Void)? = nil
    ) async throws -> RedisConnection {
        var delay = initialDelay
        var attempt = 1
        while true {
            do {
                return try await RedisConnection.connect(configuration, eventLoopGroup: eventLoopGroup, onMessage: onMessage)
            } catch let error as RedisError where error.code == .connectFailed {
                if let maximumAttempts, attempt >= maximumAttempts {
                    throw RedisError(.connectFailed, "\(error.message) (gave up after \(attempt) attempts)")
                }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, maximumDelay)
                attempt += 1
            }
        }
    }
}
