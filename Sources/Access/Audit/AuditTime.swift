#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A wall-clock instant to the millisecond, written `2026-03-02T09:14:05.123Z` (ISO 8601, UTC).
///
/// The calendar arithmetic is done here rather than with `gmtime`/`timegm` so that the text of a
/// time is a pure function of its value: the audit log hashes that text.
public struct AuditTime: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var millisecondsSince1970: Int64

    public init(millisecondsSince1970: Int64) {
        self.millisecondsSince1970 = millisecondsSince1970
    }

    /// The system's real-time clock.
    public static func now() -> AuditTime {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return AuditTime(millisecondsSince1970: Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec / 1_000_000))
    }

    public static func < (lhs: AuditTime, rhs: AuditTime) -> Bool {
        lhs.millisecondsSince1970 < rhs.millisecondsSince1970
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, always 24 characters (years 0000–9999).
    public var description: String {
        let (days, milliseconds) = millisecondsSince1970.floorDivided(by: 86_400_000)
        let (year, month, day) = Self.civil(fromDays: days)
        let seconds = milliseconds / 1000
        return Self.digits(year, 4) + "-" + Self.digits(month, 2) + "-" + Self.digits(day, 2) + "T"
            + Self.digits(seconds / 3600, 2) + ":" + Self.digits(seconds / 60 % 60, 2) + ":" + Self.digits(seconds % 60, 2)
            + "." + Self.digits(milliseconds % 1000, 3) + "Z"
    }

    /// Reads exactly the form `description` writes; nil for anything else. An entry whose time is
    /// not in this form is not one the log wrote.
    public init?(canonical text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 24, bytes[23] == UInt8(ascii: "Z"), bytes[19] == UInt8(ascii: "."),
            let parsed = Self.parse(bytes, allowingOffsets: false)
        else { return nil }
        self = parsed
    }

    /// Reads an ISO 8601 time as a person or a client writes it: `2026-03-02`,
    /// `2026-03-02T09:14:05Z`, `2026-03-02T09:14:05.5+01:00`… (a date alone is its midnight, UTC).
    /// Fractions finer than a millisecond are cut off.
    public init?(iso8601 text: String) {
        guard let parsed = Self.parse(Array(text.utf8), allowingOffsets: true) else { return nil }
        self = parsed
    }

    // MARK: Parsing

    private static func parse(_ bytes: [UInt8], allowingOffsets: Bool) -> AuditTime? {
        var reader = DigitReader(bytes: bytes)
        guard let year = reader.number(4), reader.take("-"), let month = reader.number(2), reader.take("-"),
            let day = reader.number(2), (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day)
        else { return nil }
        var milliseconds = days(fromCivil: year, month, day) * 86_400_000
        if reader.atEnd { return allowingOffsets ? AuditTime(millisecondsSince1970: milliseconds) : nil }
        guard reader.take("T"), let hour = reader.number(2), reader.take(":"), let minute = reader.number(2),
            reader.take(":"), let second = reader.number(2), hour < 24, minute < 60, second < 60
        else { return nil }
        milliseconds += Int64(hour * 3600 + minute * 60 + second) * 1000
        if reader.take(".") {
            var fraction = 0
            var count = 0
            while let digit = reader.digit() {
                if count < 3 { fraction = fraction * 10 + digit }
                count += 1
            }
            guard count > 0, allowingOffsets || count == 3 else { return nil }
            for _ in min(count, 3)..<3 { fraction *= 10 }
            milliseconds += Int64(fraction)
        }
        if reader.take("Z") {
            return reader.atEnd ? AuditTime(millisecondsSince1970: milliseconds) : nil
        }
        guard allowingOffsets, let sign = reader.sign(), let offsetHours = reader.number(2), reader.take(":"),
            let offsetMinutes = reader.number(2), reader.atEnd, offsetHours < 24, offsetMinutes < 60
        else { return nil }
        milliseconds -= Int64(sign * (offsetHours * 60 + offsetMinutes)) * 60_000
        return AuditTime(millisecondsSince1970: milliseconds)
    }

    private struct DigitReader {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool { index == bytes.count }

        mutating func take(_ character: Unicode.Scalar) -> Bool {
            guard index < bytes.count, bytes[index] == UInt8(ascii: character) else { return false }
            index += 1
            return true
        }

        mutating func digit() -> Int? {
            guard index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else { return nil }
            defer { index += 1 }
            return Int(bytes[index] - UInt8(ascii: "0"))
        }

        mutating func number(_ width: Int) -> Int? {
            var value = 0
            for _ in 0..<width {
                guard let digit = digit() else { return nil }
                value = value * 10 + digit
            }
            return value
        }

        mutating func sign() -> Int? {
            if take("+") { return 1 }
            if take("-") { return -1 }
            return nil
        }
    }

    // MARK: The proleptic Gregorian calendar (Howard Hinnant's days-from-civil algorithms)

    private static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func digits(_ value: some BinaryInteger, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}

extension Int64 {
    /// Quotient and remainder rounded towards minus infinity: a time before 1970 still has a
    /// non-negative time of day.
    fileprivate func floorDivided(by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let (quotient, remainder) = quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }
}
