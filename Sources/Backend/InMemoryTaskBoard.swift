import NIOCore
import Synchronization

/// The embedded task board: one process, one lock, time from an injectable clock.
///
/// Each queue is an `IndexedHeap` of task numbers by (priority, number), so a claim, a requeue
/// at the old place and a cancellation each cost O(log n). Leases and delayed retries sit in
/// heaps by the time they are due, so a reap costs O(k log n) for k due tasks. Finished tasks
/// sit in a heap by the end of their retention and are forgotten by the first operation after
/// it, so memory holds the live tasks and the retained ones, nothing more.
public final class InMemoryTaskBoard: TaskBoard {
    /// How many dead-lettered ids are kept; older ones are dropped (as the Redis board does).
    public static let deadLetterCapacity = 10_000

    /// Where a task is. The state string is kept apart because the engine writes it too.
    private enum Placement {
        case waiting(remaining: Int)
        case queued
        case delayed
        case leased
        case finished
    }

    private struct Entry {
        var task: BoardTask
        var placement: Placement
        var idempotencyKey: String?
        /// Tasks waiting for this one, by number.
        var dependents: [Int64] = []
    }

    /// A place in a queue: priority first, then submission order.
    private struct QueuePlace: Comparable {
        var priority: Int
        var number: Int64

        static func < (lhs: QueuePlace, rhs: QueuePlace) -> Bool {
            (lhs.priority, lhs.number) < (rhs.priority, rhs.number)
        }
    }

    /// When something about a task is due (a lease's end, a retry, forgetting it).
    private struct Due: Comparable {
        var at: Timestamp
        var number: Int64

        static func < (lhs: Due, rhs: Due) -> Bool {
            (lhs.at, lhs.number) < (rhs.at, rhs.number)
        }
    }

    private struct RememberedKey {
        var number: Int64
        var expiresAt: Timestamp
    }

    /// Stale once its key was extended or taken by a newer task (the time differs).
    private struct KeyExpiry: Comparable {
        var at: Timestamp
        var key: String

        static func < (lhs: KeyExpiry, rhs: KeyExpiry) -> Bool { lhs.at < rhs.at }
    }

    private struct State {
        /// Starts at the time the board starts (TaskNumbers).
        var lastNumber = TaskNumbers.floor()
        var tasks: [Int64: Entry] = [:]
        /// Every number handed out, ascending, for `list`; forgotten ones are dropped in batches.
        var numbers: [Int64] = []
        var queues: [String: IndexedHeap<Int64, QueuePlace>] = [:]
        var leases = IndexedHeap<Int64, Due>()
        var delayed = IndexedHeap<Int64, Due>()
        var forgetting = MinimumHeap<Due>()
        var idempotency: [String: RememberedKey] = [:]
        var keyExpiries = MinimumHeap<KeyExpiry>()
        /// Oldest first.
        var deadLetters: [String] = []
    }

    private let state = Mutex(State())
    public let clock: any BackendClock

    public init(clock: any BackendClock = SystemClock()) {
        self.clock = clock
    }

    // MARK: TaskBoard

