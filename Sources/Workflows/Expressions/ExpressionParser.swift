import JSONRPC

/// A Pratt parser over the tokens of `ExpressionLexer`.
struct ExpressionParser {
    private let tokens: [ExpressionToken]
    private var position = 0
    private var depth = 0

    static func parse(_ text: String) throws(ExpressionError) -> ExpressionNode {
        var parser = ExpressionParser(tokens: try ExpressionLexer.tokens(of: text))
        if parser.current.kind == .end { throw ExpressionError("the expression is empty", column: 1) }
        let node = try parser.expression(minimumPrecedence: 1)
        guard parser.current.kind == .end else { throw parser.unexpected("an operator or the end") }
        return node
    }

    private init(tokens: [ExpressionToken]) {
        self.tokens = tokens
    }

    private var current: ExpressionToken { tokens[position] }

    private mutating func advance() -> ExpressionToken {
        let token = tokens[position]
        if position < tokens.count - 1 { position += 1 }
        return token
    }

    private mutating func enter(_ column: Int) throws(ExpressionError) {
        depth += 1
        if depth > ExpressionLimits.maximumDepth {
            throw ExpressionError("the expression nests deeper than \(ExpressionLimits.maximumDepth)", column: column)
        }
    }

    private mutating func expression(minimumPrecedence: Int) throws(ExpressionError) -> ExpressionNode {
        try enter(current.column)
        defer { depth -= 1 }
        var left = try prefix()
        while let op = BinaryOperator(token: current.kind), op.precedence >= minimumPrecedence {
            let token = advance()
            let right = try expression(minimumPrecedence: op.precedence + 1)
            if op.isComparison, case .binary(let inner, _, _) = right.kind, inner.precedence == op.precedence {
                throw ExpressionError("comparisons do not chain: join them with && (a < b && b < c)", column: right.column)
            }
            if op.isComparison, case .binary(let inner, _, _) = left.kind, inner.precedence == op.precedence {
                throw ExpressionError("comparisons do not chain: join them with && (a < b && b < c)", column: token.column)
            }
            left = ExpressionNode(kind: .binary(op, left, right), column: token.column)
        }
        return left
    }

    private mutating func prefix() throws(ExpressionError) -> ExpressionNode {
        let token = current
        switch token.kind {
        case .symbol("!"), .keyword("not"):
            _ = advance()
            try enter(token.column)
            defer { depth -= 1 }
            return ExpressionNode(kind: .unary(.not, try expression(minimumPrecedence: 7)), column: token.column)
        case .symbol("-"):
            _ = advance()
            try enter(token.column)
            defer { depth -= 1 }
            return ExpressionNode(kind: .unary(.negate, try expression(minimumPrecedence: 7)), column: token.column)
        default:
            return try postfix(try primary())
        }
    }

    private mutating func primary() throws(ExpressionError) -> ExpressionNode {
        let token = current
        let literal: JSONValue?
        switch token.kind {
        case .number(let value): literal = value
        case .string(let value): literal = .string(value)
        case .keyword("true"): literal = .bool(true)
        case .keyword("false"): literal = .bool(false)
        case .keyword("null"): literal = .null
        case .identifier(let name):
            _ = advance()
            if current.kind == .symbol("(") { return try call(name, at: token.column) }
            return ExpressionNode(kind: .variable(name), column: token.column)
        case .symbol("("):
            _ = advance()
            let inner = try expression(minimumPrecedence: 1)
            guard current.kind == .symbol(")") else { throw unexpected("')' to close the '(' at column \(token.column)") }
            _ = advance()
            return inner
        default:
            throw unexpected("a value, a name or '('")
        }
        _ = advance()
        return ExpressionNode(kind: .literal(literal ?? .null), column: token.column)
    }

    private mutating func call(_ name: String, at column: Int) throws(ExpressionError) -> ExpressionNode {
        guard let function = ExpressionFunction(rawValue: name) else {
            let known = ExpressionFunction.allCases.map(\.rawValue)
            var message = "unknown function \(name)()"
            if let close = Suggestion.closest(to: name, among: known) { message += " (did you mean \(close)()?)" }
            throw ExpressionError(message + "; known: " + known.joined(separator: ", "), column: column)
        }
        try enter(column)
        defer { depth -= 1 }
        _ = advance()  // (
        var arguments: [ExpressionNode] = []
        if current.kind != .symbol(")") {
            while true {
                arguments.append(try expression(minimumPrecedence: 1))
                if current.kind == .symbol(",") {
                    _ = advance()
                    continue
                }
                break
            }
        }
        guard current.kind == .symbol(")") else { throw unexpected("',' or ')' in the call of \(name)()") }
        _ = advance()
        guard function.arity.contains(arguments.count) else {
            let wanted = function.arity.count == 1 ? "\(function.arity.lowerBound)" : "\(function.arity.lowerBound) to \(function.arity.upperBound)"
            throw ExpressionError("\(name)() takes \(wanted) argument\(function.arity.upperBound == 1 ? "" : "s"), not \(arguments.count)", column: column)
        }
        return ExpressionNode(kind: .call(function, arguments), column: column)
    }

    private mutating func postfix(_ base: ExpressionNode) throws(ExpressionError) -> ExpressionNode {
        var node = base
        var levels = 0
        while true {
            switch current.kind {
            case .symbol("."):
                _ = advance()
                let nameToken = current
                switch nameToken.kind {
                case .identifier(let name), .keyword(let name):
                    _ = advance()
                    node = ExpressionNode(kind: .member(node, name), column: nameToken.column)
                default:
                    throw unexpected("a name after '.'")
                }
            case .symbol("["):
                let open = advance()
                try enter(open.column)
                levels += 1
                let index = try expression(minimumPrecedence: 1)
                guard current.kind == .symbol("]") else { throw unexpected("']' to close the '[' at column \(open.column)") }
                _ = advance()
                node = ExpressionNode(kind: .index(node, index), column: open.column)
            default:
                depth -= levels
                return node
            }
        }
    }

    private func unexpected(_ wanted: String) -> ExpressionError {
        let token = current
        let found: String
        switch token.kind {
        case .end: found = "the end of the expression"
        case .number(let value): found = "the number \(value.encoded)"
        case .string(let value): found = "the string \(JSONValue.string(value).encoded)"
        case .identifier(let name): found = "the name \(name)"
        case .keyword(let word): found = "'\(word)'"
        case .symbol(let symbol): found = "'\(symbol)'"
        }
        return ExpressionError("expected \(wanted), found \(found)", column: token.column)
    }
}
