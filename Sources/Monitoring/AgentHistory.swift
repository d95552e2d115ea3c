/// Whether a bucket in memory must first take in what this replica stored under the bucket's
/// key before the bucket existed here: written by this replica's previous process (a restart
/// within the minute, hour or day), or by this process before it let the bucket go.
enum StoredBase: Sendable, Equatable {
    /// Nothing stored can predate the bucket: its figures are the whole of this replica's.
    case none
    case needed
    /// A flush is reading it.
    case loading
    case loaded

    /// Whether the figures in memory are all of this replica's for the bucket.
    var isComplete: Bool { self == .none || self == .loaded }
}

/// Figures written under one key, and whether what is written is what is held.
struct StoredFigures: Sendable {
    var figures = BucketFigures()
    /// Counts changes, so that a write that raced a change does not mark the change written.
    var revision = 0
    var writtenRevision: Int?
    var base: StoredBase

    init(base: StoredBase) {
        self.base = base
    }

    var isWritten: Bool { writtenRevision == revision }

    mutating func change(_ body: (inout BucketFigures) -> Void) {
        body(&figures)
        revision += 1
    }
}

/// One minute of an agent's figures.
struct MinuteBucket: Sendable {
    let start: Int64
    var stored: StoredFigures
    /// Whether the figures went into the hour and day accumulators (at the flush after the
    /// minute closed).
    var isMerged = false
    /// What was recorded after the figures were merged (a late sample), to merge next time.
    var lateDelta: BucketFigures?

    init(start: Int64, base: StoredBase) {
        self.start = start
        self.stored = StoredFigures(base: base)
    }

    /// What the hour and day accumulators do not hold yet.
    var unmerged: BucketFigures? { isMerged ? lateDelta : stored.figures }

    /// Samples that no stored key holds yet, lost if the bucket is dropped now.
    var unwrittenSamples: Int { stored.isWritten ? 0 : stored.figures.sampleCount }
}

/// How much of an agent's history memory holds.
enum HistoryLimits {
    /// Closed minutes kept after they are written, for figures over windows up to this long.
    static let recentMinutes: Int64 = 15
    /// Closed minutes kept unwritten while the store fails; older ones are dropped.
    static let pendingMinutes = 60
    /// Hour and day accumulators kept unwritten while the store fails.
    static let pendingHours = 48
    static let pendingDays = 7
    /// Minute buckets of one agent at most, whatever happens (no flush at all, say).
    static let minuteBuckets = Int(recentMinutes) + 1 + pendingMinutes
}

/// Everything memory holds of one agent: its recent and unwritten minutes, and the
/// accumulators of the hours and days they roll up into.
struct AgentHistory: Sendable {
    var template: String?
    /// Ascending by start.
    var minutes: [MinuteBucket] = []
    /// By start, seconds since the epoch.
    var hours: [Int64: StoredFigures] = [:]
    var days: [Int64: StoredFigures] = [:]
    /// The tool names in any of the buckets: the agent's series.
    var tools: Set<String> = []

    var isEmpty: Bool { minutes.isEmpty && hours.isEmpty && days.isEmpty }

    /// What the agent counts against the series bound: one per tool, and one for an agent
    /// with resource samples only.
    var seriesCost: Int { max(1, tools.count) }

    /// Applies `change` to the figures of the minute starting at `minute` (a new bucket, with
    /// `base`, if there is none), noting the agent's template; returns the samples dropped to
    /// stay within bounds, and whether the change was applied (a late sample older than every
    /// bucket kept is not).
    mutating func changeMinute(
        _ minute: Int64, base: StoredBase, template: String?, _ change: (inout BucketFigures) -> Void
    ) -> (applied: Bool, dropped: Int) {
        if let template { self.template = template }
        var dropped = 0
        let index: Int
        if let last = minutes.last, last.start == minute {
            index = minutes.count - 1
        } else if minutes.last.map({ $0.start < minute }) ?? true {
            minutes.append(MinuteBucket(start: minute, base: base))
            dropped = trimMinutes()
            index = minutes.count - 1
        } else if let found = minutes.firstIndex(where: { $0.start >= minute }), minutes[found].start == minute {
            index = found
        } else {
            // A late sample for a minute memory no longer holds: its stored figures are the base.
            let position = minutes.firstIndex(where: { $0.start > minute }) ?? minutes.count
            minutes.insert(MinuteBucket(start: minute, base: .needed), at: position)
            dropped = trimMinutes()
            guard let kept = minutes.firstIndex(where: { $0.start == minute }) else { return (false, dropped) }
            index = kept
        }
        minutes[index].stored.change { figures in
            if let template { figures.template = template }
            change(&figures)
        }
        if minutes[index].isMerged {
            if minutes[index].lateDelta == nil { minutes[index].lateDelta = BucketFigures() }
            if let template { minutes[index].lateDelta!.template = template }
            change(&minutes[index].lateDelta!)
        }
        return (true, dropped)
    }