    public func submit(_ submission: BoardSubmission) async throws -> BoardSubmitOutcome {
        let now = clock.now()
        let record = Self.copy(submission.record)
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            if let key = submission.idempotencyKey, let known = state.idempotency[key], known.expiresAt > now,
                let earlier = state.tasks[known.number]
            {
                return .duplicate(earlier.task)
            }
            var unfinished: [Int64] = []
            var endedOtherwise: BoardTask?
            for id in submission.waitingFor {
                guard let number = Self.number(of: id), let dependency = state.tasks[number] else { return .unknownDependency(id) }
                if case .finished = dependency.placement {
                    if dependency.task.state != "COMPLETED", endedOtherwise == nil { endedOtherwise = dependency.task }
                } else if !unfinished.contains(number) {
                    unfinished.append(number)
                }
            }

            state.lastNumber += 1
            let number = state.lastNumber
            let task = BoardTask(
                id: "task-\(number)", number: number, queue: submission.queue, priority: submission.priority, state: "PENDING",
                record: record, owner: nil, claims: 0, maximumClaims: submission.maximumClaims, note: nil)
            state.tasks[number] = Entry(task: task, placement: .queued, idempotencyKey: submission.idempotencyKey)
            state.numbers.append(number)
            if let key = submission.idempotencyKey {
                Self.remember(key, number: number, until: now.advanced(by: submission.idempotencyTTL), &state)
            }

            if let endedOtherwise {
                state.tasks[number]!.task.state = "FAILED"
                state.tasks[number]!.task.note = "dependency \(endedOtherwise.id) ended \(endedOtherwise.state)"
                Self.retire(number, retention: submission.idempotencyTTL, now: now, &state)
            } else if unfinished.isEmpty {
                Self.enqueue(number, &state)
            } else {
                state.tasks[number]!.task.state = "WAITING"
                state.tasks[number]!.placement = .waiting(remaining: unfinished.count)
                for dependency in unfinished { state.tasks[dependency]!.dependents.append(number) }
            }
            return .created(state.tasks[number]!.task)
        }
    }

    public func claim(from queue: String, owner: String, lease: Duration) async throws -> BoardTask? {
        let now = clock.now()
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            guard let first = state.queues[queue]?.removeMinimum() else { return nil }
            if state.queues[queue]?.isEmpty == true { state.queues[queue] = nil }
            let number = first.key
            Self.lease(number, to: owner, until: now.advanced(by: lease), &state)
            state.tasks[number]!.task.state = "ASSIGNED"
            state.tasks[number]!.task.claims += 1
            return state.tasks[number]!.task
        }
    }

    public func renew(_ ids: [String], owner: String, lease: Duration) async throws -> Set<String> {
        let now = clock.now()
        let until = now.advanced(by: lease)
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            var lost: Set<String> = []
            for id in ids {
                guard let number = Self.held(id, by: owner, in: state.tasks) else {
                    lost.insert(id)
                    continue
                }
                state.leases.set(number, Due(at: until, number: number))
            }
            return lost
        }
    }

    public func update(_ id: String, owner: String, state newState: String, record: ByteBuffer) async throws -> Bool {
        let now = clock.now()
        let record = Self.copy(record)
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            guard let number = Self.held(id, by: owner, in: state.tasks) else { return false }
            state.tasks[number]!.task.state = newState
            state.tasks[number]!.task.record = record
            state.tasks[number]!.task.note = nil
            return true
        }
    }

    public func finish(
        _ id: String, owner: String?, state finalState: String, record: ByteBuffer, retention: Duration, deadLetter: Bool
    ) async throws -> BoardFinishOutcome? {
        let now = clock.now()
        let record = Self.copy(record)
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            guard let number = Self.number(of: id), let entry = state.tasks[number] else { return nil }
            switch (entry.placement, owner) {
            case (.finished, _): return nil
            case (.leased, let owner?) where entry.task.owner == owner: break
            case (.leased, _), (_, .some): return nil
            case (_, nil): break
            }
            Self.unplace(number, &state)
            state.tasks[number]!.task.state = finalState
            state.tasks[number]!.task.record = record
            state.tasks[number]!.task.note = nil
            Self.retire(number, retention: retention, now: now, &state)
            if deadLetter {
                state.deadLetters.append(id)
                // Trimmed in batches so that appending stays O(1) amortised.
                if state.deadLetters.count >= 2 * Self.deadLetterCapacity {
                    state.deadLetters.removeFirst(state.deadLetters.count - Self.deadLetterCapacity)
                }
            }
            return Self.settleDependents(of: number, retention: retention, now: now, &state)
        }
    }

    public func retry(_ id: String, owner: String, record: ByteBuffer, after delay: Duration) async throws -> Bool {
        let now = clock.now()
        let record = Self.copy(record)
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            guard let number = Self.held(id, by: owner, in: state.tasks) else { return false }
            Self.unplace(number, &state)
            state.tasks[number]!.task.owner = nil
            state.tasks[number]!.task.state = "PENDING"
            state.tasks[number]!.task.record = record
            state.tasks[number]!.task.note = nil
            if delay > .zero {
                state.tasks[number]!.placement = .delayed
                state.delayed.set(number, Due(at: now.advanced(by: delay), number: number))
            } else {
                Self.enqueue(number, &state)
            }
            return true
        }
    }

    public func putBack(_ id: String, owner: String) async throws -> Bool {
        let now = clock.now()
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            guard let number = Self.held(id, by: owner, in: state.tasks) else { return false }
            Self.unplace(number, &state)
            state.tasks[number]!.task.owner = nil
            state.tasks[number]!.task.state = "PENDING"
            state.tasks[number]!.task.claims -= 1
            Self.enqueue(number, &state)
            return true
        }
    }

    public func reap(owner: String, lease: Duration) async throws -> BoardReapOutcome {
        let now = clock.now()
        let until = now.advanced(by: lease)
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            var outcome = BoardReapOutcome(requeued: [], exhausted: [])
            while let due = state.delayed.minimum, due.priority.at <= now {
                state.delayed.removeMinimum()
                Self.enqueue(due.key, &state)
                outcome.requeued.append(state.tasks[due.key]!.task.id)
            }
            // Taken out first: an exhausted task leased again for a zero lease is due again at once.
            var lapsed: [Int64] = []
            while let due = state.leases.minimum, due.priority.at <= now {
                state.leases.removeMinimum()
                lapsed.append(due.key)
            }
            for number in lapsed {
                let task = state.tasks[number]!.task
                state.tasks[number]!.task.note = "lease of \(task.owner ?? "nobody") lapsed"
                if task.claims >= task.maximumClaims {
                    Self.lease(number, to: owner, until: until, &state)
                    state.tasks[number]!.task.state = "ASSIGNED"
                    outcome.exhausted.append(state.tasks[number]!.task)
                } else {
                    state.tasks[number]!.task.owner = nil
                    state.tasks[number]!.task.state = "PENDING"
                    Self.enqueue(number, &state)
                    outcome.requeued.append(task.id)
                }
            }
            return outcome
        }
    }

    public func cancel(_ id: String, record: ByteBuffer, retention: Duration) async throws -> BoardCancelOutcome? {
        let now = clock.now()
        let record = Self.copy(record)
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            guard let number = Self.number(of: id), let entry = state.tasks[number] else { return nil }
            if case .finished = entry.placement { return .alreadyFinished(entry.task) }
            Self.unplace(number, &state)
            state.tasks[number]!.task.state = "CANCELLED"
            state.tasks[number]!.task.record = record
            state.tasks[number]!.task.note = nil
            Self.retire(number, retention: retention, now: now, &state)
            _ = Self.settleDependents(of: number, retention: retention, now: now, &state)
            return .cancelled(owner: entry.task.owner)
        }
    }

    public func get(_ id: String) async throws -> BoardTask? {
        let now = clock.now()
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            return Self.number(of: id).flatMap { state.tasks[$0]?.task }
        }
    }

    public func task(withIdempotencyKey key: String) async throws -> BoardTask? {
        let now = clock.now()
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            guard let known = state.idempotency[key], known.expiresAt > now else { return nil }
            return state.tasks[known.number]?.task
        }
    }

    public func list(after number: Int64, limit: Int) async throws -> [BoardTask] {
        let now = clock.now()
        return state.withLock { state in
            Self.forgetExpired(&state, now: now)
            var low = 0
            var high = state.numbers.count
            while low < high {
                let middle = (low + high) / 2
                if state.numbers[middle] <= number { low = middle + 1 } else { high = middle }
            }
            var page: [BoardTask] = []
            while low < state.numbers.count, page.count < limit {
                if let entry = state.tasks[state.numbers[low]] { page.append(entry.task) }
                low += 1
            }
            return page
        }
    }

    public func deadLetters(limit: Int) async throws -> [String] {
        state.withLock { state in
            Array(state.deadLetters.suffix(min(max(limit, 0), Self.deadLetterCapacity)).reversed())
        }
    }

    public func queueDepths() async throws -> [String: Int] {
        state.withLock { state in state.queues.mapValues(\.count) }
    }

    // MARK: State changes (under the lock)

    private static func lease(_ number: Int64, to owner: String, until: Timestamp, _ state: inout State) {
        state.tasks[number]!.placement = .leased
        state.tasks[number]!.task.owner = owner
        state.leases.set(number, Due(at: until, number: number))
    }

    /// Queues a task at its place: by priority, then by number (a requeued task keeps its place).
    private static func enqueue(_ number: Int64, _ state: inout State) {
        let task = state.tasks[number]!.task
        state.tasks[number]!.placement = .queued
        state.queues[task.queue, default: IndexedHeap()].set(number, QueuePlace(priority: task.priority, number: number))
    }

    /// Takes a task out of its queue, lease or delay, whichever holds it.
    private static func unplace(_ number: Int64, _ state: inout State) {
        guard let entry = state.tasks[number] else { return }
        switch entry.placement {
        case .queued:
            state.queues[entry.task.queue]?.remove(number)
            if state.queues[entry.task.queue]?.isEmpty == true { state.queues[entry.task.queue] = nil }
        case .leased:
            state.leases.remove(number)
        case .delayed:
            state.delayed.remove(number)
        case .waiting, .finished:
            break
        }
    }

    /// Marks a task finished and schedules forgetting it; its idempotency key lives at least as long.
    private static func retire(_ number: Int64, retention: Duration, now: Timestamp, _ state: inout State) {
        let forgetAt = now.advanced(by: retention)
        state.tasks[number]!.placement = .finished
        state.tasks[number]!.task.owner = nil
        state.forgetting.insert(Due(at: forgetAt, number: number))
        if let key = state.tasks[number]!.idempotencyKey, let known = state.idempotency[key], known.number == number,
            known.expiresAt < forgetAt
        {
            remember(key, number: number, until: forgetAt, &state)
        }
    }

    private static func remember(_ key: String, number: Int64, until: Timestamp, _ state: inout State) {
        state.idempotency[key] = RememberedKey(number: number, expiresAt: until)
        state.keyExpiries.insert(KeyExpiry(at: until, key: key))
    }

    /// Releases the tasks waiting for a task that just finished, or fails them (and theirs in
    /// turn) when it did not complete.
    private static func settleDependents(of number: Int64, retention: Duration, now: Timestamp, _ state: inout State) -> BoardFinishOutcome {
        var released: [Int64] = []
        var failed: [Int64] = []
        var ended = [number]
        while let parentNumber = ended.popLast() {
            guard let parent = state.tasks[parentNumber] else { continue }
            state.tasks[parentNumber]!.dependents = []
            for dependent in parent.dependents {
                guard case .waiting(let remaining) = state.tasks[dependent]?.placement else { continue }
                if parent.task.state != "COMPLETED" {
                    state.tasks[dependent]!.task.state = "FAILED"
                    state.tasks[dependent]!.task.note = "dependency \(parent.task.id) ended \(parent.task.state)"
                    retire(dependent, retention: retention, now: now, &state)
                    failed.append(dependent)
                    ended.append(dependent)
                } else if remaining > 1 {
                    state.tasks[dependent]!.placement = .waiting(remaining: remaining - 1)
                } else {
                    state.tasks[dependent]!.task.state = "PENDING"
                    enqueue(dependent, &state)
                    released.append(dependent)
                }
            }
        }
        return BoardFinishOutcome(released: released.sorted().map { "task-\($0)" }, failed: failed.sorted().map { "task-\($0)" })
    }

    /// Forgets finished tasks whose retention has ended and idempotency keys whose time has passed.
    private static func forgetExpired(_ state: inout State, now: Timestamp) {
        while let due = state.forgetting.minimum, due.at <= now {
            state.forgetting.removeMinimum()
            state.tasks[due.number] = nil
        }
        while let due = state.keyExpiries.minimum, due.at <= now {
            state.keyExpiries.removeMinimum()
            if state.idempotency[due.key]?.expiresAt == due.at { state.idempotency[due.key] = nil }
        }
        if state.numbers.count > 2 * state.tasks.count + 1_024 {
            let tasks = state.tasks
            state.numbers.removeAll { tasks[$0] == nil }
        }
    }

    // MARK: Reading

    /// The task's number if `owner` holds its lease.
    private static func held(_ id: String, by owner: String, in tasks: [Int64: Entry]) -> Int64? {
        guard let number = number(of: id), let entry = tasks[number], case .leased = entry.placement, entry.task.owner == owner else {
            return nil
        }
        return number
    }

    /// N of `task-N`; nil for anything else (`task-007` included: ids are never padded).
    static func number(of id: String) -> Int64? {
        guard id.hasPrefix("task-"), let number = Int64(id.dropFirst(5)), number > 0, "task-\(number)" == id else { return nil }
        return number
    }

    /// A slice of a larger buffer (a request line, say) would keep all of it alive.
    private static func copy(_ record: ByteBuffer) -> ByteBuffer {
        ByteBuffer(bytes: record.readableBytesView)
    }
}
