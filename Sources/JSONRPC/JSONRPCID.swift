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
    /// The id a JSON value names, read the way the decoder reads a message's id (a string with
    /// escapes kept as written); nil when the value is not a string or an integer.
    public init?(_ value: RawJSON) {
        switch value.kind {
        case .string:
            let text = String(buffer: value.buffer).trimmingJSONWhitespace()
            guard text.utf8.count >= 2 else { return nil }
            let contents = String(text.dropFirst().dropLast())
            if contents.utf8.contains(UInt8(ascii: "\\")) {
                self = .escapedString(contents)
            } else {
                self = .string(contents)
            }
        case .number:
            guard case .integer(let integer) = value.decoded() else { return nil }
            self = .integer(integer)
        default:
            return nil
        }
    }
}

extension String {
    fileprivate func trimmingJSONWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        return String(self.drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
