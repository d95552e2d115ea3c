import JSONRPC

/// A parsed expression of the workflow language: literals, paths (`inputs.symbol`,
/// `steps.fetch.result.price`, `a[0]`, `a["k"]`), comparisons, `&&` `||` `!` (or `and` `or`
/// `not`), arithmetic, `+` on strings, and a few pure functions. There is no assignment, no
/// loop and no I/O; texts are at most `ExpressionLimits.maximumLength` long and nest at most
/// `ExpressionLimits.maximumDepth` deep.
public struct WorkflowExpression: Sendable, CustomStringConvertible {
    /// The expression as written.
    public let text: String
    /// Where the text starts in its file, when it came from one.
    public var location: SourceLocation?
    /// The path of the node it was read from, for diagnostics.
    var path = ""
    let root: ExpressionNode

    /// Parses `text`; the error's column is within `text`.
    public init(parsing text: String, location: SourceLocation? = nil) throws(ExpressionError) {
        self.text = text
        self.location = location
        root = try ExpressionParser.parse(text)
    }

    public var description: String { text }

    /// The value of the expression over `scope`.
    public func evaluate(in scope: ExpressionScope) throws(ExpressionError) -> JSONValue {
        try ExpressionEvaluator(scope: scope).evaluate(root)
    }

    /// The value as a condition: false, null, 0, "", [] and {} are false; everything else true.
    public func isTrue(in scope: ExpressionScope) throws(ExpressionError) -> Bool {
        ExpressionEvaluator.truth(try evaluate(in: scope))
    }

    /// Every name the expression reads, with the member after it when it is a plain one
    /// (`steps.fetch` gives ("steps", "fetch")).
    public var references: [ExpressionReference] {
        var found: [ExpressionReference] = []
        collect(root, into: &found)
        return found
    }

    private func collect(_ node: ExpressionNode, into found: inout [ExpressionReference]) {
        switch node.kind {
        case .literal: break
        case .variable(let name):
            found.append(ExpressionReference(root: name, member: nil, column: node.column, memberColumn: nil))
        case .member(let base, let name):
            if case .variable(let root) = base.kind {
                found.append(ExpressionReference(root: root, member: name, column: base.column, memberColumn: node.column))
            } else {
                collect(base, into: &found)
            }
        case .index(let base, let index):
            if case .variable(let root) = base.kind, case .literal(.string(let name)) = index.kind {
                found.append(ExpressionReference(root: root, member: name, column: base.column, memberColumn: index.column))
            } else {
                collect(base, into: &found)
                collect(index, into: &found)
            }
        case .unary(_, let operand): collect(operand, into: &found)
        case .binary(_, let left, let right):
            collect(left, into: &found)
            collect(right, into: &found)
        case .call(_, let arguments):
            for argument in arguments { collect(argument, into: &found) }
        }
    }
}

/// A name an expression reads: `root`, and the first member read from it when it is spelt out.
public struct ExpressionReference: Sendable, Hashable {
    public var root: String
    public var member: String?
    /// Columns (1-based, in the expression's text) of the root and of the member.
    public var column: Int
    public var memberColumn: Int?
}

/// The names an expression can read while it is evaluated.
public struct ExpressionScope: Sendable {
    public var variables: [String: JSONValue]
    /// Answers `steps.<id>` one step at a time, so that a workflow of many steps does not build
    /// the whole `steps` object for every expression.
    public var stepValue: @Sendable (String) -> JSONValue?

    public init(variables: [String: JSONValue] = [:], stepValue: @escaping @Sendable (String) -> JSONValue? = { _ in nil }) {
        self.variables = variables
        self.stepValue = stepValue
    }
}
