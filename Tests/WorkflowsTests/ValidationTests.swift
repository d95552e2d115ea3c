import JSONRPC
import Testing
import Workflows

@Suite("Definitions and validation")
struct ValidationTests {
    static let broken = """
        workflowName: trade
        version: "1.0"
        inputs:
          symbol: {type: string}
        steps:
          - id: fetch
            type: agent_task
            tool: market_signal
            dependecies: [x]
            input:
              symbol: "${inputs.symbl}"
          - id: decide
            type: condition
            if: steps.fetch.result.score >
            then: [buy]
          - id: buy
            type: agent_taks
          - id: a
            type: agent_task
            tool: t
            dependencies: [b]
            timeout: 5 minutes
          - id: b
            type: agent_task
            tool: t
            dependencies: [a]
            retryPolicy: {maxRetries: 3, backoff: linear}
          - id: fetch2
            type: agent_task
            tool: t
            dependencies: [fech]
          - id: poll
            type: loop
            until: steps.check.result.done
            steps:
              - id: check
                type: agent_task
                tool: t
                input: {n: "${iteration}", x: "${item}"}
          - id: wait
            type: human_approval
            timeout: 1h
            onTimeout: approve
            errorHandling: {compensate: undo}
        triggers:
          - schedule: {cron: "0 25 * * MON-FRI", timezone: Europe/London}
          - event: market.close
        outputs:
          price: steps.fetch.result.price +
        """

