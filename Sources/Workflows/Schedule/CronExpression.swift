/// A five-field cron line: minute, hour, day of month, month, day of week. Each field is `*`,
/// a number or a name (`JAN`…`DEC`, `SUN`…`SAT`, case-insensitive), a range `a-b`, a step
/// `*/n`, `a-b/n` or `a/n`, or a comma-separated list of those. Day of week runs 0–7, where
/// both 0 and 7 are Sunday. `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily`
/// (`@midnight`) and `@hourly` stand for their usual lines.
///
/// As in Vixie cron, when both day of month and day of week are restricted (neither starts
/// with `*`), a day matches when either matches.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    let minutes: UInt64
    let hours: UInt32
    let daysOfMonth: UInt32
    let months: UInt16
    let daysOfWeek: UInt8
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool

    private static let macros: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    private static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    private static let dayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    private struct Field {
        var name: String
        var range: ClosedRange<Int>
        var names: [String]
        var firstNameValue: Int
    }

    private static let fields = [
        Field(name: "minute", range: 0...59, names: [], firstNameValue: 0),
        Field(name: "hour", range: 0...23, names: [], firstNameValue: 0),
        Field(name: "day of month", range: 1...31, names: [], firstNameValue: 1),
        Field(name: "month", range: 1...12, names: monthNames, firstNameValue: 1),
        Field(name: "day of week", range: 0...7, names: dayNames, firstNameValue: 0),
    ]

    /// Parses a cron line; the error's column is within `text`.
    public init(parsing text: String) throws(CronSyntaxError) {
        self.text = text
        var line = text
        var columnBase = 0
        let trimmed = text.trimmingWhitespace
        if trimmed.hasPrefix("@") {
            guard let expansion = Self.macros[trimmed.lowercased()] else {
                let known = Self.macros.keys.sorted().joined(separator: ", ")
                let column = text.unicodeScalars.firstIndex(of: "@").map { text.unicodeScalars.distance(from: text.unicodeScalars.startIndex, to: $0) + 1 } ?? 1
                throw CronSyntaxError("unknown cron macro \"\(trimmed)\"\(Suggestion.hint(for: trimmed.lowercased(), among: Self.macros.keys)); known: \(known)", column: column)
            }
            line = expansion
            columnBase = -1  // errors cannot happen in an expansion
        }
        var words: [(text: String, column: Int)] = []
        var current = ""
        var start = 0
        for (offset, scalar) in line.unicodeScalars.enumerated() {
            if scalar.properties.isWhitespace {
                if !current.isEmpty { words.append((current, start + 1)) }
                current = ""
            } else {
                if current.isEmpty { start = offset }
                current.unicodeScalars.append(scalar)
            }
        }
        if !current.isEmpty { words.append((current, start + 1)) }
        guard words.count == 5 else {
            let column = words.count > 5 ? words[5].column : max(1, line.unicodeScalars.count)
            throw CronSyntaxError(
                "a cron line has 5 fields (minute hour day-of-month month day-of-week), this one has \(words.count)", column: columnBase < 0 ? 1 : column)
        }
        var masks: [UInt64] = []
        for (index, word) in words.enumerated() {
            masks.append(try Self.parseField(word.text, column: word.column, field: Self.fields[index]))
        }
        minutes = masks[0]
        hours = UInt32(masks[1])
        daysOfMonth = UInt32(masks[2])
        months = UInt16(masks[3])
        var weekdays = masks[4]
        if weekdays & (1 << 7) != 0 { weekdays = (weekdays | 1) & ~(1 << 7) }
        daysOfWeek = UInt8(weekdays)
        dayOfMonthRestricted = !words[2].text.hasPrefix("*")
        dayOfWeekRestricted = !words[4].text.hasPrefix("*")
        if !canEverMatch {
            throw CronSyntaxError("no day matches: the day of month never occurs in the months given", column: columnBase < 0 ? 1 : words[2].column)
        }
    }

    public var description: String { text }

    private static func parseField(_ text: String, column: Int, field: Field) throws(CronSyntaxError) -> UInt64 {
        var mask: UInt64 = 0
        var offset = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let itemColumn = column + offset
            offset += item.unicodeScalars.count + 1
            guard !item.isEmpty else { throw CronSyntaxError("empty item in the \(field.name) field", column: itemColumn) }
            var rangePart = Substring(item)
            var step = 1
            if let slash = item.firstIndex(of: "/") {
                rangePart = item[..<slash]
                let stepText = item[item.index(after: slash)...]
                let stepColumn = itemColumn + item[..<slash].unicodeScalars.count + 1
                guard let value = Int(stepText), value > 0 else {
                    throw CronSyntaxError("the step after / in the \(field.name) field must be a whole number above 0, not \"\(stepText)\"", column: stepColumn)
                }
                step = value
            }
            let low: Int, high: Int
            if rangePart == "*" {
                (low, high) = (field.range.lowerBound, field.name == "day of week" ? 6 : field.range.upperBound)
            } else if let dash = rangePart.firstIndex(of: "-") {
                let first = rangePart[..<dash], second = rangePart[rangePart.index(after: dash)...]
                low = try value(first, column: itemColumn, field: field)
                high = try value(second, column: itemColumn + first.unicodeScalars.count + 1, field: field)
                guard low <= high else {
                    throw CronSyntaxError("the \(field.name) range \(rangePart) runs backwards: write the smaller value first", column: itemColumn)
                }
            } else {
                low = try value(rangePart, column: itemColumn, field: field)
                high = rangePart.count < item.count ? (field.name == "day of week" ? 6 : field.range.upperBound) : low
            }
            var current = low
            while current <= high {
                mask |= 1 << UInt64(current)
                current += step
            }
        }
        return mask
    }

    private static func value(_ text: Substring, column: Int, field: Field) throws(CronSyntaxError) -> Int {
        if let number = Int(text) {
            guard field.range.contains(number) else {
                throw CronSyntaxError("\(field.name) \(number) is out of range \(field.range.lowerBound)-\(field.range.upperBound)", column: column)
            }
            return number
        }
        if let index = field.names.firstIndex(of: text.uppercased()) { return index + field.firstNameValue }
        var message = "\"\(text)\" is not a valid \(field.name)"
        if !field.names.isEmpty {
            message += Suggestion.hint(for: text.uppercased(), among: field.names)
            message += "; use \(field.range.lowerBound)-\(field.range.upperBound) or \(field.names.first!)-\(field.names.last!)"
        } else {
            message += "; use \(field.range.lowerBound)-\(field.range.upperBound)"
        }
        throw CronSyntaxError(message, column: column)
    }

    /// Whether some day of some month can match (`0 0 31 2 *` never does).
    private var canEverMatch: Bool {
        if dayOfWeekRestricted && dayOfMonthRestricted { return true }
        if !dayOfMonthRestricted { return true }
        let longest = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        for month in 1...12 where months & (1 << UInt16(month)) != 0 {
            for day in 1...longest[month - 1] where daysOfMonth & (1 << UInt32(day)) != 0 { return true }
        }
        return false
    }

    func matches(minute: Int) -> Bool { minutes & (1 << UInt64(minute)) != 0 }
    func matches(hour: Int) -> Bool { hours & (1 << UInt32(hour)) != 0 }

    /// Whether the cron line fires on this day (month 1–12, weekday 0 = Sunday).
    func matches(month: Int, day: Int, weekday: Int) -> Bool {
        guard months & (1 << UInt16(month)) != 0 else { return false }
        let dayOfMonth = daysOfMonth & (1 << UInt32(day)) != 0
        let dayOfWeek = daysOfWeek & (1 << UInt8(weekday)) != 0
        if dayOfMonthRestricted && dayOfWeekRestricted { return dayOfMonth || dayOfWeek }
        return dayOfMonth && dayOfWeek
    }
}

/// What is wrong with a cron line, and where (a 1-based column within the line).
public struct CronSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var column: Int

    public init(_ message: String, column: Int) {
        self.message = message
        self.column = column
    }

    public var description: String { "column \(column): \(message)" }
}
