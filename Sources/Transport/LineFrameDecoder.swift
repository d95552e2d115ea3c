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
    /// A line longer than the limit, discarded once it has ended (at its newline, or at the end
    /// of input). Indirect: a frame stays as small as a buffer, so that NIO carries it without
    /// boxing on the path every line takes.
    indirect case oversize(OversizeLine)
}

/// What is kept of a line too long to keep: its length and its first and last bytes, enough to
/// read the id of the message it carried and answer it.
public struct OversizeLine: Sendable, Equatable {
    /// How much of each end is kept.
    public static let keptBytes = 4096

    public var limit: Int
    /// The line's length in bytes, without its terminator.
    public var length: Int
    public var head: ByteBuffer
    public var tail: ByteBuffer

    public init(limit: Int, length: Int, head: ByteBuffer, tail: ByteBuffer) {
        self.limit = limit
        self.length = length
        self.head = head
        self.tail = tail
    }
}

/// Splits a byte stream into lines, the framing of MCP's stdio transport that every Switchboard
/// transport shares.
///
/// Memory stays bounded by `maximumLineLength`: a line that outgrows it is dropped as it arrives,
/// up to its newline, keeping only its first and last few kilobytes, and reported once as
/// `.oversize` when it ends; a peer sending gigabytes without a newline costs nothing but the
/// reads.
public struct LineFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = LineFrame

    public let maximumLineLength: Int
    /// How far into the readable bytes we have already looked for a newline, so that a long line
    /// arriving in many reads is scanned once, not once per read.
    private var scannedLength = 0
    /// The line being discarded. A reference: NIO moves the decoder in and out of its handler
    /// for every read, and a decoder of a few words moves cheaply.
    private var discarded: DiscardedLine?

    private final class DiscardedLine {
        var length: Int
        var head: ByteBuffer
        var tail: ByteBuffer

        init(length: Int, head: ByteBuffer, tail: ByteBuffer) {
            self.length = length
            self.head = head
            self.tail = tail
        }
    }

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
        if let line = discarded {
            discarded = nil
            context.fireChannelRead(wrapInboundOut(.oversize(OversizeLine(limit: maximumLineLength, length: line.length, head: line.head, tail: line.tail))))
            return .needMoreData
        }
        if buffer.readableBytes > 0, let rest = buffer.readSlice(length: buffer.readableBytes) {
            scannedLength = 0
            // One byte over the limit is kept while waiting for a newline (it may be the CR of a
            // CRLF); at the end of input it is no CR, and the line is over the limit.
            let line = Self.trimmingCarriageReturn(rest)
            if line.readableBytes > maximumLineLength {
                context.fireChannelRead(wrapInboundOut(.oversize(OversizeLine(
                    limit: maximumLineLength, length: line.readableBytes, head: Self.copy(line, keptFrom: .start),
                    tail: Self.copy(line, keptFrom: .end)))))
            } else {
                context.fireChannelRead(wrapInboundOut(.line(line)))
            }
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
            if let line = discarded {
                let piece = buffer.readSlice(length: newline ?? buffer.readableBytes)!
                line.length += piece.readableBytes
                // The head is the line's first bytes however the line was cut into reads: a
                // first read shorter than the kept head is completed from the next ones.
                if line.head.readableBytes < OversizeLine.keptBytes {
                    line.head.writeImmutableBuffer(piece.getSlice(
                        at: piece.readerIndex, length: min(piece.readableBytes, OversizeLine.keptBytes - line.head.readableBytes))!)
                }
                line.tail = Self.keepingEnd(of: line.tail, then: piece)
                scannedLength = 0
                guard newline != nil else { return nil }
                buffer.moveReaderIndex(forwardBy: 1)
                discarded = nil
                return Self.oversize(limit: maximumLineLength, length: line.length, head: line.head, tail: line.tail)
            }
            guard let newline else {
                scannedLength = buffer.readableBytes
                // One more byte than the limit is allowed for the `\r` of a CRLF terminator.
                if buffer.readableBytes > maximumLineLength + 1 {
                    let piece = buffer.readSlice(length: buffer.readableBytes)!
                    scannedLength = 0
                    discarded = DiscardedLine(length: piece.readableBytes, head: Self.copy(piece, keptFrom: .start), tail: Self.copy(piece, keptFrom: .end))
                }
                return nil
            }
            scannedLength = 0
            var line = buffer.readSlice(length: newline)!
            buffer.moveReaderIndex(forwardBy: 1)
            line = Self.trimmingCarriageReturn(line)
            if line.readableBytes > maximumLineLength {
                return .oversize(OversizeLine(
                    limit: maximumLineLength, length: line.readableBytes, head: Self.copy(line, keptFrom: .start), tail: Self.copy(line, keptFrom: .end)))
            }
            return .line(line)
        }
    }

    private enum End { case start, end }

    /// A copy of up to `OversizeLine.keptBytes` at one end of `bytes`: a slice would keep the
    /// whole of a large read alive.
    private static func copy(_ bytes: ByteBuffer, keptFrom end: End) -> ByteBuffer {
        let count = min(bytes.readableBytes, OversizeLine.keptBytes)
        let view = end == .start ? bytes.readableBytesView.prefix(count) : bytes.readableBytesView.suffix(count)
        return ByteBuffer(bytes: view)
    }

    /// The last `OversizeLine.keptBytes` of `kept` followed by `piece`.
    private static func keepingEnd(of kept: ByteBuffer, then piece: ByteBuffer) -> ByteBuffer {
        guard piece.readableBytes < OversizeLine.keptBytes else { return copy(piece, keptFrom: .end) }
        var joined = ByteBuffer(bytes: kept.readableBytesView.suffix(OversizeLine.keptBytes - piece.readableBytes))
        joined.writeImmutableBuffer(piece)
        return joined
    }

    private static func oversize(limit: Int, length: Int, head: ByteBuffer, tail: ByteBuffer) -> LineFrame {
        // The terminator may have been CRLF: its CR is not part of the line, in the tail nor in a
        // head that holds the whole line.
        var tail = tail
        var head = head
        var length = length
        if tail.readableBytes > 0, tail.getInteger(at: tail.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\r") {
            tail.moveWriterIndex(to: tail.writerIndex - 1)
            length -= 1
            if head.readableBytes > length { head.moveWriterIndex(to: head.readerIndex + length) }
        }
        return .oversize(OversizeLine(limit: limit, length: length, head: head, tail: tail))
    }

    private static func trimmingCarriageReturn(_ line: ByteBuffer) -> ByteBuffer {
        guard line.readableBytes > 0, line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\r") else {
            return line
        }
        return line.getSlice(at: line.readerIndex, length: line.readableBytes - 1)!
    }
}