    /// Drops the oldest minutes beyond the hard bound; returns their unwritten samples.
    private mutating func trimMinutes() -> Int {
        guard minutes.count > HistoryLimits.minuteBuckets else { return 0 }
        let excess = minutes.count - HistoryLimits.minuteBuckets
        let dropped = minutes[..<excess].reduce(0) { $0 + $1.unwrittenSamples }
        minutes.removeFirst(excess)
        return dropped
    }

    // MARK: Flushing

    /// Merges the closed minutes (every minute with `includingOpenMinute`) into their hour and
    /// day accumulators, and appends what is to be written; a bucket whose stored base is to
    /// be read is marked as being read.
    mutating func prepareFlush(agent: String, nowMinute: Int64, includingOpenMinute: Bool, into items: inout [FlushItem]) {
        for index in minutes.indices where includingOpenMinute || minutes[index].start < nowMinute {
            let start = minutes[index].start
            if let delta = minutes[index].unmerged {
                hours[HistoryPeriod.hour.start(ofSecond: start), default: StoredFigures(base: .needed)].change { $0.merge(delta) }
                days[HistoryPeriod.day.start(ofSecond: start), default: StoredFigures(base: .needed)].change { $0.merge(delta) }
            }
            minutes[index].isMerged = true
            minutes[index].lateDelta = nil
            if let item = Self.claim(&minutes[index].stored, agent: agent, period: .minute, start: start) { items.append(item) }
        }
        for start in Array(hours.keys) {
            if let item = Self.claim(&hours[start]!, agent: agent, period: .hour, start: start) { items.append(item) }
        }
        for start in Array(days.keys) {
            if let item = Self.claim(&days[start]!, agent: agent, period: .day, start: start) { items.append(item) }
        }
    }

    /// The write of `stored` if it has unwritten changes and no other flush is reading its base.
    private static func claim(_ stored: inout StoredFigures, agent: String, period: HistoryPeriod, start: Int64) -> FlushItem? {
        guard !stored.isWritten, stored.base != .loading else { return nil }
        let loadsBase = stored.base == .needed
        if loadsBase { stored.base = .loading }
        return FlushItem(agent: agent, period: period, start: start, figures: stored.figures, revision: stored.revision, loadsBase: loadsBase)
    }

    /// Applies `body` to the stored figures of a bucket, if memory still holds it.
    mutating func withStored<Result>(period: HistoryPeriod, start: Int64, _ body: (inout StoredFigures) -> Result) -> Result? {
        switch period {
        case .minute:
            guard let index = minutes.firstIndex(where: { $0.start == start }) else { return nil }
            return body(&minutes[index].stored)
        case .hour:
            guard hours[start] != nil else { return nil }
            return body(&hours[start]!)
        case .day:
            guard days[start] != nil else { return nil }
            return body(&days[start]!)
        }
    }

