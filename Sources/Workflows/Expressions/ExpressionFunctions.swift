#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import JSONRPC

/// The built-in functions: `len`, `min`, `max`, `abs`, `round`, `contains`, `startsWith`,
/// `lower`, `upper`, `exists`.
enum ExpressionFunctions {
    static func call(_ function: ExpressionFunction, _ arguments: [JSONValue], column: Int) throws(ExpressionError) -> JSONValue {
        let name = function.rawValue
        func wrong(_ value: JSONValue, _ wanted: String) -> ExpressionError {
            ExpressionError("\(name)() takes \(wanted), not \(ExpressionEvaluator.kindName(value))", column: column)
        }
        switch function {
        case .exists:
            return .bool(arguments[0] != .null)
        case .len:
            switch arguments[0] {
            case .string(let text): return .integer(Int64(text.count))
            case .array(let elements): return .integer(Int64(elements.count))
            case .object(let members): return .integer(Int64(members.count))
            case let other: throw wrong(other, "a string, an array or an object")
            }
        case .abs:
            switch arguments[0] {
            case .integer(let value) where value != .min: return .integer(Swift.abs(value))
            case .integer(let value): return .double(Swift.abs(Double(value)))
            case .double(let value): return .double(Swift.abs(value))
            case let other: throw wrong(other, "a number")
            }
        case .round:
            guard let value = ExpressionEvaluator.number(arguments[0]) else { throw wrong(arguments[0], "a number") }
            var digits: Int64 = 0
            if arguments.count == 2 {
                guard case .integer(let given) = arguments[1], (0...15).contains(given) else {
                    throw ExpressionError("round()'s second argument is a number of digits from 0 to 15", column: column)
                }
                digits = given
            }
            if digits == 0 {
                let rounded = value.rounded(.toNearestOrAwayFromZero)
                if Swift.abs(rounded) < 9.0e18 { return .integer(Int64(rounded)) }
                return .double(rounded)
            }
            let scale = pow(10.0, Double(digits))
            return .double((value * scale).rounded(.toNearestOrAwayFromZero) / scale)
        case .min, .max:
            let values: [JSONValue]
            if arguments.count == 1 {
                guard case .array(let elements) = arguments[0] else { throw wrong(arguments[0], "an array or several values") }
                values = elements.map(ExpressionEvaluator.plain)
            } else {
                values = arguments
            }
            guard var best = values.first else { throw ExpressionError("\(name)() of an empty array", column: column) }
            for value in values.dropFirst() {
                let order = try ExpressionEvaluator.compare(value, best, column: column, symbol: function == .min ? "<" : ">")
                if function == .min ? order < 0 : order > 0 { best = value }
            }
            return best
        case .contains:
            switch arguments[0] {
            case .string(let text):
                guard case .string(let part) = arguments[1] else { throw wrong(arguments[1], "a string to look for in a string") }
                return .bool(part.isEmpty || text.contains(part))
            case .array(let elements):
                return .bool(elements.contains { ExpressionEvaluator.equal($0, arguments[1]) })
            case .object(let members):
                guard case .string(let key) = arguments[1] else { throw wrong(arguments[1], "a key (a string) to look for in an object") }
                return .bool(members[key] != nil)
            case .null:
                return .bool(false)
            case let other: throw wrong(other, "a string, an array or an object")
            }
        case .startsWith:
            guard case .string(let text) = arguments[0] else { throw wrong(arguments[0], "a string") }
            guard case .string(let prefix) = arguments[1] else { throw wrong(arguments[1], "a string prefix") }
            return .bool(text.hasPrefix(prefix))
        case .lower, .upper:
            guard case .string(let text) = arguments[0] else { throw wrong(arguments[0], "a string") }
            return .string(function == .lower ? text.lowercased() : text.uppercased())
        }
    }
}
