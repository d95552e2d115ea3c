import Logging
import NIOCore
import NIOPosix
import Transport

/// Where and how to connect to a Redis server.
public struct RedisConfiguration: Sendable {
    public enum Address: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var address: Address
    public var username: String?
    public var password: String?
    public var database: Int
    /// For `rediss://`: the TLS client context; the server name checked is `tlsServerHostname`.
    public var tls: TLSContext?
    public var tlsServerHostname: String?
    /// How long a command may wait for its reply.
    public var commandTimeout: TimeAmount
    public var connectTimeout: TimeAmount

    public init(
        address: Address,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        tls: TLSContext? = nil,
        tlsServerHostname: String? = nil,
        commandTimeout: TimeAmount = .seconds(10),
        connectTimeout: TimeAmount = .seconds(5)
    ) {
        self.address = address
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.tlsServerHostname = tlsServerHostname
        self.commandTimeout = commandTimeout
        self.connectTimeout = connectTimeout
    }

    /// The configuration a parsed URL describes; `tls` is required for `rediss://`.
    public init(url: RedisURL, tls: TLSContext? = nil) throws {
        if url.usesTLS && tls == nil {
            throw RedisError(.invalidURL, "\(url.scheme):// needs a TLS client context")
        }
        let address: Address = switch url.endpoint {
        case .tcp(let host, let port): .tcp(host: host, port: port)
        case .unix(let path): .unix(path: path)
        }
        var serverHostname: String?
        if case .tcp(let host, _) = url.endpoint { serverHostname = host }
        self.init(
            address: address, username: url.username, password: url.password, database: url.database,
            tls: url.usesTLS ? tls : nil, tlsServerHostname: serverHostname
        )
    }
}

/// One connection to a Redis server. Commands may be sent from any task; they are written on the
/// channel's event loop, and replies are matched to them in order.
public final class RedisConnection: Sendable {
    private let channel: any Channel
    public let configuration: RedisConfiguration

    private init(channel: any Channel, configuration: RedisConfiguration) {
        self.channel = channel
        self.configuration = configuration
    }

    /// Connects, then authenticates and selects the database the configuration names.
    /// - Parameter onMessage: set for a pub-sub connection: receives `message` and `pmessage` pushes.
    public static func connect(
        _ configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onMessage: (@Sendable (RedisPubSubMessage) -> Void)? = nil
    ) async throws -> RedisConnection {
        let tls = configuration.tls
        let serverHostname = configuration.tlsServerHostname
        let bootstrap = ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        try sync.addHandler(TLSHandler(context: tls, serverHostname: serverHostname))
                    }
                    try sync.addHandler(ByteToMessageHandler(RESPDecoder()))
                    try sync.addHandler(RedisConnectionHandler(onMessage: onMessage))
                }
            }
        let channel: any Channel
        do {
            switch configuration.address {
            case .tcp(let host, let port):
                channel = try await bootstrap.connect(host: host, port: port).get()
            case .unix(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch {
            throw RedisError(.connectFailed, "could not connect to \(configuration.address): \(error)")
        }
        let connection = RedisConnection(channel: channel, configuration: configuration)
        do {
            try await connection.handshake()
        } catch {
            try? await connection.close()
            throw error
        }
        return connection
    }

    private func handshake() async throws {
        var commands: [[RedisArgument]] = []
        if let password = configuration.password {
            if let username = configuration.username {
                commands.append(["AUTH", RedisArgument(username), RedisArgument(password)])
            } else {
                commands.append(["AUTH", RedisArgument(password)])
            }
        }
        if configuration.database != 0 {
            commands.append(["SELECT", RedisArgument(configuration.database)])
        }
        guard !commands.isEmpty else { return }
        for reply in try await pipeline(commands) {
            if case .error(let message) = reply {
                throw RedisError(.handshakeFailed, message)
            }
        }
    }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }

    /// Completes when the connection has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Sends one command and waits for its reply.
    /// - Throws: `RedisError` with `.serverError` when the server answers with an error reply,
    ///   `.timeout`, `.connectionClosed` or `.notConnected` when there is no reply.
    @discardableResult
    public func send(_ command: [RedisArgument], timeout: TimeAmount? = nil) async throws -> RESPReply {
        let reply = try await submit([command], timeout: timeout)[0].get()
        if case .error(let message) = reply {
            throw RedisError(.serverError, message)
        }
        return reply
    }

    /// Sends many commands in one write and one flush; the replies come back in the same order.
    /// An error reply is returned in its place rather than thrown, as the other commands ran.
    /// - Throws: `RedisError` when the connection fails before every reply arrived.
    public func pipeline(_ commands: [[RedisArgument]], timeout: TimeAmount? = nil) async throws -> [RESPReply] {
        guard !commands.isEmpty else { return [] }
        var replies: [RESPReply] = []
        replies.reserveCapacity(commands.count)
        for future in try submit(commands, timeout: timeout) {
            replies.append(try await future.get())
        }
        return replies
    }

    private func submit(_ commands: [[RedisArgument]], timeout: TimeAmount?) throws -> [EventLoopFuture<RESPReply>] {
        var encoded = channel.allocator.buffer(capacity: 64 * commands.count)
        for command in commands {
            try RESPCommandEncoder.encode(command, into: &encoded)
        }
        let eventLoop = channel.eventLoop
        let promises = commands.map { _ in eventLoop.makePromise(of: RESPReply.self) }
        let deadline = NIODeadline.now() + (timeout ?? configuration.commandTimeout)
        let request = RedisRequest(encoded: encoded, promises: promises, deadline: deadline)
        // Writes are ordered per channel, so concurrent callers' commands stay matched to their replies.
        channel.writeAndFlush(request).whenFailure { error in
            // The handler fails the promises itself; this covers a write that never reached it.
            let notWritten = RedisError(.notConnected, "the command could not be written: \(error)")
            promises.forEach { $0.fail(notWritten) }
        }
        return promises.map(\.futureResult)
    }

    /// Closes the connection; pending commands fail with `.connectionClosed`.
    public func close() async throws {
        do {
            try await channel.close()
        } catch ChannelError.alreadyClosed {
            return
        }
    }
}

extension RedisConnection {
    /// Starts closing without waiting, for cancellation handlers.
    func startClose() {
        channel.close(mode: .all, promise: nil)
    }
}
