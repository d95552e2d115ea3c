import Agents
import Backend
import FoundationEssentials
import JSONRPC
import Logging
import NIOCore
import Synchronization

/// Tasks on a `TaskBoard` that several gateway replicas share: any replica accepts a task, the
/// replica whose agent is free claims it with a lease and runs it, and any replica answers for it.
///
/// At least once: a running task's lease is renewed every third of its length while this
/// replica lives; when a replica dies, its leases lapse and the next reap (every replica reaps
/// every second) queues those tasks again, with the lost attempt counted against `maxRetries`.
///
/// Replicas tell each other through pub-sub: a task queued (so that idle replicas claim it), a
/// task finished (so that `tasks/result` waiters anywhere wake), a task cancelled (so that the
/// replica running it stops its agent). A lost message costs latency, never a task: a dispatch
/// pass also runs every second, and waiters re-read the board.
public final class SharedTaskEngine: TaskService {
    static let queuedTopic = "switchboard.tasks.queued"
    static let finishedTopic = "switchboard.tasks.finished"
    static let cancelledTopic = "switchboard.tasks.cancelled"

    private struct Running {
        var lease: AgentRegistry.Lease
        var call: PendingCall?
        var cancelled = false
    }

    private struct State {
        var running: [String: Running] = [:]
        var waiters: [String: [CheckedContinuation<TaskRecord, any Error>]] = [:]
        var passRunning = false
        var passWanted = false
        /// False once a pass found every queue empty, until work may have come (a `queued`
        /// message, a submission, the one-second timer): freed capacity alone then costs no
        /// round trip to the board.
        var mayHaveWork = true
        var assignmentLatencies: [Double] = []
        var endedHere: [TaskState: Int] = [:]
    }

    private let board: any TaskBoard
    private let events: any PubSub
    private let agents: AgentRegistry
    /// For the timers of waits (a task whose tool may come with an agent still starting).
    private let timers: any EventLoopGroup
    /// This replica's name on the board: who holds a lease.
    public let owner: String
    private let leaseLength: Duration
    private let logger: Logger
    private let clock: any BackendClock = SystemClock()
    private let state = Mutex(State())
    private let observers = Mutex<[@Sendable (TaskRecord) -> Void]>([])
    /// Messages to other replicas, published in order by `run()`.
    private let outbox = PublishQueue()

    public init(
        board: any TaskBoard, events: any PubSub, agents: AgentRegistry, owner: String, lease: Duration = .seconds(10),
        timers: any EventLoopGroup, logger: Logger
    ) {
        self.timers = timers
        self.board = board
        self.events = events
        self.agents = agents
        self.owner = owner
        self.leaseLength = lease
        self.logger = logger
        agents.onCapacityFreed { [weak self] in self?.wantPass(onlyIfWorkMayWait: true) }
        agents.onCatalogChange { [weak self] _ in self?.wantPass() }
    }

