import JSONRPC
import Yams

/// A YAML (or JSON: JSON is YAML) node with where it came from and the path that leads to it
/// (`steps[2].retryPolicy`), so that every problem can be reported both ways.
struct SourceNode: Sendable {
    enum Value: Sendable {
        case scalar(Scalar)
        case mapping([Entry])
        case sequence([SourceNode])
    }

    struct Scalar: Sendable {
        enum Kind: Sendable, Equatable { case null, bool(Bool), integer(Int64), double(Double), string }
        var text: String
        var kind: Kind
        /// Plain, or quoted on one line: then a character's column can be computed.
        var columnOffset: Int?
    }

    struct Entry: Sendable {
        var key: SourceNode
        var value: SourceNode
        var name: String { key.scalarText ?? "" }
    }

    var value: Value
    var location: SourceLocation
    var path: String

    var scalarText: String? {
        if case .scalar(let scalar) = value { return scalar.text }
        return nil
    }

    /// The location of the character at `offset` (in Unicode scalars) of a scalar's text, when
    /// the scalar is written on one line; else the scalar's own location.
    func location(ofOffset offset: Int) -> SourceLocation {
        guard case .scalar(let scalar) = value, let base = scalar.columnOffset else { return location }
        return SourceLocation(line: location.line, column: location.column + base + offset)
    }

    /// The node as a JSON value (a mapping with non-string keys uses their text).
    var json: JSONValue {
        switch value {
        case .scalar(let scalar):
            switch scalar.kind {
            case .null: return .null
            case .bool(let flag): return .bool(flag)
            case .integer(let number): return .integer(number)
            case .double(let number): return number.isFinite ? .double(number) : .string(scalar.text)
            case .string: return .string(scalar.text)
            }
        case .mapping(let entries):
            var members: [String: JSONValue] = [:]
            for entry in entries { members[entry.name] = entry.value.json }
            return .object(members)
        case .sequence(let items):
            return .array(items.map(\.json))
        }
    }

    var kindName: String {
        switch value {
        case .scalar(let scalar):
            switch scalar.kind {
            case .null: "null"
            case .bool: "a boolean"
            case .integer, .double: "a number"
            case .string: "a string"
            }
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }
}

/// Reads YAML text into `SourceNode`s.
enum SourceDocument {
    /// The document's root, or the syntax error (with its place).
    static func parse(_ text: String, within bounds: DocumentBounds = .workflowDefinition) -> Result<SourceNode?, WorkflowDiagnostic> {
        let root: Node?
        do {
            root = try BoundedDocument.compose(text, within: bounds)
        } catch let error as DocumentBoundExceeded {
            return .failure(WorkflowDiagnostic(bound: error))
        } catch let error as YamlError {
            return .failure(diagnostic(from: error))
        } catch {
            return .failure(WorkflowDiagnostic(location: nil, path: "", message: "the file is not YAML or JSON: \(error)"))
        }
        guard let root else { return .success(nil) }
        var problems: [WorkflowDiagnostic] = []
        let node = convert(root, path: "", problems: &problems)
        if let first = problems.first { return .failure(first) }
        return .success(node)
    }

    private static func diagnostic(from error: YamlError) -> WorkflowDiagnostic {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            var message = "YAML syntax error: \(problem)"
            if let context { message += " (\(context.text) at \(context.mark.line):\(context.mark.column))" }
            return WorkflowDiagnostic(location: SourceLocation(line: mark.line, column: mark.column), path: "", message: message)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return WorkflowDiagnostic(
                location: SourceLocation(line: context.mark.line, column: context.mark.column), path: "",
                message: "duplicate keys: \(duplicates.joined(separator: ", "))")
        case .reader(let problem, _, _, _):
            return WorkflowDiagnostic(location: nil, path: "", message: "the file cannot be read as text: \(problem)")
        default:
            return WorkflowDiagnostic(location: nil, path: "", message: "the file is not YAML or JSON: \(error)")
        }
    }

    private static func convert(_ node: Node, path: String, problems: inout [WorkflowDiagnostic]) -> SourceNode {
        let location = node.mark.map { SourceLocation(line: $0.line, column: $0.column) } ?? SourceLocation(line: 1, column: 1)
        switch node {
        case .scalar(let scalar):
            return SourceNode(value: .scalar(convert(scalar, node: node)), location: location, path: path)
        case .mapping(let mapping):
            var entries: [SourceNode.Entry] = []
            var seen: [String: SourceLocation] = [:]
            for (key, value) in mapping {
                let keyNode = convert(key, path: path, problems: &problems)
                let name = keyNode.scalarText ?? ""
                if let first = seen[name] {
                    problems.append(WorkflowDiagnostic(location: keyNode.location, path: path, message: "duplicate key \"\(name)\" (first at \(first))"))
                }
                seen[name] = seen[name] ?? keyNode.location
                let childPath = path.isEmpty ? name : "\(path).\(name)"
                entries.append(SourceNode.Entry(key: keyNode, value: convert(value, path: childPath, problems: &problems)))
            }
            return SourceNode(value: .mapping(entries), location: location, path: path)
        case .sequence(let sequence):
            let items = sequence.enumerated().map { offset, item in convert(item, path: "\(path)[\(offset)]", problems: &problems) }
            return SourceNode(value: .sequence(items), location: location, path: path)
        case .alias:
            problems.append(WorkflowDiagnostic(location: location, path: path, message: "YAML aliases are not supported in workflows"))
            return SourceNode(value: .scalar(.init(text: "", kind: .null, columnOffset: nil)), location: location, path: path)
        }
    }

    private static func convert(_ scalar: Node.Scalar, node: Node) -> SourceNode.Scalar {
        let text = scalar.string
        let oneLine = !text.contains("\n")
        let offset: Int?
        switch scalar.style {
        case .plain, .any: offset = oneLine ? 0 : nil
        case .singleQuoted, .doubleQuoted: offset = oneLine ? 1 : nil
        default: offset = nil
        }
        var kind = SourceNode.Scalar.Kind.string
        switch Tag.Name(rawValue: node.tag.rawValue) {
        case .null: kind = .null
        case .bool: kind = node.bool.map { .bool($0) } ?? .string
        case .int: kind = node.int.map { .integer(Int64($0)) } ?? .string
        case .float: kind = node.float.map { .double($0) } ?? .string
        default: break
        }
        return SourceNode.Scalar(text: text, kind: kind, columnOffset: offset)
    }
}
