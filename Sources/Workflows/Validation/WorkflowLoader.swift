import Foundation
import JSONRPC

/// Turns workflow text (YAML or JSON) into a validated `WorkflowDefinition`, or every problem
/// with it.
public enum WorkflowLoader {
    /// The definition, or `WorkflowDefinitionError` listing every problem found.
    public static func load(_ text: String) throws(WorkflowDefinitionError) -> WorkflowDefinition {
        let (definition, diagnostics) = analyse(text)
        guard let definition, diagnostics.isEmpty else { throw WorkflowDefinitionError(diagnostics: diagnostics) }
        return definition
    }

    /// A definition sent as JSON (`workflows/create`). It is written out one member per line,
    /// so that diagnostics have useful lines too; their paths say where the problem is.
    public static func load(document: JSONValue) throws(WorkflowDefinitionError) -> WorkflowDefinition {
        try load(text(of: document))
    }

    /// The text a definition sent as JSON is read and stored as. A value past the bounds is
    /// refused before it is written out: written out, a deep value grows by its indentation.
    static func text(of document: JSONValue) throws(WorkflowDefinitionError) -> String {
        do {
            try BoundedDocument.check(document, within: .workflowDefinition)
        } catch {
            throw WorkflowDefinitionError(diagnostics: [WorkflowDiagnostic(bound: error)])
        }
        return PrettyJSON.text(of: document)
    }

    /// Every problem with `text`, sorted by place; empty when the definition is valid.
    public static func diagnostics(of text: String) -> [WorkflowDiagnostic] {
        analyse(text).1
    }

    static func analyse(_ text: String) -> (WorkflowDefinition?, [WorkflowDiagnostic]) {
        let root: SourceNode?
        switch SourceDocument.parse(text) {
        case .failure(let problem): return (nil, [problem])
        case .success(let node): root = node
        }
        guard let root else {
            return (nil, [WorkflowDiagnostic(location: SourceLocation(line: 1, column: 1), path: "", message: "the document is empty: a workflow needs workflowName, version and steps")])
        }
        var parser = WorkflowParser()
        let definition = parser.parse(root, source: text)
        // Validation compares steps with each other: count them before it starts.
        if let tooMany = stepBoundExceeded(definition, root: root) { return (nil, [tooMany]) }
        var validator = WorkflowValidator(definition: definition)
        validator.validate(compensationReferences: parser.compensationReferences)
        var all = parser.problems + validator.problems
        all.sort { ($0.location ?? SourceLocation(line: .max, column: 0)) < ($1.location ?? SourceLocation(line: .max, column: 0)) }
        var seen = Set<WorkflowDiagnostic>()
        all = all.filter { seen.insert($0).inserted }
        return (definition, all)
    }
}

extension WorkflowLoader {
    static func stepBoundExceeded(_ definition: WorkflowDefinition, root: SourceNode) -> WorkflowDiagnostic? {
        func count(_ steps: [WorkflowStep]) -> Int { steps.reduce(0) { $0 + 1 + count($1.children) } }
        let limit = DocumentBounds.maximumWorkflowSteps
        guard count(definition.steps) + count(definition.compensations) > limit else { return nil }
        var diagnostic = WorkflowDiagnostic(bound: DocumentBoundExceeded(.steps, limit: limit))
        if case .mapping(let entries) = root.value, let steps = entries.first(where: { $0.name == "steps" }) {
            diagnostic.location = steps.key.location
            diagnostic.path = "steps"
        }
        return diagnostic
    }
}

/// A definition that is not valid: every problem, in the order they appear in the text.
public struct WorkflowDefinitionError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [WorkflowDiagnostic]

    public init(diagnostics: [WorkflowDiagnostic]) {
        self.diagnostics = diagnostics
    }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }

    /// One `file:line:column: error: message` line per problem.
    public func formatted(file: String) -> String {
        diagnostics.map { $0.formatted(file: file) }.joined(separator: "\n")
    }
}

/// What `switchboard workflow check FILE` prints: every problem as `file:line:column: error:
/// message`, or one line saying the workflow is valid.
public struct WorkflowCheckReport: Sendable {
    public var file: String
    public var diagnostics: [WorkflowDiagnostic]
    public var definition: WorkflowDefinition?

    public var isValid: Bool { diagnostics.isEmpty && definition != nil }

    /// The text to print (no trailing newline). Exit with status 0 when `isValid`, else 1.
    public var output: String {
        guard isValid, let definition else {
            let lines = diagnostics.map { $0.formatted(file: file) }
            let count = diagnostics.count
            return (lines + ["\(count) problem\(count == 1 ? "" : "s") in \(file)"]).joined(separator: "\n")
        }
        var line = "\(file): workflow \(definition.name) version \(definition.version) is valid: \(definition.stepCount) step\(definition.stepCount == 1 ? "" : "s")"
        if !definition.triggers.isEmpty {
            line += ", triggers: " + definition.triggers.map { trigger in
                switch trigger {
                case .manual: "manual"
                case .event(let topic): "event \(topic)"
                case .schedule(let schedule): "schedule \(schedule)"
                }
            }.joined(separator: ", ")
        }
        return line
    }
}

/// The check a command line runs on a file.
public enum WorkflowCheck {
    /// Validates `text`, naming it `file` in messages.
    public static func check(text: String, file: String) -> WorkflowCheckReport {
        let (definition, diagnostics) = WorkflowLoader.analyse(text)
        return WorkflowCheckReport(file: file, diagnostics: diagnostics, definition: diagnostics.isEmpty ? definition : nil)
    }

    /// Reads and validates the file at `path`.
    public static func checkFile(atPath path: String) -> WorkflowCheckReport {
        guard let data = FileManager.default.contents(atPath: path) else {
            return WorkflowCheckReport(file: path, diagnostics: [WorkflowDiagnostic(location: nil, path: "", message: "cannot read the file")], definition: nil)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            return WorkflowCheckReport(file: path, diagnostics: [WorkflowDiagnostic(location: nil, path: "", message: "the file is not UTF-8 text")], definition: nil)
        }
        return check(text: text, file: path)
    }
}

/// JSON with one member or element per line, keys sorted.
enum PrettyJSON {
    static func text(of value: JSONValue) -> String {
        var output = ""
        write(value, indent: 0, into: &output)
        return output + "\n"
    }

    private static func write(_ value: JSONValue, indent: Int, into output: inout String) {
        let pad = String(repeating: "  ", count: indent + 1)
        switch value {
        case .object(let members) where !members.isEmpty:
            output += "{\n"
            for (offset, key) in members.keys.sorted().enumerated() {
                output += pad + JSONValue.string(key).encoded + ": "
                write(members[key]!, indent: indent + 1, into: &output)
                output += offset == members.count - 1 ? "\n" : ",\n"
            }
            output += String(repeating: "  ", count: indent) + "}"
        case .array(let elements) where !elements.isEmpty:
            output += "[\n"
            for (offset, element) in elements.enumerated() {
                output += pad
                write(element, indent: indent + 1, into: &output)
                output += offset == elements.count - 1 ? "\n" : ",\n"
            }
            output += String(repeating: "  ", count: indent) + "]"
        case .raw(let raw):
            write(raw.decoded(), indent: indent, into: &output)
        default:
            output += value.encoded
        }
    }
}
