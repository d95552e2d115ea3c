import JSONRPC

/// A value with `${expression}` holes, such as an agent task's `input`.
///
/// - A string that is exactly one `${expr}` takes the expression's value, of any type
///   (`"${inputs.order}"` passes an object through).
/// - A string with text around holes is text: each hole is replaced by its value (strings as
///   they are, other values as JSON).
/// - `$${` writes a literal `${`.
/// - Mappings and lists are templates member by member.
public indirect enum ValueTemplate: Sendable {
    case literal(JSONValue)
    case expression(WorkflowExpression)
    case text([TextPart])
    case object([Member])
    case array([ValueTemplate])

    /// A piece of a string with holes: literal text or a hole's expression.
    public enum TextPart: Sendable {
        case text(String)
        case expression(WorkflowExpression)
    }

    /// One member of a mapping template, in the order written.
    public struct Member: Sendable {
        public var name: String
        public var value: ValueTemplate
    }

    /// The value with every hole filled in.
    public func render(in scope: ExpressionScope) throws(ExpressionError) -> JSONValue {
        switch self {
        case .literal(let value): return value
        case .expression(let expression): return try expression.evaluate(in: scope)
        case .text(let parts):
            var text = ""
            for part in parts {
                switch part {
                case .text(let literal): text += literal
                case .expression(let expression): text += ExpressionEvaluator.text(try expression.evaluate(in: scope))
                }
            }
            return .string(text)
        case .object(let members):
            var object: [String: JSONValue] = [:]
            for member in members { object[member.name] = try member.value.render(in: scope) }
            return .object(object)
        case .array(let items):
            var values: [JSONValue] = []
            for item in items { values.append(try item.render(in: scope)) }
            return .array(values)
        }
    }

    /// Every expression in the template.
    public var expressions: [WorkflowExpression] {
        switch self {
        case .literal: return []
        case .expression(let expression): return [expression]
        case .text(let parts):
            return parts.compactMap { if case .expression(let expression) = $0 { return expression } else { return nil } }
        case .object(let members): return members.flatMap(\.value.expressions)
        case .array(let items): return items.flatMap(\.expressions)
        }
    }
}

/// Splits strings into text and `${…}` holes.
enum TemplateScanner {
    struct Hole {
        var expression: String
        /// Offset (in Unicode scalars) of the expression's first character in the string.
        var offset: Int
    }

    enum Piece {
        case text(String)
        case hole(Hole)
    }

    struct Unterminated: Error {
        var offset: Int
    }

    /// The pieces of `string`; `Unterminated` when a `${` has no `}`.
    static func pieces(of string: String) throws(Unterminated) -> [Piece] {
        let scalars = Array(string.unicodeScalars)
        var pieces: [Piece] = []
        var text = String.UnicodeScalarView()
        var index = 0
        while index < scalars.count {
            if scalars[index] == "$", index + 2 < scalars.count, scalars[index + 1] == "$", scalars[index + 2] == "{" {
                text.append(contentsOf: ["$", "{"])
                index += 3
                continue
            }
            guard scalars[index] == "$", index + 1 < scalars.count, scalars[index + 1] == "{" else {
                text.append(scalars[index])
                index += 1
                continue
            }
            let start = index + 2
            var end = start
            var quote: Unicode.Scalar?
            while end < scalars.count {
                let scalar = scalars[end]
                if let open = quote {
                    if scalar == "\\" { end += 1 } else if scalar == open { quote = nil }
                } else if scalar == "\"" || scalar == "'" {
                    quote = scalar
                } else if scalar == "}" {
                    break
                }
                end += 1
            }
            guard end < scalars.count else { throw Unterminated(offset: index) }
            if !text.isEmpty {
                pieces.append(.text(String(text)))
                text = String.UnicodeScalarView()
            }
            pieces.append(.hole(Hole(expression: String(String.UnicodeScalarView(scalars[start..<end])), offset: start)))
            index = end + 1
        }
        if !text.isEmpty { pieces.append(.text(String(text))) }
        return pieces
    }

    /// True when the string has a `${` hole (ignoring `$${`).
    static func hasHole(_ string: String) -> Bool {
        guard string.contains("${") else { return false }
        if let pieces = try? pieces(of: string) {
            return pieces.contains { if case .hole = $0 { true } else { false } }
        }
        return true
    }
}
