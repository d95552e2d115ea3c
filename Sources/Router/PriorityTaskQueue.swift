/// Pending tasks in the order they should run: priority (1 highest … 10 lowest), then arrival.
///
/// Aging keeps low priorities from starving: every `agingStep` a task has waited counts as one
/// priority level better, down to 1. Within a priority, tasks stay first in, first out, and the
/// older a task the more it has aged, so each level's queue is already in order; the order across
/// levels is a merge of the ten queue heads.
public struct PriorityTaskQueue: Sendable {
    public struct Entry: Sendable, Equatable {
        public var taskID: String
        public var priority: Int
        public var enqueuedAt: ContinuousClock.Instant
        var sequence: UInt64
    }

    public let agingStep: Duration
    private var levels: [Level] = Array(repeating: Level(), count: 10)
    /// Sequence numbers of entries taken out from the middle, skipped until compacted away.
    private var removed: Set<UInt64> = []
    /// The sequence number of each task's live entry.
    private var live: [String: UInt64] = [:]
    private var sequence: UInt64 = 0
    public private(set) var count = 0

    public init(agingStep: Duration = .seconds(10)) {
        self.agingStep = agingStep
    }

    public var isEmpty: Bool { count == 0 }

    public mutating func push(_ taskID: String, priority: Int, at now: ContinuousClock.Instant = .now) {
        sequence += 1
        let level = min(max(priority, 1), 10) - 1
        remove(taskID)
        levels[level].append(Entry(taskID: taskID, priority: level + 1, enqueuedAt: now, sequence: sequence))
        live[taskID] = sequence
        count += 1
    }

    /// Takes a task out wherever it is (it was dispatched or cancelled).
    public mutating func remove(_ taskID: String) {
        guard let sequence = live.removeValue(forKey: taskID) else { return }
        removed.insert(sequence)
        count -= 1
    }

    public func contains(_ taskID: String) -> Bool {
        live[taskID] != nil
    }

    /// Up to `limit` pending tasks, best first, as of `now`.
    public mutating func ordered(limit: Int, at now: ContinuousClock.Instant = .now) -> [Entry] {
        compact()
        var cursors = levels.map(\.head)
        var result: [Entry] = []
        while result.count < limit {
            var best: (level: Int, entry: Entry, effective: Int)?
            for level in 0..<levels.count {
                var cursor = cursors[level]
                while cursor < levels[level].entries.count, removed.contains(levels[level].entries[cursor].sequence) { cursor += 1 }
                cursors[level] = cursor
                guard cursor < levels[level].entries.count else { continue }
                let entry = levels[level].entries[cursor]
                let effective = effectivePriority(entry, now: now)
                if let current = best, (current.effective, current.entry.sequence) <= (effective, entry.sequence) { continue }
                best = (level, entry, effective)
            }
            guard let chosen = best else { break }
            result.append(chosen.entry)
            cursors[chosen.level] += 1
        }
        return result
    }

    public func effectivePriority(_ entry: Entry, now: ContinuousClock.Instant) -> Int {
        let waited = now - entry.enqueuedAt
        let steps = Int(waited / agingStep)
        return max(1, entry.priority - steps)
    }

    /// Drops removed entries from the front of each level; rebuilds the levels when tombstones
    /// outnumber live entries, so memory stays proportional to what is queued.
    private mutating func compact() {
        let rebuild = removed.count > max(1024, count)
        for level in 0..<levels.count {
            while levels[level].head < levels[level].entries.count, removed.remove(levels[level].entries[levels[level].head].sequence) != nil {
                levels[level].head += 1
            }
            if rebuild || levels[level].head > 1024 {
                levels[level].entries = levels[level].entries[levels[level].head...].filter { removed.remove($0.sequence) == nil }
                levels[level].head = 0
            }
        }
    }

    private struct Level: Sendable {
        var entries: [Entry] = []
        var head = 0

        mutating func append(_ entry: Entry) { entries.append(entry) }
    }
}
