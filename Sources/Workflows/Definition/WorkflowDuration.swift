/// Durations in workflow files: a number of seconds (`30`, `0.25`) or a number with a unit,
/// `ms`, `s`, `m`, `h` or `d`, possibly several (`250ms`, `30s`, `5m`, `1h30m`).
public enum WorkflowDuration {
    /// The duration `text` writes, or nil when it is not one.
    public static func parse(_ text: String) -> Duration? {
        let text = text.trimmingWhitespace
        if text.isEmpty { return nil }
        if let seconds = Double(text), seconds.isFinite, seconds >= 0, text.first != "+" {
            return seconds > 9.0e12 ? nil : .milliseconds(Int64((seconds * 1_000).rounded()))
        }
        var total: Int64 = 0
        var rest = Substring(text)
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !digits.isEmpty, let amount = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let milliseconds: Double
            switch unit {
            case "ms": milliseconds = 1
            case "s": milliseconds = 1_000
            case "m": milliseconds = 60_000
            case "h": milliseconds = 3_600_000
            case "d": milliseconds = 86_400_000
            default: return nil
            }
            let value = amount * milliseconds
            guard value < 9.0e15 else { return nil }
            total += Int64(value.rounded())
        }
        return .milliseconds(total)
    }

    /// What a person should write instead of `text`.
    static func advice(for text: String) -> String {
        "\"\(text)\" is not a duration: write seconds (30, 0.5) or a number with ms, s, m, h or d (\"250ms\", \"30s\", \"5m\", \"1h30m\")"
    }

    /// A duration as a person writes it: "250ms", "30s", "5m", "1h30m".
    public static func text(_ duration: Duration) -> String {
        var milliseconds = Int64(seconds(duration) * 1_000)
        guard milliseconds > 0 else { return "0s" }
        if milliseconds % 1_000 != 0 { return "\(milliseconds)ms" }
        var text = ""
        for (unit, size) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] where milliseconds >= size {
            text += "\(milliseconds / size)\(unit)"
            milliseconds %= size
        }
        return text
    }

    /// Seconds as a JSON-friendly number.
    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension String {
    var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[first...last])
    }
}
