import Backend
import JSONRPC

/// Carries out one execution's steps: the graph, branches, loops, retries, timeouts, approvals
/// and compensations. Its state lives in the executor (and through it in the store); this
/// type only decides what runs next.
struct ExecutionRun: Sendable {
    let executor: WorkflowExecutor
    let executionID: String
    let definition: WorkflowDefinition
    /// The trace the execution belongs to (`traceparent` in its context), for its steps' calls.
    let traceparent: String?
    /// `inputs`, `trigger`, `context`, `execution`: fixed for the whole execution.
    let variables: [String: JSONValue]

    init(executor: WorkflowExecutor, execution: WorkflowExecution, definition: WorkflowDefinition) {
        self.traceparent = execution.executionContext[WorkflowExecution.traceparentKey]?.stringValue
        self.executor = executor
        executionID = execution.executionID
        self.definition = definition
        variables = [
            "inputs": execution.inputs,
            "trigger": ["type": .string(execution.triggerType), "payload": execution.triggerData],
            "context": execution.executionContext,
            "execution": [
                "id": .string(execution.executionID), "workflowName": .string(execution.workflowName),
                "version": .string(execution.version), "startedAt": .string(execution.startedAt.iso8601),
            ],
        ]
    }

    private var clock: any WorkflowClock { executor.clock }

    struct LoopFrame: Sendable {
        var iteration: Int
        var item: JSONValue?
    }

    enum Outcome: Sendable {
        case completed(branch: String?)
        case skipped
    }

    func runWorkflow() async throws {
        try await runSteps(definition.steps, sequential: false, round: "", frames: [])
    }

    // MARK: - Graphs and sequences

