import NIOCore

/// Turns one line into JSON-RPC messages, validating the whole text once and keeping `params`,
/// `result` and error `data` as slices of the line.
public struct MessageDecoder: Sendable {
    public var maximumDepth: Int
    /// Entries a batch may have; a longer one is refused whole (`.batchTooLarge`).
    public var maximumBatchSize: Int

    public static let defaultMaximumBatchSize = 1000

    public init(maximumDepth: Int = JSONLimits.defaultMaximumDepth, maximumBatchSize: Int = Self.defaultMaximumBatchSize) {
        self.maximumDepth = maximumDepth
        self.maximumBatchSize = maximumBatchSize
    }

    public func decode(line: ByteBuffer) -> DecodedLine {
        line.withUnsafeReadableBytes { bytes in
            let scanner = JSONScanner(bytes: bytes, maximumDepth: maximumDepth)
            let start = scanner.skipWhitespace(from: 0)
            guard start < bytes.count else { return .blank }
            do throws(JSONSyntaxError) {
                switch bytes[start] {
                case UInt8(ascii: "["):
                    var entries: [DecodedEntry] = []
                    var count = 0
                    let limit = maximumBatchSize
                    let end = try scanner.forEachElement(ofArrayAt: start) { element throws(JSONSyntaxError) in
                        // Past the limit the rest is only validated and counted: nothing of it
                        // will run, and decoding it would be work for nothing.
                        count += 1
                        if count <= limit { entries.append(try decodeEntry(scanner, line, element, depth: 1)) }
                    }
                    try scanner.expectEnd(from: end)
                    if count > limit { return .batchTooLarge(entries: count, limit: limit) }
                    return entries.isEmpty ? .emptyBatch : .batch(entries)
                case UInt8(ascii: "{"):
                    // Walking the members validates the object, every value included: one pass.
                    let (entry, end) = try decodeObject(scanner, line, at: start, depth: 0)
                    try scanner.expectEnd(from: end)
                    return .single(entry)
                default:
                    let end = try scanner.skipValue(from: start)
                    try scanner.expectEnd(from: end)
                    return .single(try decodeEntry(scanner, line, start..<end, depth: 0))
                }
            } catch {
                return .parseError(.parseError(error))
            }
        }
    }

    /// Decodes one (already validated) value as a message.
    private func decodeEntry(
        _ scanner: JSONScanner,
        _ line: ByteBuffer,
        _ range: Range<Int>,
        depth: Int
    ) throws(JSONSyntaxError) -> DecodedEntry {
        let bytes = scanner.bytes
        guard bytes[range.lowerBound] == UInt8(ascii: "{") else {
            return .invalid(id: nil, error: .invalidRequest("a message must be a JSON object"))
        }
        return try decodeObject(scanner, line, at: range.lowerBound, depth: depth).entry
    }

    /// Validates the object whose `{` is at `start` and reads it as a message; also returns the
    /// index past its `}`.
    private func decodeObject(
        _ scanner: JSONScanner,
        _ line: ByteBuffer,
        at start: Int,
        depth: Int
    ) throws(JSONSyntaxError) -> (entry: DecodedEntry, end: Int) {
        var envelope = Envelope()
        let end = try scanner.forEachMember(ofObjectAt: start, depth: depth) { name, value in
            envelope.take(name: name, value: value, scanner: scanner, line: line)
        }
        return (envelope.entry(), end)
    }
}

/// The members of a message object as they are read.
private struct Envelope {
    enum Field<Value> {
        case absent
        case present(Value)
        case invalid(String)
    }

    var version: Field<Void> = .absent
    var id: Field<JSONRPCID> = .absent
    var method: Field<String> = .absent
    var params: Field<RawJSON> = .absent
    var result: Field<RawJSON> = .absent
    var error: Field<JSONRPCError> = .absent
    var duplicate: String?
    var idIsNull = false

