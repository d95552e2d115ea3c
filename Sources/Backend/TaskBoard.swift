import NIOCore

/// The queue and store of tasks that every replica's task engine works on: one board shared
/// through Redis by several gateways, or an in-memory board in one process.
///
/// The board keeps each task's record as opaque bytes that the engine writes (JSON of the
/// task), and beside it the few fields the board itself must read and change atomically: the
/// state, the queue, the priority, who holds the lease, how many times it was claimed. When the
/// two disagree, the board's fields are the truth (a lease that lapsed made a RUNNING record
/// PENDING again); `BoardTask.note` then says why.
///
/// Semantics every implementation keeps (the contract tests in `BackendTests` check them):
/// - Ids are `task-N`, N counting up from 1 across the board (gaps allowed), never reused.
/// - A queue hands out its tasks by priority (1 first … 10 last), then by task number.
/// - `claim` is atomic: a task is leased to one owner at a time. The lease lapses at
///   claim time + `lease` unless renewed; `reap` then queues the task again at its old place,
///   or, when it has been claimed `maximumClaims` times, leases it to the reaper as exhausted so
///   that the reaper finishes it (and if the reaper dies too, the next reap hands it out again).
///   A lease whose time has passed stays with its owner until a reap takes it: renewals and
///   writes from the owner succeed until then.
/// - A finished task is never queued again; writes from an owner that no longer holds the lease
///   are refused (`false`), so a replica that was presumed dead cannot overwrite a newer attempt.
/// - A task that waits for others (`waitingFor`) is queued when all of them completed, and is
///   failed when one of them ends otherwise (finished, cancelled or failed in turn), kept for
///   the retention of the task that ended it.
/// - Time is the board's own (the Redis server's clock): owners pass durations, not instants.
public protocol TaskBoard: Sendable {
    /// Stores and queues a new task, or returns the task already submitted with the same
    /// idempotency key (while that task is kept: the key of a forgotten task is free again).
    func submit(_ submission: BoardSubmission) async throws -> BoardSubmitOutcome

    /// Leases the first task of `queue` to `owner`; nil when the queue is empty.
    func claim(from queue: String, owner: String, lease: Duration) async throws -> BoardTask?

    /// Extends the leases `owner` holds on `ids`; returns the ids whose lease it no longer holds.
    func renew(_ ids: [String], owner: String, lease: Duration) async throws -> Set<String>

    /// Replaces the record of a task `owner` holds (state RUNNING, a new attempt, progress);
    /// `state` is not a final one (that is `finish`). False when `owner` does not hold the lease.
    func update(_ id: String, owner: String, state: String, record: ByteBuffer) async throws -> Bool

    /// Ends a task with a final state, keeping it `retention` for reads, releasing or failing its
    /// dependents. `owner` nil finishes a task that is not leased (a refused submission).
    /// `deadLetter` also appends the id to the dead-letter list. nil (nothing changed) when there
    /// is no such task, it has finished already, or `owner` does not hold its lease (`owner`
    /// nil: it is leased).
    func finish(_ id: String, owner: String?, state: String, record: ByteBuffer, retention: Duration, deadLetter: Bool) async throws
        -> BoardFinishOutcome?

    /// Gives up the lease and queues the task again after `delay` (a retry's back-off), at its
    /// old place; the task is PENDING meanwhile, and a zero delay queues it at once.
    func retry(_ id: String, owner: String, record: ByteBuffer, after delay: Duration) async throws -> Bool

    /// Gives up the lease without counting the claim: the task goes back to its old place
    /// (the owner could not run it after all).
    func putBack(_ id: String, owner: String) async throws -> Bool

    /// Queues retries whose delay has passed and deals with lapsed leases (see above).
    func reap(owner: String, lease: Duration) async throws -> BoardReapOutcome

    /// Ends a task that has not finished: removed from its queue, its lease (if any) void.
    /// nil when there is no such task; `.alreadyFinished` leaves it as it was. Its waiting
    /// dependents fail as they would after `finish` (their `note` says so), though the outcome
    /// does not name them.
    func cancel(_ id: String, record: ByteBuffer, retention: Duration) async throws -> BoardCancelOutcome?

    func get(_ id: String) async throws -> BoardTask?

    /// The task submitted with idempotency key `key`, while the key is remembered.
    func task(withIdempotencyKey key: String) async throws -> BoardTask?

