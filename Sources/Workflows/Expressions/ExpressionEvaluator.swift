import JSONRPC

/// Evaluates a syntax tree over JSON values. Reading a member that is not there gives null
/// (so `exists(...)` and `x == null` work); using a value of the wrong kind is an error.
struct ExpressionEvaluator {
    let scope: ExpressionScope

    func evaluate(_ node: ExpressionNode) throws(ExpressionError) -> JSONValue {
        switch node.kind {
        case .literal(let value):
            return value
        case .variable(let name):
            if let value = scope.variables[name] { return Self.plain(value) }
            throw ExpressionError("unknown name \(name)", column: node.column)
        case .member(let base, let name):
            if case .variable("steps") = base.kind, scope.variables["steps"] == nil {
                return scope.stepValue(name).map(Self.plain) ?? .null
            }
            return try member(name, of: evaluate(base), column: node.column)
        case .index(let base, let indexNode):
            let index = try evaluate(indexNode)
            if case .variable("steps") = base.kind, scope.variables["steps"] == nil, case .string(let name) = index {
                return scope.stepValue(name).map(Self.plain) ?? .null
            }
            return try element(index, of: evaluate(base), column: node.column)
        case .unary(.not, let operand):
            return .bool(!Self.truth(try evaluate(operand)))
        case .unary(.negate, let operand):
            switch try evaluate(operand) {
            case .integer(let value) where value != .min: return .integer(-value)
            case .integer(let value): return .double(-Double(value))
            case .double(let value): return .double(-value)
            case let other: throw ExpressionError("cannot negate \(Self.kindName(other))", column: node.column)
            }
        case .binary(.and, let left, let right):
            guard Self.truth(try evaluate(left)) else { return .bool(false) }
            return .bool(Self.truth(try evaluate(right)))
        case .binary(.or, let left, let right):
            if Self.truth(try evaluate(left)) { return .bool(true) }
            return .bool(Self.truth(try evaluate(right)))
        case .binary(let op, let left, let right):
            return try binary(op, try evaluate(left), try evaluate(right), column: node.column)
        case .call(let function, let arguments):
            var values: [JSONValue] = []
            values.reserveCapacity(arguments.count)
            for argument in arguments { values.append(try evaluate(argument)) }
            return try ExpressionFunctions.call(function, values, column: node.column)
        }
    }

    private func member(_ name: String, of value: JSONValue, column: Int) throws(ExpressionError) -> JSONValue {
        switch value {
        case .object(let members): return members[name].map(Self.plain) ?? .null
        case .null: return .null
        default: throw ExpressionError("cannot read .\(name) of \(Self.kindName(value))", column: column)
        }
    }

    private func element(_ index: JSONValue, of value: JSONValue, column: Int) throws(ExpressionError) -> JSONValue {
        switch (value, index) {
        case (.null, _): return .null
        case (.object(let members), .string(let key)): return members[key].map(Self.plain) ?? .null
        case (.array(let elements), .integer(let position)):
            guard position >= 0 else { throw ExpressionError("an index must not be negative, it is \(position)", column: column) }
            return position < elements.count ? Self.plain(elements[Int(position)]) : .null
        case (.array(let elements), .double(let position)) where position.rounded() == position:
            guard position >= 0 else { throw ExpressionError("an index must not be negative, it is \(position)", column: column) }
            return position < Double(elements.count) ? Self.plain(elements[Int(position)]) : .null
        case (.array, _): throw ExpressionError("an array is indexed by a whole number, not \(Self.kindName(index))", column: column)
        case (.object, _): throw ExpressionError("an object is indexed by a string, not \(Self.kindName(index))", column: column)
        default: throw ExpressionError("cannot index \(Self.kindName(value))", column: column)
        }
    }

    private func binary(_ op: BinaryOperator, _ left: JSONValue, _ right: JSONValue, column: Int) throws(ExpressionError) -> JSONValue {
        switch op {
        case .equal: return .bool(Self.equal(left, right))
        case .notEqual: return .bool(!Self.equal(left, right))
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            let order = try Self.compare(left, right, column: column, symbol: op.rawValue)
            switch op {
            case .less: return .bool(order < 0)
            case .lessOrEqual: return .bool(order <= 0)
            case .greater: return .bool(order > 0)
            default: return .bool(order >= 0)
            }
        case .add:
            switch (left, right) {
            case (.string(let a), _): return .string(a + Self.text(right))
            case (_, .string(let b)): return .string(Self.text(left) + b)
            case (.array(let a), .array(let b)): return .array(a + b)
            default: return try arithmetic(op, left, right, column: column)
            }
        default:
            return try arithmetic(op, left, right, column: column)
        }
    }

