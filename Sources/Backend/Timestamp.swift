#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A wall-clock instant in whole milliseconds since the Unix epoch.
///
/// Expiry is wall-clock time because that is what Redis keeps (`PEXPIREAT`, `PEXPIRETIME`):
/// both backends then report the same `expiresAt` for the same key.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.millisecondsSinceEpoch < rhs.millisecondsSinceEpoch
    }

    /// This instant plus `duration`, rounded up to the next whole millisecond (a TTL never
    /// ends early).
    public func advanced(by duration: Duration) -> Timestamp {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1_000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Timestamp(millisecondsSinceEpoch: millisecondsSinceEpoch + milliseconds)
    }

    /// RFC 3339 / ISO 8601 in UTC with milliseconds: `2026-03-01T12:00:05.250Z`.
    public var iso8601: String {
        let (seconds, milliseconds) = Self.floorDivision(millisecondsSinceEpoch, 1_000)
        let (days, secondOfDay) = Self.floorDivision(seconds, 86_400)
        let (year, month, day) = Self.civilDate(daysSinceEpoch: days)
        guard (0...9_999).contains(year) else {
            // Beyond four digits: the general path (never on the way of an event).
            return "\(Self.pad(year, 4))-\(Self.pad(month, 2))-\(Self.pad(day, 2))T"
                + "\(Self.pad(secondOfDay / 3_600, 2)):\(Self.pad(secondOfDay % 3_600 / 60, 2)):\(Self.pad(secondOfDay % 60, 2))."
                + "\(Self.pad(milliseconds, 3))Z"
        }
        // Every event delivered carries one: digits written in place, one allocation.
        return String(unsafeUninitializedCapacity: 24) { bytes in
            var index = 0
            func put(_ value: Int64, width: Int) {
                var remaining = value
                for position in stride(from: index + width - 1, through: index, by: -1) {
                    bytes[position] = UInt8(ascii: "0") + UInt8(remaining % 10)
                    remaining /= 10
                }
                index += width
            }
            func put(_ character: Unicode.Scalar) {
                bytes[index] = UInt8(ascii: character)
                index += 1
            }
            put(year, width: 4)
            put("-")
            put(month, width: 2)
            put("-")
            put(day, width: 2)
            put("T")
            put(secondOfDay / 3_600, width: 2)
            put(":")
            put(secondOfDay % 3_600 / 60, width: 2)
            put(":")
            put(secondOfDay % 60, width: 2)
            put(".")
            put(milliseconds, width: 3)
            put("Z")
            return index
        }
    }

    public var description: String { iso8601 }

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        let quotient = value >= 0 ? value / divisor : (value - divisor + 1) / divisor
        return (quotient, value - quotient * divisor)
    }

    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    private static func civilDate(daysSinceEpoch: Int64) -> (Int64, Int64, Int64) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

/// Where a backend reads the time. Tests drive a `ManualClock`; production uses `SystemClock`.
public protocol BackendClock: Sendable {
    func now() -> Timestamp
}

/// The system's real-time clock.
public struct SystemClock: BackendClock {
    public init() {}

    public func now() -> Timestamp {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Timestamp(millisecondsSinceEpoch: Int64(time.tv_sec) * 1_000 + Int64(time.tv_nsec) / 1_000_000)
    }
}

/// A clock that moves only when told to, so that tests expire keys without waiting.
public final class ManualClock: BackendClock {
    private let current: Mutex<Timestamp>

    public init(_ start: Timestamp = Timestamp(millisecondsSinceEpoch: 1_767_225_600_000)) {
        current = Mutex(start)
    }

    public func now() -> Timestamp {
        current.withLock { $0 }
    }

    public func advance(by duration: Duration) {
        current.withLock { $0 = $0.advanced(by: duration) }
    }
}