    /// Runs a list of steps: as a graph ordered by `dependencies` (the top level), or in the
    /// order written (a branch, a loop body). Records already final in this round are kept.
    private func runSteps(_ steps: [WorkflowStep], sequential: Bool, round: String, frames: [LoopFrame]) async throws {
        let ids = steps.map(\.id)
        let local = Set(ids)
        let byID = Dictionary(steps.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var dependencies: [String: [String]] = [:]
        var gates: [String: [(condition: String, branch: String)]] = [:]
        for (offset, step) in steps.enumerated() {
            dependencies[step.id] = sequential ? (offset > 0 ? [ids[offset - 1]] : []) : step.dependencies.filter(local.contains)
            if case .condition(let condition) = step.kind {
                for name in condition.thenSteps where local.contains(name) { gates[name, default: []].append((step.id, "then")) }
                for name in condition.elseSteps where local.contains(name) { gates[name, default: []].append((step.id, "else")) }
            }
        }
        if !sequential {
            for (name, list) in gates {
                for gate in list where !(dependencies[name]?.contains(gate.condition) ?? false) { dependencies[name, default: []].append(gate.condition) }
            }
        }
        var dependents: [String: [String]] = [:]
        var remaining: [String: Int] = [:]
        for (id, list) in dependencies {
            remaining[id] = list.count
            for dependency in list { dependents[dependency, default: []].append(id) }
        }
        let existing = await executor.stepStates(executionID, ids)
        var outcomes: [String: Outcome] = [:]
        var queue = ids.filter { remaining[$0] == 0 }
        var head = 0

        func skipReason(_ id: String) -> String? {
            for gate in gates[id] ?? [] {
                switch outcomes[gate.condition] {
                case .skipped?: return "condition \(gate.condition) was skipped"
                case .completed(let branch)? where branch != gate.branch:
                    return "condition \(gate.condition) took its \(branch ?? "other") branch"
                default: break
                }
            }
            guard !sequential, let list = dependencies[id], !list.isEmpty else { return nil }
            let live = list.contains { dependency in
                guard case .completed = outcomes[dependency] else { return false }
                if case .condition(let condition) = byID[dependency]?.kind { return condition.branch(naming: id) != nil }
                return true
            }
            return live ? nil : "every step it depends on was skipped"
        }

        /// Records how a step ended and queues the steps that waited only for it.
        func settle(_ id: String, _ outcome: Outcome) {
            outcomes[id] = outcome
            for dependent in dependents[id] ?? [] {
                remaining[dependent, default: 0] -= 1
                if remaining[dependent] == 0 { queue.append(dependent) }
            }
        }

        try await withThrowingTaskGroup(of: (String, Outcome).self) { group in
            var running = 0
            while true {
                while head < queue.count {
                    let id = queue[head]
                    head += 1
                    guard let step = byID[id] else { continue }
                    var outcome: Outcome?
                    if let record = existing[id], record.round == round {
                        if record.status == .completed { outcome = .completed(branch: record.branch) }
                        if record.status == .skipped { outcome = .skipped }
                    }
                    if outcome == nil, let reason = skipReason(id) {
                        await skip(step, round: round, reason: reason)
                        outcome = .skipped
                    }
                    if let outcome {
                        settle(id, outcome)
                        continue
                    }
                    running += 1
                    group.addTask { (id, try await self.runStep(step, round: round, frames: frames)) }
                }
                guard running > 0, let (id, outcome) = try await group.next() else { break }
                running -= 1
                settle(id, outcome)
            }
        }
    }

    private func skip(_ step: WorkflowStep, round: String, reason: String) async {
        let now = clock.now()
        await executor.updateStep(executionID, step.id) { state in
            state = WorkflowStepState(stepID: step.id, status: .skipped)
            state.round = round
            state.completedAt = now
            state.skipReason = reason
        }
    }

    // MARK: - One step

    private func runStep(_ step: WorkflowStep, round: String, frames: [LoopFrame]) async throws -> Outcome {
        switch step.kind {
        case .condition(let condition): return try await runCondition(step, condition, round: round, frames: frames)
        case .humanApproval(let approval): return try await runApproval(step, approval, round: round, frames: frames)
        default: return try await runAttempts(step, round: round, frames: frames)
        }
    }

    private func handling(_ step: WorkflowStep) -> WorkflowErrorHandling {
        step.errorHandling ?? definition.errorHandling
    }

    /// Agent tasks, parallels and loops: attempts with timeouts, retries with back-off.
    private func runAttempts(_ step: WorkflowStep, round: String, frames: [LoopFrame]) async throws -> Outcome {
        let policy = step.retryPolicy ?? (handling(step) == .retry ? RetryPolicy.standard : nil)
        let previous = await executor.stepState(executionID, step.id)
        // A step that was running when the process stopped runs again, keeping its count.
        let resuming = previous?.round == round && previous?.status == .running
        var attempt = resuming ? previous?.attempts ?? 0 : 0
        let startedAt = clock.now()
        if !resuming {
            await executor.updateStep(executionID, step.id) { state in
                state = WorkflowStepState(stepID: step.id, status: .pending)
                state.round = round
                state.startedAt = startedAt
            }
        }
        while true {
            attempt += 1
            let number = attempt
            await executor.updateStep(executionID, step.id) { state in
                state.status = .running
                state.attempts = number
                state.completedAt = nil
            }
            do {
                let result = try await withTimeout(step.timeout) { try await self.perform(step, round: round, frames: frames, attempt: number) }
                let now = clock.now()
                await executor.updateStep(executionID, step.id) { state in
                    state.status = .completed
                    state.result = result
                    state.error = nil
                    state.timedOut = false
                    state.completedAt = now
                }
                return .completed(branch: nil)
            } catch {
                if Task.isCancelled || error is CancellationError { throw CancellationError() }
                let failure = describe(error, step: step)
                if let policy, attempt <= policy.maxRetries, failure.retryable {
                    let message = failure.own
                    await executor.updateStep(executionID, step.id) { state in
                        state.error = message
                        state.timedOut = failure.origin.timedOut
                    }
                    try await clock.sleep(for: policy.delay(beforeRetry: attempt))
                    continue
                }
                return try await fail(step, message: failure.own, origin: failure.origin, round: round)
            }
        }
    }

    /// What a failed attempt says about itself, and the failure it passes up.
    private func describe(_ error: any Error, step: WorkflowStep) -> (own: String, origin: StepFailure, retryable: Bool) {
        switch error {
        case let inner as StepFailure:
            let own = "step \(inner.stepID ?? "?") failed: \(inner.message)"
            return (own, inner, inner.retryable)
        case let timeout as StepTimedOut:
            let message = "timed out after \(WorkflowDuration.text(timeout.limit))"
            return (message, StepFailure(stepID: step.id, message: message, timedOut: true), true)
        case let expression as ExpressionError:
            let message = "an expression failed at column \(expression.column): \(expression.message)"
            return (message, StepFailure(stepID: step.id, message: message, retryable: false), false)
        case let limit as LoopLimitReached:
            return (limit.message, StepFailure(stepID: step.id, message: limit.message, retryable: false), false)
        case let failure as AgentTaskFailure:
            return (failure.message, StepFailure(stepID: step.id, message: failure.message), true)
        default:
            let message = "\(error)"
            return (message, StepFailure(stepID: step.id, message: message), true)
        }
    }

    /// A step that failed for good: skipped, or failed and passed up with its compensation.
    private func fail(_ step: WorkflowStep, message: String, origin: StepFailure, round: String) async throws -> Outcome {
        let now = clock.now()
        let handling = handling(step)
        let skipped = handling == .skip
        await executor.updateStep(executionID, step.id) { state in
            state.status = skipped ? .skipped : .failed
            state.error = message
            state.timedOut = origin.timedOut
            state.completedAt = now
            if skipped { state.skipReason = "it failed, and its errorHandling is skip" }
        }
        if skipped { return .skipped }
        var failure = origin
        if case .compensate(let target) = handling, !failure.compensations.contains(target) { failure.compensations.append(target) }
        throw failure
    }

    private func perform(_ step: WorkflowStep, round: String, frames: [LoopFrame], attempt: Int) async throws -> JSONValue {
        switch step.kind {
        case .agentTask(let task):
            let scope = await scope(for: task.input.expressions, frames: frames)
            let arguments = try task.input.render(in: scope)
            let invocation = AgentTaskInvocation(
                executionID: executionID, workflowName: definition.name, workflowVersion: definition.version, stepID: step.id,
                tool: task.tool, arguments: arguments, timeout: step.timeout, attempt: attempt, traceparent: traceparent)
            return try await executor.runner.run(invocation)
        case .parallel(let parallel):
            return try await runParallel(parallel, round: round, frames: frames)
        case .loop(let loop):
            return try await runLoop(step, loop, round: round, frames: frames)
        case .condition, .humanApproval:
            preconditionFailure("conditions and approvals are not attempted")
        }
    }

    private func withTimeout(_ timeout: Duration?, _ body: @escaping @Sendable () async throws -> JSONValue) async throws -> JSONValue {
        guard let timeout else { return try await body() }
        let clock = self.clock
        return try await withThrowingTaskGroup(of: JSONValue?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await clock.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard case .some(.some(let value)) = try await group.next() else {
                if Task.isCancelled { throw CancellationError() }
                throw StepTimedOut(limit: timeout)
            }
            return value
        }
    }

    // MARK: - Step types

    private func runCondition(_ step: WorkflowStep, _ condition: ConditionStep, round: String, frames: [LoopFrame]) async throws -> Outcome {
        let now = clock.now()
        await executor.updateStep(executionID, step.id) { state in
            state = WorkflowStepState(stepID: step.id, status: .running)
            state.round = round
            state.attempts = 1
            state.startedAt = now
        }
        let scope = await scope(for: [condition.condition], frames: frames)
        let truth: Bool
        do {
            truth = try condition.condition.isTrue(in: scope)
        } catch {
            let message = "the condition failed at column \(error.column): \(error.message)"
            return try await fail(step, message: message, origin: StepFailure(stepID: step.id, message: message, retryable: false), round: round)
        }
        let branch = truth ? "then" : "else"
        let end = clock.now()
        await executor.updateStep(executionID, step.id) { state in
            state.status = .completed
            state.result = .bool(truth)
            state.branch = branch
            state.completedAt = end
        }
        return .completed(branch: branch)
    }

    private func runParallel(_ parallel: ParallelStep, round: String, frames: [LoopFrame]) async throws -> JSONValue {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for branch in parallel.branches {
                group.addTask { try await self.runSteps(branch, sequential: true, round: round, frames: frames) }
            }
            try await group.waitForAll()
        }
        let states = await executor.stepStates(executionID, parallel.branches.flatMap { $0.map(\.id) })
        var results: [String: JSONValue] = [:]
        for (id, state) in states where state.status == .completed { results[id] = state.result ?? .null }
        return .object(results)
    }

