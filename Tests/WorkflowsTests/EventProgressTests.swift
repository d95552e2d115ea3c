import JSONRPC
import Testing
import Workflows

/// The `finishedSteps` of step events (a running count in the executor) against a count of the
/// step records the events describe, through loops, skips and compensations.
struct EventProgressTests {
    private static let finalStatuses: Set<String> = ["COMPLETED", "FAILED", "SKIPPED", "CANCELLED"]

    /// Replays the step events of a workflow whose steps run one at a time.
    private static func expectProgress(_ events: [(topic: String, payload: JSONValue)], compensations: Set<String> = []) {
        var statuses: [String: String] = [:]
        for event in events where event.payload["event"] == "step" {
            guard let step = event.payload["stepId"]?.stringValue, let status = event.payload["status"]?.stringValue else {
                Issue.record("a step event without stepId or status: \(event.payload)")
                continue
            }
            statuses[step] = status
            let finished = statuses.filter { !compensations.contains($0.key) && finalStatuses.contains($0.value) }.count
            #expect(event.payload["finishedSteps"] == .integer(Int64(finished)), "after step \(step) became \(status)")
        }
    }

    @Test func stepEventsCountFinishedStepsThroughLoopsAndSkips() async throws {
        let runner = FakeRunner { task in
            if task.tool == "fail" { throw AgentTaskFailure("unavailable") }
            return "ok"
        }
        let harness = Harness(runner: runner)
        let execution = try await harness.running {
            try await $0.runToEnd(
                """
                workflowName: counted
                version: "1"
                steps:
                  - id: rounds
                    type: loop
                    maxIterations: 3
                    steps:
                      - {id: first, type: agent_task, tool: t}
                      - {id: second, type: agent_task, tool: t}
                  - {id: flaky, type: agent_task, tool: fail, dependencies: [rounds], errorHandling: skip}
                  - {id: after, type: agent_task, tool: t, dependencies: [flaky]}
                """)
        }
        #expect(execution.status == .completed)
        #expect(execution.status(of: "after") == .skipped)
        #expect(runner.calls.count == 7)
        #expect(execution.finishedSteps == 5)
        Self.expectProgress(harness.events.events)
        #expect(harness.events.events.last { $0.payload["event"] == "step" }?.payload["finishedSteps"] == 5)
    }

    @Test func compensationsAreNotCountedAsFinishedSteps() async throws {
        let runner = FakeRunner { task in
            if task.tool == "fail" { throw AgentTaskFailure("venue down") }
            return "ok"
        }
        let harness = Harness(runner: runner)
        let execution = try await harness.running {
            try await $0.runToEnd(
                """
                workflowName: compensated
                version: "1"
                steps:
                  - {id: order, type: agent_task, tool: t}
                  - {id: hedge, type: agent_task, tool: fail, dependencies: [order], errorHandling: {compensate: undo}}
                compensations:
                  - {id: undo, type: agent_task, tool: t}
                """)
        }
        #expect(execution.status == .failed)
        #expect(execution.status(of: "undo") == .completed)
        #expect(execution.finishedSteps == 2)
        Self.expectProgress(harness.events.events, compensations: ["undo"])
    }
}
