import Access
import JSONRPC
import Yams

extension ConfigurationReader {
    /// `egress: {allow: [HOST | ADDRESS | CIDR, …], denyPublic: BOOL}`: where task callbacks may
    /// go. The policy reads its own section; this hands it the YAML as JSON.
    mutating func readEgress(_ node: Node) {
        do throws(EgressConfigurationError) {
            settings.egress = try EgressPolicy(json: Self.json(node))
        } catch {
            report(Self.node(at: error.path, in: node) ?? node, error.description)
        }
    }

    /// A YAML node as JSON, scalars typed by their YAML tags (`false` a boolean, `"false"` a string).
    static func json(_ node: Node) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case .int: return node.int.map { .integer(Int64($0)) } ?? .string(scalar.string)
            case .float: return node.float.map(JSONValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .mapping(let mapping):
            var members: [String: JSONValue] = [:]
            for (key, value) in mapping { members[key.string ?? ""] = json(value) }
            return .object(members)
        case .sequence(let sequence):
            return .array(sequence.map(json))
        case .alias:
            return .null
        }
    }

    /// The node an error's path (`egress.allow[1]`) points at, to report its line.
    private static func node(at path: String, in root: Node) -> Node? {
        var node = root
        for step in path.split(separator: ".").dropFirst() {
            let name = step.prefix { $0 != "[" }
            guard case .mapping(let mapping) = node, let value = mapping.first(where: { $0.key.string == String(name) })?.value else { return nil }
            node = value
            if let open = step.firstIndex(of: "["), let index = Int(step[step.index(after: open)...].dropLast()) {
                guard case .sequence(let sequence) = node, index < sequence.count else { return nil }
                node = Array(sequence)[index]
            }
        }
        return node
    }
}
