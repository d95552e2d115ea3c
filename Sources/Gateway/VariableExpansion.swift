/// Expands the variables MCP hosts write in their server entries:
///
/// - `${VAR}` and `${env:VAR}` (VS Code, Cursor): the environment variable `VAR`;
/// - `${VAR:-default}` (Claude Code): `VAR` when it is set and not empty, else `default` (itself
///   expanded);
/// - `${input:ID}` (VS Code): an input of the file's `inputs` list, read from the environment
///   variable `ID`, or `ID` in capitals with every other character than a letter or digit made
///   `_` (`github-token` → `GITHUB_TOKEN`), else the input's `default`. A gateway cannot prompt;
/// - `${workspaceFolder}` (the configuration file's directory, or the project around it for a
///   `.vscode/mcp.json` or `.cursor/mcp.json`), `${workspaceFolderBasename}`,
///   `${userHome}`, `${pathSeparator}` and `${/}` (VS Code, Cursor).
///
/// No host defines an escape: a `$` not followed by `{`, `$VAR` and an unclosed `${` stay as
/// written. A reference that cannot be resolved is reported, never replaced by an empty string:
/// a server started without its API key fails later, and less clearly.
struct VariableExpansion: Sendable {
    var environment: [String: String]
    /// The project the configuration file belongs to, absolute.
    var workspaceFolder: String
    /// `inputs` of a VS Code file, by id.
    var inputs: [String: Input] = [:]

    /// One entry of VS Code's `inputs` list: what a host would prompt for.
    struct Input: Sendable, Equatable {
        var id: String
        var defaultValue: String?
    }

    /// Why a reference was left unexpanded.
    enum Unresolved: Hashable, Sendable, CustomStringConvertible {
        case variable(String)
        case input(String)
        case unsupported(String)

        var description: String {
            switch self {
            case .variable(let name): "environment variable \(name) is not set"
            case .input(let id):
                "input \"\(id)\" has no value (a gateway cannot prompt: set the environment variable \(VariableExpansion.environmentName(ofInput: id)))"
            case .unsupported(let reference): "${\(reference)} is not a variable the gateway can resolve"
            }
        }
    }

    /// The text with every reference replaced, and the references that could not be.
    func expand(_ text: String) -> (text: String, unresolved: [Unresolved]) {
        var unresolved: [Unresolved] = []
        let result = expand(text, unresolved: &unresolved)
        return (result, unresolved)
    }

    private func expand(_ text: String, unresolved: inout [Unresolved]) -> String {
        guard text.contains("${") else { return text }
        var output = ""
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(after: index)
            guard text[index] == "$", next < text.endIndex, text[next] == "{" else {
                output.append(text[index])
                index = next
                continue
            }
            let bodyStart = text.index(after: next)
            guard let close = Self.closingBrace(in: text, from: bodyStart) else {
                output += text[index...]  // unclosed: literal
                break
            }
            output += resolve(String(text[bodyStart..<close]), unresolved: &unresolved)
            index = text.index(after: close)
        }
        return output
    }

    /// The `}` that closes a reference, counting nested `${…}` in a default.
    private static func closingBrace(in text: String, from start: String.Index) -> String.Index? {
        var depth = 0
        var index = start
        while index < text.endIndex {
            switch text[index] {
            case "{": depth += 1
            case "}":
                if depth == 0 { return index }
                depth -= 1
            default: break
            }
            index = text.index(after: index)
        }
        return nil
    }

    private func resolve(_ reference: String, unresolved: inout [Unresolved]) -> String {
        switch reference {
        case "workspaceFolder": return workspaceFolder
        case "workspaceFolderBasename": return String(workspaceFolder.split(separator: "/").last ?? "")
        case "pathSeparator", "/": return "/"
        case "userHome":
            if let home = environment["HOME"] { return home }
            unresolved.append(.variable("HOME"))
            return ""
        default: break
        }
        if reference.hasPrefix("env:") {
            let name = String(reference.dropFirst(4))
            if let value = environment[name] { return value }
            unresolved.append(.variable(name))
            return ""
        }
        if reference.hasPrefix("input:") {
            let id = String(reference.dropFirst(6))
            if let value = environment[id] ?? environment[Self.environmentName(ofInput: id)] ?? inputs[id]?.defaultValue {
                return value
            }
            unresolved.append(.input(id))
            return ""
        }
        if let separator = reference.firstRange(of: ":-"), Self.isVariableName(reference[..<separator.lowerBound]) {
            let name = String(reference[..<separator.lowerBound])
            if let value = environment[name], !value.isEmpty { return value }
            return expand(String(reference[separator.upperBound...]), unresolved: &unresolved)
        }
        if Self.isVariableName(reference[...]) {
            if let value = environment[reference] { return value }
            unresolved.append(.variable(reference))
            return ""
        }
        unresolved.append(.unsupported(reference))
        return ""
    }

    static func isVariableName(_ text: Substring) -> Bool {
        guard let first = text.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic) else { return false }
        return text.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
    }

    /// `github-token` → `GITHUB_TOKEN`: the environment variable an input may also be read from.
    static func environmentName(ofInput id: String) -> String {
        String(String.UnicodeScalarView(id.uppercased().unicodeScalars.map { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)) ? scalar : "_"
        }))
    }
}
