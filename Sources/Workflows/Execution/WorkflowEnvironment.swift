import Backend
import JSONRPC
import Synchronization

/// Runs agent tasks for the executor: the gateway routes them to its agents.
public protocol WorkflowStepRunner: Sendable {
    /// Calls `task.tool` with `task.arguments`; the returned value becomes the step's result.
    /// Throw (an `AgentTaskFailure`, say) to fail the attempt. When the calling task is
    /// cancelled (a timeout, `cancel`, shutdown) the runner must return or throw promptly.
    func run(_ task: AgentTaskInvocation) async throws -> JSONValue
}

/// One attempt of one agent task.
public struct AgentTaskInvocation: Sendable {
    public var executionID: String
    public var workflowName: String
    public var workflowVersion: String
    public var stepID: String
    public var tool: String
    public var arguments: JSONValue
    /// The step's `timeout`; nil: the runner's own default. The executor enforces it as well.
    public var timeout: Duration?
    /// 1 for the first attempt.
    public var attempt: Int
    /// The W3C trace context of the execution (the request that started it), when it has one.
    public var traceparent: String?

    public init(
        executionID: String, workflowName: String, workflowVersion: String, stepID: String, tool: String, arguments: JSONValue,
        timeout: Duration?, attempt: Int, traceparent: String? = nil
    ) {
        self.traceparent = traceparent
        self.executionID = executionID
        self.workflowName = workflowName
        self.workflowVersion = workflowVersion
        self.stepID = stepID
        self.tool = tool
        self.arguments = arguments
        self.timeout = timeout
        self.attempt = attempt
    }
}

/// A failed agent task, with the message the execution records.
public struct AgentTaskFailure: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// Where the executor announces transitions (the gateway publishes them as events). Topics are
/// `workflows.<workflowName>.<executionId>`; see `WorkflowExecutor` for the payload.
public protocol WorkflowEventSink: Sendable {
    func publish(topic: String, payload: JSONValue) async
}

/// Announces nothing.
public struct DiscardingWorkflowEventSink: WorkflowEventSink {
    public init() {}
    public func publish(topic: String, payload: JSONValue) async {}
}

/// The executor's time: wall-clock instants (they are stored, and deadlines survive a restart)
/// and sleeping until one.
public protocol WorkflowClock: Sendable {
    func now() -> Timestamp
    /// Returns at `deadline`, at once when it has passed; throws `CancellationError` when the
    /// calling task is cancelled first.
    func sleep(until deadline: Timestamp) async throws
}

extension WorkflowClock {
    /// Sleeps until `duration` from now.
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now().advanced(by: duration))
    }
}

/// The system's clock.
public struct SystemWorkflowClock: WorkflowClock {
    private let clock = SystemClock()

    public init() {}

    public func now() -> Timestamp { clock.now() }

    public func sleep(until deadline: Timestamp) async throws {
        let remaining = deadline.millisecondsSinceEpoch - clock.now().millisecondsSinceEpoch
        if remaining > 0 { try await Task.sleep(for: .milliseconds(remaining)) }
        try Task.checkCancellation()
    }
}

/// A clock that moves only when told to, so that tests of timeouts, back-off and approval
/// deadlines never wait. With `advancesWhenSleeping`, every sleep moves the clock to its
/// deadline at once (virtual time: good for back-off, wrong for timeouts, which would then
/// expire at once); otherwise sleepers wait for `advance`.
public final class ManualWorkflowClock: WorkflowClock {
    private struct Sleeper {
        var id: Int
        var deadline: Timestamp
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Timestamp
        var nextID = 0
        var sleepers: [Sleeper] = []
        var watchers: [(Int, CheckedContinuation<Void, Never>)] = []
        var requested: [Duration] = []
        var cancelled: Set<Int> = []
    }

    private let state: Mutex<State>
    private let advancesWhenSleeping: Bool

    public init(start: Timestamp = Timestamp(millisecondsSinceEpoch: 1_767_225_600_000), advancesWhenSleeping: Bool = false) {
        state = Mutex(State(now: start))
        self.advancesWhenSleeping = advancesWhenSleeping
    }

    public func now() -> Timestamp { state.withLock { $0.now } }

    /// Every sleep asked for so far, as durations from the time it was asked.
    public var requestedSleeps: [Duration] { state.withLock { $0.requested } }

    /// How many tasks are sleeping now.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    public func sleep(until deadline: Timestamp) async throws {
        let id: Int? = state.withLock { state in
            state.requested.append(.milliseconds(deadline.millisecondsSinceEpoch - state.now.millisecondsSinceEpoch))
            if deadline <= state.now { return nil }
            if advancesWhenSleeping {
                state.now = deadline
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else {
            try Task.checkCancellation()
            return
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (cancelledEarly, watchers) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                    if state.cancelled.remove(id) != nil { return (true, []) }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    let count = state.sleepers.count
                    let ready = state.watchers.filter { $0.0 <= count }.map(\.1)
                    state.watchers.removeAll { $0.0 <= count }
                    return (false, ready)
                }
                if cancelledEarly { continuation.resume(throwing: CancellationError()) }
                for watcher in watchers { watcher.resume() }
            }
        } onCancel: {
            let sleeper: Sleeper? = state.withLock { state in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock forward and wakes every sleeper whose deadline has come.
    public func advance(by duration: Duration) {
        let woken: [Sleeper] = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    /// Returns once at least `count` tasks are sleeping.
    public func waitForSleepers(_ count: Int = 1) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.sleepers.count >= count { return true }
                state.watchers.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

/// A value delivered once: the first `fire` wins, every `wait` gets it (nil when the waiting
/// task is cancelled first).
final class OneShotSignal<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiters: [Int: CheckedContinuation<Value?, Never>] = [:]
        var nextID = 0
        var cancelled: Set<Int> = []
    }

    private let state = Mutex(State())

    init() {}

    /// Delivers `value`; false when a value was delivered before.
    @discardableResult
    func fire(_ value: Value) -> Bool {
        let waiters: [CheckedContinuation<Value?, Never>]? = state.withLock { state in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume(returning: value) }
        return true
    }

    var value: Value? { state.withLock { $0.value } }

    func wait() async -> Value? {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Value?, Never>) in
                let immediate: (Bool, Value?) = state.withLock { state in
                    if let value = state.value { return (true, value) }
                    if state.cancelled.remove(id) != nil { return (true, nil) }
                    state.waiters[id] = continuation
                    return (false, nil)
                }
                if immediate.0 { continuation.resume(returning: immediate.1) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Value?, Never>? in
                guard let waiter = state.waiters.removeValue(forKey: id) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