    public func onFinished(_ observer: @escaping @Sendable (TaskRecord) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    // MARK: Running

    /// Listens to the other replicas, renews leases, reaps, and dispatches, until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // Every message has a slower path (the one-second pass, waiters re-reading).
                await self.outbox.run(on: self.events) { error, count in
                    self.logger.warning("tasks: could not tell the other replicas (\(count) messages): \(error)")
                }
            }
            group.addTask { await self.listen(Self.queuedTopic) { engine, _ in engine.wantPass() } }
            group.addTask {
                await self.listen(Self.finishedTopic) { engine, id in
                    // Read back concurrently: one slow read must not hold up the other waiters.
                    if engine.hasWaiters(for: id) { Task { await engine.finishedElsewhere(id) } }
                }
            }
            group.addTask { await self.listen(Self.cancelledTopic) { engine, id in engine.stopLocally(id, reason: "cancelled by request") } }
            group.addTask { await self.every(self.leaseLength / 3) { await $0.renewLeases() } }
            group.addTask { await self.every(.seconds(1)) { engine in
                await engine.reap()
                engine.wantPass()
                await engine.pollWaiters()
            } }
            await group.next()
            group.cancelAll()
        }
    }

    private func every(_ interval: Duration, _ body: @escaping @Sendable (SharedTaskEngine) async -> Void) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            await body(self)
        }
    }

    private func listen(_ topic: String, _ handle: @escaping @Sendable (SharedTaskEngine, String) async -> Void) async {
        await events.listen(to: .topic(topic), limits: SubscriptionLimits(messages: 100_000, bytes: 64 << 20)) { error in
            logger.warning("tasks: cannot listen to \(topic): \(error); retrying in a second")
        } _: { message in
            await handle(self, String(buffer: message.payload))
        }
    }

    private func tell(_ topic: String, _ id: String) {
        outbox.enqueue(PubSubMessage(topic: topic, payload: ByteBuffer(string: id), publishedAt: clock.now(), publisher: owner))
    }

    // MARK: Submitting

    public func submit(_ submission: TaskSubmission) async throws -> TaskRecord {
        guard (1...10).contains(submission.priority) else { throw TaskSubmitError.invalid("priority must be from 1 (highest) to 10 (lowest)") }
        guard submission.maximumRetries >= 0, submission.maximumRetries <= 100 else { throw TaskSubmitError.invalid("maxRetries must be from 0 to 100") }
        let record = TaskRecord(id: "", submission: submission)
        let outcome = try await board.submit(BoardSubmission(
            queue: Demand(submission).queue, priority: submission.priority, idempotencyKey: submission.idempotencyKey,
            idempotencyTTL: submission.retention, waitingFor: submission.dependsOn, maximumClaims: submission.maximumRetries + 1,
            record: TaskRecordCodec.encode(record)))
        switch outcome {
        case .unknownDependency(let id):
            throw TaskSubmitError.unknownDependency(id)
        case .duplicate(let task):
            return try decode(task)
        case .created(let task):
            let created = try decode(task)
            var demand = Demand(submission).constraints
            demand.localOnly = false
            if created.state.isFinal {
                ended(created)
                tell(Self.finishedTopic, created.id)
            } else if task.state == "PENDING", let refusal = agents.refusal(.tool, submission.taskType, constraints: demand) {
                // No agent on any replica could take it: it fails now, as with the embedded
                // engine, rather than wait for an agent that may never come.
                Task { await self.refuse(created, because: "\(refusal)") }
            } else if task.state == "PENDING" {
                wantPass()
                tell(Self.queuedTopic, task.queue)
                if !agents.offersTool(submission.taskType) {
                    // Only an agent still starting may offer it: look again once none is, and fail
                    // it then if none does.
                    agents.afterStartup(on: timers.any(), within: .seconds(3600)) { [self, demand] in
                        guard let refusal = agents.refusal(.tool, submission.taskType, constraints: demand) else { return }
                        Task { await self.refuse(created, because: "\(refusal)") }
                    }
                }
            }
            return created
        }
    }

    private func refuse(_ task: TaskRecord, because reason: String) async {
        var refused = task
        refused.state = .failed
        refused.errorMessage = reason
        refused.completionTime = Date()
        refused.lastUpdatedAt = Date()
        do {
            guard try await board.finish(refused.id, owner: nil, state: refused.state.rawValue, record: TaskRecordCodec.encode(refused),
                                         retention: refused.submission.retention, deadLetter: false) != nil else { return }
        } catch {
            logger.warning("tasks: could not fail \(task.id) (\(reason)): \(error)")
            return
        }
        ended(refused)
        tell(Self.finishedTopic, refused.id)
        wake(refused)
    }

    // MARK: Reading

    public func task(withIdempotencyKey key: String) async throws -> TaskRecord? {
        try await board.task(withIdempotencyKey: key).map(decode)
    }

    public func get(_ id: String) async throws -> TaskRecord {
        guard let task = try await board.get(id) else { throw TaskLookupError.unknownTask(id) }
        return try decode(task)
    }

    public func result(_ id: String) async throws -> TaskRecord {
        let task = try await get(id)
        if task.state.isFinal { return task }
        return try await withCheckedThrowingContinuation { continuation in
            state.withLock { $0.waiters[id, default: []].append(continuation) }
            // It may have ended between the read and the registration.
            Task { await self.finishedElsewhere(id) }
        }
    }

    public func list(state wanted: TaskState?, taskType: String?, cursor: Int, limit: Int) async throws -> TaskPage {
        let page = try await board.list(after: Int64(cursor), limit: limit)
        let tasks = try page.map(decode).filter { task in
            (wanted == nil || task.state == wanted) && (taskType == nil || task.submission.taskType == taskType)
        }
        let next = page.count == limit ? page.last.map { String($0.number) } : nil
        return TaskPage(tasks: tasks, nextCursor: next)
    }

    public func statistics() async -> TaskStatistics {
        let (byState, latencies, running) = state.withLock { state in (state.endedHere, state.assignmentLatencies, state.running.count) }
        var latency: (Double, Double)?
        if !latencies.isEmpty {
            let sorted = latencies.sorted()
            latency = (sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
        }
        let queues = (try? await board.queueDepths()) ?? [:]
        var counted = byState
        counted[.running, default: 0] += running
        var statistics = TaskStatistics(byState: counted, queued: queues.values.reduce(0, +), assignmentLatencyMilliseconds: latency)
        statistics.queues = queues
        // A queue is named by its tool first: the autoscaler counts the work waiting for each.
        for (queue, depth) in queues { statistics.queuedByTaskType[Demand(queue: queue).tool, default: 0] += depth }
        statistics.deadLettered = try? await board.deadLetters(limit: 10_000).count
        return statistics
    }

    /// Reads the tasks that local waiters wait for: the slow path for a `finished` message that
    /// pub-sub lost (a Redis restart, a full subscription queue).
    private func pollWaiters() async {
        let waited = state.withLock { Array($0.waiters.keys.prefix(1_000)) }
        for id in waited { await finishedElsewhere(id) }
    }

    private func hasWaiters(for id: String) -> Bool {
        state.withLock { $0.waiters[id] != nil }
    }

    /// Wakes the local waiters of a task that ended (here or on another replica).
    private func finishedElsewhere(_ id: String) async {
        guard hasWaiters(for: id), let task = try? await get(id), task.state.isFinal else { return }
        wake(task)
    }

    /// Hands a task's final record, in hand here, to its local `tasks/result` waiters.
    private func wake(_ task: TaskRecord) {
        let waiters = state.withLock { $0.waiters.removeValue(forKey: task.id) ?? [] }
        waiters.forEach { $0.resume(returning: task) }
    }

    // MARK: Cancelling

    public func cancel(_ id: String) async throws -> TaskRecord {
        guard let current = try await board.get(id) else { throw TaskLookupError.unknownTask(id) }
        var task = try decode(current)
        if task.state.isFinal { return task }
        let now = Date()
        task.state = .cancelled
        task.errorMessage = "cancelled by request"
        task.completionTime = now
        task.lastUpdatedAt = now
        if let last = task.attempts.indices.last, task.attempts[last].ended == nil {
            task.attempts[last].ended = now
            task.attempts[last].error = "cancelled by request"
        }
        switch try await board.cancel(id, record: TaskRecordCodec.encode(task), retention: task.submission.retention) {
        case nil:
            throw TaskLookupError.unknownTask(id)
        case .alreadyFinished(let finished)?:
            return try decode(finished)
        case .cancelled(let holder)?:
            if holder == owner { stopLocally(id, reason: "cancelled by request") } else if holder != nil { tell(Self.cancelledTopic, id) }
            ended(task)
            tell(Self.finishedTopic, id)
            wake(task)
            return task
        }
    }

    /// Stops this replica's attempt at a task (it was cancelled, or its lease went elsewhere).
    private func stopLocally(_ id: String, reason: String) {
        let running: Running? = state.withLock { state in
            guard var running = state.running[id] else { return nil }
            running.cancelled = true
            state.running[id] = running
            return running
        }
        guard let running, let call = running.call else { return }
        running.lease.endpoint.cancel(call.id, reason: reason)
    }

    // MARK: Dispatching

    private func wantPass(onlyIfWorkMayWait: Bool = false) {
        let start = state.withLock { state -> Bool in
            if onlyIfWorkMayWait, !state.mayHaveWork { return false }
            if !onlyIfWorkMayWait { state.mayHaveWork = true }
            if state.passRunning {
                state.passWanted = true
                return false
            }
            state.passRunning = true
            return true
        }
        guard start else { return }
        Task { await self.dispatchPasses() }
    }

    private func dispatchPasses() async {
        while true {
            await dispatchPass()
            let again = state.withLock { state -> Bool in
                if state.passWanted {
                    state.passWanted = false
                    return true
                }
                state.passRunning = false
                return false
            }
            if !again { return }
        }
    }

    /// Claims work for this replica's free agents, queue by queue.
    private func dispatchPass() async {
        let queues: [String: Int]
        do {
            queues = try await board.queueDepths()
        } catch {
            logger.warning("tasks: cannot read the queues: \(error)")
            return
        }
        if queues.values.allSatisfy({ $0 == 0 }) {
            // Nothing waits now; a `queued` message or the timer says when that changes (and a
            // request for a pass that came meanwhile has set it again).
            state.withLock { state in if !state.passWanted { state.mayHaveWork = false } }
        }
        for (queue, depth) in queues.sorted(by: { $0.key < $1.key }) where depth > 0 {
            let demand = Demand(queue: queue)
            for _ in 0..<min(depth, 256) {
                guard case .leased(let lease) = agents.tryAcquire(.tool, demand.tool, constraints: demand.constraints) else { break }
                let claimed: BoardTask?
                do {
                    claimed = try await board.claim(from: queue, owner: owner, lease: leaseLength)
                } catch {
                    lease.release()
                    logger.warning("tasks: cannot claim from \(queue): \(error)")
                    return
                }
                guard let claimed else {
                    lease.release()
                    break
                }
                start(claimed, on: lease)
            }
        }
    }

    private func start(_ claimed: BoardTask, on lease: AgentRegistry.Lease) {
        var task: TaskRecord
        do {
            task = try decode(claimed)
        } catch {
            lease.release()
            logger.error("tasks: \(error)")
            return
        }
        let now = Date()
        if task.attempts.isEmpty {
            task.startTime = now
            let latency = now.timeIntervalSince(task.createdAt) * 1000
            state.withLock { state in
                state.assignmentLatencies.append(latency)
                if state.assignmentLatencies.count > 100_000 { state.assignmentLatencies.removeFirst(50_000) }
            }
        }
        task.state = .running
        task.waitingFor = nil
        task.assignedAgent = (lease.instance.rawValue, lease.instanceName)
        var attempt = TaskAttempt(agent: lease.instance.rawValue, matchConfidence: lease.matchConfidence, started: now)
        attempt.replica = owner
        task.attempts.append(attempt)
        task.lastUpdatedAt = now
        state.withLock { $0.running[task.id] = Running(lease: lease) }
        let started = task
        Task {
            do {
                guard try await board.update(started.id, owner: owner, state: TaskState.running.rawValue, record: TaskRecordCodec.encode(started)) else {
                    // Cancelled (or taken over) between the claim and now.
                    state.withLock { _ = $0.running.removeValue(forKey: started.id) }
                    lease.release()
                    return
                }
            } catch {
                // The board is unreachable: give the task back rather than run it unrecorded.
                state.withLock { _ = $0.running.removeValue(forKey: started.id) }
                lease.release()
                _ = try? await board.putBack(started.id, owner: owner)
                logger.warning("tasks: could not start \(started.id): \(error)")
                return
            }
            await run(started, on: lease, claims: claimed.claims)
        }
    }

    /// `claims`: how many times the board has handed the task out, this claim included.
    private func run(_ task: TaskRecord, on lease: AgentRegistry.Lease, claims: Int) async {
        var members: [String: JSONValue] = ["name": .string(lease.originalName), "arguments": .raw(task.submission.taskData)]
        if let traceparent = task.submission.traceparent { members["_meta"] = ["traceparent": .string(traceparent)] }
        let params = JSONValue.object(members)
        let call = lease.endpoint.call("tools/call", params: params, timeout: TimeAmount(task.submission.timeout))
        let cancelledAlready = state.withLock { state -> Bool in
            state.running[task.id]?.call = call
            return state.running[task.id]?.cancelled ?? true
        }
        if cancelledAlready { lease.endpoint.cancel(call.id, reason: "cancelled by request") }
        let outcome: Result<RawJSON, any Error>
        do { outcome = .success(try await call.result.get()) } catch { outcome = .failure(error) }
        await attemptEnded(task, lease: lease, claims: claims, outcome: outcome)
    }

    private func attemptEnded(_ started: TaskRecord, lease: AgentRegistry.Lease, claims: Int, outcome: Result<RawJSON, any Error>) async {
        let wasCancelled = state.withLock { $0.running.removeValue(forKey: started.id)?.cancelled ?? true }
        let verdict = AttemptVerdict(outcome)
        let failure: (message: String, kind: FailureKind)?
        switch verdict {
        case .succeeded: failure = nil
        case .failed(let message, let kind): failure = (message, kind)
        case .cancelled:
            lease.release()
            return  // whoever cancelled has settled the task
        }
        if wasCancelled {
            lease.release()
            return
        }
        lease.finish(succeeded: failure == nil)

        var task = started
        let now = Date()
        task.lastUpdatedAt = now
        task.attempts[task.attempts.count - 1].ended = now
        do {
            guard let failure else {
                task.state = .completed
                if case .succeeded(let result) = verdict { task.result = result }
                task.completionTime = now
                try await finish(task, deadLetter: false)
                return
            }
            task.attempts[task.attempts.count - 1].error = failure.message
            if claims <= task.submission.maximumRetries, task.submission.retryOn.contains(failure.kind), failure.kind != .invalidRequest {
                let delay = task.submission.backoff.delay(beforeRetry: task.attempts.count)
                task.state = .pending
                task.waitingFor = "retry \(task.attempts.count) of \(task.submission.maximumRetries) after \(delay): \(failure.message)"
                _ = try await board.retry(task.id, owner: owner, record: TaskRecordCodec.encode(task), after: delay)
                return
            }
            task.state = failure.kind.isTimeout ? .timeout : .failed
            task.errorMessage = task.attempts.count == 1 ? failure.message : task.everyAttemptFailed
            task.completionTime = now
            try await finish(task, deadLetter: true)
        } catch {
            // The lease lapses and another replica (or this one) runs the task again.
            logger.error("tasks: could not record the end of \(task.id): \(error); its lease will lapse and it will run again")
        }
    }

    /// Records a final state; false when this replica no longer held the task.
    @discardableResult
    private func finish(_ task: TaskRecord, deadLetter: Bool) async throws -> Bool {
        guard let outcome = try await board.finish(
            task.id, owner: owner, state: task.state.rawValue, record: TaskRecordCodec.encode(task),
            retention: task.submission.retention, deadLetter: deadLetter)
        else { return false }
        ended(task)
        tell(Self.finishedTopic, task.id)
        wake(task)
        for failed in outcome.failed {
            if let dependent = try? await get(failed) {
                ended(dependent)
                if dependent.state.isFinal { wake(dependent) }
            }
            tell(Self.finishedTopic, failed)
        }
        if !outcome.released.isEmpty {
            wantPass()
            tell(Self.queuedTopic, "released")
        }
        return true
    }

    private func ended(_ task: TaskRecord) {
        state.withLock { $0.endedHere[task.state, default: 0] += 1 }
        observers.withLock { $0 }.forEach { $0(task) }
        logger.debug("task \(task.id) \(task.state.rawValue)")
    }

    // MARK: Leases

    private func renewLeases() async {
        let held = state.withLock { Array($0.running.keys) }
        guard !held.isEmpty else { return }
        do {
            let lost = try await board.renew(held, owner: owner, lease: leaseLength)
            for id in lost { stopLocally(id, reason: "the task was taken over or cancelled") }
        } catch {
            logger.warning("tasks: could not renew \(held.count) leases: \(error)")
        }
    }

    /// Queues due retries and lapsed leases again; fails the tasks whose claims are spent.
    private func reap() async {
        let outcome: BoardReapOutcome
        do {
            outcome = try await board.reap(owner: owner, lease: leaseLength)
        } catch {
            logger.warning("tasks: reaping failed: \(error)")
            return
        }
        if !outcome.requeued.isEmpty {
            logger.info("tasks: queued again: \(outcome.requeued.joined(separator: ", "))")
            tell(Self.queuedTopic, "requeued")
        }
        for exhausted in outcome.exhausted {
            guard var task = try? decode(exhausted) else { continue }
            task.state = .failed
            task.errorMessage = task.everyAttemptFailed
            task.completionTime = Date()
            task.lastUpdatedAt = Date()
            _ = try? await finish(task, deadLetter: true)
        }
    }

    // MARK: Records

    /// The engine's record with what the board changed behind its back.
    private func decode(_ stored: BoardTask) throws -> TaskRecord {
        var task = try TaskRecordCodec.decode(id: stored.id, stored.record)
        let boardState: TaskState = switch stored.state {
        case "PENDING", "WAITING": .pending
        case "ASSIGNED": .assigned
        default: TaskState(rawValue: stored.state) ?? task.state
        }
        if boardState != task.state, let note = stored.note {
            // A lapsed lease or a failed dependency: close the open attempt with the reason.
            if let last = task.attempts.indices.last, task.attempts[last].ended == nil {
                task.attempts[last].ended = Date()
                task.attempts[last].error = note
            }
            if boardState.isFinal { task.errorMessage = task.errorMessage ?? note } else { task.waitingFor = note }
        }
        if stored.state == "WAITING", task.waitingFor == nil { task.waitingFor = "waiting for \(task.submission.dependsOn.joined(separator: ", "))" }
        task.state = boardState
        return task
    }
}
