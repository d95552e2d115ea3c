import NIOCore

/// What can still be read of a message too large to keep, from its first and last bytes: its
/// id, and whether it was a response. Enough to answer a request that was too large with an
/// error that carries its id (an SDK waits on that id), and to fail the call whose reply was
/// too large at once rather than at its timeout.
public struct OversizeMessage: Sendable, Equatable {
    public var id: JSONRPCID?
    /// It carried a `result` or an `error` (seen in its first bytes).
    public var isResponse: Bool

    /// `head`: the message's first bytes; `tail`: its last ones.
    public init(head: ByteBuffer, tail: ByteBuffer) {
        var found = Self.readHead(head)
        if found.id == nil { found.id = Self.idAtEnd(of: tail) }
        self.id = found.id
        self.isResponse = found.isResponse
    }

    /// Walks the top-level members within `head` (where SDKs put the id): an id whose value is
    /// whole, and the name of a `result` or `error` member even when its value is cut.
    private static func readHead(_ head: ByteBuffer) -> (id: JSONRPCID?, isResponse: Bool) {
        head.withUnsafeReadableBytes { bytes in
            let scanner = JSONScanner(bytes: bytes)
            var index = scanner.skipWhitespace(from: 0)
            guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return (nil, false) }
            var id: JSONRPCID?
            var isResponse = false
            index = scanner.skipWhitespace(from: index + 1)
            while index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
                guard let name = try? scanner.skipString(from: index) else { break }
                let slice = JSONStringSlice(range: (index + 1)..<(name.end - 1), hasEscapes: name.hasEscapes)
                if scanner.slice(slice, equals: "result") || scanner.slice(slice, equals: "error") { isResponse = true }
                index = scanner.skipWhitespace(from: name.end)
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { break }
                let valueStart = scanner.skipWhitespace(from: index + 1)
                // The value may be cut where the head ends: the walk ends there, with what it saw.
                guard let valueEnd = try? scanner.skipValue(from: valueStart) else { break }
                if scanner.slice(slice, equals: "id") {
                    id = Self.id(in: UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd]))
                }
                index = scanner.skipWhitespace(from: valueEnd)
                guard index < bytes.count, bytes[index] == UInt8(ascii: ",") else { break }
                index = scanner.skipWhitespace(from: index + 1)
            }
            return (id, isResponse)
        }
    }

    /// The id when the message ends with it: `"id": VALUE }` and nothing after. A nested `"id"`
    /// is followed by more than one closing brace, and is not taken.
    private static func idAtEnd(of tail: ByteBuffer) -> JSONRPCID? {
        tail.withUnsafeReadableBytes { bytes -> JSONRPCID? in
            var end = bytes.count
            func skipSpaceBackwards() {
                while end > 0, [0x20, 0x09, 0x0D, 0x0A].contains(bytes[end - 1]) { end -= 1 }
            }
            skipSpaceBackwards()
            guard end > 0, bytes[end - 1] == UInt8(ascii: "}") else { return nil }
            end -= 1
            skipSpaceBackwards()
            let valueEnd = end
            guard valueEnd > 0 else { return nil }
            if bytes[valueEnd - 1] == UInt8(ascii: "\"") {
                // Back to the opening quote: one not escaped by an odd run of backslashes.
                var index = valueEnd - 2
                while index >= 0 {
                    if bytes[index] == UInt8(ascii: "\"") {
                        var backslashes = 0
                        while index - 1 - backslashes >= 0, bytes[index - 1 - backslashes] == UInt8(ascii: "\\") { backslashes += 1 }
                        if backslashes % 2 == 0 { break }
                    }
                    index -= 1
                }
                guard index >= 0 else { return nil }
                end = index
            } else {
                while end > 0, bytes[end - 1] == UInt8(ascii: "-") || (bytes[end - 1] >= UInt8(ascii: "0") && bytes[end - 1] <= UInt8(ascii: "9")) {
                    end -= 1
                }
            }
            let valueStart = end
            guard valueStart < valueEnd else { return nil }
            skipSpaceBackwards()
            guard end > 0, bytes[end - 1] == UInt8(ascii: ":") else { return nil }
            end -= 1
            skipSpaceBackwards()
            let name = Array(#""id""#.utf8)
            guard end >= name.count, Array(bytes[(end - name.count)..<end]) == name else { return nil }
            end -= name.count
            skipSpaceBackwards()
            guard end > 0, bytes[end - 1] == UInt8(ascii: ",") || bytes[end - 1] == UInt8(ascii: "{") else { return nil }
            return id(in: UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd]))
        }
    }

    /// A string or integer id, as the decoder would read it.
    private static func id(in value: UnsafeRawBufferPointer) -> JSONRPCID? {
        guard let first = value.first else { return nil }
        let scanner = JSONScanner(bytes: value)
        // Only a whole, valid token is an id (the bytes were cut out of an oversize line).
        if first == UInt8(ascii: "\"") {
            guard let string = try? scanner.skipString(from: 0), string.end == value.count else { return nil }
        } else {
            guard let number = try? scanner.skipNumber(from: 0), number.end == value.count, number.isInteger else { return nil }
        }
        return JSONRPCID(token: value)
    }
}
