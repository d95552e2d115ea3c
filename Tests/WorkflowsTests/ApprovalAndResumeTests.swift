import Backend
import JSONRPC
import Testing
import Workflows

@Suite("Approvals and restarts", .timeLimit(.minutes(1)))
struct ApprovalAndResumeTests {
    static func approvalWorkflow(timeout: String = "1h", onTimeout: String = "reject", errorHandling: String = "fail") -> String {
        """
        workflowName: approve-trade
        version: "1"
        inputs:
          symbol: {type: string, default: AAPL}
        steps:
          - id: sign_off
            type: human_approval
            message: "Buy 100 ${inputs.symbol}?"
            approvers: [alice, bob]
            timeout: \(timeout)
            onTimeout: \(onTimeout)
            errorHandling: \(errorHandling)
          - {id: place_order, type: agent_task, tool: place_order, dependencies: [sign_off]}
        """
    }

    @Test func approvalPausesUntilApproved() async throws {
        let runner = FakeRunner()
        let clock = ManualWorkflowClock()
        let (waiting, decided, finished) = try await Harness(runner: runner, clock: clock).running { harness in
            let id = try await harness.start(Self.approvalWorkflow())
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            let waiting = try await harness.executor.status(executionID: id)
            let decided = try await harness.executor.approve(executionID: id, stepID: "sign_off", approved: true, by: "alice", comment: "within limits")
            return (waiting, decided, try await harness.executor.waitForCompletion(executionID: id))
        }
        #expect(waiting.status == .waitingApproval)
        #expect(waiting.currentSteps == ["sign_off"])
        #expect(waiting.pendingApprovals.first?.approval.message == "Buy 100 AAPL?")
        #expect(waiting.pendingApprovals.first?.approval.deadline == clock.now().advanced(by: .seconds(3_600)))
        #expect(runner.calls.isEmpty == false)
        #expect(decided.status(of: "sign_off") == .completed)
        #expect(finished.status == .completed)
        #expect(finished.steps["sign_off"]?.result?["by"] == "alice")
        #expect(finished.steps["sign_off"]?.result?["comment"] == "within limits")
        #expect(runner.calledSteps == ["place_order"])
    }

