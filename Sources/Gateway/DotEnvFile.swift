/// The assignments of a dotenv file, as VS Code's and Cursor's `envFile` name one: `KEY=VALUE`
/// lines, `#` comments, an optional `export ` prefix, values optionally in single quotes
/// (literal) or double quotes (with `\n`, `\t`, `\"` and `\\` escapes). Values are not expanded.
struct DotEnvFile: Sendable, Equatable {
    /// A line that is not an assignment: reported, and skipped.
    struct Problem: Sendable, Equatable {
        var line: Int
        var message: String
    }

    private(set) var values: [String: String] = [:]
    private(set) var problems: [Problem] = []

    init(parsing text: String) {
        for (offset, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            var line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst("export ".count).trimmingWhitespace() }
            guard let equals = line.firstIndex(of: "=") else {
                problems.append(Problem(line: offset + 1, message: "expected KEY=VALUE"))
                continue
            }
            let key = line[..<equals].trimmingWhitespace()
            guard VariableExpansion.isVariableName(key) else {
                problems.append(Problem(line: offset + 1, message: "\"\(key)\" is not a variable name"))
                continue
            }
            switch Self.value(line[line.index(after: equals)...].trimmingWhitespace()) {
            case .success(let value): values[String(key)] = value
            case .failure(let problem): problems.append(Problem(line: offset + 1, message: problem.message))
            }
        }
    }

    private struct ValueProblem: Error {
        var message: String
    }

    private static func value(_ text: Substring) -> Result<String, ValueProblem> {
        guard let quote = text.first, quote == "\"" || quote == "'" else {
            // Unquoted: a `#` after a space starts a comment.
            var end = text.endIndex
            var index = text.startIndex
            while index < text.endIndex {
                if text[index] == "#", index > text.startIndex, text[text.index(before: index)].isWhitespace {
                    end = index
                    break
                }
                index = text.index(after: index)
            }
            return .success(String(text[..<end].trimmingWhitespace()))
        }
        var value = ""
        var index = text.index(after: text.startIndex)
        while index < text.endIndex {
            let character = text[index]
            if character == quote { return .success(value) }
            if quote == "\"", character == "\\", text.index(after: index) < text.endIndex {
                index = text.index(after: index)
                switch text[index] {
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                default: value.append(text[index])
                }
            } else {
                value.append(character)
            }
            index = text.index(after: index)
        }
        return .failure(ValueProblem(message: "the value's closing \(quote) is missing (values span one line)"))
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first.isWhitespace { result.removeFirst() }
        while let last = result.last, last.isWhitespace { result.removeLast() }
        return result
    }
}
