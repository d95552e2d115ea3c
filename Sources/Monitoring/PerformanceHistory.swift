import Backend
import Logging
import NIOCore
import Synchronization

/// How long the store keeps each level of history.
public struct HistoryRetention: Sendable, Equatable {
    public var minutes: Duration
    public var hours: Duration
    public var days: Duration

    public init(minutes: Duration = .seconds(86_400), hours: Duration = .seconds(30 * 86_400), days: Duration = .seconds(400 * 86_400)) {
        self.minutes = minutes
        self.hours = hours
        self.days = days
    }

    /// A day of minutes, 30 days of hours, 400 days of days.
    public static let `default` = HistoryRetention()
}

/// What the alert rules judge an agent by: its calls over a recent window.
public struct RecentAgentFigures: Sendable, Equatable {
    public var calls: Int
    public var errors: Int
    /// Nil when there were no calls.
    public var latencyP99: Double?
    /// The template the agent was last recorded with.
    public var template: String?

    public init(calls: Int, errors: Int, latencyP99: Double?, template: String?) {
        self.calls = calls
        self.errors = errors
        self.latencyP99 = latencyP99
        self.template = template
    }

    /// errors / calls; 0 when there were no calls.
    public var errorRate: Double { calls > 0 ? Double(errors) / Double(calls) : 0 }
}

/// Each agent's calls, latencies, load and resource use by minute, hour and day, kept in the
/// shared key-value store.
///
/// Recording is for hot paths: one lock, and an allocation only for the first sample of a
/// series in a minute (and when a histogram's window grows). Samples go into the minute bucket
/// of their agent in memory; `flush` writes the minutes that have closed and rolls them up
/// into this replica's hour and day keys. Every replica writes its own keys, and a query
/// merges all replicas' keys of a bucket with what this process has not written yet.
///
/// A call without a tool name is counted under the tool "" (the gateway names every call it
/// records: tool calls and task attempts by their tool).
///
/// Memory is bounded: at most `maximumSeries` (agent, tool) series (an agent with resource
/// samples only is one series). Past it a known agent's new tools are counted together as the
/// tool "(other)" (admitted past the bound, once per agent) and a new agent's samples are
/// dropped. Each agent keeps at most 15 written minutes (for `recentFigures`), and while the
/// store fails at most 60 unwritten closed minutes, 48 hours and 7 days; older ones are
/// dropped. `droppedSamples` counts the samples refused and those of buckets dropped unwritten.
///
/// Replica names must be unique among the processes writing to the store at one time: a
/// process that restarts under the same name takes in what its predecessor wrote for the
/// current minute, hour and day before it first overwrites those keys.
public final class PerformanceHistory: Sendable {
    public let namespace: String
    public let replica: String
    public let retention: HistoryRetention
    public let maximumSeries: Int

    private let store: any KeyValueStore
    private let logger: Logger
    private let state: Mutex<HistoryState>
    /// Writes (or reads) a flush or a query has in flight at once.
    private static let concurrentRequests = 16
    /// Keys per page when a query lists the store.
    private static let listingPage = 256

    public init(
        store: any KeyValueStore, namespace: String = "switchboard.history", replica: String,
        retention: HistoryRetention = .default, maximumSeries: Int = 10_000,
        logger: Logger = Logger(label: "switchboard.history")
    ) {
        self.store = store
        self.namespace = namespace
        self.replica = replica
        self.retention = retention
        self.maximumSeries = max(1, maximumSeries)
        self.logger = logger
        self.state = Mutex(HistoryState(maximumSeries: max(1, maximumSeries)))
    }

    // MARK: Recording

    /// Counts one finished call to `agent` of `tool` (nil: counted under the tool "").
    public func recordCall(agent: String, template: String?, tool: String?, succeeded: Bool, seconds: Double, at time: Timestamp) {
        let minute = HistoryPeriod.minute.start(of: time)
        state.withLock { state in
            state.recordCall(agent: agent, template: template, tool: tool ?? "", succeeded: succeeded, seconds: seconds, minute: minute)
        }
    }

