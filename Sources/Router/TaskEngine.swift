import Agents
import Backend
import FoundationEssentials
import JSONRPC
import Logging
import NIOCore
import Synchronization

/// Tasks: accepted at once, queued by priority, dispatched to capable agents as soon as one has
/// free capacity, retried on another agent after a back-off, timed out, cancelled; every task
/// ends COMPLETED, FAILED, TIMEOUT or CANCELLED with a reason.
///
/// All state sits behind one lock; agent calls run on the event loops. A dispatch pass runs
/// whenever work or capacity may have appeared, coalesced so that a burst of completions costs
/// one pass.
public final class TaskEngine: Sendable {
    public typealias SubmitError = TaskSubmitError
    public typealias LookupError = TaskLookupError

    private struct State {
        var tasks: [String: TaskRecord] = [:]
        var order: [String] = []
        var queue = PriorityTaskQueue()
        var idempotency: [String: String] = [:]
        var running: [String: RunningAttempt] = [:]
        var waiters: [String: [EventLoopPromise<TaskRecord>]] = [:]
        /// Tasks waiting for others to finish, by the task they wait for.
        var dependents: [String: Set<String>] = [:]
        var sticky: [String: AgentRegistry.InstanceID] = [:]
        /// Starts at the time the engine starts (TaskNumbers): a restarted gateway never gives
        /// an id of the one before.
        var nextID = UInt64(TaskNumbers.floor())
        var dispatchScheduled = false
        var assignmentLatencies: [Double] = []
    }

    private struct RunningAttempt {
        var lease: AgentRegistry.Lease
        /// The id of the attempt's call, once it has gone out.
        var callID: JSONRPCID?
    }

    private let state = Mutex(State())
    private let agents: AgentRegistry
    let group: any EventLoopGroup
    private let logger: Logger
    private let observers = Mutex<[@Sendable (TaskRecord) -> Void]>([])
    /// How many queued tasks one dispatch pass looks at, so that a pass stays short even with a
    /// large queue whose head waits for busy agents.
    private let scanLimit = 512

