import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One unit of newline-delimited input.
public enum LineFrame: Sendable, Equatable {
    /// A line without its terminator (`\n` or `\r\n`).
    case line(ByteBuffer)
    /// A line grew past the limit; its bytes up to the next newline are being discarded.
    case oversize(limit: Int)
}

/// Splits a byte stream into lines, the framing of MCP's stdio transport that every Switchboard
/// transport shares.
///
/// Memory stays bounded by `maximumLineLength`: a line that outgrows it is reported once as
/// `.oversize` and then dropped as it arrives, up to its newline, so a peer sending gigabytes
/// without a newline costs nothing but the reads.
public struct LineFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = LineFrame

    public let maximumLineLength: Int
    /// How far into the readable bytes we have already looked for a newline, so that a long line
    /// arriving in many reads is scanned once, not once per read.
    private var scannedLength = 0
    private var discarding = false

    public init(maximumLineLength: Int) {
        precondition(maximumLineLength > 0)
        self.maximumLineLength = maximumLineLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = nextFrame(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        if let frame = nextFrame(&buffer) {
            context.fireChannelRead(wrapInboundOut(frame))
            return .continue
        }
        // A last message without its newline still counts: hosts that write one request and
        // close are common.
        if !discarding, buffer.readableBytes > 0, let rest = buffer.readSlice(length: buffer.readableBytes) {
            scannedLength = 0
            context.fireChannelRead(wrapInboundOut(.line(Self.trimmingCarriageReturn(rest))))
        }
        return .needMoreData
    }

    /// The next complete frame in `buffer`, consuming its bytes; nil when more data is needed.
    mutating func nextFrame(_ buffer: inout ByteBuffer) -> LineFrame? {
        while true {
            let newline = buffer.withUnsafeReadableBytes { bytes -> Int? in
                guard scannedLength < bytes.count, let base = bytes.baseAddress else { return nil }
                let found = memchr(base + scannedLength, 0x0A, bytes.count - scannedLength)
                return found.map { UnsafeRawPointer($0) - base }
            }
            if discarding {
                guard let newline else {
                    buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                    scannedLength = 0
                    return nil
                }
                buffer.moveReaderIndex(forwardBy: newline + 1)
                scannedLength = 0
                discarding = false
                continue
            }
            guard let newline else {
                scannedLength = buffer.readableBytes
                // One more byte than the limit is allowed for the `\r` of a CRLF terminator.
                if buffer.readableBytes > maximumLineLength + 1 {
                    buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                    scannedLength = 0
                    discarding = true
                    return .oversize(limit: maximumLineLength)
                }
                return nil
            }
            scannedLength = 0
            var line = buffer.readSlice(length: newline)!
            buffer.moveReaderIndex(forwardBy: 1)
            line = Self.trimmingCarriageReturn(line)
            if line.readableBytes > maximumLineLength {
                return .oversize(limit: maximumLineLength)
            }
            return .line(line)
        }
    }

    private static func trimmingCarriageReturn(_ line: ByteBuffer) -> ByteBuffer {
        guard line.readableBytes > 0, line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\r") else {
            return line
        }
        return line.getSlice(at: line.readerIndex, length: line.readableBytes - 1)!
    }
}
