import DequeModule

/// Pending tasks in the order they should run: priority (1 highest … 10 lowest), then arrival.
///
/// Aging keeps low priorities from starving: every `agingStep` a task has waited counts as one
/// priority level better, down to 1. Within a priority, tasks stay first in, first out, and the
/// older a task the more it has aged, so each level's queue is already in order; the order across
/// levels is a merge of the ten queue heads.
///
/// Each task belongs to a group (what it needs of an agent: its tool and constraints), and the
/// queue counts the groups it holds, so that a dispatch pass can stop as soon as every group
/// waiting is known to have no free agent, instead of walking tasks that cannot run either.
public struct PriorityTaskQueue: Sendable {
    public struct Entry: Sendable, Equatable {
        public var taskID: String
        public var priority: Int
        public var enqueuedAt: ContinuousClock.Instant
        public var group: String
        var sequence: UInt64
    }

    public let agingStep: Duration
    private var levels: [Deque<Entry>] = Array(repeating: [], count: 10)
    /// Sequence numbers of entries taken out from the middle, skipped until they reach a head.
    private var removed: Set<UInt64> = []
    /// Each task's live entry: its sequence number and group.
    private var live: [String: (sequence: UInt64, group: String)] = [:]
    private var groups: [String: Int] = [:]
    private var sequence: UInt64 = 0
    public private(set) var count = 0

    public init(agingStep: Duration = .seconds(10)) {
        self.agingStep = agingStep
    }

    public var isEmpty: Bool { count == 0 }

    /// How many distinct groups the queued tasks belong to.
    public var groupCount: Int { groups.count }

    public mutating func push(_ taskID: String, priority: Int, group: String = "", at now: ContinuousClock.Instant = .now) {
        sequence += 1
        let level = min(max(priority, 1), 10) - 1
        remove(taskID)
        levels[level].append(Entry(taskID: taskID, priority: level + 1, enqueuedAt: now, group: group, sequence: sequence))
        live[taskID] = (sequence, group)
        groups[group, default: 0] += 1
        count += 1
    }

    /// Takes a task out wherever it is (it was dispatched or cancelled).
    public mutating func remove(_ taskID: String) {
        guard let (sequence, group) = live.removeValue(forKey: taskID) else { return }
        removed.insert(sequence)
        if groups[group] == 1 { groups[group] = nil } else { groups[group]! -= 1 }
        count -= 1
    }

    public func contains(_ taskID: String) -> Bool {
        live[taskID] != nil
    }

    /// What `visit` does with the entry it shows.
    public enum Visit {
        /// Leave it queued and go on.
        case keep
        /// Take it out of the queue and go on.
        case take
        /// Leave it, and pass over the rest of its group (none of them can run now either).
        case skipGroup
    }

    /// Shows pending tasks best first, as of `now`, up to `limit` of them, until every group
    /// queued has been skipped. Entries are worked out one at a time: a pass that ends early
    /// costs what it saw.
    public mutating func visit(limit: Int, at now: ContinuousClock.Instant = .now, _ body: (Entry) -> Visit) {
        compactIfMostlyRemoved()
        dropRemovedHeads()
        var cursors = Array(repeating: 0, count: levels.count)
        var seen = 0
        var skipped: Set<String> = []
        while seen < limit, skipped.count < groups.count {
            var best: (level: Int, entry: Entry, effective: Int)?
            for level in 0..<levels.count {
                var cursor = cursors[level]
                while cursor < levels[level].count, removed.contains(levels[level][cursor].sequence) { cursor += 1 }
                cursors[level] = cursor
                guard cursor < levels[level].count else { continue }
                let entry = levels[level][cursor]
                let effective = effectivePriority(entry, now: now)
                if let current = best, (current.effective, current.entry.sequence) <= (effective, entry.sequence) { continue }
                best = (level, entry, effective)
            }
            guard let chosen = best else { return }
            cursors[chosen.level] += 1
            seen += 1
            if skipped.contains(chosen.entry.group) { continue }
            switch body(chosen.entry) {
            case .keep: continue
            case .take: remove(chosen.entry.taskID)
            case .skipGroup: skipped.insert(chosen.entry.group)
            }
        }
    }

    /// Up to `limit` pending tasks, best first, as of `now`.
    public mutating func ordered(limit: Int, at now: ContinuousClock.Instant = .now) -> [Entry] {
        var result: [Entry] = []
        visit(limit: limit, at: now) { entry in
            result.append(entry)
            return .keep
        }
        return result
    }

    public func effectivePriority(_ entry: Entry, now: ContinuousClock.Instant) -> Int {
        let waited = now - entry.enqueuedAt
        let steps = Int(waited / agingStep)
        return max(1, entry.priority - steps)
    }

    /// Drops removed entries from the front of each level: O(1) each, as tasks mostly leave
    /// from the front.
    private mutating func dropRemovedHeads() {
        for level in 0..<levels.count {
            while let first = levels[level].first, removed.remove(first.sequence) != nil {
                levels[level].removeFirst()
            }
        }
    }

    /// Rebuilds the levels when entries taken out from the middle outnumber the live ones, so
    /// that memory stays proportional to what is queued.
    private mutating func compactIfMostlyRemoved() {
        guard removed.count > max(1024, count) else { return }
        for level in 0..<levels.count {
            levels[level] = Deque(levels[level].filter { removed.remove($0.sequence) == nil })
        }
        removed.removeAll(keepingCapacity: true)
    }
}