    /// Tasks by number, after `number`, up to `limit`; forgotten tasks are skipped.
    func list(after number: Int64, limit: Int) async throws -> [BoardTask]

    /// The newest dead-lettered ids first; the board keeps the newest 10,000.
    func deadLetters(limit: Int) async throws -> [String]

    /// How many tasks each non-empty queue holds (delayed retries not counted).
    func queueDepths() async throws -> [String: Int]
}

public struct BoardSubmission: Sendable {
    public var queue: String
    /// 1 (highest) … 10 (lowest).
    public var priority: Int
    /// The engine's record of the new task. The board never reads it; the id is not in it
    /// (the board gives the id, beside the record, in every `BoardTask`).
    public var record: ByteBuffer
    public var idempotencyKey: String?
    /// How long the idempotency key is remembered after submission; the board keeps it at least
    /// as long as the task itself (until its retention ends). A task failed at submission (a
    /// dependency ended otherwise) is kept this long.
    public var idempotencyTTL: Duration
    /// Tasks that must complete first.
    public var waitingFor: [String]
    /// How many claims a task may have before a lapsed lease exhausts it (1 + retries).
    public var maximumClaims: Int

    public init(
        queue: String, priority: Int, idempotencyKey: String? = nil, idempotencyTTL: Duration = .seconds(3600),
        waitingFor: [String] = [], maximumClaims: Int, record: ByteBuffer
    ) {
        self.queue = queue
        self.priority = priority
        self.idempotencyKey = idempotencyKey
        self.idempotencyTTL = idempotencyTTL
        self.waitingFor = waitingFor
        self.maximumClaims = maximumClaims
        self.record = record
    }
}

public enum BoardSubmitOutcome: Sendable {
    /// `state` is PENDING (queued), WAITING (for dependencies) or FAILED (a dependency already
    /// ended otherwise; `note` says which).
    case created(BoardTask)
    /// The idempotency key was seen: the earlier task, as it is now.
    case duplicate(BoardTask)
    /// A `waitingFor` id names no task.
    case unknownDependency(String)
}

/// A task as the board holds it.
public struct BoardTask: Sendable, Equatable {
    public var id: String
    public var number: Int64
    public var queue: String
    public var priority: Int
    /// PENDING, WAITING, ASSIGNED, RUNNING, or a final state the engine wrote
    /// (COMPLETED, FAILED, TIMEOUT, CANCELLED).
    public var state: String
    public var record: ByteBuffer
    /// Who holds the lease, while one is held.
    public var owner: String?
    /// How many times the task was claimed (put-backs not counted).
    public var claims: Int
    public var maximumClaims: Int
    /// Why the board changed the task behind the engine's back: "lease of OWNER lapsed", "dependency task-3 ended FAILED".
    /// Kept through claims and put-backs (the next owner learns why); cleared when the engine
    /// writes the record again (update, finish, retry, cancel).
    public var note: String?

    public init(
        id: String, number: Int64, queue: String, priority: Int, state: String, record: ByteBuffer,
        owner: String?, claims: Int, maximumClaims: Int, note: String?
    ) {
        self.id = id
        self.number = number
        self.queue = queue
        self.priority = priority
        self.state = state
        self.record = record
        self.owner = owner
        self.claims = claims
        self.maximumClaims = maximumClaims
        self.note = note
    }
}

public struct BoardFinishOutcome: Sendable, Equatable {
    /// Dependents now queued, by number.
    public var released: [String]
    /// Dependents failed because this task did not complete (their `note` says so); they are
    /// final now and their waiters should be told. Includes their own waiting dependents in
    /// turn, by number.
    public var failed: [String]

    public init(released: [String], failed: [String]) {
        self.released = released
        self.failed = failed
    }
}

public struct BoardReapOutcome: Sendable, Equatable {
    /// Tasks queued again: lapsed leases with claims left, and retries whose delay passed.
    public var requeued: [String]
    /// Lapsed leases with no claims left, now leased to the reaper (state ASSIGNED, claims not
    /// counted, `note` set), which must finish them.
    public var exhausted: [BoardTask]

    public init(requeued: [String], exhausted: [BoardTask]) {
        self.requeued = requeued
        self.exhausted = exhausted
    }
}

public enum BoardCancelOutcome: Sendable, Equatable {
    /// Cancelled; `owner` held a lease on it (and should stop the work).
    case cancelled(owner: String?)
    case alreadyFinished(BoardTask)
}
