import NIOCore

/// Writes JSON-RPC messages as single lines. Raw payloads are copied in as bytes, never
/// re-encoded.
public enum MessageEncoder {
    public static func writeResult(id: JSONRPCID, result: JSONValue, to buffer: inout ByteBuffer) {
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
}