    mutating func take(name: JSONStringSlice, value: Range<Int>, scanner: JSONScanner, line: ByteBuffer) {
        let bytes = scanner.bytes
        func slice() -> RawJSON {
            RawJSON(unchecked: line.getSlice(at: line.readerIndex + value.lowerBound, length: value.count)!)
        }
        let kind = JSONKind(firstByte: bytes[value.lowerBound])

        if scanner.slice(name, equals: "jsonrpc") {
            guard case .absent = version else { duplicate = "jsonrpc"; return }
            let isTwoPointOh = value.count == 5 && bytes[value.lowerBound + 1] == UInt8(ascii: "2")
                && bytes[value.lowerBound + 2] == UInt8(ascii: ".") && bytes[value.lowerBound + 3] == UInt8(ascii: "0")
                && kind == .string
            version = isTwoPointOh ? .present(()) : .invalid("\"jsonrpc\" must be exactly \"2.0\"")
        } else if scanner.slice(name, equals: "id") {
            guard case .absent = id else { duplicate = "id"; return }
            id = Self.readID(kind: kind, value: value, scanner: scanner)
            idIsNull = kind == .null
        } else if scanner.slice(name, equals: "method") {
            guard case .absent = method else { duplicate = "method"; return }
            if kind == .string {
                let string = scanner.decodeString(
                    JSONStringSlice(range: (value.lowerBound + 1)..<(value.upperBound - 1), hasEscapes: Self.hasBackslash(bytes, value)))
                method = .present(string)
            } else {
                method = .invalid("\"method\" must be a string, not \(kind.name)")
            }
        } else if scanner.slice(name, equals: "params") {
            guard case .absent = params else { duplicate = "params"; return }
            params = kind == .object || kind == .array
                ? .present(slice()) : .invalid("\"params\" must be an object or an array, not \(kind.name)")
        } else if scanner.slice(name, equals: "result") {
            guard case .absent = result else { duplicate = "result"; return }
            result = .present(slice())
        } else if scanner.slice(name, equals: "error") {
            guard case .absent = error else { duplicate = "error"; return }
            error = Self.readError(slice())
        }
    }

    func entry() -> DecodedEntry {
        let readableID: JSONRPCID? = if case .present(let id) = id { id } else { nil }
        func invalid(_ reason: String) -> DecodedEntry { .invalid(id: readableID, error: .invalidRequest(reason)) }

        // With a member given twice, not even the id can be trusted.
        if let duplicate { return .invalid(id: nil, error: .invalidRequest("member \"\(duplicate)\" appears more than once")) }
        switch version {
        case .absent: return invalid("missing \"jsonrpc\": \"2.0\"")
        case .invalid(let reason): return invalid(reason)
        case .present: break
        }
        if case .invalid(let reason) = id {
            // An error about a request whose id could not be read carries `"id": null`: that
            // is a valid response, not a bad request.
            let isErrorResponse: Bool = if case .absent = method, case .present = error, idIsNull { true } else { false }
            if !isErrorResponse { return .invalid(id: nil, error: .invalidRequest(reason)) }
        }

        switch method {
        case .invalid(let reason):
            return invalid(reason)
        case .present(let name):
            if case .present = result { return invalid("a request cannot carry \"result\"") }
            if case .present = error { return invalid("a request cannot carry \"error\"") }
            if case .invalid(let reason) = params { return invalid(reason) }
            let params: RawJSON? = if case .present(let raw) = params { raw } else { nil }
            if let readableID {
                return .message(.request(JSONRPCRequest(id: readableID, method: name, params: params)))
            }
            return .message(.notification(JSONRPCNotification(method: name, params: params)))
        case .absent:
            switch (result, error) {
            case (.present(let raw), .absent):
                guard let readableID else { return invalid("a response must carry an id") }
                return .message(.response(JSONRPCResponse(id: readableID, outcome: .result(raw))))
            case (.absent, .present(let rpcError)):
                return .message(.response(JSONRPCResponse(id: readableID, outcome: .error(rpcError))))
            case (.absent, .invalid(let reason)):
                return invalid(reason)
            case (.absent, .absent):
                return invalid("missing \"method\"")
            default:
                return invalid("a response carries either \"result\" or \"error\", not both")
            }
        }
    }

    private static func readID(kind: JSONKind, value: Range<Int>, scanner: JSONScanner) -> Field<JSONRPCID> {
        let bytes = scanner.bytes
        switch kind {
        case .string, .number:
            if let id = JSONRPCID(token: UnsafeRawBufferPointer(rebasing: bytes[value])) { return .present(id) }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[value]), as: UTF8.self)
            return .invalid("\"id\" must be a string or an integer in the signed 64-bit range, not \(text)")
        case .null:
            return .invalid("\"id\" must not be null (use a string or an integer)")
        default:
            return .invalid("\"id\" must be a string or an integer, not \(kind.name)")
        }
    }

    private static func readError(_ raw: RawJSON) -> Field<JSONRPCError> {
        guard case .object(let members) = raw.decoded() else { return .invalid("\"error\" must be an object") }
        guard case .integer(let code)? = members["code"] else { return .invalid("\"error.code\" must be an integer") }
        guard case .string(let message)? = members["message"] else { return .invalid("\"error.message\" must be a string") }
        return .present(JSONRPCError(code: Int(code), message: message, data: raw.member("data").map(JSONValue.raw)))
    }

    private static func hasBackslash(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        UnsafeRawBufferPointer(rebasing: bytes[range]).contains(UInt8(ascii: "\\"))
    }
}