    /// Lets go of what is written and no longer needed, and of the oldest unwritten buckets
    /// beyond the bounds; returns the samples those held.
    mutating func tidy(nowMinute: Int64) -> Int {
        var dropped = 0
        let recentFrom = nowMinute - HistoryLimits.recentMinutes * 60
        minutes.removeAll { bucket in
            bucket.start < recentFrom && bucket.isMerged && bucket.lateDelta == nil && bucket.stored.isWritten
                && bucket.stored.base != .loading
        }
        var pending = minutes.filter { $0.start < nowMinute && !$0.stored.isWritten && $0.stored.base != .loading }.map(\.start)
        if pending.count > HistoryLimits.pendingMinutes {
            pending.removeLast(HistoryLimits.pendingMinutes)
            let doomed = Set(pending)
            dropped += minutes.lazy.filter { doomed.contains($0.start) }.reduce(0) { $0 + $1.unwrittenSamples }
            minutes.removeAll { doomed.contains($0.start) }
        }
        dropped += Self.tidy(&hours, period: .hour, nowMinute: nowMinute, keeping: HistoryLimits.pendingHours)
        dropped += Self.tidy(&days, period: .day, nowMinute: nowMinute, keeping: HistoryLimits.pendingDays)

        var tools: Set<String> = []
        for bucket in minutes { tools.formUnion(bucket.stored.figures.tools.keys) }
        for stored in hours.values { tools.formUnion(stored.figures.tools.keys) }
        for stored in days.values { tools.formUnion(stored.figures.tools.keys) }
        self.tools = tools
        return dropped
    }

    /// Drops closed, written accumulators, then the oldest beyond `keeping`.
    private static func tidy(_ accumulators: inout [Int64: StoredFigures], period: HistoryPeriod, nowMinute: Int64, keeping: Int) -> Int {
        accumulators = accumulators.filter { start, stored in
            !(start + period.seconds <= nowMinute && stored.isWritten && stored.base != .loading)
        }
        guard accumulators.count > keeping else { return 0 }
        var dropped = 0
        for start in accumulators.keys.sorted().prefix(accumulators.count - keeping) {
            if let stored = accumulators.removeValue(forKey: start), !stored.isWritten {
                dropped += stored.figures.sampleCount
            }
        }
        return dropped
    }

    // MARK: Reading

    /// This replica's figures in memory for the buckets of `period` from `first` through
    /// `last`, each with whether they are the whole of this replica's bucket (when not, the
    /// stored value is to be added).
    func localFigures(period: HistoryPeriod, first: Int64, last: Int64) -> [Int64: LocalFigures] {
        var result: [Int64: LocalFigures] = [:]
        switch period {
        case .minute:
            for bucket in minutes where (first...last).contains(bucket.start) {
                result[bucket.start] = LocalFigures(figures: bucket.stored.figures, isComplete: bucket.stored.base.isComplete)
            }
        case .hour, .day:
            for (start, stored) in period == .hour ? hours : days where (first...last).contains(start) {
                result[start] = LocalFigures(figures: stored.figures, isComplete: stored.base.isComplete)
            }
            // Minutes not rolled up yet (the open one, those awaiting a flush).
            for bucket in minutes {
                let start = period.start(ofSecond: bucket.start)
                guard (first...last).contains(start), let delta = bucket.unmerged else { continue }
                result[start, default: LocalFigures(figures: BucketFigures(), isComplete: false)].figures.merge(delta)
            }
        }
        return result
    }

    /// All tools' calls in the minutes that overlap [from, to] (milliseconds since the epoch),
    /// or nil when no minute does.
    func calls(fromMilliseconds from: Int64, toMilliseconds to: Int64) -> CallFigures? {
        var total = CallFigures()
        var overlaps = false
        for bucket in minutes.reversed() {
            let startMilliseconds = bucket.start * 1_000
            if startMilliseconds > to { continue }
            if startMilliseconds + 60_000 <= from { break }
            overlaps = true
            for calls in bucket.stored.figures.tools.values { total.merge(calls) }
        }
        return overlaps ? total : nil
    }
}

/// A write a flush is to make: the figures of one bucket as they were when it was prepared.
struct FlushItem: Sendable {
    var agent: String
    var period: HistoryPeriod
    var start: Int64
    var figures: BucketFigures
    var revision: Int
    /// Whether the stored value is to be read and merged first.
    var loadsBase: Bool
}

/// A bucket as this process holds it, for a query.
struct LocalFigures: Sendable {
    var figures: BucketFigures
    /// When true, the figures include everything this replica stored for the bucket.
    var isComplete: Bool
}
