import JSONRPC

/// One token of an expression, with the column where it starts.
struct ExpressionToken: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case number(JSONValue)
        case string(String)
        case identifier(String)
        case keyword(String)  // true, false, null, and, or, not
        case symbol(String)
        case end
    }

    var kind: Kind
    var column: Int
}

/// Splits an expression into tokens. Hand-written: the grammar is small and errors must say
/// exactly where they are.
struct ExpressionLexer {
    static let keywords: Set<String> = ["true", "false", "null", "and", "or", "not"]
    private static let twoCharacterSymbols: Set<String> = ["==", "!=", "<=", ">=", "&&", "||"]
    private static let oneCharacterSymbols: Set<Character> = ["<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]", ".", ","]

    private let scalars: [Unicode.Scalar]
    private var index = 0

    init(_ text: String) {
        scalars = Array(text.unicodeScalars)
    }

    static func tokens(of text: String) throws(ExpressionError) -> [ExpressionToken] {
        var lexer = ExpressionLexer(text)
        guard lexer.scalars.count <= ExpressionLimits.maximumLength else {
            throw ExpressionError("the expression is longer than \(ExpressionLimits.maximumLength) characters", column: 1)
        }
        var tokens: [ExpressionToken] = []
        while true {
            let token = try lexer.next()
            tokens.append(token)
            if token.kind == .end { return tokens }
        }
    }

    private var column: Int { index + 1 }

    private mutating func next() throws(ExpressionError) -> ExpressionToken {
        while index < scalars.count, scalars[index].properties.isWhitespace { index += 1 }
        guard index < scalars.count else { return ExpressionToken(kind: .end, column: column) }
        let start = column
        let scalar = scalars[index]
        if scalar.isASCIIDigit { return ExpressionToken(kind: try number(), column: start) }
        if scalar == "\"" || scalar == "'" { return ExpressionToken(kind: .string(try string(quote: scalar)), column: start) }
        if scalar.isIdentifierStart {
            var name = ""
            while index < scalars.count, scalars[index].isIdentifierPart {
                name.unicodeScalars.append(scalars[index])
                index += 1
            }
            return ExpressionToken(kind: Self.keywords.contains(name) ? .keyword(name) : .identifier(name), column: start)
        }
        if index + 1 < scalars.count {
            let pair = String(String.UnicodeScalarView([scalar, scalars[index + 1]]))
            if Self.twoCharacterSymbols.contains(pair) {
                index += 2
                return ExpressionToken(kind: .symbol(pair), column: start)
            }
        }
        let character = Character(scalar)
        if Self.oneCharacterSymbols.contains(character) {
            index += 1
            return ExpressionToken(kind: .symbol(String(character)), column: start)
        }
        switch scalar {
        case "=": throw ExpressionError("'=' is not an operator: compare with '=='", column: start)
        case "&": throw ExpressionError("'&' is not an operator: use '&&' or 'and'", column: start)
        case "|": throw ExpressionError("'|' is not an operator: use '||' or 'or'", column: start)
        case "$", "{", "}":
            throw ExpressionError("unexpected '\(scalar)': write the expression without ${ }, or put the whole value in one ${ }", column: start)
        default: throw ExpressionError("unexpected character '\(scalar)'", column: start)
        }
    }

    private mutating func number() throws(ExpressionError) -> ExpressionToken.Kind {
        let start = index
        while index < scalars.count, scalars[index].isASCIIDigit { index += 1 }
        var isInteger = true
        if index + 1 < scalars.count, scalars[index] == ".", scalars[index + 1].isASCIIDigit {
            isInteger = false
            index += 1
            while index < scalars.count, scalars[index].isASCIIDigit { index += 1 }
        }
        if index < scalars.count, scalars[index] == "e" || scalars[index] == "E" {
            var lookahead = index + 1
            if lookahead < scalars.count, scalars[lookahead] == "+" || scalars[lookahead] == "-" { lookahead += 1 }
            if lookahead < scalars.count, scalars[lookahead].isASCIIDigit {
                isInteger = false
                index = lookahead
                while index < scalars.count, scalars[index].isASCIIDigit { index += 1 }
            }
        }
        if index < scalars.count, scalars[index].isIdentifierStart {
            throw ExpressionError("a number cannot be followed by '\(scalars[index])'", column: index + 1)
        }
        let text = String(String.UnicodeScalarView(scalars[start..<index]))
        if isInteger, let value = Int64(text) { return .number(.integer(value)) }
        guard let value = Double(text), value.isFinite else {
            throw ExpressionError("the number \(text) is too large", column: start + 1)
        }
        return .number(.double(value))
    }

    private mutating func string(quote: Unicode.Scalar) throws(ExpressionError) -> String {
        let start = column
        index += 1
        var value = ""
        while index < scalars.count {
            let scalar = scalars[index]
            if scalar == quote {
                index += 1
                return value
            }
            if scalar == "\\" {
                guard index + 1 < scalars.count else { break }
                let escaped = scalars[index + 1]
                switch escaped {
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                case "\\", "\"", "'": value.unicodeScalars.append(escaped)
                default: throw ExpressionError("unknown escape '\\\(escaped)' (known: \\n \\t \\r \\\\ \\\" \\')", column: index + 1)
                }
                index += 2
                continue
            }
            value.unicodeScalars.append(scalar)
            index += 1
        }
        throw ExpressionError("the string is not closed: add \(quote)", column: start)
    }
}

extension Unicode.Scalar {
    var isASCIIDigit: Bool { value >= 0x30 && value <= 0x39 }
    var isIdentifierStart: Bool { (value >= 0x41 && value <= 0x5A) || (value >= 0x61 && value <= 0x7A) || value == 0x5F }
    var isIdentifierPart: Bool { isIdentifierStart || isASCIIDigit }
}
