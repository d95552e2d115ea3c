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

    // MARK: workflows/validate and workflows/executions

    @Test func validateChecksWithoutStoringAndKeepsTheDocumentOfAFaultyText() async throws {
        try await Harness().running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            let faulty = "workflowName: draft\nversion: \"1\"\nsteps:\n  - {id: a, type: agent_task, tool: t, dependencies: [b]}\n"
            let checked = try await call(methods, "workflows/validate", ["source": .string(faulty)]).get()
            #expect(checked["valid"] == false)
            #expect(checked["problems"]?[0]?["path"] == "steps[0].dependencies")
            #expect(checked["problems"]?[0]?["line"] == 4)
            // The document comes back all the same: an editor keeps working on it.
            #expect(checked["definition"]?["steps"]?[0]?["id"] == "a")
            // Its name and version as read, for an editor to write back.
            #expect(checked["workflowName"] == "draft")
            #expect(checked["version"] == "1")
            #expect(checked["stepCount"] == nil)

            let object: JSONValue = ["definition": ["workflowName": "draft", "version": "1", "steps": [["id": "a", "type": "agent_task", "tool": "t"]]]]
            let valid = try await call(methods, "workflows/validate", object).get()
            #expect(valid["valid"] == true)
            #expect(valid["problems"] == [])
            #expect(valid["stepCount"] == 1)
            // Nothing was stored.
            guard case .failure(let unknown) = await call(methods, "workflows/get", ["workflowName": "draft"]) else {
                Issue.record("workflows/validate stored the definition")
                return
            }
            #expect(unknown.code == -32002)
            guard case .failure(let empty) = await call(methods, "workflows/validate", [:]) else {
                Issue.record("workflows/validate without a definition was accepted")
                return
            }
            #expect(empty.code == -32602)
        }
    }

    @Test func executionsAreListedNewestFirstAPageAtATime() async throws {
        let clock = ManualWorkflowClock()
        try await Harness(clock: clock).running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            _ = try await call(methods, "workflows/create", ["source": "workflowName: gate\nversion: \"1\"\nsteps:\n  - {id: ok, type: human_approval}\n"]).get()
            var ids: [String] = []
            for _ in 0..<3 {
                let started = try await call(methods, "workflows/execute", ["workflowName": "gate"]).get()
                ids.append(try #require(started["executionId"]?.stringValue))
                clock.advance(by: .seconds(1))
            }
            let first = try await call(methods, "workflows/executions", ["limit": 2]).get()
            #expect(first["executions"]?.arrayValue?.compactMap { $0["executionId"]?.stringValue } == [ids[2], ids[1]])
            #expect(first["executions"]?[0]?["stepResults"] == nil)
            let cursor = try #require(first["nextCursor"]?.stringValue)
            let second = try await call(methods, "workflows/executions", ["limit": 2, "cursor": .string(cursor)]).get()
            #expect(second["executions"]?.arrayValue?.compactMap { $0["executionId"]?.stringValue } == [ids[0]])
            #expect(second["nextCursor"] == nil)

            for id in ids { await harness.events.step("ok", of: id, reaches: "WAITING_APPROVAL") }
            _ = try await call(methods, "workflows/approve", ["executionId": .string(ids[1]), "stepId": "ok", "approved": true]).get()
            _ = try await harness.executor.waitForCompletion(executionID: ids[1])
            let waiting = try await call(methods, "workflows/executions", ["status": "waiting_approval"]).get()
            #expect(waiting["executions"]?.arrayValue?.compactMap { $0["executionId"]?.stringValue } == [ids[2], ids[0]])
            #expect(waiting["executions"]?[0]?["pendingApprovals"]?[0]?["stepId"] == "ok")
            // Those still running, a page at a time as well.
            let firstWaiting = try await call(methods, "workflows/executions", ["status": "WAITING_APPROVAL", "limit": 1]).get()
            #expect(firstWaiting["executions"]?.arrayValue?.compactMap { $0["executionId"]?.stringValue } == [ids[2]])
            let waitingCursor = try #require(firstWaiting["nextCursor"]?.stringValue)
            let lastWaiting = try await call(methods, "workflows/executions", ["status": "WAITING_APPROVAL", "limit": 1, "cursor": .string(waitingCursor)]).get()
            #expect(lastWaiting["executions"]?.arrayValue?.compactMap { $0["executionId"]?.stringValue } == [ids[0]])
            #expect(lastWaiting["nextCursor"] == nil)
            let completed = try await call(methods, "workflows/executions", ["status": "COMPLETED"]).get()
            #expect(completed["executions"]?.arrayValue?.compactMap { $0["executionId"]?.stringValue } == [ids[1]])

            for bad: JSONValue in [["status": "SLEEPING"], ["limit": 0], ["limit": 501], ["cursor": "exec/x"]] {
                guard case .failure(let error) = await call(methods, "workflows/executions", bad) else {
                    Issue.record("workflows/executions accepted \(bad)")
                    continue
                }
                #expect(error.code == -32602)
            }
        }
    }

    @Test func anotherTenantsExecutionsAreNotListed() async throws {
        try await Harness().running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            _ = try await call(methods, "workflows/create", ["source": "workflowName: gate\nversion: \"1\"\nsteps:\n  - {id: ok, type: human_approval}\n"]).get()
            let acme = WorkflowMethods.Caller(name: "alice", isAuthenticated: true, tenant: "acme")
            let globex = WorkflowMethods.Caller(name: "bob", isAuthenticated: true, tenant: "globex")
            let mine = try await methods.handle(method: "workflows/execute", params: ["workflowName": "gate"], caller: acme)
            _ = try await methods.handle(method: "workflows/execute", params: ["workflowName": "gate"], caller: globex)
            let listed = try await methods.handle(method: "workflows/executions", params: nil, caller: acme)
            #expect(listed["executions"]?.arrayValue?.compactMap { $0["executionId"] } == [mine["executionId"]!])
        }
    }

}
