/// A problem with an expression: what is wrong and where, as a 1-based column in the
/// expression's text (counted in Unicode scalars).
public struct ExpressionError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var column: Int

    public init(_ message: String, column: Int) {
        self.message = message
        self.column = column
    }

    public var description: String { "column \(column): \(message)" }
}

/// The bounds that keep an expression cheap to parse and evaluate.
public enum ExpressionLimits {
    /// Longest expression text, in Unicode scalars.
    public static let maximumLength = 4_096
    /// Deepest nesting of parentheses, operators, calls and indexes.
    public static let maximumDepth = 64
}
