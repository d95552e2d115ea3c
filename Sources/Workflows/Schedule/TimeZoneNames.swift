import Foundation

/// IANA zone names, for validating and suggesting.
enum TimeZoneNames {
    static func zone(named name: String) -> TimeZone? {
        TimeZone(identifier: name)
    }

    static var all: [String] { TimeZone.knownTimeZoneIdentifiers }
}
