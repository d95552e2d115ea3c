import Backend
import JSONRPC
import Testing
import Workflows

@Suite("Executor", .timeLimit(.minutes(1)))
struct ExecutorTests {
    @Test func agentTaskGetsRenderedInputAndItsResultFeedsOutputs() async throws {
        let runner = FakeRunner { task in ["price": 187.5, "echo": task.arguments] }
        let execution = try await Harness(runner: runner).running { harness in
            try await harness.runToEnd(
                """
                workflowName: quote
                version: "1"
                inputs:
                  symbol: {type: string}
                  quantity: {type: integer, default: 100}
                steps:
                  - id: fetch
                    type: agent_task
                    tool: market_signal
                    input:
                      symbol: "${inputs.symbol}"
                      quantity: "${inputs.quantity * 2}"
                      note: "buy ${inputs.quantity} of ${lower(inputs.symbol)}"
                      fixed: [1, true]
                outputs:
                  price: steps.fetch.result.price
                  doubled: "${steps.fetch.result.price * 2}"
                """, inputs: ["symbol": "AAPL"])
        }
        #expect(execution.status == .completed)
        let call = try #require(runner.calls.first)
        #expect(call.tool == "market_signal")
        #expect(call.arguments == ["symbol": "AAPL", "quantity": 200, "note": "buy 100 of aapl", "fixed": [1, true]])
        #expect(execution.steps["fetch"]?.result?["price"] == 187.5)
        #expect(execution.outputs == ["price": 187.5, "doubled": 375.0])
        #expect(execution.inputs == ["symbol": "AAPL", "quantity": 100])
        #expect(execution.completedAt != nil)
    }

    @Test func dependenciesOrderStepsAndIndependentStepsOverlap() async throws {
        let both = Rendezvous(count: 2)
        let runner = FakeRunner { task in
            if task.stepID == "momentum" || task.stepID == "sentiment" { await both.arrive() }
            return ["step": .string(task.stepID)]
        }
        let execution = try await Harness(runner: runner).running { harness in
            try await harness.runToEnd(
                """
                workflowName: dag
                version: "1"
                steps:
                  - {id: decide, type: agent_task, tool: t, dependencies: [momentum, sentiment]}
                  - {id: momentum, type: agent_task, tool: t}
                  - {id: sentiment, type: agent_task, tool: t}
                  - {id: execute, type: agent_task, tool: t, dependencies: [decide]}
                """)
        }
        #expect(execution.status == .completed)
        let log = runner.log
        func at(_ entry: String) -> Int { log.firstIndex(of: entry)! }
        // Both independent steps started before either ended: they ran at the same time.
        #expect(max(at("start momentum"), at("start sentiment")) < min(at("end momentum"), at("end sentiment")))
        #expect(at("start decide") > at("end momentum") && at("start decide") > at("end sentiment"))
        #expect(at("start execute") > at("end decide"))
        #expect(runner.calledSteps.count == 4)
    }

    @Test func conditionRunsOneBranchAndSkipsTheOther() async throws {
        let yaml = """
            workflowName: branch
            version: "1"
            inputs:
              size: {type: number}
            steps:
              - id: gate
                type: condition
                if: inputs.size > 10
                then: [big]
                else: [small]
              - {id: big, type: agent_task, tool: t}
              - {id: after_big, type: agent_task, tool: t, dependencies: [big]}
              - {id: small, type: agent_task, tool: t}
              - {id: join, type: agent_task, tool: t, dependencies: [big, small]}
            """
        let runner = FakeRunner()
        let execution = try await Harness(runner: runner).running { try await $0.runToEnd(yaml, inputs: ["size": 50]) }
        #expect(execution.status == .completed)
        #expect(Set(runner.calledSteps) == ["big", "after_big", "join"])
        #expect(execution.steps["gate"]?.branch == "then")
        #expect(execution.steps["gate"]?.result == true)
        #expect(execution.status(of: "small") == .skipped)
        #expect(execution.steps["small"]?.skipReason == "condition gate took its then branch")

        let other = FakeRunner()
        let elseRun = try await Harness(runner: other).running { try await $0.runToEnd(yaml, inputs: ["size": 5]) }
        #expect(Set(other.calledSteps) == ["small", "join"])
        #expect(elseRun.status(of: "after_big") == .skipped)
        #expect(elseRun.steps["after_big"]?.skipReason == "every step it depends on was skipped")
    }

