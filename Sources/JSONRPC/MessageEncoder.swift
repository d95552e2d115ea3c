import NIOCore

/// Writes JSON-RPC messages as single lines. Raw payloads are copied in as bytes, never
/// re-encoded.
public enum MessageEncoder {
    public static func writeResult(id: JSONRPCID, result: JSONValue, to buffer: inout ByteBuffer) {
        if case .raw(let raw) = result {
            // A relayed result: the whole line in one write.
            writeInPlace(id: id, method: nil, payloadKey: #","result":"#, payload: raw, to: &buffer)
            return
        }
        buffer.writeStaticString(#"{"jsonrpc":"2.0","id":"#)
        id.write(to: &buffer)
        buffer.writeStaticString(#","result":"#)
        result.write(to: &buffer)
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    public static func writeError(id: JSONRPCID?, error: JSONRPCError, to buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"jsonrpc":"2.0","id":"#)
        if let id { id.write(to: &buffer) } else { buffer.writeStaticString("null") }
        buffer.writeStaticString(#","error":"#)
        error.jsonValue.write(to: &buffer)
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    public static func writeRequest(id: JSONRPCID, method: String, params: JSONValue?, to buffer: inout ByteBuffer) {
        switch params {
        case .raw(let raw)?:
            // A relayed request: the whole line in one write.
            writeInPlace(id: id, method: method, payloadKey: #","params":"#, payload: raw, to: &buffer)
            return
        case nil:
            writeInPlace(id: id, method: method, payloadKey: "", payload: nil, to: &buffer)
            return
        default:
            break
        }
        buffer.writeStaticString(#"{"jsonrpc":"2.0","id":"#)
        id.write(to: &buffer)
        buffer.writeStaticString(#","method":"#)
        buffer.writeJSONString(method)
        if let params {
            buffer.writeStaticString(#","params":"#)
            params.write(to: &buffer)
        }
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    public static func writeNotification(method: String, params: JSONValue?, to buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"jsonrpc":"2.0","method":"#)
        buffer.writeJSONString(method)
        if let params {
            buffer.writeStaticString(#","params":"#)
            params.write(to: &buffer)
        }
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    public static func writeResponse(_ response: JSONRPCResponse, to buffer: inout ByteBuffer) {
        switch response.outcome {
        case .result(let raw): writeResult(id: response.id ?? .integer(0), result: .raw(raw), to: &buffer)
        case .error(let error): writeError(id: response.id, error: error, to: &buffer)
        }
    }

    /// `{"jsonrpc":"2.0","id":ID[,"method":METHOD]PAYLOADKEY PAYLOAD}` with one capacity check and
    /// one access to the buffer's storage. Written piece by piece, each piece paid for both (with
    /// a run-time exclusivity check), about 150 instructions a piece and six pieces a message.
    private static func writeInPlace(id: JSONRPCID, method: String?, payloadKey: StaticString, payload: RawJSON?, to buffer: inout ByteBuffer) {
        let head: StaticString = #"{"jsonrpc":"2.0","id":"#
        let methodKey: StaticString = #","method":"#
        var bound = head.utf8CodeUnitCount + InPlaceWriter.bound(id) + payloadKey.utf8CodeUnitCount + 1
        if let method { bound += methodKey.utf8CodeUnitCount + InPlaceWriter.bound(jsonString: method) }
        if let payload { bound += payload.buffer.readableBytes }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { target in
            var writer = InPlaceWriter(target.baseAddress!)
            writer.append(head)
            writer.append(id)
            if let method {
                writer.append(methodKey)
                writer.appendJSONString(method)
            }
            if let payload {
                writer.append(payloadKey)
                payload.buffer.withUnsafeReadableBytes { writer.append($0) }
            }
            writer.append(UInt8(ascii: "}"))
            return writer.count
        }
    }
}

/// Appends bytes at a pointer into room already reserved for them (see `bound`). Also the one
/// place that escapes JSON strings (`ByteBuffer.writeJSONString` writes through it).
struct InPlaceWriter {
    private let start: UnsafeMutableRawPointer
    private var cursor: UnsafeMutableRawPointer

    init(_ start: UnsafeMutableRawPointer) {
        self.start = start
        self.cursor = start
    }

    var count: Int { start.distance(to: cursor) }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// The most bytes `id` can take.
    static func bound(_ id: JSONRPCID) -> Int {
        switch id {
        case .integer: return 20
        case .string(let string): return bound(jsonString: string)
        case .escapedString(let written): return written.utf8.count + 2
        }
    }

    /// The bytes `string` takes as a JSON string literal, quotes and escapes included.
    static func bound(jsonString string: String) -> Int {
        var count = 2
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0A, 0x0D, 0x09, 0x08, 0x0C: count += 2
            case 0..<0x20: count += 6
            default: count += 1
            }
        }
        return count
    }

    mutating func append(_ string: StaticString) {
        string.withUTF8Buffer { append(UnsafeRawBufferPointer($0)) }
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        cursor.copyMemory(from: base, byteCount: bytes.count)
        cursor += bytes.count
    }

    mutating func append(_ byte: UInt8) {
        cursor.storeBytes(of: byte, as: UInt8.self)
        cursor += 1
    }

    mutating func append(_ id: JSONRPCID) {
        switch id {
        case .string(let string):
            appendJSONString(string)
        case .escapedString(let written):
            append(UInt8(ascii: "\""))
            var written = written
            written.withUTF8 { append(UnsafeRawBufferPointer($0)) }
            append(UInt8(ascii: "\""))
        case .integer(let value):
            if value < 0 { append(UInt8(ascii: "-")) }
            var magnitude = value.magnitude
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
            withUnsafeMutableBytes(of: &digits) { scratch in
                var index = scratch.count
                repeat {
                    index -= 1
                    scratch[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                    magnitude /= 10
                } while magnitude > 0
                append(UnsafeRawBufferPointer(rebasing: scratch[index...]))
            }
        }
    }

    /// `string` as a JSON string literal, escaping only what JSON requires (as
    /// `ByteBuffer.writeJSONString` does).
    mutating func appendJSONString(_ string: String) {
        append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { utf8 in
            for byte in utf8 {
                switch byte {
                case UInt8(ascii: "\""): append(UInt8(ascii: "\\")); append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): append(UInt8(ascii: "\\")); append(UInt8(ascii: "\\"))
                case 0x0A: append(UInt8(ascii: "\\")); append(UInt8(ascii: "n"))
                case 0x0D: append(UInt8(ascii: "\\")); append(UInt8(ascii: "r"))
                case 0x09: append(UInt8(ascii: "\\")); append(UInt8(ascii: "t"))
                case 0x08: append(UInt8(ascii: "\\")); append(UInt8(ascii: "b"))
                case 0x0C: append(UInt8(ascii: "\\")); append(UInt8(ascii: "f"))
                case 0..<0x20:
                    append("\\u00")
                    append(Self.hexDigits[Int(byte >> 4)])
                    append(Self.hexDigits[Int(byte & 0xF)])
                default:
                    append(byte)
                }
            }
        }
        append(UInt8(ascii: "\""))
    }
}