    /// Counts `calls` calls of `tool` to `agent` within the minute of `time`, `errors` of them
    /// failed, with their latencies: what a caller tallied itself (one lock and no lookup by name
    /// per call) and hands over a minute at a time.
    public func recordCalls(
        agent: String, template: String?, tool: String?, calls: Int, errors: Int, latency: LatencyHistogram, at time: Timestamp
    ) {
        guard calls > 0 else { return }
        let minute = HistoryPeriod.minute.start(of: time)
        let figures = CallFigures(calls: calls, errors: errors, latency: latency)
        state.withLock { state in
            state.mergeCalls(agent: agent, template: template, tool: tool ?? "", calls: figures, minute: minute)
        }
    }

    /// Counts one periodic sample of an agent instance: calls in flight, and its CPU and
    /// memory use where known.
    public func sampleResources(agent: String, template: String?, load: Int, cpuPercent: Double?, memoryBytes: Int64?, at time: Timestamp) {
        let minute = HistoryPeriod.minute.start(of: time)
        state.withLock { state in
            state.sampleResources(
                agent: agent, template: template, load: load, cpuPercent: cpuPercent, memoryBytes: memoryBytes,
                atMilliseconds: time.millisecondsSinceEpoch, minute: minute)
        }
    }

    /// Samples refused (series bound) or lost with buckets dropped before they were written.
    public var droppedSamples: Int {
        state.withLock { $0.droppedSamples }
    }

    // MARK: Writing

    /// Writes the minutes that have closed by `now`, and the hour and day keys they roll up
    /// into. What cannot be written (the store fails) is kept for the next flush, within the
    /// bounds. Call it periodically, every few seconds: a query sees unwritten figures
    /// anyway, but other replicas see only what is written. Overlapping flushes are safe, if
    /// wasteful.
    public func flush(now: Timestamp) async {
        await flush(now: now, includingOpenMinute: false)
    }

    /// `flush`, and the minute still open too: for shutdown, from a task that is not
    /// cancelled (a store may refuse a cancelled task's writes). Samples recorded after it
    /// are written by the next flush.
    public func flushAll(now: Timestamp) async {
        await flush(now: now, includingOpenMinute: true)
    }

    private func flush(now: Timestamp, includingOpenMinute: Bool) async {
        let nowMinute = HistoryPeriod.minute.start(of: now)
        let items = state.withLock { $0.prepareFlush(nowMinute: nowMinute, includingOpenMinute: includingOpenMinute) }
        var failure: (any Error)?
        var next = 0
        // In batches: a store that fails fails the batch, and the rest waits for the next flush.
        while next < items.count, failure == nil {
            let batch = items[next..<min(next + Self.concurrentRequests, items.count)]
            next = batch.endIndex
            failure = await withTaskGroup(of: (any Error)?.self) { group in
                for item in batch {
                    group.addTask { await self.write(item) }
                }
                var failure: (any Error)?
                for await outcome in group where outcome != nil { failure = outcome }
                return failure
            }
        }
        let unattempted = items[next...]
        let failed = failure != nil
        let wasFailing = state.withLock { state in
            for item in unattempted where item.loadsBase { state.releaseBase(for: item) }
            state.tidy(nowMinute: nowMinute)
            let wasFailing = state.flushIsFailing
            state.flushIsFailing = failed
            return wasFailing
        }
        if let failure {
            let level: Logger.Level = wasFailing ? .debug : .warning
            logger.log(level: level, "history not written, kept for the next flush", metadata: ["error": "\(failure)"])
        } else if wasFailing {
            logger.info("history written again")
        }
    }

    /// Writes one bucket, first taking in its stored value if it needs to; nil on success.
    private func write(_ item: FlushItem) async -> (any Error)? {
        let key = HistoryKey.key(period: item.period, agent: item.agent, start: item.start, replica: replica)
        var item = item
        if item.loadsBase {
            let base: BucketFigures?
            do {
                base = try await store.get(key, namespace: namespace).flatMap { entry in
                    let figures = BucketCoding.decode(entry.value)
                    if figures == nil { logger.warning("unreadable history value replaced", metadata: ["key": "\(key)"]) }
                    return figures
                }
            } catch {
                state.withLock { $0.releaseBase(for: item) }
                return error
            }
            guard let refreshed = state.withLock({ $0.adoptBase(base, for: item) }) else { return nil }
            item = refreshed
        }
        let value = BucketCoding.encode(item.figures, agent: item.agent, replica: replica, period: item.period, start: item.start)
        do {
            _ = try await store.set(key, to: value, ttl: ttl(of: item.period), namespace: namespace)
        } catch {
            return error
        }
        state.withLock { $0.markWritten(item) }
        return nil
    }

