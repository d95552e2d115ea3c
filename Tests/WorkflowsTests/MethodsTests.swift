import Backend
import JSONRPC
import Testing
import Workflows

@Suite("workflows/* methods and the catalog", .timeLimit(.minutes(1)))
struct MethodsTests {
    static let v1 = """
        workflowName: eod-report
        version: 1.0.0
        description: End-of-day P&L report
        triggers:
          - schedule: {cron: "30 16 * * MON-FRI", timezone: Europe/London}
        steps:
          - {id: pnl, type: agent_task, tool: report}
        """

    func call(_ methods: WorkflowMethods, _ method: String, _ params: JSONValue?) async -> Result<JSONValue, JSONRPCError> {
        do {
            return .success(try await methods.handle(method: method, params: params, caller: .init(name: "ops@1")))
        } catch {
            return .failure(error)
        }
    }

    @Test func createListGet() async throws {
        try await Harness().running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            let created = try await call(methods, "workflows/create", ["source": .string(Self.v1)]).get()
            #expect(created["workflowName"] == "eod-report")
            #expect(created["created"] == true)
            #expect(created["createdBy"] == "ops@1")
            #expect(created["triggers"] == [["schedule": ["cron": "30 16 * * MON-FRI", "timezone": "Europe/London"]]])
            let again = try await call(methods, "workflows/create", ["source": .string(Self.v1)]).get()
            #expect(again["created"] == false)

            let v2: JSONValue = [
                "workflowName": "eod-report", "version": "1.10.0",
                "definition": ["steps": [["stepId": "pnl", "stepType": "agent_task", "configuration": ["tool": "report"]]]],
            ]
            _ = try await call(methods, "workflows/create", v2).get()
            let list = try await call(methods, "workflows/list", nil).get()
            #expect(list["workflows"] == [[
                "workflowName": "eod-report", "latestVersion": "1.10.0", "versions": ["1.0.0", "1.10.0"], "triggers": [], "stepCount": 1,
                "updatedAt": .string(harness.clock.now().iso8601),
            ]])
            let latest = try await call(methods, "workflows/get", ["workflowName": "eod-report"]).get()
            #expect(latest["version"] == "1.10.0")
            #expect(latest["versions"] == ["1.0.0", "1.10.0"])
            let pinned = try await call(methods, "workflows/get", ["workflowName": "eod-report", "version": "1.0.0"]).get()
            #expect(pinned["description"] == "End-of-day P&L report")
            #expect(pinned["source"] == .string(Self.v1))
        }
    }

    @Test func changedContentUnderAnExistingVersionIsRefused() async throws {
        try await Harness().running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            _ = try await call(methods, "workflows/create", ["source": .string(Self.v1)]).get()
            let changed = Self.v1.replacingOccurrences(of: "tool: report", with: "tool: report_v2")
            guard case .failure(let error) = await call(methods, "workflows/create", ["source": .string(changed)]) else {
                Issue.record("a changed definition replaced a stored version")
                return
            }
            #expect(error.code == -32602)
            #expect(error.data?["version"] == "1.0.0")
        }
    }

    @Test func invalidDefinitionListsEveryProblem() async throws {
        try await Harness().running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            let source = "workflowName: bad\nversion: \"1\"\nsteps:\n  - {id: a, type: agent_task}\n  - {id: b, type: loop, steps: [{id: c, type: agent_task, tool: t}]}\n"
            guard case .failure(let error) = await call(methods, "workflows/create", ["source": .string(source)]) else {
                Issue.record("an invalid definition was stored")
                return
            }
            #expect(error.code == -32602)
            #expect(error.data?["problems"] == [
                ["line": 4, "column": 5, "path": "steps[0]", "message": "missing a tool to call (tool: market_signal) in step \"a\""],
                ["line": 5, "column": 5, "path": "steps[1]", "message": "step \"b\" needs maxIterations: every loop has a limit (maxIterations: 10)"],
            ])
        }
    }

    @Test func executeStatusApproveCancel() async throws {
        let clock = ManualWorkflowClock()
        try await Harness(clock: clock).running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            let source = """
                workflowName: gated
                version: "1"
                inputs:
                  symbol: {type: string}
                steps:
                  - {id: ok, type: human_approval, message: "Trade ${inputs.symbol}?"}
                  - {id: trade, type: agent_task, tool: place_order, dependencies: [ok], input: {symbol: "${inputs.symbol}"}}
                """
            _ = try await call(methods, "workflows/create", ["source": .string(source)]).get()
            let started = try await call(
                methods, "workflows/execute",
                ["workflowName": "gated", "inputs": ["symbol": "MSFT"], "triggerType": "manual", "executionContext": ["desk": "equities"]]
            ).get()
            #expect(started["status"] == "PENDING")
            let id = try #require(started["executionId"]?.stringValue)
            await harness.events.step("ok", reaches: "WAITING_APPROVAL")
            let waiting = try await call(methods, "workflows/status", ["executionId": .string(id)]).get()
            #expect(waiting["status"] == "WAITING_APPROVAL")
            #expect(waiting["pendingApprovals"]?.encoded.contains("\"message\":\"Trade MSFT?\"") == true)

            guard case .failure(let missing) = await call(methods, "workflows/approve", ["executionId": .string(id), "stepId": "ok"]) else {
                Issue.record("approve without a decision was accepted")
                return
            }
            #expect(missing.code == -32602)
            let approved = try await call(methods, "workflows/approve", ["executionId": .string(id), "stepId": "ok", "approved": true]).get()
            #expect(approved["stepResults"]?["ok"]?["approval"]?["decidedBy"] == "ops@1")
            let done = try await harness.executor.waitForCompletion(executionID: id)
            #expect(done.status == .completed)
            #expect(harness.runner.calls.first?.arguments == ["symbol": "MSFT"])

            let cancelled = try await call(methods, "workflows/cancel", ["executionId": .string(id)]).get()
            #expect(cancelled["status"] == "COMPLETED")  // already ended: unchanged
        }
    }

    @Test func unknownNamesGetMinus32002() async throws {
        try await Harness().running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            guard case .failure(let workflow) = await call(methods, "workflows/execute", ["workflowName": "nope"]),
                case .failure(let execution) = await call(methods, "workflows/status", ["executionId": "wf-0"]),
                case .failure(let params) = await call(methods, "workflows/status", ["executionId": 7])
            else {
                Issue.record("an unknown name was accepted")
                return
            }
            #expect(workflow.code == -32002)
            #expect(workflow.data?["workflowName"] == "nope")
            #expect(execution.code == -32002)
            #expect(execution.data?["executionId"] == "wf-0")
            #expect(params.code == -32602)
        }
    }
}
