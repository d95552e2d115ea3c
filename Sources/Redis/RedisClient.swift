import NIOCore
import NIOPosix
import Synchronization

/// A small pool of connections used round-robin. A closed connection is replaced on next use,
/// reconnecting with backoff; commands that were never written are retried once on the new one.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let backoff: RedisBackoff
    private let slots: [Slot]
    private let nextSlot = Mutex(0)
    private let roundTripCount = Atomic<Int64>(0)
    private let commandCount = Atomic<Int64>(0)
    private let errorCount = Atomic<Int64>(0)

    /// Totals since the client was made: round trips (a pipeline is one), commands, and the
    /// round trips that failed (an error reply or a lost connection).
    public var statistics: (roundTrips: Int64, commands: Int64, errors: Int64) {
        (roundTripCount.load(ordering: .relaxed), commandCount.load(ordering: .relaxed), errorCount.load(ordering: .relaxed))
    }

    public init(
        configuration: RedisConfiguration,
        connections: Int = 4,
        backoff: RedisBackoff = RedisBackoff(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        precondition(connections > 0, "a Redis client needs at least one connection")
        self.configuration = configuration
        self.backoff = backoff
        self.eventLoopGroup = eventLoopGroup
        self.slots = (0..<connections).map { _ in Slot() }
    }

    /// Sends one command on the next connection in turn.
    @discardableResult
    public func send(_ command: [RedisArgument], timeout: TimeAmount? = nil) async throws -> RESPReply {
        let slot = pickSlot()
        roundTripCount.add(1, ordering: .relaxed)
        commandCount.add(1, ordering: .relaxed)
        do {
            do {
                return try await connection(in: slot).send(command, timeout: timeout)
            } catch let error as RedisError where error.code == .notConnected {
                return try await connection(in: slot).send(command, timeout: timeout)
            }
        } catch {
            errorCount.add(1, ordering: .relaxed)
            throw error
        }
    }

    /// Sends commands in one flush on one connection; replies come back in order.
    public func pipeline(_ commands: [[RedisArgument]], timeout: TimeAmount? = nil) async throws -> [RESPReply] {
        let slot = pickSlot()
        roundTripCount.add(1, ordering: .relaxed)
        commandCount.add(Int64(commands.count), ordering: .relaxed)
        do {
            do {
                return try await connection(in: slot).pipeline(commands, timeout: timeout)
            } catch let error as RedisError where error.code == .notConnected {
                return try await connection(in: slot).pipeline(commands, timeout: timeout)
            }
        } catch {
            errorCount.add(1, ordering: .relaxed)
            throw error
        }
    }

    /// Runs a Lua script by its SHA1, loading it on first use and again after `NOSCRIPT`
    /// (a restarted or flushed server). `timeout` bounds each command sent, as for `send`.
    @discardableResult
    public func evaluate(
        _ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = [], timeout: TimeAmount? = nil
    ) async throws -> RESPReply {
        let sha: String
        if let cached = script.cachedSHA { sha = cached } else { sha = try await load(script, timeout: timeout) }
        do {
            return try await send(["EVALSHA", RedisArgument(sha), RedisArgument(keys.count)] + keys + arguments, timeout: timeout)
        } catch let error as RedisError where error.code == .serverError && error.message.hasPrefix("NOSCRIPT") {
            let reloaded = try await load(script, timeout: timeout)
            return try await send(["EVALSHA", RedisArgument(reloaded), RedisArgument(keys.count)] + keys + arguments, timeout: timeout)
        }
    }

    private func load(_ script: RedisScript, timeout: TimeAmount? = nil) async throws -> String {
        let reply = try await send(["SCRIPT", "LOAD", RedisArgument(script.source)], timeout: timeout)
        guard let sha = reply.string else {
            throw RedisError(.unexpectedReply, "SCRIPT LOAD answered \(reply), not a SHA1")
        }
        script.remember(sha)
        return sha
    }

    /// Closes every connection; later commands reconnect.
    public func shutdown() async {
        for slot in slots {
            await slot.close()
        }
    }

    private func pickSlot() -> Slot {
        let index = nextSlot.withLock { next in
            defer { next = (next + 1) % slots.count }
            return next
        }
        return slots[index]
    }

    private func connection(in slot: Slot) async throws -> RedisConnection {
        try await slot.connection { [configuration, eventLoopGroup, backoff] in
            try await backoff.connect(configuration, eventLoopGroup: eventLoopGroup)
        }
    }
}

/// One pooled connection: open, being opened (shared by everyone who asks meanwhile), or absent.
private final class Slot: Sendable {
    private enum State {
        case idle
        case connecting(Task<RedisConnection, any Error>)
        case connected(RedisConnection)
    }

    private let state = Mutex(State.idle)

    func connection(_ open: @escaping @Sendable () async throws -> RedisConnection) async throws -> RedisConnection {
        let ready: RedisConnection?, pending: Task<RedisConnection, any Error>?
        (ready, pending) = state.withLock { state in
            switch state {
            case .connected(let connection) where connection.isActive:
                return (connection, nil)
            case .connecting(let task):
                return (nil, task)
            case .idle, .connected:
                let task = Task { try await open() }
                state = .connecting(task)
                return (nil, task)
            }
        }
        if let ready { return ready }
        guard let task = pending else { preconditionFailure("a slot is either ready or connecting") }
        do {
            let connection = try await task.value
            state.withLock { state in
                if case .connecting(let current) = state, current == task { state = .connected(connection) }
            }
            return connection
        } catch {
            state.withLock { state in
                if case .connecting(let current) = state, current == task { state = .idle }
            }
            throw error
        }
    }

    func close() async {
        let previous = state.withLock { state in
            defer { state = .idle }
            return state
        }
        switch previous {
        case .idle: return
        case .connecting(let task):
            task.cancel()
            try? await task.value.close()
        case .connected(let connection):
            try? await connection.close()
        }
    }
}

/// A Lua script called by SHA1; the SHA1 is learned from `SCRIPT LOAD` and kept.
public final class RedisScript: Sendable {
    public let source: String
    private let sha = Mutex<String?>(nil)

    public init(_ source: String) {
        self.source = source
    }

    var cachedSHA: String? { sha.withLock { $0 } }

    func remember(_ value: String) {
        sha.withLock { $0 = value }
    }
}
