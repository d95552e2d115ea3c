import Foundation
import JSONRPC

/// Columns aligned with spaces, a header in capitals; what `switchboard agents` and friends print.
struct TextTable {
    var columns: [String]
    var rows: [[String]] = []

    init(_ columns: String...) {
        self.columns = columns
    }

    mutating func append(_ row: [String]) {
        rows.append(row)
    }

    /// The table, one line per row, without trailing spaces.
    var text: String {
        var widths = columns.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.count)
            }
        }
        return ([columns] + rows).map { row in
            let line = row.enumerated().map { index, cell in
                cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
            return String(line.reversed().drop(while: { $0 == " " }).reversed())
        }.joined(separator: "\n")
    }
}

/// `key: value` lines with the values aligned; what the details view of one id prints.
struct DetailList {
    private var entries: [(key: String, value: String)] = []

    /// Adds a line; a nil or empty value adds nothing.
    mutating func add(_ key: String, _ value: String?) {
        guard let value, !value.isEmpty else { return }
        entries.append((key, value))
    }

    var text: String {
        let width = (entries.map(\.key.count).max() ?? 0) + 1
        return entries.map { entry in
            (entry.key + ":").padding(toLength: width, withPad: " ", startingAt: 0) + " " + entry.value
        }.joined(separator: "\n")
    }
}

/// Pretty-printed JSON for `--json`: two spaces of indent, keys sorted, one document.
enum PrettyJSON {
    static func text(_ value: JSONValue) -> String {
        var output = ""
        write(value, indent: "", into: &output)
        return output
    }

    private static func write(_ value: JSONValue, indent: String, into output: inout String) {
        let inner = indent + "  "
        switch value {
        case .object(let members) where !members.isEmpty:
            output += "{\n"
            output += members.keys.sorted().map { key in
                var member = inner + JSONValue.string(key).encoded + ": "
                write(members[key]!, indent: inner, into: &member)
                return member
            }.joined(separator: ",\n")
            output += "\n" + indent + "}"
        case .array(let elements) where !elements.isEmpty:
            output += "[\n"
            output += elements.map { element in
                var item = inner
                write(element, indent: inner, into: &item)
                return item
            }.joined(separator: ",\n")
            output += "\n" + indent + "]"
        case .raw(let raw):
            write(raw.decoded(), indent: indent, into: &output)
        default:
            output += value.encoded
        }
    }
}

/// Reading the members of the gateway's results for display.
extension JSONValue {
    /// A member path, `"performanceMetrics.successRate"`.
    func at(_ path: String) -> JSONValue? {
        var value: JSONValue? = self
        for key in path.split(separator: ".") { value = value?[String(key)] }
        if case .null? = value { return nil }
        return value
    }

    var doubleValue: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .double(let value): value
        case .raw(let raw): raw.decoded().doubleValue
        default: nil
        }
    }

    var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var arrayValue: [JSONValue]? {
        switch self {
        case .array(let elements): elements
        case .raw(let raw): raw.decoded().arrayValue
        default: nil
        }
    }

    /// A string as it is, a number or boolean as JSON writes it, anything else compact JSON.
    var displayText: String {
        switch self {
        case .string(let text): text
        case .double(let value): value.text(decimals: 3)
        default: encoded
        }
    }

    /// A member's text, or `-` when it is absent.
    func text(_ path: String) -> String {
        at(path)?.displayText ?? "-"
    }

    /// An array of strings joined with commas; nil when absent or empty.
    func list(_ path: String) -> String? {
        guard let elements = at(path)?.arrayValue, !elements.isEmpty else { return nil }
        return elements.map(\.displayText).joined(separator: ", ")
    }
}

extension Double {
    /// Fixed decimals without trailing zeros: 12.5, 0.125, 3.
    func text(decimals: Int) -> String {
        guard isFinite else { return "\(self)" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (self * scale).rounded() / scale
        if rounded == rounded.rounded() && abs(rounded) < 1e15 { return String(Int64(rounded)) }
        return "\(rounded)"
    }
}

/// Times as the gateway writes them (ISO 8601, UTC, with or without milliseconds) and spans of
/// time as a person reads them.
enum TimeText {
    static func date(_ text: String?) -> Date? {
        guard let text else { return nil }
        return (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
            ?? (try? Date(text, strategy: Date.ISO8601FormatStyle()))
    }

    /// `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
    static func span(seconds: Double) -> String {
        let seconds = max(0, seconds)
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        if seconds < 60 { return "\(seconds.text(decimals: 1))s" }
        let total = Int(seconds)
        if total < 3600 { return "\(total / 60)m\(twoDigits(total % 60))s" }
        if total < 86400 { return "\(total / 3600)h\(twoDigits(total / 60 % 60))m" }
        return "\(total / 86400)d\(twoDigits(total / 3600 % 24))h"
    }

    /// How long ago `text` was, as a span; `-` when it is not a time.
    static func age(since text: String?, now: Date = Date()) -> String {
        guard let date = date(text) else { return "-" }
        return span(seconds: now.timeIntervalSince(date))
    }

    private static func twoDigits(_ value: Int) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }
}

extension String {
    /// At most `limit` characters, the cut marked with `…`; one line.
    func shortened(to limit: Int) -> String {
        let line = replacingOccurrences(of: "\n", with: " ")
        guard line.count > limit else { return line }
        return line.prefix(limit - 1) + "…"
    }
}
