import NIOCore
import NIOEmbedded
import Redis
import Testing

@Suite("RESP codec")
struct RESPCodecTests {
    @Test func commandsAreEncodedBinarySafe() throws {
        let encoded = try RESPCommandEncoder.encode(["SET", "k", RedisArgument([0, 13, 10, 255])])
        #expect(Array(encoded.readableBytesView) == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n".utf8) + [0, 13, 10, 255, 13, 10])
    }

    @Test func repliesSplitAcrossReadsAreDecoded() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        for chunk in ["+OK\r\n*3\r\n:4", "2\r\n$3\r\na\0b\r\n$-1\r\n-ERR bad\r\n"] {
            try channel.writeInbound(ByteBuffer(string: chunk))
        }
        #expect(try channel.readInbound(as: RESPReply.self) == .status("OK"))
        #expect(try channel.readInbound(as: RESPReply.self) == .array([.integer(42), .bulkString(ByteBuffer(string: "a\0b")), .null]))
        #expect(try channel.readInbound(as: RESPReply.self) == .error("ERR bad"))
        #expect(try channel.finish().isClean)
    }

    @Test func protocolErrorsAreSurfaced() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        #expect(throws: RedisError.self) { try channel.writeInbound(ByteBuffer(string: "?what\r\n")) }
        _ = try? channel.finish()
    }
}

@Suite("Redis URLs")
struct RedisURLTests {
    @Test func fullRedisURLIsParsed() throws {
        let url = try RedisURL("redis://alice:p%40ss@cache.example:6380/3")
        #expect(url.endpoint == .tcp(host: "cache.example", port: 6380))
        #expect(url.username == "alice")
        #expect(url.password == "p@ss")
        #expect(url.database == 3)
        #expect(!url.usesTLS)
    }

    @Test func defaultsAndTLSAndIPv6() throws {
        let url = try RedisURL("rediss://:secret@[::1]")
        #expect(url.endpoint == .tcp(host: "::1", port: 6379))
        #expect(url.username == nil && url.password == "secret" && url.database == 0 && url.usesTLS)
    }

    @Test func unixURLTakesDatabaseFromQuery() throws {
        let url = try RedisURL("unix:///run/redis.sock?db=2")
        #expect(url.endpoint == .unix(path: "/run/redis.sock"))
        #expect(url.database == 2)
    }

    @Test func badURLsAreRejected() {
        for bad in ["http://x", "redis://host:0", "redis://host/abc", "nonsense"] {
            #expect(throws: RedisError.self) { try RedisURL(bad) }
        }
    }
}