    private func runLoop(_ step: WorkflowStep, _ loop: LoopStep, round: String, frames: [LoopFrame]) async throws -> JSONValue {
        let record = await executor.stepState(executionID, step.id)
        var iteration = record?.iterations ?? 0
        var results = record?.loopResults ?? []
        var items: [JSONValue]?
        if let forEach = loop.forEach {
            let value = try forEach.evaluate(in: await scope(for: [forEach], frames: frames))
            guard case .array(let elements) = ExpressionEvaluator.plain(value) else {
                throw LoopLimitReached(message: "forEach must give an array, not \(ExpressionEvaluator.kindName(value))")
            }
            items = elements
        }
        func frame(_ index: Int) -> LoopFrame {
            LoopFrame(iteration: index, item: items.flatMap { index < $0.count ? $0[index] : nil })
        }
        while true {
            if iteration > 0, let until = loop.untilCondition,
                try until.isTrue(in: await scope(for: [until], frames: frames + [frame(iteration - 1)]))
            {
                break
            }
            if iteration >= loop.maxIterations {
                var wantsMore = false
                if let condition = loop.whileCondition {
                    wantsMore = try condition.isTrue(in: await scope(for: [condition], frames: frames + [frame(iteration)]))
                } else if loop.untilCondition != nil {
                    wantsMore = true
                } else if let items {
                    wantsMore = iteration < items.count
                }
                if wantsMore && loop.onLimit == .fail {
                    let why = loop.untilCondition != nil ? "its until condition still false" : (items != nil ? "items left" : "its while condition still true")
                    throw LoopLimitReached(message: "the loop reached maxIterations (\(loop.maxIterations)) with \(why)")
                }
                break
            }
            if let items, iteration >= items.count { break }
            if let condition = loop.whileCondition,
                try !condition.isTrue(in: await scope(for: [condition], frames: frames + [frame(iteration)]))
            {
                break
            }
            try await runSteps(loop.body, sequential: true, round: "\(round)/\(step.id)#\(iteration)", frames: frames + [frame(iteration)])
            let last = loop.body.last.flatMap { $0.id }
            let lastState = last == nil ? nil : await executor.stepState(executionID, last!)
            results.append(lastState?.status == .completed ? lastState?.result ?? .null : .null)
            iteration += 1
            let done = iteration
            let collected = results
            await executor.updateStep(executionID, step.id) { state in
                state.iterations = done
                state.loopResults = collected
            }
        }
        return ["iterations": .integer(Int64(iteration)), "results": .array(results)]
    }

