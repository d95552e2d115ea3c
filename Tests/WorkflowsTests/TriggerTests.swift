import Backend
import JSONRPC
import Testing
import Workflows

@Suite("Triggers", .timeLimit(.minutes(1)))
struct TriggerTests {
    @Test func scheduleStartsTheLatestVersionAtItsFireTime() async throws {
        // 2026-01-01T00:00:00Z, a Thursday.
        let clock = ManualWorkflowClock(start: Timestamp(millisecondsSinceEpoch: 1_767_225_600_000))
        let harness = Harness(clock: clock)
        try await harness.running { harness in
            _ = try await harness.executor.catalog.create(
                source: """
                    workflowName: every-five
                    version: "1"
                    triggers:
                      - schedule: {cron: "*/5 * * * *", timezone: UTC}
                    steps:
                      - {id: snapshot, type: agent_task, tool: report}
                    """)
            let triggers = WorkflowTriggers(executor: harness.executor, rescanInterval: .seconds(3_600))
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await triggers.run() }
                await clock.waitForSleepers(1)
                clock.advance(by: .seconds(300))
                await harness.runner.waitForCall("snapshot")
                group.cancelAll()
            }
            let started = try #require(harness.events.events.first { $0.payload["status"] == "PENDING" })
            let execution = try await harness.executor.status(executionID: started.payload["executionId"]!.stringValue!)
            #expect(execution.triggerType == "schedule")
            #expect(execution.triggerData["scheduledAt"] == "2026-01-01T00:05:00.000Z")
        }
    }

    @Test func eventStartsWorkflowsTriggeredByItsTopic() async throws {
        let runner = FakeRunner { task in task.arguments }
        try await Harness(runner: runner).running { harness in
            _ = try await harness.executor.catalog.create(
                source: """
                    workflowName: risk-on-fill
                    version: "1"
                    triggers:
                      - event: orders.filled
                    steps:
                      - {id: check, type: agent_task, tool: risk_check, input: {symbol: "${trigger.payload.data.symbol}"}}
                    """)
            let triggers = WorkflowTriggers(executor: harness.executor)
            #expect(await triggers.eventPublished(topic: "orders.cancelled", data: [:]).isEmpty)
            let ids = await triggers.eventPublished(topic: "orders.filled", data: ["symbol": "NVDA"])
            let done = try await harness.executor.waitForCompletion(executionID: try #require(ids.first))
            #expect(done.status == .completed)
            #expect(runner.calls.first?.arguments == ["symbol": "NVDA"])
        }
    }
}