    public init(agents: AgentRegistry, group: any EventLoopGroup, logger: Logger) {
        self.agents = agents
        self.group = group
        self.logger = logger
        // Capacity frees up after every call through the gateway: a pass is only worth its hop
        // when tasks wait.
        agents.onCapacityFreed { [weak self] in self?.scheduleDispatch(onlyIfQueued: true) }
        agents.onCatalogChange { [weak self] _ in self?.scheduleDispatch() }
        // Some waits end without an event: an open circuit's pause, a back-off elsewhere. A pass
        // every second while work is queued picks those tasks up.
        group.any().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [weak self] task in
            guard let self else {
                task.cancel()
                return
            }
            if self.state.withLock({ !$0.queue.isEmpty }) { self.scheduleDispatch() }
        }
        group.any().scheduleRepeatedTask(initialDelay: .seconds(30), delay: .seconds(30)) { [weak self] task in
            guard let self else {
                task.cancel()
                return
            }
            self.forgetExpired()
        }
    }

    /// Finished tasks are kept for their retention (an hour by default), then forgotten, so that
    /// memory follows the work in progress rather than the work ever done.
    func forgetExpired(now: Date = Date()) {
        state.withLock { state in
            var forgotten: Set<String> = []
            for (id, task) in state.tasks where task.state.isFinal {
                guard let ended = task.completionTime, now.timeIntervalSince(ended) > task.submission.retention.seconds else { continue }
                forgotten.insert(id)
            }
            guard !forgotten.isEmpty else { return }
            for id in forgotten {
                if let key = state.tasks.removeValue(forKey: id)?.submission.idempotencyKey, state.idempotency[key] == id {
                    state.idempotency[key] = nil
                }
            }
            state.order.removeAll { forgotten.contains($0) }
        }
    }

    /// Called with every task that reaches a final state (callbacks, metrics).
    public func onFinished(_ observer: @escaping @Sendable (TaskRecord) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    // MARK: Submitting

    /// The task submitted with idempotency key `key`, while it is kept.
    public func taskNow(withIdempotencyKey key: String) -> TaskRecord? {
        state.withLock { state in state.idempotency[key].flatMap { state.tasks[$0] } }
    }

    /// Accepts a task and returns it at once (an earlier task when the idempotency key was seen).
    public func submitNow(_ submission: TaskSubmission) throws(SubmitError) -> TaskRecord {
        guard (1...10).contains(submission.priority) else { throw .invalid("priority must be from 1 (highest) to 10 (lowest)") }
        guard submission.maximumRetries >= 0, submission.maximumRetries <= 100 else { throw .invalid("maxRetries must be from 0 to 100") }
        let outcome: Result<TaskRecord, SubmitError> = state.withLock { state in
            if let key = submission.idempotencyKey, let existing = state.idempotency[key], let task = state.tasks[existing] {
                return .success(task)
            }
            // Dependencies must exist: a task can only wait for tasks submitted before it, so
            // the dependency graph cannot have a cycle.
            for dependency in submission.dependsOn where state.tasks[dependency] == nil {
                return .failure(.unknownDependency(dependency))
            }
            let id = "task-\(state.nextID)"
            state.nextID += 1
            var task = TaskRecord(id: id, submission: submission)
            state.tasks[id] = task
            state.order.append(id)
            if let key = submission.idempotencyKey { state.idempotency[key] = id }
            let unfinished = submission.dependsOn.filter { !(state.tasks[$0]?.state.isFinal ?? true) }
            let failed = submission.dependsOn.first { dependency in
                guard let state = state.tasks[dependency]?.state else { return false }
                return state.isFinal && state != .completed
            }
            if let failed {
                task.state = .failed
                task.errorMessage = "dependency \(failed) did not complete (\(state.tasks[failed]!.state.rawValue))"
                task.completionTime = Date()
                state.tasks[id] = task
            } else if unfinished.isEmpty {
                state.queue.push(id, priority: submission.priority, group: Demand(submission).queue)
            } else {
                task.waitingFor = "waiting for \(unfinished.joined(separator: ", "))"
                state.tasks[id] = task
                for dependency in unfinished { state.dependents[dependency, default: []].insert(id) }
            }
            return .success(task)
        }
        let task = try outcome.get()
        if task.state == .failed { finished(task) }
        scheduleDispatch()
        return task
    }

    // MARK: Reading

    public func getNow(_ id: String) throws(LookupError) -> TaskRecord {
        guard let task = state.withLock({ $0.tasks[id] }) else { throw .unknownTask(id) }
        return task
    }

    /// Completes when the task has ended.
    public func result(_ id: String, on eventLoop: any EventLoop) -> EventLoopFuture<TaskRecord> {
        let promise = eventLoop.makePromise(of: TaskRecord.self)
        let now: TaskRecord?? = state.withLock { state in
            guard let task = state.tasks[id] else { return .some(nil) }
            if task.state.isFinal { return .some(task) }
            state.waiters[id, default: []].append(promise)
            return nil
        }
        switch now {
        case .some(let task?): promise.succeed(task)
        case .some(nil): promise.fail(LookupError.unknownTask(id))
        case nil: break
        }
        return promise.futureResult
    }

    public typealias Page = TaskPage

    /// Tasks in submission order, filtered. `cursor` is the number of the last task of the
    /// previous page (task ids are `task-N` with N increasing), so pages stay exact while old
    /// tasks are forgotten.
    public func listNow(state wanted: TaskState? = nil, taskType: String? = nil, cursor: Int = 0, limit: Int = 100) -> Page {
        state.withLock { state in
            // `order` is sorted by task number: find where the page starts.
            var low = 0
            var high = state.order.count
            while low < high {
                let middle = (low + high) / 2
                if Self.number(of: state.order[middle]) <= cursor { low = middle + 1 } else { high = middle }
            }
            var tasks: [TaskRecord] = []
            var index = low
            while index < state.order.count, tasks.count < limit {
                if let task = state.tasks[state.order[index]],
                    wanted == nil || task.state == wanted, taskType == nil || task.submission.taskType == taskType
                {
                    tasks.append(task)
                }
                index += 1
            }
            let next = index < state.order.count && index > 0 ? String(Self.number(of: state.order[index - 1])) : nil
            return Page(tasks: tasks, nextCursor: next)
        }
    }

    private static func number(of id: String) -> Int {
        Int(id.dropFirst("task-".count)) ?? 0
    }

    public typealias Statistics = TaskStatistics

    public func statisticsNow() -> Statistics {
        state.withLock { state in
            var byState: [TaskState: Int] = [:]
            var queuedByPriority: [Int: Int] = [:]
            var queuedByTaskType: [String: Int] = [:]
            for task in state.tasks.values {
                byState[task.state, default: 0] += 1
                if task.state == .pending {
                    queuedByPriority[task.submission.priority, default: 0] += 1
                    queuedByTaskType[task.submission.taskType, default: 0] += 1
                }
            }
            var latency: (Double, Double)?
            if !state.assignmentLatencies.isEmpty {
                let sorted = state.assignmentLatencies.sorted()
                latency = (sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
            }
            var statistics = Statistics(byState: byState, queued: state.queue.count, assignmentLatencyMilliseconds: latency)
            statistics.queuedByPriority = queuedByPriority
            statistics.queuedByTaskType = queuedByTaskType
            return statistics
        }
    }

    // MARK: Cancelling

    /// A pending task is cancelled at once; a running one is cancelled at its agent too.
    public func cancelNow(_ id: String, reason: String = "cancelled by request") throws(LookupError) -> TaskRecord {
        let outcome: (TaskRecord, RunningAttempt?)? = state.withLock { state in
            guard var task = state.tasks[id] else { return nil }
            guard !task.state.isFinal else { return (task, nil) }
            state.queue.remove(id)
            let running = state.running.removeValue(forKey: id)
            task.state = .cancelled
            task.errorMessage = reason
            task.completionTime = Date()
            task.lastUpdatedAt = Date()
            if !task.attempts.isEmpty, task.attempts[task.attempts.count - 1].ended == nil {
                task.attempts[task.attempts.count - 1].ended = Date()
                task.attempts[task.attempts.count - 1].error = reason
            }
            state.tasks[id] = task
            return (task, running)
        }
        guard let (task, running) = outcome else { throw .unknownTask(id) }
        if let running {
            // A call not yet out is cancelled by `run` as soon as it is.
            if let callID = running.callID { running.lease.endpoint.cancel(callID, reason: reason) }
            running.lease.release()
        }
        if task.state == .cancelled { finished(task) }
        return task
    }

    // MARK: Dispatching

    private func scheduleDispatch(onlyIfQueued: Bool = false) {
        let first = state.withLock { state -> Bool in
            if onlyIfQueued && state.queue.isEmpty { return false }
            defer { state.dispatchScheduled = true }
            return !state.dispatchScheduled
        }
        guard first else { return }
        group.any().execute { [self] in dispatch() }
    }

    /// Hands queued tasks to agents with free capacity, best first; a task whose group has no
    /// free agent does not hold up the tasks behind it. The pass stops as soon as every group
    /// still queued has found no free agent, so a long queue behind busy agents costs a few
    /// looks, not a walk.
    private func dispatch() {
        var started: [(TaskRecord, AgentRegistry.Lease)] = []
        var refused: [TaskRecord] = []
        state.withLock { state in
            state.dispatchScheduled = false
            // The queue is walked while the rest of the state changes: it is taken out for the pass.
            var queue = PriorityTaskQueue()
            swap(&queue, &state.queue)
            defer { swap(&queue, &state.queue) }
            queue.visit(limit: scanLimit) { entry in
                guard var task = state.tasks[entry.taskID] else { return .take }
                let tool = task.submission.taskType
                var constraints = Demand(task.submission).constraints
                constraints.avoiding = Set(task.attempts.map { AgentRegistry.InstanceID($0.agent) })
                if let key = task.submission.routing.stickyKey { constraints.preferred = state.sticky[key] }
                switch agents.tryAcquire(.tool, tool, constraints: constraints) {
                case .busy:
                    return .skipGroup
                case .refused(let error):
                    task.state = .failed
                    task.errorMessage = task.attempts.isEmpty
                        ? "\(error)"
                        : "\(error) after \(task.attempts.count) attempts: "
                            + task.attempts.enumerated().map { "#\($0.offset + 1) on \($0.element.agent): \($0.element.error ?? "?")" }
                            .joined(separator: "; ")
                    task.completionTime = Date()
                    task.lastUpdatedAt = Date()
                    state.tasks[task.id] = task
                    refused.append(task)
                    return .take
                case .leased(let lease):
                    if let key = task.submission.routing.stickyKey { state.sticky[key] = lease.instance }
                    let now = Date()
                    if task.attempts.isEmpty {
                        state.assignmentLatencies.append(now.timeIntervalSince(task.createdAt) * 1000)
                        if state.assignmentLatencies.count > 100_000 { state.assignmentLatencies.removeFirst(50_000) }
                        task.startTime = now
                    }
                    task.state = .assigned
                    task.waitingFor = nil
                    task.assignedAgent = (lease.instance.rawValue, lease.instanceName)
                    task.attempts.append(TaskAttempt(agent: lease.instance.rawValue, matchConfidence: lease.matchConfidence, started: now))
                    task.lastUpdatedAt = now
                    state.tasks[task.id] = task
                    started.append((task, lease))
                    return .take
                }
            }
        }
        for task in refused { finished(task) }
        for (task, lease) in started { run(task, on: lease) }
    }

    private func run(_ task: TaskRecord, on lease: AgentRegistry.Lease) {
        // The attempt counts as running before its call goes out: the call's completion (a
        // callback, no future) may run before `call` returns, and must find it.
        let stillOurs = state.withLock { state -> Bool in
            guard var current = state.tasks[task.id], current.state == .assigned else { return false }
            current.state = .running
            state.tasks[task.id] = current
            state.running[task.id] = RunningAttempt(lease: lease, callID: nil)
            return true
        }
        guard stillOurs else {
            // Cancelled between dispatch and now.
            lease.release()
            return
        }
        var members: [String: JSONValue] = ["name": .string(lease.originalName), "arguments": .raw(task.submission.taskData)]
        if let traceparent = task.submission.traceparent { members["_meta"] = ["traceparent": .string(traceparent)] }
        let params = JSONValue.object(members)
        let callID = lease.endpoint.call("tools/call", params: params, timeout: TimeAmount(task.submission.timeout)) { [self] outcome in
            attemptEnded(task.id, lease: lease, outcome: outcome)
        }
        // Keep the id for a cancel to come; a cancel that came while the call went out found no id.
        let cancelledMeanwhile = state.withLock { state -> Bool in
            guard state.running[task.id]?.lease === lease else { return state.tasks[task.id]?.state == .cancelled }
            state.running[task.id]?.callID = callID
            return false
        }
        if cancelledMeanwhile { lease.endpoint.cancel(callID, reason: "cancelled") }
    }

    private func attemptEnded(_ id: String, lease: AgentRegistry.Lease, outcome: Result<RawJSON, any Error>) {
        let failure: (message: String, kind: FailureKind)?
        switch AttemptVerdict(outcome) {
        case .cancelled: return  // cancel() has already settled the task
        case .succeeded: failure = nil
        case .failed(let message, let kind): failure = (message, kind)
        }
        lease.finish(succeeded: failure == nil)

        var retryAfter: Duration?
        let ended: TaskRecord? = state.withLock { state in
            guard state.running.removeValue(forKey: id) != nil, var task = state.tasks[id] else { return nil }
            let now = Date()
            task.lastUpdatedAt = now
            task.attempts[task.attempts.count - 1].ended = now
            guard let failure else {
                task.state = .completed
                if case .success(let result) = outcome { task.result = result }
                task.completionTime = now
                state.tasks[id] = task
                return task
            }
            task.attempts[task.attempts.count - 1].error = failure.message
            if task.retries(after: failure.kind) {
                let delay = task.submission.backoff.delay(beforeRetry: task.attempts.count)
                task.state = .pending
                task.waitingFor = "retry \(task.attempts.count) of \(task.submission.maximumRetries) after \(delay): \(failure.message)"
                state.tasks[id] = task
                retryAfter = delay
                return nil
            }
            task.state = failure.kind.isTimeout ? .timeout : .failed
            task.errorMessage = task.attempts.count == 1 ? failure.message : task.everyAttemptFailed
            task.completionTime = now
            state.tasks[id] = task
            return task
        }
        if let ended { finished(ended) }
        if let retryAfter {
            group.any().scheduleTask(in: TimeAmount(retryAfter)) { [self] in
                let requeued = state.withLock { state -> Bool in
                    guard let task = state.tasks[id], task.state == .pending else { return false }
                    state.queue.push(id, priority: task.submission.priority, group: Demand(task.submission).queue)
                    return true
                }
                if requeued { scheduleDispatch() }
            }
        }
        scheduleDispatch()
    }

    /// Wakes `tasks/result` waiters, releases dependents, tells observers.
    private func finished(_ task: TaskRecord) {
        let (waiters, released, failedDependents): ([EventLoopPromise<TaskRecord>], [String], [TaskRecord]) = state.withLock { state in
            let waiters = state.waiters.removeValue(forKey: task.id) ?? []
            var released: [String] = []
            var failed: [TaskRecord] = []
            for dependent in state.dependents.removeValue(forKey: task.id) ?? [] {
                guard var waiting = state.tasks[dependent], !waiting.state.isFinal else { continue }
                if task.state != .completed {
                    waiting.state = .failed
                    waiting.errorMessage = "dependency \(task.id) did not complete (\(task.state.rawValue))"
                    waiting.completionTime = Date()
                    waiting.lastUpdatedAt = Date()
                    state.tasks[dependent] = waiting
                    failed.append(waiting)
                    continue
                }
                let remaining = waiting.submission.dependsOn.filter { !(state.tasks[$0]?.state == .completed) }
                if remaining.isEmpty {
                    waiting.waitingFor = nil
                    state.tasks[dependent] = waiting
                    state.queue.push(dependent, priority: waiting.submission.priority, group: Demand(waiting.submission).queue)
                    released.append(dependent)
                } else {
                    waiting.waitingFor = "waiting for \(remaining.joined(separator: ", "))"
                    state.tasks[dependent] = waiting
                }
            }
            return (waiters, released, failed)
        }
        waiters.forEach { $0.succeed(task) }
        let callbacks = observers.withLock { $0 }
        callbacks.forEach { $0(task) }
        for dependent in failedDependents { finished(dependent) }
        if !released.isEmpty { scheduleDispatch() }
        logger.debug("task \(task.id) \(task.state.rawValue)")
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
