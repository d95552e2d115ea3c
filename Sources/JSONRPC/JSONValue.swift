import NIOCore

/// A JSON value as a tree, for the small documents the gateway builds or inspects itself
/// (lifecycle results, error data, status). Pass-through payloads stay `RawJSON`.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case integer(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
    /// Already-encoded JSON embedded as it is.
    case raw(RawJSON)

    public subscript(key: String) -> JSONValue? {
        switch self {
        case .object(let members): return members[key]
        case .raw(let raw): return raw.member(key).map(JSONValue.raw)
        default: return nil
        }
    }

    public var stringValue: String? {
        switch self {
        case .string(let string): return string
        case .raw(let raw): return raw.stringValue
        default: return nil
        }
    }

    public var integerValue: Int64? {
        switch self {
        case .integer(let value): return value
        case .double(let value) where value.rounded() == value && abs(value) < 9.2e18: return Int64(value)
        case .raw(let raw): return raw.decoded().integerValue
        default: return nil
        }
    }

    public var objectValue: [String: JSONValue]? {
        switch self {
        case .object(let members): return members
        case .raw(let raw):
            if case .object(let members) = raw.decoded() { return members }
            return nil
        default: return nil
        }
    }

    /// Encodes compactly.
    public func write(to buffer: inout ByteBuffer) {
        switch self {
        case .null: buffer.writeStaticString("null")
        case .bool(let value): buffer.writeString(value ? "true" : "false")
        case .integer(let value): buffer.writeString(String(value))
        case .double(let value):
            if value.isFinite {
                if value.rounded() == value && abs(value) < 1e15 {
                    buffer.writeString(String(Int64(value)))
                } else {
                    buffer.writeString(String(value))
                }
            } else {
                buffer.writeStaticString("null")
            }
        case .string(let value): buffer.writeJSONString(value)
        case .array(let elements):
            buffer.writeInteger(UInt8(ascii: "["))
            for (offset, element) in elements.enumerated() {
                if offset > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                element.write(to: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "]"))
        case .object(let members):
            buffer.writeInteger(UInt8(ascii: "{"))
            // Sorted keys make every encoding of the same value identical.
            for (offset, key) in members.keys.sorted().enumerated() {
                if offset > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                buffer.writeJSONString(key)
                buffer.writeInteger(UInt8(ascii: ":"))
                members[key]!.write(to: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        case .raw(let raw):
            var bytes = raw.buffer
            buffer.writeBuffer(&bytes)
        }
    }

    public var encoded: String {
        var buffer = ByteBuffer()
        write(to: &buffer)
        return String(buffer: buffer)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { first, _ in first }))
    }
    public init(nilLiteral: ()) { self = .null }
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension ByteBuffer {
    /// Writes `string` as a JSON string literal, escaping only what JSON requires: in one
    /// write of its exact length.
    public mutating func writeJSONString(_ string: String) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: InPlaceWriter.bound(jsonString: string)) { target in
            var writer = InPlaceWriter(target.baseAddress!)
            writer.appendJSONString(string)
            return writer.count
        }
    }
}
