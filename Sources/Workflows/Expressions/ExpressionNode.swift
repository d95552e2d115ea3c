import JSONRPC

/// The syntax tree of an expression. Every node keeps the column it starts at, so that
/// evaluation errors point into the text.
struct ExpressionNode: Sendable {
    indirect enum Kind: Sendable {
        case literal(JSONValue)
        case variable(String)
        case member(ExpressionNode, String)
        case index(ExpressionNode, ExpressionNode)
        case unary(UnaryOperator, ExpressionNode)
        case binary(BinaryOperator, ExpressionNode, ExpressionNode)
        case call(ExpressionFunction, [ExpressionNode])
    }

    var kind: Kind
    var column: Int
}

enum UnaryOperator: Sendable {
    case not, negate
}

enum BinaryOperator: String, Sendable {
    case or = "||", and = "&&"
    case equal = "==", notEqual = "!="
    case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case add = "+", subtract = "-"
    case multiply = "*", divide = "/", remainder = "%"

    var precedence: Int {
        switch self {
        case .or: 1
        case .and: 2
        case .equal, .notEqual: 3
        case .less, .lessOrEqual, .greater, .greaterOrEqual: 4
        case .add, .subtract: 5
        case .multiply, .divide, .remainder: 6
        }
    }

    /// Comparisons do not chain: `a < b < c` is almost always a mistake.
    var isComparison: Bool { precedence == 3 || precedence == 4 }

    init?(token: ExpressionToken.Kind) {
        switch token {
        case .symbol(let symbol): self.init(rawValue: symbol)
        case .keyword("and"): self = .and
        case .keyword("or"): self = .or
        default: return nil
        }
    }
}

/// The functions an expression may call. All are pure.
enum ExpressionFunction: String, Sendable, CaseIterable {
    case len, min, max, abs, round, contains, startsWith, lower, upper, exists

    var arity: ClosedRange<Int> {
        switch self {
        case .len, .abs, .lower, .upper, .exists: 1...1
        case .round: 1...2
        case .contains, .startsWith: 2...2
        case .min, .max: 1...32
        }
    }
}
