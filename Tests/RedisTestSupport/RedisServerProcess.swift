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
///
/// A port found free can be taken before the server binds it: tests start dozens of servers at
/// once, and every client connection takes an ephemeral port too. A server that cannot bind
/// exits, and a probe could then reach another test's server on that port, so two tests would
/// share one server and see each other's keys. Each start therefore checks that the server
/// answering is the process it started (by its pid), and a first start moves to another port
/// when it is not.
public final class RedisServerProcess: @unchecked Sendable {
    public private(set) var port: Int
    private let extraArguments: [String]
    private var process: Process?

    public init(arguments: [String] = []) async throws {
        self.port = try Self.freeLoopbackPort()
        self.extraArguments = arguments
        var attempt = 1
        while true {
            do {
                try await start()
                return
            } catch let error as PortTaken {
                guard attempt < 10 else { throw RedisError(.connectFailed, "redis-server: \(error.reason), 10 ports tried") }
                attempt += 1
                port = try Self.freeLoopbackPort()
            }
        }
    }

    public var configuration: RedisConfiguration {
        RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port), commandTimeout: .seconds(20))
    }

    /// The server on `port` is not the one this object started.
    private struct PortTaken: Error {
        var reason: String
    }

    /// Starts the server (again, on the same port) and returns once it answers PING and is known
    /// to be this process.
    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["redis-server", "--port", String(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--loglevel", "warning"] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        var probe = configuration
        probe.password = extraArguments.firstIndex(of: "--requirepass").map { extraArguments[$0 + 1] }
        let connection = try await connect(probe, to: process)
        let info: String
        do {
            info = try await connection.send(["INFO", "server"]).string ?? ""
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
        let pid = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("process_id:") }
            .flatMap { Int32($0.dropFirst("process_id:".count)) }
        guard pid == process.processIdentifier else {
            stop()
            throw PortTaken(reason: "port \(port) answered by pid \(pid.map(String.init) ?? "?"), not \(process.processIdentifier)")
        }
    }

    /// Connects to the starting server, waiting while it starts (bounded), giving up at once
    /// when it has exited: it could not bind its port.
    private func connect(_ configuration: RedisConfiguration, to process: Process) async throws -> RedisConnection {
        var delay = Duration.milliseconds(5)
        for _ in 0..<60 {
            guard process.isRunning else { throw PortTaken(reason: "exited at start (port \(port) taken?)") }
            do {
                return try await RedisConnection.connect(configuration, eventLoopGroup: NIOSingletons.posixEventLoopGroup)
            } catch let error as RedisError where error.code == .connectFailed {
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .milliseconds(200))
            }
        }
        throw RedisError(.connectFailed, "redis-server on port \(port) did not answer within its start-up time")
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
