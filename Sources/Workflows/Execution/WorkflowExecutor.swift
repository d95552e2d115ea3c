import Backend
import Foundation
import JSONRPC
import Logging

/// Runs executions of pinned definition versions, durably.
///
/// - Independent steps run at the same time (task groups); a step starts when its
///   dependencies have finished. Conditions skip the branch not taken, loops stop at their
///   exit condition or `maxIterations`, parallel branches run side by side, timeouts cancel,
///   failed attempts are retried with back-off, and `errorHandling` decides what a failure
///   does (fail, skip, compensate).
/// - A `human_approval` step waits for `approve(executionID:stepID:approved:by:comment:)` or
///   its timeout.
/// - Every transition is written to the `WorkflowStateStore` before the next step depends on
///   it. `resumeAll()` continues every unfinished execution found there: completed steps are
///   not run again; a step that was running when the process stopped runs again
///   (at-least-once), so agent tasks should be idempotent. Approval deadlines and workflow
///   timeouts are instants, so they survive a restart.
/// - Executions run inside `run()`, which the owner runs for the executor's lifetime (a
///   service); cancelling it stops them without marking them finished, so that a later
///   `resumeAll()` continues them.
/// - Events go to the `WorkflowEventSink` on topic `workflows.<workflowName>.<executionId>`:
///   `{event: "execution", executionId, workflowName, version, status, finishedSteps,
///   totalSteps, errorDetails?}` when the execution's status changes and `{event: "step",
///   …, stepId, status, attempt, error?}` when a step's does.
public actor WorkflowExecutor {
    public nonisolated let catalog: WorkflowCatalog
    nonisolated let store: any WorkflowStateStore
    nonisolated let runner: any WorkflowStepRunner
    nonisolated let events: any WorkflowEventSink
    nonisolated let clock: any WorkflowClock
    nonisolated let logger: Logger
    private nonisolated let jobs: AsyncStream<String>
    private nonisolated let jobSink: AsyncStream<String>.Continuation

    private var live: [String: LiveExecution] = [:]
    private var finishWaiters: [String: [CheckedContinuation<WorkflowExecution, Never>]] = [:]
    private var stepWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    private struct LiveExecution {
        var execution: WorkflowExecution
        let definition: WorkflowDefinition
        let interrupt = OneShotSignal<Interruption>()
        var approvals: [String: OneShotSignal<ApprovalDecision>] = [:]
        var started = false
        var headerRevision = 0
        var flushedRevision = 0
        var flushing = false
        /// `execution.finishedSteps`, kept up to date by `updateStep` so that announcing a step
        /// does not count every record.
        var finishedSteps: Int

        init(execution: WorkflowExecution, definition: WorkflowDefinition) {
            self.execution = execution
            self.definition = definition
            finishedSteps = execution.finishedSteps
        }
    }

    public init(
        store: any WorkflowStateStore, runner: any WorkflowStepRunner, events: any WorkflowEventSink = DiscardingWorkflowEventSink(),
        clock: any WorkflowClock = SystemWorkflowClock(), logger: Logger = Logger(label: "switchboard.workflows")
    ) {
        catalog = WorkflowCatalog(store: store, clock: clock)
        self.store = store
        self.runner = runner
        self.events = events
        self.clock = clock
        self.logger = logger
        (jobs, jobSink) = AsyncStream.makeStream(of: String.self)
    }

    // MARK: - Public API

    /// Runs the executions started by `execute` and `resumeAll` until the calling task is
    /// cancelled. Call it once.
    public nonisolated func run() async {
        await withDiscardingTaskGroup { group in
            for await executionID in jobs {
                group.addTask { await self.drive(executionID) }
            }
        }
    }

    /// Starts an execution of the requested version (the latest when none is named). It is
    /// returned at once, PENDING; `run()` carries it out.
    public func execute(_ request: WorkflowExecutionRequest) async throws(WorkflowError) -> WorkflowExecution {
        let definition = try await catalog.get(name: request.workflowName, version: request.version).definition
        let inputs = try Self.resolveInputs(request.inputs, of: definition)
        let execution = WorkflowExecution(
            executionID: "wf-" + UUID().uuidString.lowercased(), workflowName: definition.name, version: definition.version,
            status: .pending, triggerType: request.triggerType, triggerData: request.triggerData, executionContext: request.executionContext,
            inputs: .object(inputs), outputs: nil, startedAt: clock.now(), completedAt: nil, errorDetails: nil, steps: [:],
            totalSteps: definition.stepCount)
        do {
            try await store.saveExecution(execution)
        } catch {
            throw .storage(error)
        }
        live[execution.executionID] = LiveExecution(execution: execution, definition: definition)
        await publishExecution(EventHeader(execution))
        jobSink.yield(execution.executionID)
        return execution
    }

    /// Continues every unfinished execution in the store that this executor is not running;
    /// returns their ids.
    @discardableResult
    public func resumeAll() async throws(WorkflowError) -> [String] {
        let ids: [String]
        do {
            ids = try await store.unfinishedExecutionIDs()
        } catch {
            throw .storage(error)
        }
        var resumed: [String] = []
        for id in ids where live[id] == nil {
            guard let execution = try? await store.execution(id), !execution.status.isFinal else { continue }
            do {
                let definition = try await catalog.get(name: execution.workflowName, version: execution.version).definition
                live[id] = LiveExecution(execution: execution, definition: definition)
                jobSink.yield(id)
                resumed.append(id)
            } catch {
                var failed = execution
                failed.status = .failed
                failed.completedAt = clock.now()
                failed.errorDetails = ["message": .string("cannot resume: \(error.message)"), "timedOut": false]
                try? await store.saveExecution(failed)
                logger.error("workflow execution \(id) cannot resume: \(error.message)")
            }
        }
        if !resumed.isEmpty { logger.info("resuming \(resumed.count) workflow execution(s)") }
        return resumed
    }

    /// The execution as it is now.
    public func status(executionID: String) async throws(WorkflowError) -> WorkflowExecution {
        if let entry = live[executionID] { return entry.execution }
        return try await stored(executionID)
    }

    /// Executions newest first that `matches` accepts: up to `limit`, looking at no more than
    /// `scanLimit` of them, and the cursor to go on from (nil when none is left). A cursor is
    /// opaque to callers; each page is read from the store as it is now. With `unfinishedOnly`
    /// (a filter on a status that is not final) only the executions still running are looked
    /// at — the ones waiting for an approval among them — however many have ended.
    public func executions(
        after cursor: String?, limit: Int, unfinishedOnly: Bool = false, scanLimit: Int = 2000,
        matching matches: @Sendable (WorkflowExecution) -> Bool
    ) async throws(WorkflowError) -> (executions: [WorkflowExecution], nextCursor: String?) {
        if unfinishedOnly { return try await unfinishedExecutions(after: cursor, limit: limit, matching: matches) }
        var found: [WorkflowExecution] = []
        var position = cursor
        var scanned = 0
        while true {
            let wanted = min(200, scanLimit - scanned)
            guard wanted > 0 else { return (found, position) }
            let batch: [(id: String, cursor: String)]
            do {
                batch = try await store.executionIDs(after: position, limit: wanted)
            } catch {
                throw .storage(error)
            }
            for (id, next) in batch {
                scanned += 1
                position = next
                if let execution = try await listed(id), matches(execution) {
                    found.append(execution)
                    if found.count == limit { return (found, next) }
                }
            }
            if batch.count < wanted { return (found, nil) }
        }
    }

    private func unfinishedExecutions(
        after cursor: String?, limit: Int, matching matches: @Sendable (WorkflowExecution) -> Bool
    ) async throws(WorkflowError) -> (executions: [WorkflowExecution], nextCursor: String?) {
        let ids: [String]
        do {
            ids = try await store.unfinishedExecutionIDs()
        } catch {
            throw .storage(error)
        }
        var candidates: [(key: String, execution: WorkflowExecution)] = []
        for id in ids {
            guard let execution = try await listed(id), matches(execution) else { continue }
            let key = WorkflowExecutionListing.key(of: execution)
            if let cursor, key <= cursor { continue }
            candidates.append((key, execution))
        }
        candidates.sort { $0.key < $1.key }
        let page = candidates.prefix(limit)
        return (page.map(\.execution), candidates.count > limit ? page.last?.key : nil)
    }

    /// A listed execution as it is now; nil when it is gone (listed, but never fully written).
    private func listed(_ executionID: String) async throws(WorkflowError) -> WorkflowExecution? {
        do {
            return try await status(executionID: executionID)
        } catch where error.code == .unknownExecution {
            return nil
        }
    }

    /// Returns when the execution has ended (or when the executor stops running it).
    public func waitForCompletion(executionID: String) async throws(WorkflowError) -> WorkflowExecution {
        guard let entry = live[executionID], !entry.execution.status.isFinal else { return try await status(executionID: executionID) }
        return await withCheckedContinuation { finishWaiters[executionID, default: []].append($0) }
    }

    /// Decides a waiting `human_approval` step. When the step names approvers, `by` must be one
    /// of them, or hold one of the `role:NAME` entries through `roles` (the authenticated
    /// principal's roles). Returns the execution once the step has taken the decision.
    public func approve(
        executionID: String, stepID: String, approved: Bool, by: String, roles: [String] = [], comment: String? = nil
    ) async throws(WorkflowError) -> WorkflowExecution {
        let ids: [String: JSONValue] = ["executionId": .string(executionID), "stepId": .string(stepID)]
        guard let entry = live[executionID] else {
            let execution = try await stored(executionID)
            throw WorkflowError(.invalidRequest, "execution \(executionID) is \(execution.status.rawValue); no step of it waits for approval here", data: ids)
        }
        guard let step = entry.execution.steps[stepID], step.status == .waitingApproval, let signal = entry.approvals[stepID] else {
            let status = entry.execution.steps[stepID]?.status.rawValue ?? "not started"
            let known = entry.definition.stepsByID[stepID] == nil ? " (the workflow has no such step)" : ""
            throw WorkflowError(.invalidRequest, "step \(stepID) of execution \(executionID) is not waiting for approval: it is \(status)\(known)", data: ids)
        }
        if let approvers = step.approval?.approvers, !approvers.isEmpty, !approvers.contains(by),
            !roles.contains(where: { approvers.contains("role:\($0)") })
        {
            throw WorkflowError(
                .invalidRequest, "\(by) may not decide step \(stepID); its approvers are \(approvers.joined(separator: ", "))",
                data: ids.merging(["by": .string(by)]) { first, _ in first })
        }
        let decidedAt = clock.now()
        // Stored before the step learns of it, so that a restart in between keeps the decision.
        await updateStep(executionID, stepID) { state in
            state.approval?.approved = approved
            state.approval?.decidedBy = by
            state.approval?.comment = comment
            state.approval?.decidedAt = decidedAt
        }
        guard signal.fire(.decided(approved: approved, by: by, comment: comment, at: decidedAt)) else {
            throw WorkflowError(.invalidRequest, "the approval of step \(stepID) has already ended (its timeout passed)", data: ids)
        }
        await waitUntilStep(executionID, stepID, leaves: .waitingApproval)
        return try await status(executionID: executionID)
    }

    /// Cancels an execution: running steps are cancelled and it ends CANCELLED. An execution
    /// that has ended is returned as it is.
    public func cancel(executionID: String) async throws(WorkflowError) -> WorkflowExecution {
        if let entry = live[executionID] {
            if entry.started {
                entry.interrupt.fire(.cancelled)
                return try await waitForCompletion(executionID: executionID)
            }
            await finish(executionID, status: .cancelled, errorDetails: ["message": "cancelled by request", "timedOut": false])
            return try await status(executionID: executionID)
        }
        var execution = try await stored(executionID)
        guard !execution.status.isFinal else { return execution }
        // Unfinished but not run here (not resumed yet): end it in the store.
        execution.status = .cancelled
        execution.completedAt = clock.now()
        execution.errorDetails = ["message": "cancelled by request", "timedOut": false]
        do {
            try await store.saveExecution(execution)
        } catch {
            throw .storage(error)
        }
        return execution
    }

    private func stored(_ executionID: String) async throws(WorkflowError) -> WorkflowExecution {
        let execution: WorkflowExecution?
        do {
            execution = try await store.execution(executionID)
        } catch {
            throw .storage(error)
        }
        guard let execution else {
            throw WorkflowError(.unknownExecution, "no workflow execution \"\(executionID)\"", data: ["executionId": .string(executionID)])
        }
        return execution
    }

    static func resolveInputs(_ given: [String: JSONValue], of definition: WorkflowDefinition) throws(WorkflowError) -> [String: JSONValue] {
        var inputs: [String: JSONValue] = [:]
        for name in given.keys.sorted() where !definition.inputs.contains(where: { $0.name == name }) {
            let declared = definition.inputs.map(\.name)
            let list = declared.isEmpty ? "it declares none" : "it declares \(declared.joined(separator: ", "))"
            throw WorkflowError(
                .invalidRequest, "workflow \(definition.name) has no input \"\(name)\"\(Suggestion.hint(for: name, among: declared)); \(list)",
                data: ["input": .string(name)])
        }
        for input in definition.inputs {
            if let value = given[input.name].map(ExpressionEvaluator.plain) {
                guard input.accepts(value) else {
                    throw WorkflowError(
                        .invalidRequest, "input \"\(input.name)\" must be of type \(input.type.rawValue), not \(ExpressionEvaluator.kindName(value))",
                        data: ["input": .string(input.name)])
                }
                inputs[input.name] = value
            } else if let value = input.defaultValue {
                inputs[input.name] = value
            } else if input.required {
                throw WorkflowError(.invalidRequest, "input \"\(input.name)\" is required", data: ["input": .string(input.name)])
            }
        }
        return inputs
    }

    // MARK: - Driving one execution

    enum Interruption: Sendable, Equatable {
        case cancelled, timedOut
    }

    private enum Ending: Sendable {
        case completed
        case failed(StepFailure)
        case interrupted(Interruption)
    }

    struct Start: Sendable {
        var definition: WorkflowDefinition
        var execution: WorkflowExecution
        var interrupt: OneShotSignal<Interruption>
        var deadline: Timestamp?
        /// A failure recorded before a restart, whose compensation had not finished.
        var pendingFailure: StepFailure?
    }

    private nonisolated func drive(_ executionID: String) async {
        guard let start = await begin(executionID) else { return }
        let run = ExecutionRun(executor: self, execution: start.execution, definition: start.definition)
        let clock = self.clock
        var ending: Ending?
        if let failure = start.pendingFailure {
            ending = .failed(failure)
        } else {
            ending = await withTaskGroup(of: Ending?.self) { group in
                group.addTask {
                    do {
                        try await run.runWorkflow()
                        return .completed
                    } catch let failure as StepFailure {
                        return Task.isCancelled ? nil : .failed(failure)
                    } catch {
                        return Task.isCancelled ? nil : .failed(StepFailure(stepID: nil, message: "\(error)"))
                    }
                }
                group.addTask { await start.interrupt.wait().map(Ending.interrupted) }
                if let deadline = start.deadline {
                    group.addTask {
                        do {
                            try await clock.sleep(until: deadline)
                            return .interrupted(.timedOut)
                        } catch {
                            return nil
                        }
                    }
                }
                while let next = await group.next() {
                    if let next {
                        group.cancelAll()
                        return next
                    }
                }
                return nil
            }
        }
        switch ending {
        case nil:
            await release(executionID)
        case .completed:
            do {
                let outputs = try await run.outputs()
                await finish(executionID, status: .completed, outputs: outputs)
            } catch {
                await finish(executionID, status: .failed, errorDetails: ["message": .string("an output failed: \(error)"), "timedOut": false])
            }
        case .failed(let failure):
            await recordFailure(executionID, failure)
            let compensations = await run.compensate(failure.compensations)
            guard !Task.isCancelled else { return await release(executionID) }
            var details = failure.details
            details["pendingCompensations"] = nil
            if !compensations.isEmpty { details["compensations"] = .array(compensations) }
            await finish(executionID, status: failure.timedOut ? .timedOut : .failed, errorDetails: .object(details))
        case .interrupted(.cancelled):
            await finish(executionID, status: .cancelled, errorDetails: ["message": "cancelled by request", "timedOut": false])
        case .interrupted(.timedOut):
            let limit = start.definition.timeout.map(WorkflowDuration.text) ?? "?"
            await finish(executionID, status: .timedOut, errorDetails: ["message": .string("the workflow did not finish within \(limit)"), "timedOut": true])
        }
    }

    private func begin(_ executionID: String) async -> Start? {
        guard var entry = live[executionID], !entry.execution.status.isFinal, !entry.started else { return nil }
        entry.started = true
        let previous = entry.execution.status
        if entry.execution.status == .pending { entry.execution.status = .running }
        live[executionID] = entry
        if previous != entry.execution.status {
            await flushHeader(executionID)
            await publishExecution(EventHeader(entry.execution))
        }
        var pending: StepFailure?
        if let details = entry.execution.errorDetails?.objectValue, details["compensating"] == true {
            pending = StepFailure(details: details)
        }
        return Start(
            definition: entry.definition, execution: entry.execution, interrupt: entry.interrupt,
            deadline: entry.definition.timeout.map { entry.execution.startedAt.advanced(by: $0) }, pendingFailure: pending)
    }

    /// Keeps the failure in the header while compensations run, so that a restart compensates
    /// instead of running the workflow again.
    private func recordFailure(_ executionID: String, _ failure: StepFailure) async {
        guard live[executionID] != nil, !failure.compensations.isEmpty else { return }
        var details = failure.details
        details["compensating"] = true
        live[executionID]?.execution.errorDetails = .object(details)
        await flushHeader(executionID)
    }

    private func finish(_ executionID: String, status: WorkflowExecutionStatus, errorDetails: JSONValue? = nil, outputs: JSONValue? = nil) async {
        guard var entry = live[executionID] else { return }
        let now = clock.now()
        for (stepID, step) in entry.execution.steps where step.status == .running || step.status == .waitingApproval || step.status == .pending {
            var cancelled = step
            cancelled.status = .cancelled
            cancelled.completedAt = now
            entry.execution.steps[stepID] = cancelled
            do {
                try await store.saveStep(cancelled, executionID: executionID)
            } catch {
                logger.error("workflow execution \(executionID): cannot store step \(stepID): \(error)")
            }
        }
        entry.execution.status = status
        entry.execution.completedAt = now
        entry.execution.errorDetails = errorDetails
        entry.execution.outputs = outputs
        entry.approvals = [:]
        live[executionID] = entry
        await flushHeader(executionID)
        let execution = live[executionID]?.execution ?? entry.execution
        live[executionID] = nil
        await publishExecution(EventHeader(execution))
        logger.debug("workflow execution \(executionID) (\(execution.workflowName) \(execution.version)) ended \(status.rawValue)")
        wakeWaiters(executionID, with: execution)
    }

    /// Forgets an execution this executor stopped running (shutdown); it stays unfinished in
    /// the store.
    private func release(_ executionID: String) async {
        guard let entry = live.removeValue(forKey: executionID) else { return }
        wakeWaiters(executionID, with: entry.execution)
    }

    /// Everyone waiting for the execution's end or for one of its steps: it will not run here.
    private func wakeWaiters(_ executionID: String, with execution: WorkflowExecution) {
        for waiter in finishWaiters.removeValue(forKey: executionID) ?? [] { waiter.resume(returning: execution) }
        for (key, waiters) in stepWaiters where key.hasPrefix(executionID + "/") {
            stepWaiters[key] = nil
            for waiter in waiters { waiter.resume() }
        }
    }

    // MARK: - State, for ExecutionRun

    func stepState(_ executionID: String, _ stepID: String) -> WorkflowStepState? {
        live[executionID]?.execution.steps[stepID]
    }

    func stepStates(_ executionID: String, _ stepIDs: [String]) -> [String: WorkflowStepState] {
        guard let steps = live[executionID]?.execution.steps else { return [:] }
        var found: [String: WorkflowStepState] = [:]
        for id in stepIDs { found[id] = steps[id] }
        return found
    }

    /// What expressions see as `steps.<id>`, for the ids given (every step when nil).
    func stepValues(_ executionID: String, _ stepIDs: Set<String>?) -> [String: JSONValue] {
        guard let steps = live[executionID]?.execution.steps else { return [:] }
        guard let stepIDs else { return steps.mapValues(\.expressionValue) }
        var values: [String: JSONValue] = [:]
        for id in stepIDs { values[id] = steps[id]?.expressionValue }
        return values
    }

    /// Changes a step's record, stores it and announces it.
    @discardableResult
    func updateStep(
        _ executionID: String, _ stepID: String, announce: Bool = false, _ change: @Sendable (inout WorkflowStepState) -> Void
    ) async -> WorkflowStepState? {
        // Changed in place: a copy of the entry would copy every step record on each transition.
        let changed = modifyLive(executionID) { entry -> (WorkflowStepState, WorkflowStepStatus, Bool) in
            let previous = entry.execution.steps[stepID]
            var state = previous ?? WorkflowStepState(stepID: stepID, status: .pending)
            let before = state.status
            change(&state)
            entry.execution.steps[stepID] = state
            entry.finishedSteps += Self.countsAsFinished(state) - (previous.map(Self.countsAsFinished) ?? 0)
            if before == .waitingApproval && state.status != .waitingApproval { entry.approvals[stepID] = nil }
            let headerStatus: WorkflowExecutionStatus = entry.approvals.isEmpty ? .running : .waitingApproval
            let headerChanged = !entry.execution.status.isFinal && entry.execution.status != .pending && entry.execution.status != headerStatus
            if headerChanged { entry.execution.status = headerStatus }
            return (state, before, headerChanged)
        }
        guard case let (state, before, headerChanged)? = changed else { return nil }
        do {
            try await store.saveStep(state, executionID: executionID)
        } catch {
            logger.error("workflow execution \(executionID): cannot store step \(stepID): \(error)")
        }
        if headerChanged {
            await flushHeader(executionID)
            if let header = eventHeader(executionID) { await publishExecution(header) }
        }
        if before != state.status || announce, let header = eventHeader(executionID) {
            await publishStep(state, of: header)
            for waiter in stepWaiters.removeValue(forKey: "\(executionID)/\(stepID)") ?? [] { waiter.resume() }
        }
        return state
    }

    private func modifyLive<Result>(_ executionID: String, _ body: (inout LiveExecution) -> Result) -> Result? {
        guard live[executionID] != nil else { return nil }
        return body(&live[executionID]!)
    }

    private func eventHeader(_ executionID: String) -> EventHeader? {
        live[executionID].map { EventHeader($0.execution, finishedSteps: $0.finishedSteps) }
    }

    /// 1 when a record counts in `finishedSteps`.
    private static func countsAsFinished(_ step: WorkflowStepState) -> Int {
        step.countsAsFinished ? 1 : 0
    }

    /// Marks an approval step WAITING_APPROVAL and returns the signal its decision comes on.
    func beginApproval(_ executionID: String, _ stepID: String, round: String, approval: WorkflowApprovalState) async -> OneShotSignal<ApprovalDecision> {
        let signal = live[executionID]?.approvals[stepID] ?? OneShotSignal<ApprovalDecision>()
        live[executionID]?.approvals[stepID] = signal
        let now = clock.now()
        // Announced even when resumed as it was, so that a new process tells who must decide.
        await updateStep(executionID, stepID, announce: true) { state in
            if state.round != round || state.status != .waitingApproval {
                state = WorkflowStepState(stepID: stepID, status: .pending)
                state.round = round
                state.startedAt = now
            }
            state.status = .waitingApproval
            state.attempts = 1
            state.approval = approval
        }
        return signal
    }

    private func waitUntilStep(_ executionID: String, _ stepID: String, leaves status: WorkflowStepStatus) async {
        guard live[executionID]?.execution.steps[stepID]?.status == status else { return }
        await withCheckedContinuation { stepWaiters["\(executionID)/\(stepID)", default: []].append($0) }
    }

    /// Writes the header; writes that overlap are merged, and the last state always lands last.
    private func flushHeader(_ executionID: String) async {
        guard live[executionID] != nil else { return }
        live[executionID]!.headerRevision += 1
        if live[executionID]!.flushing { return }
        live[executionID]!.flushing = true
        while let entry = live[executionID], entry.flushedRevision < entry.headerRevision {
            let revision = entry.headerRevision
            do {
                try await store.saveExecution(entry.execution)
            } catch {
                logger.error("workflow execution \(executionID): cannot store its state: \(error)")
            }
            live[executionID]?.flushedRevision = revision
        }
        live[executionID]?.flushing = false
    }

    // MARK: - Events

    /// What an event says of its execution. Taken without the step records, so that an event
    /// being published does not keep them shared (and copied on the next transition).
    private struct EventHeader: Sendable {
        var executionID: String
        var workflowName: String
        var version: String
        var status: WorkflowExecutionStatus
        var finishedSteps: Int
        var totalSteps: Int
        var errorDetails: JSONValue?
        var traceparent: String?

        init(_ execution: WorkflowExecution, finishedSteps: Int? = nil) {
            traceparent = execution.executionContext[WorkflowExecution.traceparentKey]?.stringValue
            executionID = execution.executionID
            workflowName = execution.workflowName
            version = execution.version
            status = execution.status
            self.finishedSteps = finishedSteps ?? execution.finishedSteps
            totalSteps = execution.totalSteps
            errorDetails = execution.errorDetails
        }

        var topic: String { "workflows.\(workflowName).\(executionID)" }
    }

    private func publishExecution(_ execution: EventHeader) async {
        var payload: [String: JSONValue] = [
            "event": "execution", "executionId": .string(execution.executionID), "workflowName": .string(execution.workflowName),
            "version": .string(execution.version), "status": .string(execution.status.rawValue),
            "finishedSteps": .integer(Int64(execution.finishedSteps)), "totalSteps": .integer(Int64(execution.totalSteps)),
        ]
        if let details = execution.errorDetails { payload["errorDetails"] = details }
        if let traceparent = execution.traceparent { payload["traceparent"] = .string(traceparent) }
        await events.publish(topic: execution.topic, payload: .object(payload))
    }

    private func publishStep(_ step: WorkflowStepState, of execution: EventHeader) async {
        var payload: [String: JSONValue] = [
            "event": "step", "executionId": .string(execution.executionID), "workflowName": .string(execution.workflowName),
            "version": .string(execution.version), "stepId": .string(step.stepID), "status": .string(step.status.rawValue),
            "attempt": .integer(Int64(step.attempts)),
            "finishedSteps": .integer(Int64(execution.finishedSteps)), "totalSteps": .integer(Int64(execution.totalSteps)),
        ]
        if let error = step.error { payload["error"] = .string(error) }
        if let traceparent = execution.traceparent { payload["traceparent"] = .string(traceparent) }
        await events.publish(topic: execution.topic, payload: .object(payload))
    }
}

