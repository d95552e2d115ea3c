import CSwitchboardHiredis
import CSwitchboardOpenSSL
import Testing

/// The C libraries link and work; TLS and Redis build on these.
@Suite("System libraries")
struct SystemLibraryTests {
    @Test func openSSLIsVersion3AndMakesATLSContext() throws {
        #expect(OpenSSL_version_num() >= 0x3000_0000)
        let context = try #require(SSL_CTX_new(TLS_method()))
        defer { SSL_CTX_free(context) }
        #expect(switchboard_SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) == 1)
        #expect(switchboard_SSL_CTX_get_min_proto_version(context) == TLS1_2_VERSION)
    }

    @Test func hiredisParsesRESPSplitAcrossFeeds() throws {
        let reader = try #require(redisReaderCreate())
        defer { redisReaderFree(reader) }
        for chunk in ["*2\r\n$5\r\nhel", "lo\r\n:42", "\r\n"] {
            #expect(redisReaderFeed(reader, chunk, chunk.utf8.count) == REDIS_OK)
        }
        var reply: UnsafeMutableRawPointer?
        #expect(redisReaderGetReply(reader, &reply) == REDIS_OK)
        let array = try #require(reply?.assumingMemoryBound(to: redisReply.self))
        defer { freeReplyObject(reply) }
        #expect(array.pointee.type == REDIS_REPLY_ARRAY)
        #expect(array.pointee.elements == 2)
        let first = array.pointee.element[0]!.pointee
        #expect(String(cString: first.str) == "hello")
        #expect(array.pointee.element[1]!.pointee.integer == 42)
    }

    @Test func hiredisReportsProtocolErrors() throws {
        let reader = try #require(redisReaderCreate())
        defer { redisReaderFree(reader) }
        let garbage = "?what\r\n"
        redisReaderFeed(reader, garbage, garbage.utf8.count)
        var reply: UnsafeMutableRawPointer?
        #expect(redisReaderGetReply(reader, &reply) == REDIS_ERR)
        #expect(String(cString: switchboard_redisReaderGetError(reader)).contains("Protocol error"))
    }

    @Test func hiredisFormatsCommands() throws {
        var target: UnsafeMutablePointer<CChar>?
        let arguments = ["SET", "key", "value"]
        let length = arguments.withCStringArray { argv, lengths in
            redisFormatCommandArgv(&target, Int32(arguments.count), argv, lengths)
        }
        defer { free(target) }
        #expect(length > 0)
        #expect(String(cString: target!) == "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n")
    }
}

extension Array where Element == String {
    func withCStringArray<R>(_ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
        let duplicates = map { strdup($0) }
        defer { duplicates.forEach { free($0) } }
        var pointers = duplicates.map { UnsafePointer($0) }
        let lengths = map { $0.utf8.count }
        return body(&pointers, lengths)
    }
}
