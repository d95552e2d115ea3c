import NIOCore
import Redis
import RedisTestSupport
import Testing

@Suite("Redis against a real server")
struct RedisConnectionTests {
    @Test func binaryValuesRoundTrip() async throws {
        let server = try await RedisServerProcess()
        let connection = try await RedisConnection.connect(server.configuration)
        let value: [UInt8] = Array(0...255) + [13, 10, 0]
        #expect(try await connection.send(["SET", "bin", RedisArgument(value)]) == .status("OK"))
        #expect(try await connection.send(["GET", "bin"]).bytes == value)
        #expect(try await connection.send(["GET", "missing"]) == .null)
        try await connection.close()
    }

    @Test func tenThousandPipelinedCommandsAreAnsweredInOrder() async throws {
        let server = try await RedisServerProcess()
        let connection = try await RedisConnection.connect(server.configuration)
        let replies = try await connection.pipeline((0..<10_000).map { _ in ["INCR", "counter"] })
        #expect(replies == (1...10_000).map { RESPReply.integer(Int64($0)) })
        try await connection.close()
    }

    @Test func errorReplyIsThrownFromSendAndReturnedInPipeline() async throws {
        let server = try await RedisServerProcess()
        let connection = try await RedisConnection.connect(server.configuration)
        try await connection.send(["SET", "text", "x"])
        await #expect { try await connection.send(["INCR", "text"]) } throws: { error in
            (error as? RedisError)?.code == .serverError && (error as? RedisError)?.message.hasPrefix("ERR") == true
        }
        let replies = try await connection.pipeline([["INCR", "text"], ["PING"]])
        #expect(replies[0].errorCode == "ERR")
        #expect(replies[1] == .status("PONG"))
        try await connection.close()
    }

    @Test func passwordAndDatabaseAreAppliedOnConnect() async throws {
        let server = try await RedisServerProcess(arguments: ["--requirepass", "s3cret"])
        await #expect { try await RedisConnection.connect(server.configuration).send(["PING"]) } throws: { error in
            (error as? RedisError)?.message.hasPrefix("NOAUTH") == true
        }
        var wrong = server.configuration
        wrong.password = "nope"
        await #expect { try await RedisConnection.connect(wrong) } throws: { error in
            (error as? RedisError)?.code == .handshakeFailed
        }
        let url = try RedisURL("redis://default:s3cret@127.0.0.1:\(server.port)/5")
        let connection = try await RedisConnection.connect(RedisConfiguration(url: url))
        try await connection.send(["SET", "where", "db5"])
        #expect(try await connection.send(["CLIENT", "INFO"]).string?.contains("db=5") == true)
        try await connection.close()
    }

    @Test func commandPastItsDeadlineFailsWithTimeout() async throws {
        let server = try await RedisServerProcess()
        let connection = try await RedisConnection.connect(server.configuration)
        await #expect { try await connection.send(["BLPOP", "never", "0"], timeout: .milliseconds(100)) } throws: { error in
            (error as? RedisError)?.code == .timeout
        }
        try await connection.closeFuture.get()
        #expect(!connection.isActive)
    }

    @Test func serverKilledMidPipelineFailsEveryPendingCommand() async throws {
        let server = try await RedisServerProcess()
        let connection = try await RedisConnection.connect(server.configuration)
        let watcher = try await RedisConnection.connect(server.configuration)
        let replies = Task { try await connection.pipeline([["RPUSH", "started", "1"], ["BLPOP", "never", "0"], ["PING"]]) }
        // The pipeline is on the server once its first command has run.
        #expect(try await watcher.send(["BLPOP", "started", "10"]).array?.count == 2)
        server.stop()
        await #expect { try await replies.value } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .connectionClosed && error.message.contains("2 commands pending")
        }
        try await connection.closeFuture.get()
        await #expect { try await connection.send(["PING"]) } throws: { error in
            (error as? RedisError)?.code == .notConnected
        }
    }
}
