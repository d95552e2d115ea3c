/// Why a line is not a JSON text, and where.
public struct JSONSyntaxError: Error, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case unexpectedEnd
        case unexpectedCharacter(UInt8)
        case invalidUTF8OrCharacter(UInt8)
        case trailingCharacters
        case expectedMemberName
        case expectedColon
        case invalidEscape
        case controlCharacterInString(UInt8)
        case unterminatedString
        case invalidUTF8
        case invalidLiteral
        case invalidNumber
        case tooDeep(Int)
    }

    public var kind: Kind
    /// Byte offset in the message where the problem was found.
    public var offset: Int

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    /// A sentence a person can act on.
    public var reason: String {
        switch kind {
        case .unexpectedEnd: return "unexpected end of message"
        case .unexpectedCharacter(let byte): return "unexpected character \(Self.describe(byte))"
        case .invalidUTF8OrCharacter(let byte): return "unexpected byte \(Self.describe(byte)) outside a string"
        case .trailingCharacters: return "unexpected characters after the JSON value"
        case .expectedMemberName: return "expected a member name in double quotes"
        case .expectedColon: return "expected ':' after a member name"
        case .invalidEscape: return "invalid escape sequence in a string"
        case .controlCharacterInString(let byte): return "unescaped control character \(Self.describe(byte)) in a string"
        case .unterminatedString: return "unterminated string"
        case .invalidUTF8: return "invalid UTF-8"
        case .invalidLiteral: return "invalid literal (expected true, false or null)"
        case .invalidNumber: return "invalid number"
        case .tooDeep(let limit): return "nesting deeper than \(limit) levels"
        }
    }

    private static func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        let hex = String(byte, radix: 16, uppercase: true)
        return "0x" + (hex.count == 1 ? "0" + hex : hex)
    }
}

public enum JSONLimits {
    /// Deep enough for any real tool schema, shallow enough to bound work per message.
    public static let defaultMaximumDepth = 512
}