    @Test func parallelBranchesRunTogetherAndStepsOfABranchInOrder() async throws {
        let both = Rendezvous(count: 2)
        let runner = FakeRunner { task in
            if task.stepID == "a1" || task.stepID == "b" { await both.arrive() }
            return .string(task.stepID)
        }
        let execution = try await Harness(runner: runner).running { harness in
            try await harness.runToEnd(
                """
                workflowName: fan-out
                version: "1"
                steps:
                  - id: signals
                    type: parallel
                    branches:
                      - [{id: a1, type: agent_task, tool: t}, {id: a2, type: agent_task, tool: t, input: {prev: "${steps.a1.result}"}}]
                      - {id: b, type: agent_task, tool: t}
                  - {id: after, type: agent_task, tool: t, dependencies: [signals], input: {all: "${steps.signals.result}"}}
                """)
        }
        #expect(execution.status == .completed)
        let log = runner.log
        #expect(log.firstIndex(of: "start a2")! > log.firstIndex(of: "end a1")!)
        #expect(execution.steps["signals"]?.result == ["a1": "a1", "a2": "a2", "b": "b"])
        #expect(runner.calls.first { $0.stepID == "a2" }?.arguments == ["prev": "a1"])
        #expect(runner.calls.first { $0.stepID == "after" }?.arguments == ["all": ["a1": "a1", "a2": "a2", "b": "b"]])
    }

    @Test func loopStopsWhenItsUntilConditionHolds() async throws {
        let runner = FakeRunner { task in ["filled": .bool(task.arguments["n"] == 2)] }
        let execution = try await Harness(runner: runner).running { harness in
            try await harness.runToEnd(
                """
                workflowName: poll
                version: "1"
                steps:
                  - id: wait_fill
                    type: loop
                    maxIterations: 10
                    until: steps.check.result.filled
                    steps:
                      - {id: check, type: agent_task, tool: order_status, input: {n: "${iteration}"}}
                """)
        }
        #expect(execution.status == .completed)
        #expect(runner.calls.map(\.arguments) == [["n": 0], ["n": 1], ["n": 2]])
        #expect(execution.steps["wait_fill"]?.iterations == 3)
        #expect(execution.steps["wait_fill"]?.result?["iterations"] == 3)
    }

    @Test func loopFailsAtItsLimitUnlessToldToComplete() async throws {
        func yaml(_ onLimit: String) -> String {
            """
            workflowName: limit-\(onLimit)
            version: "1"
            steps:
              - id: retry_fill
                type: loop
                maxIterations: 4
                onLimit: \(onLimit)
                while: "true"
                steps:
                  - {id: check, type: agent_task, tool: t}
            """
        }
        let runner = FakeRunner()
        let failing = yaml("fail"), completing = yaml("complete")
        let failed = try await Harness(runner: runner).running { try await $0.runToEnd(failing) }
        #expect(failed.status == .failed)
        #expect(runner.calls.count == 4)
        #expect(failed.errorDetails?["message"] == "the loop reached maxIterations (4) with its while condition still true")
        #expect(failed.errorDetails?["stepId"] == "retry_fill")

        let completed = try await Harness().running { try await $0.runToEnd(completing) }
        #expect(completed.status == .completed)
        #expect(completed.steps["retry_fill"]?.iterations == 4)
    }

    @Test func forEachBindsItemAndIteration() async throws {
        let runner = FakeRunner { task in task.arguments }
        let execution = try await Harness(runner: runner).running { harness in
            try await harness.runToEnd(
                """
                workflowName: each
                version: "1"
                inputs:
                  symbols: {type: array, default: [AAPL, MSFT, NVDA]}
                steps:
                  - id: per_symbol
                    type: loop
                    forEach: inputs.symbols
                    maxIterations: 10
                    steps:
                      - {id: signal, type: agent_task, tool: t, input: {symbol: "${item}", index: "${iteration}"}}
                """)
        }
        #expect(execution.status == .completed)
        #expect(runner.calls.map(\.arguments) == [["symbol": "AAPL", "index": 0], ["symbol": "MSFT", "index": 1], ["symbol": "NVDA", "index": 2]])
        #expect(execution.steps["per_symbol"]?.result?["results"] == [["symbol": "AAPL", "index": 0], ["symbol": "MSFT", "index": 1], ["symbol": "NVDA", "index": 2]])
    }

