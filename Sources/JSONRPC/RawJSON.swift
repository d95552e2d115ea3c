import NIOCore

/// A validated JSON text kept as the bytes it arrived in.
///
/// Payloads that only pass through the gateway (tool arguments, results, error data) travel as
/// `RawJSON`: a slice of the inbound buffer, never decoded and never re-encoded.
public struct RawJSON: Sendable, Hashable, CustomStringConvertible {
    public private(set) var buffer: ByteBuffer

    /// Wraps bytes that are already known to be one valid JSON value.
    public init(unchecked buffer: ByteBuffer) {
        self.buffer = buffer
    }

    /// Validates `text` as one JSON value.
    public init(validating text: String, maximumDepth: Int = JSONLimits.defaultMaximumDepth) throws(JSONSyntaxError) {
        let buffer = ByteBuffer(string: text)
        try Self.validate(buffer, maximumDepth: maximumDepth)
        self.buffer = buffer
    }

    /// Validates `buffer` as one JSON value.
    public init(validating buffer: ByteBuffer, maximumDepth: Int = JSONLimits.defaultMaximumDepth) throws(JSONSyntaxError) {
        try Self.validate(buffer, maximumDepth: maximumDepth)
        self.buffer = buffer
    }

    private static func validate(_ buffer: ByteBuffer, maximumDepth: Int) throws(JSONSyntaxError) {
        let outcome: Result<Void, JSONSyntaxError> = buffer.withUnsafeReadableBytes { bytes in
            let scanner = JSONScanner(bytes: bytes, maximumDepth: maximumDepth)
            do throws(JSONSyntaxError) {
                let start = scanner.skipWhitespace(from: 0)
                let end = try scanner.skipValue(from: start)
                try scanner.expectEnd(from: end)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try outcome.get()
    }

    public static let emptyObject = RawJSON(unchecked: ByteBuffer(string: "{}"))
    public static let null = RawJSON(unchecked: ByteBuffer(string: "null"))

    public var description: String { String(buffer: buffer) }

    /// The kind of value, read from its first byte.
    public var kind: JSONKind {
        buffer.withUnsafeReadableBytes { bytes in
            let scanner = JSONScanner(bytes: bytes)
            let start = scanner.skipWhitespace(from: 0)
            guard start < bytes.count else { return .null }
            return JSONKind(firstByte: bytes[start])
        }
    }

    /// The value of member `name` when this is an object that has it. The result shares storage
    /// with this value (no copy).
    ///
    /// The bytes are valid JSON already, so the lookup only counts brackets and skips strings up
    /// to the member; it validates nothing and stops at the first match.
    public func member(_ name: String) -> RawJSON? {
        var name = name
        let range: Range<Int>? = name.withUTF8 { utf8 in
            let target = UnsafeRawBufferPointer(utf8)
            let isASCII = !target.contains { $0 >= 0x80 }
            return buffer.withUnsafeReadableBytes { bytes in
                JSONScanner(bytes: bytes, maximumDepth: .max).validMember(named: target, nameIsASCII: isASCII)
            }
        }
        guard let range else { return nil }
        return RawJSON(unchecked: buffer.getSlice(at: buffer.readerIndex + range.lowerBound, length: range.count)!)
    }

    /// Several members in one pass over the object (each the first of its name, nil where
    /// absent), in the order asked: `member` scans from the start for each.
    public func members(_ names: StaticString...) -> [RawJSON?] {
        let ranges = buffer.withUnsafeReadableBytes { bytes in
            JSONScanner(bytes: bytes, maximumDepth: .max).validMembers(named: names)
        }
        return ranges.map { range in
            range.map { RawJSON(unchecked: buffer.getSlice(at: buffer.readerIndex + $0.lowerBound, length: $0.count)!) }
        }
    }

    /// The decoded string when this is a JSON string.
    public var stringValue: String? {
        buffer.withUnsafeReadableBytes { bytes in
            let scanner = JSONScanner(bytes: bytes, maximumDepth: .max)
            let start = scanner.skipWhitespace(from: 0)
            guard start < bytes.count, bytes[start] == UInt8(ascii: "\""),
                let string = try? scanner.skipString(from: start)
            else { return nil }
            return scanner.decodeString(JSONStringSlice(range: (start + 1)..<(string.end - 1), hasEscapes: string.hasEscapes))
        }
    }

    /// The whole value as a tree, for the small payloads that handlers inspect.
    public func decoded() -> JSONValue {
        buffer.withUnsafeReadableBytes { bytes in
            var parser = JSONTreeParser(scanner: JSONScanner(bytes: bytes, maximumDepth: .max))
            return parser.parseDocument()
        }
    }

    public static func == (lhs: RawJSON, rhs: RawJSON) -> Bool { lhs.buffer == rhs.buffer }
    public func hash(into hasher: inout Hasher) { hasher.combine(buffer) }
}

public enum JSONKind: Sendable, Equatable {
    case object, array, string, number, bool, null

    init(firstByte: UInt8) {
        switch firstByte {
        case UInt8(ascii: "{"): self = .object
        case UInt8(ascii: "["): self = .array
        case UInt8(ascii: "\""): self = .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): self = .bool
        case UInt8(ascii: "n"): self = .null
        default: self = .number
        }
    }

    public var name: String {
        switch self {
        case .object: "an object"
        case .array: "an array"
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        }
    }
}

/// Builds a `JSONValue` tree from bytes that the scanner has already validated.
struct JSONTreeParser {
    let scanner: JSONScanner
    var index = 0

