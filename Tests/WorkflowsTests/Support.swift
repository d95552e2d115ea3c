import Backend
import JSONRPC
import Synchronization
import Testing
import Workflows

/// A runner that records every call and lets each test decide what a call does.
final class FakeRunner: WorkflowStepRunner {
    typealias Behaviour = @Sendable (AgentTaskInvocation) async throws -> JSONValue

    private struct State {
        var calls: [AgentTaskInvocation] = []
        var log: [String] = []
        var waiters: [(String, CheckedContinuation<Void, Never>)] = []
        var countWaiters: [(Int, CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())
    private let behaviour: Behaviour

    init(_ behaviour: @escaping Behaviour = { task in ["tool": .string(task.tool), "ok": true] }) {
        self.behaviour = behaviour
    }

    func run(_ task: AgentTaskInvocation) async throws -> JSONValue {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.calls.append(task)
            state.log.append("start \(task.stepID)")
            var ready = state.waiters.filter { $0.0 == task.stepID }.map(\.1)
            state.waiters.removeAll { $0.0 == task.stepID }
            let count = state.calls.count
            ready += state.countWaiters.filter { $0.0 <= count }.map(\.1)
            state.countWaiters.removeAll { $0.0 <= count }
            return ready
        }
        for waiter in ready { waiter.resume() }
        defer { state.withLock { $0.log.append("end \(task.stepID)") } }
        return try await behaviour(task)
    }

    var calls: [AgentTaskInvocation] { state.withLock { $0.calls } }
    var calledSteps: [String] { calls.map(\.stepID) }
    var log: [String] { state.withLock { $0.log } }

    /// Returns once the runner has been called `count` times.
    func waitForCalls(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let enough = state.withLock { state -> Bool in
                if state.calls.count >= count { return true }
                state.countWaiters.append((count, continuation))
                return false
            }
            if enough { continuation.resume() }
        }
    }

    /// Returns once `stepID` has been called.
    func waitForCall(_ stepID: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let called = state.withLock { state -> Bool in
                if state.calls.contains(where: { $0.stepID == stepID }) { return true }
                state.waiters.append((stepID, continuation))
                return false
            }
            if called { continuation.resume() }
        }
    }
}

/// Lets `count` tasks through together: each waits until all have arrived.
final class Rendezvous: Sendable {
    private let state: Mutex<(arrived: Int, waiters: [CheckedContinuation<Void, Never>])>
    private let count: Int

    init(count: Int) {
        self.count = count
        state = Mutex((0, []))
    }

    func arrive() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let release = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.arrived += 1
                state.waiters.append(continuation)
                guard state.arrived >= count else { return [] }
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in release { waiter.resume() }
        }
    }
}

/// Keeps every event and wakes tests waiting for one.
final class EventRecorder: WorkflowEventSink {
    private struct State {
        var events: [(topic: String, payload: JSONValue)] = []
        var waiters: [(@Sendable (JSONValue) -> Bool, CheckedContinuation<JSONValue, Never>)] = []
    }

    private let state = Mutex(State())

    func publish(topic: String, payload: JSONValue) async {
        let ready = state.withLock { state -> [(CheckedContinuation<JSONValue, Never>)] in
            state.events.append((topic, payload))
            let ready = state.waiters.filter { $0.0(payload) }.map(\.1)
            state.waiters.removeAll { $0.0(payload) }
            return ready
        }
        for waiter in ready { waiter.resume(returning: payload) }
    }

    var events: [(topic: String, payload: JSONValue)] { state.withLock { $0.events } }

    /// The first event (past or future) that matches.
    func first(where predicate: @escaping @Sendable (JSONValue) -> Bool) async -> JSONValue {
        await withCheckedContinuation { (continuation: CheckedContinuation<JSONValue, Never>) in
            let found = state.withLock { state -> JSONValue? in
                if let event = state.events.first(where: { predicate($0.payload) }) { return event.payload }
                state.waiters.append((predicate, continuation))
                return nil
            }
            if let found { continuation.resume(returning: found) }
        }
    }

    /// Waits until step `stepID` reaches `status`.
    func step(_ stepID: String, reaches status: String) async {
        _ = await first { $0["event"] == "step" && $0["stepId"] == .string(stepID) && $0["status"] == .string(status) }
    }

    /// Waits until step `stepID` of one execution reaches `status`.
    func step(_ stepID: String, of executionID: String, reaches status: String) async {
        _ = await first {
            $0["event"] == "step" && $0["executionId"] == .string(executionID) && $0["stepId"] == .string(stepID) && $0["status"] == .string(status)
        }
    }
}

extension JSONValue {
    /// The element at `index` of an array; nil for anything else.
    subscript(index: Int) -> JSONValue? {
        guard case .array(let elements) = self, elements.indices.contains(index) else { return nil }
        return elements[index]
    }

    var arrayValue: [JSONValue]? {
        guard case .array(let elements) = self else { return nil }
        return elements
    }
}

/// An executor over an in-memory store, running for the duration of `body`.
struct Harness {
    let keyValues: InMemoryKeyValueStore
    let runner: FakeRunner
    let clock: ManualWorkflowClock
    let events = EventRecorder()
    let executor: WorkflowExecutor

    init(runner: FakeRunner = FakeRunner(), clock: ManualWorkflowClock = ManualWorkflowClock(advancesWhenSleeping: true), keyValues: InMemoryKeyValueStore = InMemoryKeyValueStore()) {
        self.keyValues = keyValues
        self.runner = runner
        self.clock = clock
        executor = WorkflowExecutor(store: KeyValueWorkflowStateStore(store: keyValues), runner: runner, events: events, clock: clock)
    }

    /// Runs the executor while `body` runs, then stops it (as a shutdown would).
    func running<T: Sendable>(_ body: @Sendable (Harness) async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await executor.run() }
            defer { group.cancelAll() }
            return try await body(self)
        }
    }

    /// Stores `yaml` and runs it to the end.
    func runToEnd(_ yaml: String, inputs: [String: JSONValue] = [:]) async throws -> WorkflowExecution {
        let definition = try await executor.catalog.create(source: yaml).definition
        let started = try await executor.execute(WorkflowExecutionRequest(workflowName: definition.name, inputs: inputs))
        return try await executor.waitForCompletion(executionID: started.executionID)
    }

    func start(_ yaml: String, inputs: [String: JSONValue] = [:]) async throws -> String {
        let definition = try await executor.catalog.create(source: yaml).definition
        return try await executor.execute(WorkflowExecutionRequest(workflowName: definition.name, inputs: inputs)).executionID
    }
}

extension WorkflowExecution {
    func status(of step: String) -> WorkflowStepStatus? { steps[step]?.status }
}
