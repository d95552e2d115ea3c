import Foundation
import JSONRPC
import Testing
import Workflows

/// The workflows in examples/workflows, against a runner that answers like
/// examples/agents/trading_agent.py.
@Suite("Example workflows", .timeLimit(.minutes(1)))
struct ExampleWorkflowTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/workflows").standardized

    static func source(_ name: String) throws -> String {
        try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
    }

    static func desk(score: Double) -> FakeRunner {
        FakeRunner { task in
            switch task.tool {
            case "market_signal": return ["symbol": task.arguments["symbol"] ?? .null, "score": .double(score), "price": 100.0]
            case "risk_check": return ["approved": true, "summary": "exposure 10,000 of 1,000,000"]
            case "place_order": return ["orderId": "ord-1", "status": "FILLED", "avgPrice": 100.05]
            default: return ["reportId": "rep-1"]
            }
        }
    }

    @Test(arguments: ["signal-to-order.yaml", "end-of-day-report.yaml", "post-trade-risk.yaml"])
    func exampleIsValid(_ name: String) throws {
        let report = WorkflowCheck.check(text: try Self.source(name), file: name)
        #expect(report.isValid, "\(report.output)")
    }

    @Test func strongSignalsLeadToAnApprovedOrder() async throws {
        let runner = Self.desk(score: 0.6)
        let source = try Self.source("signal-to-order.yaml")
        let execution = try await Harness(runner: runner, clock: ManualWorkflowClock()).running { harness in
            let id = try await harness.start(source, inputs: ["symbol": "NVDA"])
            await harness.events.step("sign_off", reaches: "WAITING_APPROVAL")
            let waiting = try await harness.executor.status(executionID: id)
            #expect(waiting.pendingApprovals.first?.approval.message.hasPrefix("Buy 100 NVDA at about 100") == true)
            _ = try await harness.executor.approve(executionID: id, stepID: "sign_off", approved: true, by: "head-trader")
            return try await harness.executor.waitForCompletion(executionID: id)
        }
        #expect(execution.status == .completed)
        #expect(execution.outputs == ["decision": "then", "approvedBy": "head-trader", "orderId": "ord-1", "fillPrice": 100.05])
        let order = try #require(runner.calls.first { $0.tool == "place_order" })
        #expect(order.arguments == ["symbol": "NVDA", "side": "buy", "quantity": 100, "limitPrice": 100.2, "clientOrderId": .string(execution.executionID)])
        #expect(execution.status(of: "no_trade") == .skipped)
        #expect(execution.status(of: "limit_breach") == .skipped)
    }

    @Test func weakSignalsOnlyReport() async throws {
        let runner = Self.desk(score: -0.4)
        let source = try Self.source("signal-to-order.yaml")
        // A clock that moves only when told: these workflows have timeouts.
        let execution = try await Harness(runner: runner, clock: ManualWorkflowClock()).running { try await $0.runToEnd(source, inputs: ["symbol": "MSFT"]) }
        #expect(execution.status == .completed)
        #expect(execution.outputs?["decision"] == "else")
        #expect(execution.outputs?["orderId"] == .null)
        #expect(Set(runner.calls.map(\.tool)) == ["market_signal", "report"])
        for step in ["risk", "within_limits", "sign_off", "order", "limit_breach"] { #expect(execution.status(of: step) == .skipped) }
    }

    @Test func endOfDayReportMarksEverySymbol() async throws {
        let runner = Self.desk(score: 0.1)
        let source = try Self.source("end-of-day-report.yaml")
        let execution = try await Harness(runner: runner, clock: ManualWorkflowClock()).running { try await $0.runToEnd(source) }
        #expect(execution.status == .completed)
        #expect(runner.calls.filter { $0.tool == "market_signal" }.map { $0.arguments["symbol"] } == ["AAPL", "MSFT", "NVDA", "VOD.L", "BARC.L"])
        #expect(execution.outputs?["reportId"] == "rep-1")
    }
}
