import CSwitchboardHiredis
import NIOCore

/// Decodes RESP2 replies by feeding bytes to a hiredis reader.
///
/// hiredis copies what it is fed, so every inbound byte is consumed at once; each complete reply
/// is converted to a `RESPReply` and the C reply is freed before it is passed on.
public final class RESPDecoder: ByteToMessageDecoder {
    public typealias InboundOut = RESPReply

    private let reader: UnsafeMutablePointer<redisReader>

    public init() {
        guard let reader = redisReaderCreate() else {
            fatalError("redisReaderCreate failed: out of memory")
        }
        self.reader = reader
    }

    deinit {
        redisReaderFree(reader)
    }

    public func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        try feed(&buffer)
        while let reply = try nextReply() {
            context.fireChannelRead(Self.wrapInboundOut(reply))
        }
        return .needMoreData
    }

    public func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// Hands all readable bytes to hiredis.
    func feed(_ buffer: inout ByteBuffer) throws {
        guard buffer.readableBytes > 0 else { return }
        let status = buffer.withUnsafeReadableBytes { bytes in
            redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        if status != REDIS_OK { throw protocolError() }
    }

    /// The next complete reply, nil when more bytes are needed.
    func nextReply() throws -> RESPReply? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw protocolError() }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self).pointee)
    }

    private func protocolError() -> RedisError {
        RedisError(.protocolError, String(cString: switchboard_redisReaderGetError(reader)))
    }

    private static func convert(_ reply: redisReply) -> RESPReply {
        switch reply.type {
        case REDIS_REPLY_STRING:
            var buffer = ByteBufferAllocator().buffer(capacity: reply.len)
            if reply.len > 0 {
                buffer.writeBytes(UnsafeRawBufferPointer(start: reply.str, count: reply.len))
            }
            return .bulkString(buffer)
        case REDIS_REPLY_STATUS:
            return .status(text(reply))
        case REDIS_REPLY_ERROR:
            return .error(text(reply))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            var elements: [RESPReply] = []
            elements.reserveCapacity(reply.elements)
            for index in 0..<reply.elements {
                if let element = reply.element[index] {
                    elements.append(convert(element.pointee))
                } else {
                    elements.append(.null)
                }
            }
            return .array(elements)
        default:
            return .null
        }
    }

    private static func text(_ reply: redisReply) -> String {
        guard reply.len > 0, let start = reply.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: start, count: reply.len), as: UTF8.self)
    }
}
