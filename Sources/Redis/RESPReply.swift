import NIOCore

/// One RESP2 reply, as hiredis 0.14 decodes it.
public enum RESPReply: Sendable, Hashable {
    /// A simple string such as `OK` or `PONG`.
    case status(String)
    /// An error reply such as `ERR unknown command`; the text includes the error prefix.
    case error(String)
    case integer(Int64)
    /// A bulk string; binary-safe.
    case bulkString(ByteBuffer)
    /// A null bulk string or null array.
    case null
    case array([RESPReply])

    /// The bulk string's or status's bytes as UTF-8, nil for other replies.
    public var string: String? {
        switch self {
        case .status(let text): text
        case .bulkString(let buffer): String(buffer: buffer)
        default: nil
        }
    }

    /// The bulk string's bytes, nil for other replies.
    public var bytes: [UInt8]? {
        guard case .bulkString(let buffer) = self else { return nil }
        return Array(buffer.readableBytesView)
    }

    public var integer: Int64? {
        guard case .integer(let value) = self else { return nil }
        return value
    }

    public var array: [RESPReply]? {
        guard case .array(let elements) = self else { return nil }
        return elements
    }

    public var isNull: Bool { self == .null }

    /// The error reply's code, the first word (`ERR`, `NOSCRIPT`, `WRONGTYPE`), nil for other replies.
    public var errorCode: Substring? {
        guard case .error(let text) = self else { return nil }
        return text.split(separator: " ", maxSplits: 1).first
    }
}
