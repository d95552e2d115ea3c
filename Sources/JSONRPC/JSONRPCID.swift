import NIOCore

/// A request id: a string or a signed 64-bit integer. JSON-RPC allows null and fractions; MCP
/// does not, and neither do we (a gateway must be able to echo and remap every id exactly).
public enum JSONRPCID: Hashable, Sendable, CustomStringConvertible {
    case string(String)
    case integer(Int64)

    public var description: String {
        switch self {
        case .string(let string): return "\"\(string)\""
        case .integer(let integer): return String(integer)
        }
    }

    public func write(to buffer: inout ByteBuffer) {
        switch self {
        case .string(let string): buffer.writeJSONString(string)
        case .integer(let integer): buffer.writeString(String(integer))
        }
    }

    public var jsonValue: JSONValue {
        switch self {
        case .string(let string): return .string(string)
        case .integer(let integer): return .integer(integer)
        }
    }
}