    private func runApproval(_ step: WorkflowStep, _ approval: ApprovalStep, round: String, frames: [LoopFrame]) async throws -> Outcome {
        let previous = await executor.stepState(executionID, step.id)
        let resuming = previous?.round == round && previous?.status == .waitingApproval
        var decision: ApprovalDecision?
        if resuming, let recorded = previous?.approval, let approved = recorded.approved, let by = recorded.decidedBy {
            decision = .decided(approved: approved, by: by, comment: recorded.comment, at: recorded.decidedAt ?? clock.now())
        }
        if decision == nil {
            let now = clock.now()
            let deadline = resuming ? previous?.approval?.deadline : step.timeout.map { now.advanced(by: $0) }
            let message: String
            do {
                message = ExpressionEvaluator.text(try approval.message.render(in: await scope(for: approval.message.expressions, frames: frames)))
            } catch {
                let text = "the message failed at column \(error.column): \(error.message)"
                return try await fail(step, message: text, origin: StepFailure(stepID: step.id, message: text, retryable: false), round: round)
            }
            let state = WorkflowApprovalState(
                message: message, approvers: approval.approvers, requestedAt: (resuming ? previous?.approval?.requestedAt : nil) ?? now,
                deadline: deadline)
            let signal = await executor.beginApproval(executionID, step.id, round: round, approval: state)
            let clock = self.clock
            decision = await withTaskGroup(of: ApprovalDecision?.self) { group in
                group.addTask { await signal.wait() }
                if let deadline {
                    group.addTask {
                        do {
                            try await clock.sleep(until: deadline)
                        } catch {
                            return nil
                        }
                        signal.fire(.timedOut)
                        return signal.value
                    }
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
        }
        guard let decision else { throw CancellationError() }
        let now = clock.now()
        switch decision {
        case .decided(let approved, let by, let comment, let at):
            await executor.updateStep(executionID, step.id) { state in
                state.approval?.approved = approved
                state.approval?.decidedBy = by
                state.approval?.comment = comment
                state.approval?.decidedAt = at
            }
            guard approved else {
                let message = "rejected by \(by)" + (comment.map { ": \($0)" } ?? "")
                return try await fail(step, message: message, origin: StepFailure(stepID: step.id, message: message, retryable: false), round: round)
            }
            var result: [String: JSONValue] = ["approved": true, "by": .string(by), "decidedAt": .string(at.iso8601)]
            if let comment { result["comment"] = .string(comment) }
            await complete(step.id, result: .object(result), at: now)
        case .timedOut:
            await executor.updateStep(executionID, step.id) { state in
                state.approval?.timedOut = true
                state.approval?.approved = approval.onTimeout == .approve
                state.approval?.decidedAt = now
            }
            guard approval.onTimeout == .approve else {
                let message = "no decision within \(step.timeout.map(WorkflowDuration.text) ?? "its timeout")"
                return try await fail(step, message: message, origin: StepFailure(stepID: step.id, message: message, timedOut: true, retryable: false), round: round)
            }
            await complete(step.id, result: ["approved": true, "by": .null, "timedOut": true], at: now)
        }
        return .completed(branch: nil)
    }

    private func complete(_ stepID: String, result: JSONValue, at now: Timestamp) async {
        await executor.updateStep(executionID, stepID) { state in
            state.status = .completed
            state.result = result
            state.completedAt = now
        }
    }

    // MARK: - Compensation and outputs

    /// Runs the named compensation steps, each once, in order; returns their outcomes.
    func compensate(_ names: [String]) async -> [JSONValue] {
        var outcomes: [JSONValue] = []
        var done = Set<String>()
        for name in names where done.insert(name).inserted {
            guard let step = definition.compensations.first(where: { $0.id == name }) else { continue }
            var outcome: [String: JSONValue] = ["stepId": .string(name)]
            let previous = await executor.stepState(executionID, name)
            if previous?.round == "compensation", previous?.status == .completed {
                outcome["status"] = "COMPLETED"
            } else {
                do {
                    _ = try await runStep(step, round: "compensation", frames: [])
                    let state = await executor.stepState(executionID, name)
                    outcome["status"] = .string(state?.status.rawValue ?? "COMPLETED")
                } catch let failure as StepFailure {
                    outcome["status"] = "FAILED"
                    outcome["error"] = .string(failure.message)
                } catch {
                    outcome["status"] = "CANCELLED"
                }
            }
            outcomes.append(.object(outcome))
        }
        return outcomes
    }

    func outputs() async throws -> JSONValue? {
        guard !definition.outputs.isEmpty else { return nil }
        let scope = await scope(for: definition.outputs.map(\.expression), frames: [])
        var values: [String: JSONValue] = [:]
        for output in definition.outputs {
            do {
                values[output.name] = try output.expression.evaluate(in: scope)
            } catch {
                throw AgentTaskFailure("output \(output.name): column \(error.column): \(error.message)")
            }
        }
        return .object(values)
    }

    // MARK: - Expressions

    /// The scope for `expressions`, with only the steps they read.
    private func scope(for expressions: [WorkflowExpression], frames: [LoopFrame]) async -> ExpressionScope {
        var needed: Set<String>? = []
        for expression in expressions {
            for reference in expression.references where reference.root == "steps" {
                if let member = reference.member { needed?.insert(member) } else { needed = nil }
            }
        }
        let values = needed?.isEmpty == true ? [:] : await executor.stepValues(executionID, needed)
        var variables = self.variables
        if let frame = frames.last {
            variables["iteration"] = .integer(Int64(frame.iteration))
            if let item = frame.item { variables["item"] = item }
        }
        return ExpressionScope(variables: variables, stepValue: { values[$0] })
    }
}

struct StepTimedOut: Error, Sendable {
    var limit: Duration
}

struct LoopLimitReached: Error, Sendable {
    var message: String
}
