import Backend
import Foundation

/// A cron line in a named IANA time zone, and when it next fires.
///
/// Local times that do not exist (the hour skipped when clocks go forward) fire at the first
/// valid minute after the gap, once. Local times that happen twice (the hour repeated when
/// clocks go back) fire once, at their first occurrence.
public struct CronSchedule: Sendable, Hashable, CustomStringConvertible {
    public let expression: CronExpression
    public let timeZone: TimeZone

    public init(expression: CronExpression, timeZone: TimeZone) {
        self.expression = expression
        self.timeZone = timeZone
    }

    /// Parses a cron line and a zone name (`"Europe/London"`; nil or `"UTC"` for UTC).
    public init(cron: String, timeZone identifier: String?) throws(CronSyntaxError) {
        expression = try CronExpression(parsing: cron)
        guard let zone = identifier.map({ TimeZone(identifier: $0) }) ?? TimeZone(identifier: "UTC") else {
            throw CronSyntaxError("unknown time zone \"\(identifier ?? "")\": use an IANA name such as Europe/London", column: 1)
        }
        timeZone = zone
    }

    public var description: String { "\(expression.text) (\(timeZone.identifier))" }

    /// The first instant strictly after `instant` at which the schedule fires, or nil when it
    /// never fires again within nine years.
    public func nextFire(after instant: Timestamp) -> Timestamp? {
        let after = Self.floorDivision(instant.millisecondsSinceEpoch, 1_000)
        let localSeconds = after + offset(at: after)
        let startMinute = Self.floorDivision(localSeconds, 60) + 1
        var day = Self.floorDivision(startMinute, 1_440)
        var firstMinuteOfDay = Int(startMinute - day * 1_440)
        for _ in 0..<(366 * 9) {
            let (_, month, dayOfMonth) = CivilDate.components(daysSinceEpoch: day)
            let weekday = Int(((day % 7) + 11) % 7)  // 1970-01-01 was a Thursday (4)
            if expression.matches(month: month, day: dayOfMonth, weekday: weekday) {
                for hour in (firstMinuteOfDay / 60)..<24 where expression.matches(hour: hour) {
                    for minute in 0..<60 where expression.matches(minute: minute) {
                        let minuteOfDay = hour * 60 + minute
                        if minuteOfDay < firstMinuteOfDay { continue }
                        let local = day * 86_400 + Int64(minuteOfDay) * 60
                        let fire = resolve(local: local)
                        if fire > after { return Timestamp(millisecondsSinceEpoch: fire * 1_000) }
                    }
                }
            }
            day += 1
            firstMinuteOfDay = 0
        }
        return nil
    }

    /// The instant of a local wall-clock time: its first occurrence when it happens twice, the
    /// end of the gap when it does not happen at all.
    private func resolve(local: Int64) -> Int64 {
        let before = offset(at: local - 43_200), later = offset(at: local + 43_200)
        let candidates = Set([local - Int64(before), local - Int64(later)]).sorted()
        for candidate in candidates where candidate + offset(at: candidate) == local {
            return candidate
        }
        // A gap: the offset grows from `before` to `later` somewhere in [local - later, local - before].
        var low = local - Int64(later), high = local - Int64(before)
        while low < high {
            let middle = low + (high - low) / 2
            if offset(at: middle) == Int64(later) { high = middle } else { low = middle + 1 }
        }
        return low
    }

    private func offset(at seconds: Int64) -> Int64 {
        Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(seconds))))
    }

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> Int64 {
        value >= 0 ? value / divisor : (value - divisor + 1) / divisor
    }
}

/// Proleptic Gregorian dates from day numbers (Howard Hinnant's algorithm).
enum CivilDate {
    static func components(daysSinceEpoch: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), Int(month), Int(day))
    }
}