    private func arithmetic(_ op: BinaryOperator, _ left: JSONValue, _ right: JSONValue, column: Int) throws(ExpressionError) -> JSONValue {
        if case .integer(let a) = left, case .integer(let b) = right {
            switch op {
            case .add:
                let (sum, overflow) = a.addingReportingOverflow(b)
                return overflow ? .double(Double(a) + Double(b)) : .integer(sum)
            case .subtract:
                let (difference, overflow) = a.subtractingReportingOverflow(b)
                return overflow ? .double(Double(a) - Double(b)) : .integer(difference)
            case .multiply:
                let (product, overflow) = a.multipliedReportingOverflow(by: b)
                return overflow ? .double(Double(a) * Double(b)) : .integer(product)
            case .divide:
                guard b != 0 else { throw ExpressionError("division by zero", column: column) }
                if a % b == 0, !(a == .min && b == -1) { return .integer(a / b) }
                return .double(Double(a) / Double(b))
            case .remainder:
                guard b != 0 else { throw ExpressionError("remainder of a division by zero", column: column) }
                return .integer(b == -1 ? 0 : a % b)
            default: break
            }
        }
        guard let a = Self.number(left), let b = Self.number(right) else {
            let culprit = Self.number(left) == nil ? left : right
            throw ExpressionError("'\(op.rawValue)' needs numbers, not \(Self.kindName(culprit))", column: column)
        }
        let value: Double
        switch op {
        case .add: value = a + b
        case .subtract: value = a - b
        case .multiply: value = a * b
        case .divide:
            guard b != 0 else { throw ExpressionError("division by zero", column: column) }
            value = a / b
        default:
            guard b != 0 else { throw ExpressionError("remainder of a division by zero", column: column) }
            value = a.truncatingRemainder(dividingBy: b)
        }
        guard value.isFinite else { throw ExpressionError("the result is too large", column: column) }
        return .double(value)
    }

    // MARK: - Value rules shared with the functions

    /// Decodes raw JSON so that every rule below sees trees only.
    static func plain(_ value: JSONValue) -> JSONValue {
        if case .raw(let raw) = value { return raw.decoded() }
        return value
    }

    static func truth(_ value: JSONValue) -> Bool {
        switch plain(value) {
        case .null: false
        case .bool(let flag): flag
        case .integer(let number): number != 0
        case .double(let number): number != 0 && !number.isNaN
        case .string(let text): !text.isEmpty
        case .array(let elements): !elements.isEmpty
        case .object(let members): !members.isEmpty
        case .raw: true
        }
    }

    static func number(_ value: JSONValue) -> Double? {
        switch value {
        case .integer(let number): Double(number)
        case .double(let number): number
        default: nil
        }
    }

    /// Deep equality; 1 and 1.0 are equal.
    static func equal(_ left: JSONValue, _ right: JSONValue) -> Bool {
        switch (plain(left), plain(right)) {
        case (.integer(let a), .integer(let b)): return a == b
        case (.integer, .double), (.double, .integer), (.double, .double): return number(left) == number(right)
        case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy { equal($0, $1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.allSatisfy { key, value in b[key].map { equal(value, $0) } ?? false }
        case (let a, let b): return a == b
        }
    }

    /// Numbers with numbers, strings with strings (by Unicode scalars).
    static func compare(_ left: JSONValue, _ right: JSONValue, column: Int, symbol: String) throws(ExpressionError) -> Int {
        switch (left, right) {
        case (.integer(let a), .integer(let b)): return a < b ? -1 : (a == b ? 0 : 1)
        case (.string(let a), .string(let b)):
            let ordered = a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
            return ordered ? -1 : (a.unicodeScalars.elementsEqual(b.unicodeScalars) ? 0 : 1)
        default:
            if let a = number(left), let b = number(right) { return a < b ? -1 : (a == b ? 0 : 1) }
            throw ExpressionError("cannot compare \(kindName(left)) with \(kindName(right)) using '\(symbol)'", column: column)
        }
    }

    /// A value as text for string concatenation: strings as they are, everything else as JSON.
    static func text(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): text
        default: value.encoded
        }
    }

    static func kindName(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .integer, .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        case .raw(let raw): kindName(raw.decoded())
        }
    }
}