    private func ttl(of period: HistoryPeriod) -> Duration {
        switch period {
        case .minute: retention.minutes
        case .hour: retention.hours
        case .day: retention.days
        }
    }

    // MARK: Reading

    /// The agent's buckets of `period` from the one holding `from` through the one holding
    /// `to`, ascending, at most `limit`: every replica's stored figures merged with what this
    /// process has not written yet. With `tool`, each point counts that tool's calls alone,
    /// and buckets without them are left out. Resource figures are the agent's either way.
    public func history(
        agent: String, period: HistoryPeriod, from: Timestamp, to: Timestamp, tool: String? = nil, limit: Int = 1_440
    ) async throws -> [HistoryPoint] {
        let first = period.start(of: from)
        let last = period.start(of: to)
        guard first <= last, limit > 0 else { return [] }
        // The store first: a flush that writes in between is then seen in memory.
        let stored = try await storedBuckets(agent: agent, period: period, first: first, last: last, limit: limit)
        let local = state.withLock { $0.localFigures(agent: agent, period: period, first: first, last: last) }
        let ownReplica = HistoryKey.segment(replica)
        let starts = Set(stored.keys).union(local.keys).sorted().prefix(limit)
        return starts.compactMap { start in
            var merged = BucketFigures()
            let localFigures = local[start]
            for (replica, figures) in stored[start] ?? [] {
                if replica == ownReplica, localFigures?.isComplete == true { continue }
                merged.merge(figures)
            }
            if let localFigures { merged.merge(localFigures.figures) }
            return HistoryPoint(start: start, period: period, figures: merged, tool: tool)
        }
    }

    /// The stored figures of the first `limit` buckets from `first` through `last`, by start,
    /// each as (encoded replica, figures).
    private func storedBuckets(
        agent: String, period: HistoryPeriod, first: Int64, last: Int64, limit: Int
    ) async throws -> [Int64: [(String, BucketFigures)]] {
        let prefix = HistoryKey.prefix(period: period, agent: agent)
        var keys: [(key: String, start: Int64, replica: String)] = []
        var cursor: String? = HistoryKey.listingCursor(period: period, agent: agent, from: first)
        var buckets = 0
        listing: while let after = cursor {
            let page = try await store.list(namespace: namespace, prefix: prefix, after: after, limit: Self.listingPage)
            for entry in page.entries {
                guard let (start, replica) = HistoryKey.parse(entry.key, prefix: prefix) else { continue }
                if start > last { break listing }
                if keys.last?.start != start {
                    if buckets == limit { break listing }
                    buckets += 1
                }
                keys.append((entry.key, start, replica))
            }
            cursor = page.nextCursor
        }

        var result: [Int64: [(String, BucketFigures)]] = [:]
        var next = 0
        while next < keys.count {
            let batch = keys[next..<min(next + Self.concurrentRequests, keys.count)]
            next = batch.endIndex
            try await withThrowingTaskGroup(of: (Int64, String, BucketFigures?).self) { group in
                for (key, start, replica) in batch {
                    group.addTask {
                        let entry = try await self.store.get(key, namespace: self.namespace)
                        return (start, replica, entry.flatMap { BucketCoding.decode($0.value) })
                    }
                }
                for try await (start, replica, figures) in group {
                    if let figures { result[start, default: []].append((replica, figures)) }
                }
            }
        }
        return result
    }

    /// Each agent's calls in the minutes that overlap the last `window` up to `now` (the open
    /// minute included), from memory: for windows up to 15 minutes. Agents without a sample
    /// in those minutes are absent.
    public func recentFigures(window: Duration, now: Timestamp) -> [String: RecentAgentFigures] {
        let to = now.millisecondsSinceEpoch
        let from = to - window.wholeMilliseconds
        return state.withLock { $0.recentFigures(fromMilliseconds: from, toMilliseconds: to) }
    }
}