    @Test func everyProblemIsReportedWithLineAndColumn() {
        let report = WorkflowCheck.check(text: Self.broken, file: "trade.yaml")
        #expect(!report.isValid)
        #expect(report.output.split(separator: "\n").map(String.init) == [
            "trade.yaml:9:5: error: unknown key \"dependecies\" in step \"fetch\" (did you mean \"dependencies\"?)",
            "trade.yaml:11:25: error: step \"fetch\" reads inputs.symbl, which is not declared under inputs (did you mean \"symbol\"?)",
            "trade.yaml:14:35: error: bad expression in if: expected a value, a name or '(', found the end of the expression",
            "trade.yaml:17:11: error: unknown step type \"agent_taks\" (did you mean \"agent_task\"?); known: agent_task, condition, parallel, loop, human_approval",
            "trade.yaml:18:5: error: dependency cycle: a → b → a (each step waits for the one after it); remove one of these dependencies",
            "trade.yaml:22:14: error: bad timeout: \"5 minutes\" is not a duration: write seconds (30, 0.5) or a number with ms, s, m, h or d (\"250ms\", \"30s\", \"5m\", \"1h30m\")",
            "trade.yaml:27:43: error: unknown backoff \"linear\"; use fixed or exponential",
            "trade.yaml:31:20: error: step \"fetch2\" depends on unknown step \"fech\" (did you mean \"fetch\"?)",
            "trade.yaml:32:5: error: step \"poll\" needs maxIterations: every loop has a limit (maxIterations: 10)",
            "trade.yaml:39:42: error: step \"check\" reads item, which only a loop with forEach defines",
            "trade.yaml:44:33: error: compensate names \"undo\", which is not a compensation step",
            "trade.yaml:46:25: error: bad cron line: hour 25 is out of range 0-23",
            "trade.yaml:49:36: error: bad expression in output \"price\": expected a value, a name or '(', found the end of the expression",
            "13 problems in trade.yaml",
        ])
    }

    @Test func diagnosticsCarryThePathToo() {
        let diagnostics = WorkflowLoader.diagnostics(of: Self.broken)
        #expect(diagnostics.first?.path == "steps[0]")
        #expect(diagnostics.first { $0.message.hasPrefix("bad timeout") }?.path == "steps[3].timeout")
        #expect(diagnostics.first?.jsonValue["line"] == 9)
    }

    @Test func stepOnlyReachableThroughAConditionThatDoesNotNameItIsUnreachable() {
        let text = """
            workflowName: gated
            version: "1"
            inputs:
              size: {type: number, default: 1}
            steps:
              - id: gate
                type: condition
                if: inputs.size > 10
                then: [big]
              - id: big
                type: agent_task
                tool: t
              - id: orphan
                type: agent_task
                tool: t
                dependencies: [gate]
              - id: after_orphan
                type: agent_task
                tool: t
                dependencies: [orphan]
              - id: join
                type: agent_task
                tool: t
                dependencies: [gate, big]
            """
        let messages = WorkflowLoader.diagnostics(of: text).map(\.description)
        #expect(messages == [
            "13:5: step \"orphan\" can never run: it depends on condition \"gate\", which names it in neither then nor else; add it to a branch, or depend on a step that always runs",
            "17:5: step \"after_orphan\" can never run: none of the steps it depends on (orphan) can run",
        ])
    }

    @Test func missingFieldsAndMisplacedKeys() {
        let text = """
            name: x
            steps:
              - type: agent_task
                tool: t
              - id: c
                type: condition
                tool: t
                if: "true"
                then: []
              - id: p
                type: parallel
                branches:
                  - id: inner
                    type: agent_task
                    tool: t
                    dependencies: [c]
            """
        let messages = WorkflowLoader.diagnostics(of: text).map(\.description)
        #expect(messages == [
            "1:1: missing a version (version: \"1.0.0\")",
            "3:5: missing an id (id: fetch_prices)",
            "7:5: \"tool\" belongs to agent_task steps, not to condition steps (step \"c\")",
            "16:9: dependencies are only for top-level steps: the steps of a parallel branch or of a loop body run in the order written",
        ])
    }

    @Test func seedShapedJSONIsAccepted() throws {
        let document: JSONValue = [
            "workflowName": "seed-shape",
            "version": "2.0.0",
            "definition": [
                "steps": [
                    ["stepId": "fetch", "stepType": "agent_task", "configuration": ["tool": "market_signal", "input": ["symbol": "MSFT"]],
                     "dependencies": [], "timeout": 30, "retryPolicy": ["maxRetries": 2, "backoffStrategy": "fixed", "backoffDelay": 0.5]],
                    ["stepId": "report", "stepType": "agent_task", "configuration": ["tool": "report"], "dependencies": ["fetch"]],
                ],
                "errorHandling": "fail",
                "triggers": ["manual"],
            ],
        ]
        let definition = try WorkflowLoader.load(document: document)
        #expect(definition.name == "seed-shape")
        #expect(definition.steps.map(\.id) == ["fetch", "report"])
        #expect(definition.steps[0].timeout == .seconds(30))
        #expect(definition.steps[0].retryPolicy == RetryPolicy(maxRetries: 2, backoff: .fixed, backoffDelay: .milliseconds(500)))
        #expect(definition.steps[1].dependencies == ["fetch"])
    }

    @Test func jsonErrorsNameTheirPath() {
        let document: JSONValue = ["workflowName": "j", "version": "1", "steps": [["id": "a", "type": "agent_task", "tool": "t", "timeout": "soon"]]]
        do {
            _ = try WorkflowLoader.load(document: document)
            Issue.record("a bad timeout was accepted")
        } catch {
            #expect(error.diagnostics.map(\.path) == ["steps[0].timeout"])
        }
    }

    @Test func durations() {
        #expect(WorkflowDuration.parse("250ms") == .milliseconds(250))
        #expect(WorkflowDuration.parse("30s") == .seconds(30))
        #expect(WorkflowDuration.parse("5m") == .seconds(300))
        #expect(WorkflowDuration.parse("1h30m") == .seconds(5_400))
        #expect(WorkflowDuration.parse("1.5") == .milliseconds(1_500))
        #expect(WorkflowDuration.parse("5 minutes") == nil)
        #expect(WorkflowDuration.parse("-3") == nil)
        #expect(WorkflowDuration.parse("3w") == nil)
    }

    @Test func validDefinitionSummarises() throws {
        let text = """
            workflowName: eod-report
            version: 1.2
            triggers:
              - manual
              - schedule: {cron: "30 16 * * MON-FRI", timezone: Europe/London}
            steps:
              - id: pnl
                type: agent_task
                tool: report
            """
        let report = WorkflowCheck.check(text: text, file: "eod.yaml")
        #expect(report.isValid)
        #expect(report.output == "eod.yaml: workflow eod-report version 1.2 is valid: 1 step, triggers: manual, schedule 30 16 * * MON-FRI (Europe/London)")
    }
}