    @Test func rejectionFailsTheStep() async throws {
        let runner = FakeRunner()
        let finished = try await Harness(runner: runner, clock: ManualWorkflowClock()).running { harness in
            let id = try await harness.start(Self.approvalWorkflow())
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            _ = try await harness.executor.approve(executionID: id, stepID: "sign_off", approved: false, by: "bob", comment: "too risky")
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(finished.status == .failed)
        #expect(finished.steps["sign_off"]?.error == "rejected by bob: too risky")
        #expect(finished.steps["sign_off"]?.approval?.approved == false)
        #expect(runner.calls.isEmpty)
    }

    @Test func rejectionWithSkipSkipsWhatDependsOnIt() async throws {
        let runner = FakeRunner()
        let finished = try await Harness(runner: runner, clock: ManualWorkflowClock()).running { harness in
            let id = try await harness.start(Self.approvalWorkflow(errorHandling: "skip"))
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            _ = try await harness.executor.approve(executionID: id, stepID: "sign_off", approved: false, by: "bob")
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(finished.status == .completed)
        #expect(finished.status(of: "place_order") == .skipped)
        #expect(runner.calls.isEmpty)
    }

    @Test func onlyNamedApproversMayDecide() async throws {
        try await Harness(clock: ManualWorkflowClock()).running { harness in
            let id = try await harness.start(Self.approvalWorkflow())
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            do {
                _ = try await harness.executor.approve(executionID: id, stepID: "sign_off", approved: true, by: "mallory")
                Issue.record("mallory could approve")
            } catch let error as WorkflowError {
                #expect(error.message == "mallory may not decide step sign_off; its approvers are alice, bob")
                #expect(error.jsonRPCError.code == -32602)
            }
            do {
                _ = try await harness.executor.approve(executionID: id, stepID: "place_order", approved: true, by: "alice")
                Issue.record("a step that does not wait could be approved")
            } catch let error as WorkflowError {
                #expect(error.code == .invalidRequest)
            }
            _ = try await harness.executor.cancel(executionID: id)
        }
    }

    @Test func approvalTimeoutRejectsByDefault() async throws {
        let clock = ManualWorkflowClock()
        let finished = try await Harness(clock: clock).running { harness in
            let id = try await harness.start(Self.approvalWorkflow(timeout: "30m"))
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            clock.advance(by: .seconds(1_800))
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(finished.status == .timedOut)
        #expect(finished.steps["sign_off"]?.error == "no decision within 30m")
        #expect(finished.steps["sign_off"]?.approval?.timedOut == true)
    }

    @Test func approvalTimeoutCanApprove() async throws {
        let clock = ManualWorkflowClock()
        let runner = FakeRunner()
        let finished = try await Harness(runner: runner, clock: clock).running { harness in
            let id = try await harness.start(Self.approvalWorkflow(timeout: "30m", onTimeout: "approve"))
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            clock.advance(by: .seconds(1_800))
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(finished.status == .completed)
        #expect(finished.steps["sign_off"]?.result == ["approved": true, "by": nil, "timedOut": true])
        #expect(runner.calledSteps == ["place_order"])
    }

    static let chain = """
        workflowName: chain
        version: "1"
        steps:
          - {id: a, type: agent_task, tool: t}
          - {id: b, type: agent_task, tool: t, dependencies: [a]}
          - {id: c, type: agent_task, tool: t, dependencies: [b]}
        """

    @Test func restartResumesWithoutRunningCompletedStepsAgain() async throws {
        let keyValues = InMemoryKeyValueStore()
        let first = FakeRunner { task in
            if task.stepID == "b" { try await Task.sleep(for: .seconds(3_600)) }
            return .string("\(task.stepID) by first")
        }
        let id = try await Harness(runner: first, keyValues: keyValues).running { harness in
            let id = try await harness.start(Self.chain)
            await harness.runner.waitForCall("b")
            return id
        }  // leaving `running` stops the executor, as a process exit would
        #expect(first.calledSteps == ["a", "b"])

        let second = FakeRunner { task in .string("\(task.stepID) by second") }
        let finished = try await Harness(runner: second, keyValues: keyValues).running { harness in
            let stopped = try await harness.executor.status(executionID: id)
            #expect(stopped.status == .running)
            #expect(stopped.status(of: "a") == .completed)
            #expect(stopped.status(of: "b") == .running)
            #expect(try await harness.executor.resumeAll() == [id])
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(finished.status == .completed)
        #expect(second.calledSteps == ["b", "c"])  // b was running: it runs again (at-least-once)
        #expect(finished.steps["a"]?.result == "a by first")
        #expect(finished.steps["b"]?.result == "b by second")
        #expect(finished.steps["b"]?.attempts == 2)
    }

    @Test func restartKeepsAWaitingApprovalAndItsDeadline() async throws {
        let keyValues = InMemoryKeyValueStore()
        let clock = ManualWorkflowClock()
        let id = try await Harness(clock: clock, keyValues: keyValues).running { harness in
            let id = try await harness.start(Self.approvalWorkflow())
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            return id
        }
        clock.advance(by: .seconds(600))
        let runner = FakeRunner()
        let finished = try await Harness(runner: runner, clock: clock, keyValues: keyValues).running { harness in
            try await harness.executor.resumeAll()
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            let waiting = try await harness.executor.status(executionID: id)
            #expect(waiting.pendingApprovals.first?.approval.deadline == Timestamp(millisecondsSinceEpoch: 1_767_225_600_000).advanced(by: .seconds(3_600)))
            _ = try await harness.executor.approve(executionID: id, stepID: "sign_off", approved: true, by: "bob")
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(finished.status == .completed)
        #expect(runner.calledSteps == ["place_order"])
    }

    @Test func restartInsideALoopContinuesAtTheSameIteration() async throws {
        let keyValues = InMemoryKeyValueStore()
        let yaml = """
            workflowName: loop-restart
            version: "1"
            steps:
              - id: batches
                type: loop
                maxIterations: 5
                steps:
                  - {id: fetch, type: agent_task, tool: t, input: {n: "${iteration}"}}
                  - {id: store, type: agent_task, tool: t, input: {n: "${iteration}"}}
            """
        let first = FakeRunner { task in
            if task.stepID == "store", task.arguments["n"] == 2 { try await Task.sleep(for: .seconds(3_600)) }
            return "ok"
        }
        let id = try await Harness(runner: first, keyValues: keyValues).running { harness in
            let id = try await harness.start(yaml)
            await harness.runner.waitForCalls(6)  // fetch 0, store 0, … store 2, which hangs
            return id
        }
        let second = FakeRunner()
        let finished = try await Harness(runner: second, keyValues: keyValues).running { harness in
            try await harness.executor.resumeAll()
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(finished.status == .completed)
        #expect(second.calls.map { "\($0.stepID) \($0.arguments["n"]?.integerValue ?? -1)" } == ["store 2", "fetch 3", "store 3", "fetch 4", "store 4"])
        #expect(finished.steps["batches"]?.iterations == 5)
    }

    @Test func cancelOfAnExecutionNobodyRunsMarksItInTheStore() async throws {
        let keyValues = InMemoryKeyValueStore()
        let id = try await Harness(clock: ManualWorkflowClock(), keyValues: keyValues).running { harness in
            let id = try await harness.start(Self.approvalWorkflow())
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            return id
        }
        let cancelled = try await Harness(keyValues: keyValues).running { try await $0.executor.cancel(executionID: id) }
        #expect(cancelled.status == .cancelled)
        let again = try await Harness(keyValues: keyValues).running { try await $0.executor.resumeAll() }
        #expect(again.isEmpty)
    }
}
