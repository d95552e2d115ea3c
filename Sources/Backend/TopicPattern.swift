/// A glob over topic names, with Redis `PSUBSCRIBE` semantics so that both backends match the
/// same topics: `*` matches any run of bytes (dots included: `market.*` matches `market.btc`
/// and `market.btc.usd`), `?` exactly one byte, `[abc]`, `[a-z]` and `[^abc]` one byte of (or
/// not of) a set, and `\` makes the next byte literal.
public struct TopicPattern: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    private let tokens: [Token]

    private enum Token: Hashable, Sendable {
        case byte(UInt8)
        case anyByte
        case anyRun
        case set(negated: Bool, members: [ClosedRange<UInt8>])

        func matches(_ byte: UInt8) -> Bool {
            switch self {
            case .byte(let wanted): return byte == wanted
            case .anyByte: return true
            case .anyRun: return true
            case .set(let negated, let members): return members.contains { $0.contains(byte) } != negated
            }
        }
    }

    public struct SyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
        public var pattern: String
        public var reason: String
        public var description: String { "pattern \"\(pattern)\": \(reason)" }
    }

    public init(_ text: String) throws(SyntaxError) {
        self.text = text
        var tokens: [Token] = []
        let bytes = Array(text.utf8)
        var index = 0
        func fail(_ reason: String) -> SyntaxError { SyntaxError(pattern: text, reason: reason) }
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "*"):
                if tokens.last != .anyRun { tokens.append(.anyRun) }
            case UInt8(ascii: "?"):
                tokens.append(.anyByte)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw fail("a \\ at the end escapes nothing") }
                tokens.append(.byte(bytes[index]))
                index += 1
            case UInt8(ascii: "["):
                var negated = false
                if index < bytes.count && bytes[index] == UInt8(ascii: "^") {
                    negated = true
                    index += 1
                }
                var members: [ClosedRange<UInt8>] = []
                var closed = false
                while index < bytes.count {
                    var low = bytes[index]
                    index += 1
                    if low == UInt8(ascii: "]") && !members.isEmpty {
                        closed = true
                        break
                    }
                    if low == UInt8(ascii: "]") {
                        // `[]` and `[^]` match nothing in Redis either; an empty set is a mistake.
                        throw fail("an empty [] set")
                    }
                    if low == UInt8(ascii: "\\") {
                        guard index < bytes.count else { break }
                        low = bytes[index]
                        index += 1
                    }
                    var high = low
                    if index + 1 < bytes.count && bytes[index] == UInt8(ascii: "-") && bytes[index + 1] != UInt8(ascii: "]") {
                        high = bytes[index + 1]
                        index += 2
                        if high == UInt8(ascii: "\\") {
                            guard index < bytes.count else { break }
                            high = bytes[index]
                            index += 1
                        }
                    }
                    members.append(min(low, high)...max(low, high))
                }
                guard closed else { throw fail("a [ set is not closed with ]") }
                tokens.append(.set(negated: negated, members: members))
            default:
                tokens.append(.byte(byte))
            }
        }
        self.tokens = tokens
    }

    /// True when the pattern has no wildcard, sets or escapes: it matches only itself.
    public var isLiteral: Bool {
        !text.utf8.contains { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "\\") }
    }

    public func matches(_ topic: String) -> Bool {
        var topic = topic
        return topic.withUTF8 { matches(bytes: $0) }
    }

    /// Greedy matching that backtracks only to the last `*`: linear for patterns with one
    /// `*`, O(pattern × topic) at worst, never exponential.
    private func matches(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var token = 0
        var position = 0
        var lastStar: (token: Int, position: Int)?
        while position < bytes.count {
            if token < tokens.count {
                switch tokens[token] {
                case .anyRun:
                    lastStar = (token, position)
                    token += 1
                    continue
                case let single where single.matches(bytes[position]):
                    token += 1
                    position += 1
                    continue
                default:
                    break
                }
            }
            guard let star = lastStar else { return false }
            // Let the last `*` swallow one more byte and try again from there.
            lastStar = (star.token, star.position + 1)
            token = star.token + 1
            position = star.position + 1
        }
        while token < tokens.count, tokens[token] == .anyRun { token += 1 }
        return token == tokens.count
    }

    public var description: String { text }
}

/// What a subscription listens to: one topic exactly, or every topic a pattern matches.
public enum TopicFilter: Sendable, Hashable, CustomStringConvertible {
    case topic(String)
    case pattern(TopicPattern)

    public func matches(_ topic: String) -> Bool {
        switch self {
        case .topic(let wanted): return ByteString(wanted) == ByteString(topic)
        case .pattern(let pattern): return pattern.matches(topic)
        }
    }

    public var description: String {
        switch self {
        case .topic(let topic): "topic \(topic)"
        case .pattern(let pattern): "pattern \(pattern.text)"
        }
    }
}
