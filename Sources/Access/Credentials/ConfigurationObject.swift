import JSONRPC

/// One object of the `auth` configuration, read member by member so that every error names the
/// path of the member at fault and a misspelt key is reported instead of silently ignored.
struct ConfigurationObject {
    let path: String
    private let members: [String: JSONValue]

    init(_ value: JSONValue, path: String, allowedKeys: Set<String>) throws(AccessConfigurationError) {
        guard let members = value.resolved.objectValue else {
            throw AccessConfigurationError(path: path, message: "must be a mapping, not \(value.resolved.kindName)")
        }
        if let unknown = members.keys.filter({ !allowedKeys.contains($0) }).sorted().first {
            throw AccessConfigurationError(
                path: "\(path).\(unknown)",
                message: "unknown key \"\(unknown)\"; expected one of: \(allowedKeys.sorted().joined(separator: ", "))"
            )
        }
        self.path = path
        self.members = members
    }

    func path(_ key: String) -> String { "\(path).\(key)" }

    /// The member, with `null` read as absent (YAML writes an empty value as null).
    func value(_ key: String) -> JSONValue? {
        guard let value = members[key]?.resolved else { return nil }
        if case .null = value { return nil }
        return value
    }

    func string(_ key: String) throws(AccessConfigurationError) -> String? {
        guard let value = value(key) else { return nil }
        guard case .string(let string) = value else {
            throw AccessConfigurationError(path: path(key), message: "must be a string, not \(value.kindName)")
        }
        guard !string.isEmpty else { throw AccessConfigurationError(path: path(key), message: "must not be empty") }
        return string
    }

    func requiredString(_ key: String) throws(AccessConfigurationError) -> String {
        guard let string = try string(key) else { throw AccessConfigurationError(path: path(key), message: "is required") }
        return string
    }

    /// A list of non-empty strings; a single string stands for a list of one.
    func strings(_ key: String) throws(AccessConfigurationError) -> [String]? {
        guard let value = value(key) else { return nil }
        let elements: [JSONValue]
        switch value {
        case .string: elements = [value]
        case .array(let array): elements = array.map(\.resolved)
        default: throw AccessConfigurationError(path: path(key), message: "must be a list of strings, not \(value.kindName)")
        }
        var strings: [String] = []
        for (index, element) in elements.enumerated() {
            guard case .string(let string) = element, !string.isEmpty else {
                throw AccessConfigurationError(path: "\(path(key))[\(index)]", message: "must be a non-empty string")
            }
            strings.append(string)
        }
        return strings
    }

    func number(_ key: String) throws(AccessConfigurationError) -> Double? {
        guard let value = value(key) else { return nil }
        switch value {
        case .integer(let integer): return Double(integer)
        case .double(let double) where double.isFinite: return double
        default: throw AccessConfigurationError(path: path(key), message: "must be a number, not \(value.kindName)")
        }
    }

    func integer(_ key: String) throws(AccessConfigurationError) -> Int? {
        guard let value = value(key) else { return nil }
        guard let integer = value.integerValue, let result = Int(exactly: integer) else {
            throw AccessConfigurationError(path: path(key), message: "must be a whole number, not \(value.kindName)")
        }
        return result
    }
}

extension JSONValue {
    /// Raw JSON decoded to a tree, so readers need only look at the tree cases.
    var resolved: JSONValue {
        if case .raw(let raw) = self { return raw.decoded() }
        return self
    }

    /// The kind of value, for messages: "a string", "a list"…
    var kindName: String {
        switch resolved {
        case .null: "null"
        case .bool: "a boolean"
        case .integer, .double: "a number"
        case .string: "a string"
        case .array: "a list"
        case .object: "a mapping"
        case .raw: "a value"
        }
    }
}