    init(scanner: JSONScanner) { self.scanner = scanner }

    mutating func parseDocument() -> JSONValue {
        index = scanner.skipWhitespace(from: 0)
        return parseValue()
    }

    private mutating func parseValue() -> JSONValue {
        let bytes = scanner.bytes
        index = scanner.skipWhitespace(from: index)
        guard index < bytes.count else { return .null }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            var object: [String: JSONValue] = [:]
            index = scanner.skipWhitespace(from: index + 1)
            if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(object) }
            while true {
                index = scanner.skipWhitespace(from: index)
                guard let name = try? scanner.skipString(from: index) else { return .null }
                let key = scanner.decodeString(JSONStringSlice(range: (index + 1)..<(name.end - 1), hasEscapes: name.hasEscapes))
                index = scanner.skipWhitespace(from: name.end) + 1  // past ':'
                let value = parseValue()
                if object[key] == nil { object[key] = value }
                index = scanner.skipWhitespace(from: index)
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                index += 1  // '}'
                return .object(object)
            }
        case UInt8(ascii: "["):
            var array: [JSONValue] = []
            index = scanner.skipWhitespace(from: index + 1)
            if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(array) }
            while true {
                array.append(parseValue())
                index = scanner.skipWhitespace(from: index)
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                index += 1  // ']'
                return .array(array)
            }
        case UInt8(ascii: "\""):
            guard let string = try? scanner.skipString(from: index) else { return .null }
            let value = scanner.decodeString(JSONStringSlice(range: (index + 1)..<(string.end - 1), hasEscapes: string.hasEscapes))
            index = string.end
            return .string(value)
        case UInt8(ascii: "t"): index += 4; return .bool(true)
        case UInt8(ascii: "f"): index += 5; return .bool(false)
        case UInt8(ascii: "n"): index += 4; return .null
        default:
            guard let number = try? scanner.skipNumber(from: index) else { return .null }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[index..<number.end]), as: UTF8.self)
            index = number.end
            if number.isInteger, let integer = Int64(text) { return .integer(integer) }
            return .double(Double(text) ?? .nan)
        }
    }
}

extension RawJSON {
    /// The members of this object, in order, each value a slice of this value's bytes.
    public func members() -> [(name: String, value: RawJSON)] {
        let ranges: [(String, Range<Int>)] = buffer.withUnsafeReadableBytes { bytes in
            let scanner = JSONScanner(bytes: bytes, maximumDepth: .max)
            let start = scanner.skipWhitespace(from: 0)
            guard start < bytes.count, bytes[start] == UInt8(ascii: "{") else { return [] }
            var found: [(String, Range<Int>)] = []
            _ = try? scanner.forEachMember(ofObjectAt: start) { name, value in
                found.append((scanner.decodeString(name), value))
            }
            return found
        }
        return ranges.map { name, range in
            (name, RawJSON(unchecked: buffer.getSlice(at: buffer.readerIndex + range.lowerBound, length: range.count)!))
        }
    }

    /// This object with some members replaced, added (`value` non-nil) or removed (nil). The
    /// other members are copied as bytes, not re-encoded.
    public func replacingMembers(_ replacements: [String: JSONValue?]) -> RawJSON {
        var output = ByteBuffer()
        output.reserveCapacity(buffer.readableBytes + 64)
        output.writeInteger(UInt8(ascii: "{"))
        var first = true
        func separator() {
            if !first { output.writeInteger(UInt8(ascii: ",")) }
            first = false
        }
        var pending = replacements
        for (name, value) in members() {
            if let replacement = pending.removeValue(forKey: name) {
                guard let replacement else { continue }
                separator()
                output.writeJSONString(name)
                output.writeInteger(UInt8(ascii: ":"))
                replacement.write(to: &output)
            } else {
                separator()
                output.writeJSONString(name)
                output.writeInteger(UInt8(ascii: ":"))
                var bytes = value.buffer
                output.writeBuffer(&bytes)
            }
        }
        for name in pending.keys.sorted() {
            guard let value = pending[name], let value else { continue }
            separator()
            output.writeJSONString(name)
            output.writeInteger(UInt8(ascii: ":"))
            value.write(to: &output)
        }
        output.writeInteger(UInt8(ascii: "}"))
        return RawJSON(unchecked: output)
    }
}

extension RawJSON {
    /// The elements of this array, each a slice of this value's bytes.
    public func elements() -> [RawJSON] {
        let ranges: [Range<Int>] = buffer.withUnsafeReadableBytes { bytes in
            let scanner = JSONScanner(bytes: bytes, maximumDepth: .max)
            let start = scanner.skipWhitespace(from: 0)
            guard start < bytes.count, bytes[start] == UInt8(ascii: "[") else { return [] }
            var found: [Range<Int>] = []
            _ = try? scanner.forEachElement(ofArrayAt: start) { found.append($0) }
            return found
        }
        return ranges.map { RawJSON(unchecked: buffer.getSlice(at: buffer.readerIndex + $0.lowerBound, length: $0.count)!) }
    }
}
