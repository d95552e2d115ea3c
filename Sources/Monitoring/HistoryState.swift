/// What `PerformanceHistory` keeps behind its lock: every change here is synchronous and
/// short, and never waits for the store.
struct HistoryState: Sendable {
    /// Where tools of an agent go once the series bound is reached.
    static let otherTool = "(other)"

    let maximumSeries: Int
    var agents: [String: AgentHistory] = [:]
    /// Σ `seriesCost` over the agents.
    var seriesCount = 0
    var droppedSamples = 0
    /// The minute of this process's first sample: this replica's previous process may have
    /// written buckets up to it.
    var firstMinute: Int64?
    /// The latest minute any sample was for: a bucket made for an earlier one may have been
    /// written before (and let go).
    var newestMinute = Int64.min
    /// Whether the last flush failed, to warn once per outage rather than at every flush.
    var flushIsFailing = false

    init(maximumSeries: Int) {
        self.maximumSeries = maximumSeries
    }

    // MARK: Recording

    mutating func recordCall(agent: String, template: String?, tool: String, succeeded: Bool, seconds: Double, minute: Int64) {
        for (subject, subjectTemplate) in HistorySubject.counting(agent: agent, template: template) {
            guard admit(subject) else {
                droppedSamples += 1
                continue
            }
            let series = admit(tool, of: subject)
            change(agent: subject, template: subjectTemplate, minute: minute) { figures in
                figures.tools[series, default: CallFigures()].record(succeeded: succeeded, seconds: seconds)
            }
        }
    }

    /// Calls already counted elsewhere (a tally of one agent's calls of one tool within `minute`).
    mutating func mergeCalls(agent: String, template: String?, tool: String, calls: CallFigures, minute: Int64) {
        for (subject, subjectTemplate) in HistorySubject.counting(agent: agent, template: template) {
            guard admit(subject) else {
                droppedSamples += calls.calls
                continue
            }
            let series = admit(tool, of: subject)
            change(agent: subject, template: subjectTemplate, minute: minute) { figures in
                figures.tools[series, default: CallFigures()].merge(calls)
            }
        }
    }

    mutating func sampleResources(
        agent: String, template: String?, load: Int, cpuPercent: Double?, memoryBytes: Int64?, atMilliseconds: Int64, minute: Int64
    ) {
        guard admit(agent) else {
            droppedSamples += 1
            return
        }
        change(agent: agent, template: template, minute: minute) { figures in
            figures.resources.record(load: load, cpuPercent: cpuPercent, memoryBytes: memoryBytes, atMilliseconds: atMilliseconds)
        }
    }

    private mutating func change(agent: String, template: String?, minute: Int64, _ body: (inout BucketFigures) -> Void) {
        if firstMinute == nil { firstMinute = minute }
        let base: StoredBase = minute <= firstMinute! || minute < newestMinute ? .needed : .none
        newestMinute = max(newestMinute, minute)
        let outcome = agents[agent]!.changeMinute(minute, base: base, template: template, body)
        droppedSamples += outcome.dropped + (outcome.applied ? 0 : 1)
    }

    /// Whether samples of `agent` may be kept: a known agent, or a new one within the bound.
    private mutating func admit(_ agent: String) -> Bool {
        if agents[agent] != nil { return true }
        guard seriesCount < maximumSeries else { return false }
        agents[agent] = AgentHistory()
        seriesCount += 1
        return true
    }

    /// The series a call of `tool` is counted in: the tool's own, or "(other)" once the bound
    /// is reached. "(other)" is admitted past the bound, once per agent, so that the agent's
    /// calls are still all counted.
    private mutating func admit(_ tool: String, of agent: String) -> String {
        if agents[agent]!.tools.contains(tool) { return tool }
        let isFirstTool = agents[agent]!.tools.isEmpty
        if isFirstTool || seriesCount < maximumSeries {
            // An agent's first tool replaces the series its resource samples stood for.
            if !isFirstTool { seriesCount += 1 }
            agents[agent]!.tools.insert(tool)
            return tool
        }
        if agents[agent]!.tools.insert(Self.otherTool).inserted { seriesCount += 1 }
        return Self.otherTool
    }

    // MARK: Flushing

    mutating func prepareFlush(nowMinute: Int64, includingOpenMinute: Bool) -> [FlushItem] {
        var items: [FlushItem] = []
        for agent in agents.keys.sorted() {
            agents[agent]!.prepareFlush(agent: agent, nowMinute: nowMinute, includingOpenMinute: includingOpenMinute, into: &items)
        }
        return items
    }

    /// Merges the stored value read for `item` under the figures held; returns the item to
    /// write instead, or nil when memory no longer holds the bucket.
    mutating func adoptBase(_ base: BucketFigures?, for item: FlushItem) -> FlushItem? {
        agents[item.agent]?.withStored(period: item.period, start: item.start) { stored -> FlushItem? in
            guard stored.base == .loading else { return nil }
            stored.base = .loaded
            if let base {
                // The base is older: what memory holds wins where one value replaces another.
                var merged = base
                merged.merge(stored.figures)
                stored.figures = merged
                stored.revision += 1
            }
            var refreshed = item
            refreshed.figures = stored.figures
            refreshed.revision = stored.revision
            refreshed.loadsBase = false
            return refreshed
        } ?? nil
    }

    /// The base of `item` was not read: the next flush tries again.
    mutating func releaseBase(for item: FlushItem) {
        _ = agents[item.agent]?.withStored(period: item.period, start: item.start) { stored in
            if stored.base == .loading { stored.base = .needed }
        }
    }

    mutating func markWritten(_ item: FlushItem) {
        _ = agents[item.agent]?.withStored(period: item.period, start: item.start) { stored in
            if stored.revision == item.revision { stored.writtenRevision = item.revision }
        }
    }

    mutating func tidy(nowMinute: Int64) {
        var count = 0
        for agent in Array(agents.keys) {
            droppedSamples += agents[agent]!.tidy(nowMinute: nowMinute)
            if agents[agent]!.isEmpty {
                agents[agent] = nil
            } else {
                count += agents[agent]!.seriesCost
            }
        }
        seriesCount = count
    }

    // MARK: Reading

    func localFigures(agent: String, period: HistoryPeriod, first: Int64, last: Int64) -> [Int64: LocalFigures] {
        agents[agent]?.localFigures(period: period, first: first, last: last) ?? [:]
    }

    func recentFigures(fromMilliseconds from: Int64, toMilliseconds to: Int64) -> [String: RecentAgentFigures] {
        var result: [String: RecentAgentFigures] = [:]
        for (agent, history) in agents where !HistorySubject.isAggregate(agent) {
            guard let calls = history.calls(fromMilliseconds: from, toMilliseconds: to) else { continue }
            result[agent] = RecentAgentFigures(
                calls: calls.calls, errors: calls.errors, latencyP99: calls.latency.percentile(0.99), template: history.template)
        }
        return result
    }
}
