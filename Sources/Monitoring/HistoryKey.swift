import Backend

/// The length of a history bucket.
public enum HistoryPeriod: String, Sendable, CaseIterable {
    case minute, hour, day

    public var seconds: Int64 {
        switch self {
        case .minute: 60
        case .hour: 3_600
        case .day: 86_400
        }
    }

    /// The start, in seconds since the epoch, of the bucket holding `timestamp` (UTC, aligned
    /// on the period).
    func start(of timestamp: Timestamp) -> Int64 {
        let seconds = floorDivide(timestamp.millisecondsSinceEpoch, 1_000)
        return floorDivide(seconds, self.seconds) * self.seconds
    }

    /// The bucket of this period that holds the instant `seconds`.
    func start(ofSecond seconds: Int64) -> Int64 {
        floorDivide(seconds, self.seconds) * self.seconds
    }
}

func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
    value >= 0 ? value / divisor : (value - divisor + 1) / divisor
}

extension Timestamp {
    init(secondsSinceEpoch seconds: Int64) {
        self.init(millisecondsSinceEpoch: seconds * 1_000)
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}

/// How history buckets are named in the key-value store:
/// `<period>/<agent>/<start>/<replica>`, the start as 12 zero-padded digits of seconds since
/// the epoch.
///
/// Fixed-width starts make the store's byte order the time order, so one listing from
/// `<period>/<agent>/<first start>` walks a time range; every replica's key of a bucket sits
/// together, to be merged as they come. In segments "%" and "/" are percent-encoded, so a
/// segment never splits a key and decodes to what it was.
enum HistoryKey {
    static func key(period: HistoryPeriod, agent: String, start: Int64, replica: String) -> String {
        prefix(period: period, agent: agent) + padded(start) + "/" + segment(replica)
    }

    /// Every key of the agent's buckets of `period` starts with this.
    static func prefix(period: HistoryPeriod, agent: String) -> String {
        period.rawValue + "/" + segment(agent) + "/"
    }

    /// Listing after this returns the buckets from `start` on: each of its keys extends it,
    /// and every earlier bucket's key sorts below it.
    static func listingCursor(period: HistoryPeriod, agent: String, from start: Int64) -> String {
        prefix(period: period, agent: agent) + padded(start)
    }

    /// The start and the (encoded) replica of a key under `prefix`.
    static func parse(_ key: String, prefix: String) -> (start: Int64, replica: String)? {
        guard key.hasPrefix(prefix) else { return nil }
        let rest = key.utf8.dropFirst(prefix.utf8.count)
        guard rest.count >= 13, let slash = rest.firstIndex(of: UInt8(ascii: "/")),
            rest.distance(from: rest.startIndex, to: slash) == 12,
            let start = Int64(String(decoding: rest[rest.startIndex..<slash], as: UTF8.self))
        else { return nil }
        return (start, String(decoding: rest[rest.index(after: slash)...], as: UTF8.self))
    }

    static func padded(_ seconds: Int64) -> String {
        let digits = String(max(0, seconds))
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    /// `text` with "%" and "/" percent-encoded.
    static func segment(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "/") }) else { return text }
        var encoded = ""
        for character in text.unicodeScalars {
            switch character {
            case "%": encoded += "%25"
            case "/": encoded += "%2F"
            default: encoded.unicodeScalars.append(character)
            }
        }
        return encoded
    }
}
