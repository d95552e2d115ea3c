import NIOCore

/// A request id: a string or a signed 64-bit integer. JSON-RPC allows null and fractions; MCP
/// does not, and neither do we (a gateway must be able to echo and remap every id exactly).
public enum JSONRPCID: Hashable, Sendable, CustomStringConvertible {
    case string(String)
    case integer(Int64)
    /// A string id written with escapes, kept as written between its quotes, so that it is echoed
    /// byte for byte: `"\u0041"` comes back as `"\u0041"`, and `"\ud800a"` — a lone surrogate,
    /// which no Swift string can hold — comes back as it came rather than as `"\ufffda"`.
    case escapedString(String)

    public var description: String {
        switch self {
        case .string(let string): return "\"\(string)\""
        case .integer(let integer): return String(integer)
        case .escapedString(let written): return "\"\(written)\""
        }
    }

    public func write(to buffer: inout ByteBuffer) {
        switch self {
        case .string(let string): buffer.writeJSONString(string)
        case .integer(let integer): buffer.writeString(String(integer))
        case .escapedString(let written):
            buffer.writeInteger(UInt8(ascii: "\""))
            buffer.writeString(written)
            buffer.writeInteger(UInt8(ascii: "\""))
        }
    }

    public var jsonValue: JSONValue {
        switch self {
        case .string(let string): return .string(string)
        case .integer(let integer): return .integer(integer)
        case .escapedString(let written): return .raw(RawJSON(unchecked: ByteBuffer(string: "\"\(written)\"")))
        }
    }
}

extension JSONRPCID {
    /// The id a validated JSON string or integer denotes, from its bytes (quotes included for a
    /// string): a string with escapes is kept as written, so that it is echoed byte for byte. Nil
    /// for any other value, and for an integer outside the signed 64-bit range. The one reading
    /// of an id: messages, `notifications/cancelled`, oversize lines.
    public init?(token bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else { return nil }
        if first == UInt8(ascii: "\"") {
            guard bytes.count >= 2 else { return nil }
            let contents = UnsafeRawBufferPointer(rebasing: bytes[1..<(bytes.count - 1)])
            let text = String(decoding: contents, as: UTF8.self)
            self = contents.contains(UInt8(ascii: "\\")) ? .escapedString(text) : .string(text)
            return
        }
        guard let integer = Int64(String(decoding: bytes, as: UTF8.self)) else { return nil }
        self = .integer(integer)
    }

    /// The id a JSON value names; nil when it is not a string or an integer.
    public init?(_ value: RawJSON) {
        guard value.kind == .string || value.kind == .number else { return nil }
        guard let id = value.buffer.withUnsafeReadableBytes({ bytes -> JSONRPCID? in
            let scanner = JSONScanner(bytes: bytes)
            let start = scanner.skipWhitespace(from: 0)
            var end = bytes.count
            while end > start, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[end - 1]) { end -= 1 }
            return JSONRPCID(token: UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
        }) else { return nil }
        self = id
    }
}
