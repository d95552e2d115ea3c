/// The call slots that arriving calls need: by Little's law, their arrival rate times the mean
/// time each holds a slot. Unlike the calls in flight and waiting, it does not grow while calls
/// queue for instances that are still starting.
struct OfferedLoad: Sendable, Equatable {
    /// Calls arriving per second.
    var arrivalsPerSecond: Double
    /// The mean seconds an arriving call holds a slot.
    var meanServiceSeconds: Double

    /// Call slots in use on average: arrivals per second × mean service seconds.
    var callSlots: Double { arrivalsPerSecond * meanServiceSeconds }
}

/// The arrivals of recent samples, each with the mean service time measured with it, averaged
/// into an offered load over a window of time that ends with the latest sample.
struct ArrivalWindow: Sendable {
    private struct Interval: Sendable {
        /// When the interval ended.
        var end: Double
        var seconds: Double
        var arrivals: Double
        /// Slot-seconds the arrivals bring: arrivals × the mean service time of the interval.
        var work: Double
    }

    /// Oldest first; none ends `window` seconds or more before the latest.
    private var intervals: [Interval] = []
    private var window = 0.0
    /// The latest mean service time given, kept for intervals in which no call finished.
    private(set) var meanServiceSeconds: Double?

    /// Adds the arrivals of the `seconds` ending at `end`, and from now on averages over the
    /// `window` seconds up to `end`. `serviceSeconds` is nil when no call finished in the
    /// interval: the last mean given stands for it.
    mutating func record(arrivals: Int, over seconds: Double, meanServiceSeconds service: Double?, endingAt end: Double, window: Double) {
        if let service, service.isFinite, service >= 0 { meanServiceSeconds = service }
        guard let meanServiceSeconds, seconds.isFinite, seconds >= 0, end.isFinite else { return }
        let count = Double(max(arrivals, 0))
        intervals.append(Interval(end: end, seconds: seconds, arrivals: count, work: count * meanServiceSeconds))
        self.window = max(window, 0)
        let since = end - self.window
        let stale = intervals.prefix(intervals.count - 1).prefix { $0.end <= since }.count
        intervals.removeFirst(stale)
    }

    /// The offered load over the window; nil before a mean service time is known or while the
    /// window covers no time. An interval that began before the window counts for the share of
    /// it inside, as if its calls arrived evenly; with no window, the latest interval counts whole.
    var offeredLoad: OfferedLoad? {
        guard let meanServiceSeconds, let latest = intervals.last else { return nil }
        let since = latest.end - window
        var seconds = 0.0
        var arrivals = 0.0
        var work = 0.0
        for interval in intervals {
            let inside = window > 0 && interval.seconds > 0 ? min((interval.end - since) / interval.seconds, 1) : 1
            seconds += interval.seconds * inside
            arrivals += interval.arrivals * inside
            work += interval.work * inside
        }
        guard seconds > 0 else { return nil }
        // The service time weighted by arrivals, so that arrivals × it is the work they bring.
        return OfferedLoad(arrivalsPerSecond: arrivals / seconds, meanServiceSeconds: arrivals > 0 ? work / arrivals : meanServiceSeconds)
    }
}
