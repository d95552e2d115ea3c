import Foundation
import NIOCore
import NIOPosix
import Redis

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `redis-server` on a free loopback port, owned by one test.
public final class RedisServerProcess: @unchecked Sendable {
    public let port: Int
    private let extraArguments: [String]
    private var process: Process?

    public init(arguments: [String] = []) async throws {
        self.port = try Self.freeLoopbackPort()
        self.extraArguments = arguments
        try await start()
    }

    public var configuration: RedisConfiguration {
        RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port), commandTimeout: .seconds(20))
    }

    /// Starts the server (again, on the same port) and returns once it answers PING.
    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["redis-server", "--port", String(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--loglevel", "warning"] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        self.process = process
        // Bounded: the backoff gives up after its attempts.
        var probe = configuration
        probe.password = extraArguments.firstIndex(of: "--requirepass").map { extraArguments[$0 + 1] }
        let connection = try await RedisBackoff(initialDelay: .milliseconds(5), maximumDelay: .milliseconds(200), maximumAttempts: 60)
            .connect(probe, eventLoopGroup: NIOSingletons.posixEventLoopGroup)
        _ = try await connection.send(["PING"])
        try await connection.close()
    }

    /// Kills the server and waits until it has exited.
    public func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    deinit { stop() }

    public static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RedisError(.connectFailed, "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
            }
        }
        guard bound else { throw RedisError(.connectFailed, "could not bind a loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