    @Test func failedAttemptsAreRetriedWithExponentialBackoff() async throws {
        let runner = FakeRunner { task in
            if task.attempt < 3 { throw AgentTaskFailure("venue unavailable") }
            return "filled"
        }
        let clock = ManualWorkflowClock(advancesWhenSleeping: true)
        let execution = try await Harness(runner: runner, clock: clock).running { harness in
            try await harness.runToEnd(
                """
                workflowName: retry
                version: "1"
                steps:
                  - id: order
                    type: agent_task
                    tool: place_order
                    retryPolicy: {maxRetries: 3, backoff: exponential, backoffDelay: 2s}
                """)
        }
        #expect(execution.status == .completed)
        #expect(execution.steps["order"]?.attempts == 3)
        #expect(runner.calls.map(\.attempt) == [1, 2, 3])
        #expect(clock.requestedSleeps == [.seconds(2), .seconds(4)])
    }

    @Test func retriesEndWithTheStepFailingAndFixedBackoff() async throws {
        let runner = FakeRunner { _ in throw AgentTaskFailure("rejected by venue") }
        let clock = ManualWorkflowClock(advancesWhenSleeping: true)
        let execution = try await Harness(runner: runner, clock: clock).running { harness in
            try await harness.runToEnd(
                """
                workflowName: retry-fixed
                version: "1"
                steps:
                  - id: order
                    type: agent_task
                    tool: place_order
                    retryPolicy: {maxRetries: 2, backoff: fixed, backoffDelay: 500ms}
                  - {id: never, type: agent_task, tool: t, dependencies: [order]}
                """)
        }
        #expect(execution.status == .failed)
        #expect(execution.steps["order"]?.attempts == 3)
        #expect(execution.steps["order"]?.error == "rejected by venue")
        #expect(clock.requestedSleeps == [.milliseconds(500), .milliseconds(500)])
        #expect(execution.errorDetails?["stepId"] == "order")
        #expect(execution.steps["never"] == nil)
    }