/// A person's decision on an approval step, or its timeout.
enum ApprovalDecision: Sendable {
    case decided(approved: Bool, by: String, comment: String?, at: Timestamp)
    case timedOut
}

/// A step failure that ends the execution (unless handled), carrying the compensations to run.
struct StepFailure: Error, Sendable {
    /// The step where the failure started (the innermost one).
    var stepID: String?
    var message: String
    var timedOut = false
    var compensations: [String] = []
    var retryable = true

    init(stepID: String?, message: String, timedOut: Bool = false, compensations: [String] = [], retryable: Bool = true) {
        self.stepID = stepID
        self.message = message
        self.timedOut = timedOut
        self.compensations = compensations
        self.retryable = retryable
    }

    init(details: [String: JSONValue]) {
        stepID = details["stepId"]?.stringValue
        message = details["message"]?.stringValue ?? "failed"
        timedOut = details["timedOut"] == true
        if case .array(let names) = details["pendingCompensations"] { compensations = names.compactMap(\.stringValue) }
    }

    var details: [String: JSONValue] {
        var members: [String: JSONValue] = ["message": .string(message), "timedOut": .bool(timedOut)]
        if let stepID { members["stepId"] = .string(stepID) }
        if !compensations.isEmpty { members["pendingCompensations"] = .array(compensations.map(JSONValue.string)) }
        return members
    }
}