    @Test func stepTimeoutCancelsTheCallAndTimesTheExecutionOut() async throws {
        let runner = FakeRunner { _ in
            try await Task.sleep(for: .seconds(3_600))
            return "late"
        }
        let clock = ManualWorkflowClock()
        let execution = try await Harness(runner: runner, clock: clock).running { harness in
            let id = try await harness.start(
                """
                workflowName: slow
                version: "1"
                steps:
                  - {id: slow_call, type: agent_task, tool: t, timeout: 30s}
                """)
            await harness.runner.waitForCall("slow_call")
            await clock.waitForSleepers(1)
            clock.advance(by: .seconds(30))
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(execution.status == .timedOut)
        #expect(execution.steps["slow_call"]?.error == "timed out after 30s")
        #expect(execution.steps["slow_call"]?.timedOut == true)
        #expect(runner.calls.first?.timeout == .seconds(30))
    }

    @Test func skippedFailureLetsTheWorkflowGoOn() async throws {
        let runner = FakeRunner { task in
            if task.stepID == "optional" { throw AgentTaskFailure("no data") }
            return "ok"
        }
        let execution = try await Harness(runner: runner).running { harness in
            try await harness.runToEnd(
                """
                workflowName: skip
                version: "1"
                steps:
                  - {id: optional, type: agent_task, tool: t, errorHandling: skip}
                  - {id: needs_optional, type: agent_task, tool: t, dependencies: [optional]}
                  - {id: report, type: agent_task, tool: t, dependencies: [optional, base]}
                  - {id: base, type: agent_task, tool: t}
                """)
        }
        #expect(execution.status == .completed)
        #expect(execution.status(of: "optional") == .skipped)
        #expect(execution.steps["optional"]?.error == "no data")
        #expect(execution.status(of: "needs_optional") == .skipped)
        #expect(execution.status(of: "report") == .completed)
    }

    @Test func failureRunsTheCompensationStep() async throws {
        let runner = FakeRunner { task in
            if task.stepID == "hedge" { throw AgentTaskFailure("hedge venue down") }
            return ["orderId": "o-1"]
        }
        let execution = try await Harness(runner: runner).running { harness in
            try await harness.runToEnd(
                """
                workflowName: saga
                version: "1"
                steps:
                  - {id: order, type: agent_task, tool: place_order}
                  - id: hedge
                    type: agent_task
                    tool: place_order
                    dependencies: [order]
                    errorHandling: {compensate: cancel_order}
                compensations:
                  - {id: cancel_order, type: agent_task, tool: cancel_order, input: {orderId: "${steps.order.result.orderId}"}}
                """)
        }
        #expect(execution.status == .failed)
        #expect(runner.calledSteps == ["order", "hedge", "cancel_order"])
        #expect(runner.calls.last?.arguments == ["orderId": "o-1"])
        #expect(execution.errorDetails?["message"] == "hedge venue down")
        #expect(execution.errorDetails?["compensations"] == [["stepId": "cancel_order", "status": "COMPLETED"]])
    }

    @Test func cancelStopsRunningStepsAndEndsCancelled() async throws {
        let runner = FakeRunner { _ in
            try await Task.sleep(for: .seconds(3_600))
            return "never"
        }
        let execution = try await Harness(runner: runner).running { harness in
            let id = try await harness.start(
                """
                workflowName: long
                version: "1"
                steps:
                  - {id: a, type: agent_task, tool: t}
                  - {id: b, type: agent_task, tool: t, dependencies: [a]}
                """)
            await harness.runner.waitForCall("a")
            return try await harness.executor.cancel(executionID: id)
        }
        #expect(execution.status == .cancelled)
        #expect(execution.status(of: "a") == .cancelled)
        #expect(execution.steps["b"] == nil)
        #expect(runner.log == ["start a", "end a"])
    }

    @Test func workflowTimeoutEndsTheExecution() async throws {
        let clock = ManualWorkflowClock()
        let runner = FakeRunner { _ in
            try await Task.sleep(for: .seconds(3_600))
            return "never"
        }
        let execution = try await Harness(runner: runner, clock: clock).running { harness in
            let id = try await harness.start(
                """
                workflowName: bounded
                version: "1"
                timeout: 5m
                steps:
                  - {id: a, type: agent_task, tool: t}
                """)
            await harness.runner.waitForCall("a")
            await clock.waitForSleepers(1)
            clock.advance(by: .seconds(300))
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(execution.status == .timedOut)
        #expect(execution.errorDetails?["message"] == "the workflow did not finish within 5m")
    }

    @Test func aThousandStepsComplete() async throws {
        var yaml = "workflowName: big\nversion: \"1\"\nsteps:\n"
        for chain in 0..<10 {
            for link in 0..<100 {
                let dependency = link == 0 ? "" : ", dependencies: [s\(chain)_\(link - 1)]"
                yaml += "  - {id: s\(chain)_\(link), type: agent_task, tool: t\(dependency)}\n"
            }
        }
        let runner = FakeRunner { _ in "ok" }
        let text = yaml
        let execution = try await Harness(runner: runner).running { try await $0.runToEnd(text) }
        #expect(execution.status == .completed)
        #expect(execution.steps.count == 1_000)
        #expect(execution.steps.values.allSatisfy { $0.status == .completed })
        #expect(runner.calls.count == 1_000)
        #expect(execution.finishedSteps == 1_000)
    }

    @Test func inputsAreChecked() async throws {
        try await Harness().running { harness in
            _ = try await harness.executor.catalog.create(
                source: "workflowName: in\nversion: \"1\"\ninputs:\n  symbol: {type: string}\nsteps:\n  - {id: a, type: agent_task, tool: t}\n")
            await #expect(throws: WorkflowError.self) { try await harness.executor.execute(WorkflowExecutionRequest(workflowName: "in")) }
            do {
                _ = try await harness.executor.execute(WorkflowExecutionRequest(workflowName: "in", inputs: ["symbl": "X"]))
            } catch let error as WorkflowError {
                #expect(error.code == .invalidRequest)
                #expect(error.message == "workflow in has no input \"symbl\" (did you mean \"symbol\"?); it declares symbol")
            }
            do {
                _ = try await harness.executor.execute(WorkflowExecutionRequest(workflowName: "in", inputs: ["symbol": 3]))
            } catch let error as WorkflowError {
                #expect(error.message == "input \"symbol\" must be of type string, not a number")
            }
            do {
                _ = try await harness.executor.execute(WorkflowExecutionRequest(workflowName: "nope"))
            } catch let error as WorkflowError {
                #expect(error.code == .unknownWorkflow)
                #expect(error.jsonRPCError.code == -32002)
            }
        }
    }

    @Test func transitionsArePublishedAsEvents() async throws {
        let harness = Harness()
        let execution = try await harness.running { try await $0.runToEnd("workflowName: ev\nversion: \"1\"\nsteps:\n  - {id: a, type: agent_task, tool: t}\n") }
        let topic = "workflows.ev.\(execution.executionID)"
        #expect(harness.events.events.allSatisfy { $0.topic == topic })
        let statuses = harness.events.events.map { "\($0.payload["event"]?.stringValue ?? "") \($0.payload["stepId"]?.stringValue ?? "-") \($0.payload["status"]?.stringValue ?? "")" }
        #expect(statuses == ["execution - PENDING", "execution - RUNNING", "step a RUNNING", "step a COMPLETED", "execution - COMPLETED"])
        #expect(harness.events.events.last?.payload["finishedSteps"] == 1)
    }
}
