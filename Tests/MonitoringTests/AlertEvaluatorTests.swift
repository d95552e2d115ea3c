import Backend
import JSONRPC
import Testing

@testable import Monitoring

@Suite("Alert rules")
struct AlertEvaluatorTests {
    private let errorRateRule = AlertRule(
        name: "agent-errors", measure: .errorRate, comparison: .above(0.05), holdFor: .seconds(120), severity: "critical")

    private func agentFigures(calls: Int, errors: Int, template: String? = "echo-server") -> AlertFigures {
        AlertFigures(agents: ["a1": RecentAgentFigures(calls: calls, errors: errors, latencyP99: 0.01, template: template)])
    }

    @Test func anErrorRateAboveTheThresholdFiresOnlyOnceItHeldForTwoMinutesThenResolves() {
        let evaluator = AlertEvaluator(rules: [errorRateRule])
        let failing = agentFigures(calls: 100, errors: 10)

        #expect(evaluator.evaluate(now: at(0)) { _ in failing }.isEmpty)
        #expect(evaluator.active().map(\.state) == [.pending])
        #expect(evaluator.evaluate(now: at(1)) { _ in failing }.isEmpty)
        #expect(evaluator.evaluate(now: at(1, 59)) { _ in failing }.isEmpty)

        let fired = evaluator.evaluate(now: at(2)) { _ in failing }
        #expect(fired == [AlertTransition(rule: errorRateRule, subject: "a1", state: .firing, value: 0.1, since: at(0), at: at(2))])
        #expect(evaluator.active().map(\.state) == [.firing])
        // Firing once is enough: no transition while it goes on.
        #expect(evaluator.evaluate(now: at(3)) { _ in failing }.isEmpty)

        let resolved = evaluator.evaluate(now: at(4)) { _ in agentFigures(calls: 100, errors: 1) }
        #expect(resolved == [AlertTransition(rule: errorRateRule, subject: "a1", state: .resolved, value: 0.01, since: at(0), at: at(4))])
        #expect(evaluator.active().isEmpty)
    }

    @Test func aPendingAlertThatClearsEmitsNothing() {
        let evaluator = AlertEvaluator(rules: [errorRateRule])
        #expect(evaluator.evaluate(now: at(0)) { _ in agentFigures(calls: 10, errors: 5) }.isEmpty)
        #expect(evaluator.active().count == 1)
        #expect(evaluator.evaluate(now: at(1)) { _ in agentFigures(calls: 10, errors: 0) }.isEmpty)
        #expect(evaluator.active().isEmpty)
        // Holding again starts the wait again.
        #expect(evaluator.evaluate(now: at(2)) { _ in agentFigures(calls: 10, errors: 5) }.isEmpty)
        #expect(evaluator.evaluate(now: at(3)) { _ in agentFigures(calls: 10, errors: 5) }.isEmpty)
        #expect(evaluator.evaluate(now: at(4)) { _ in agentFigures(calls: 10, errors: 5) }.map(\.state) == [.firing])
    }

    @Test func noHealthyInstanceOfATemplateThatHasNoInstancesFiresAtOnce() {
        let rule = AlertRule(name: "no-search", measure: .healthyInstances, comparison: .below(1), template: "search")
        let evaluator = AlertEvaluator(rules: [rule])
        let transitions = evaluator.evaluate(now: at(0)) { _ in
            AlertFigures(instancesByTemplate: ["echo-server": InstanceCounts(healthy: 2, total: 2)])
        }
        #expect(transitions == [AlertTransition(rule: rule, subject: "search", state: .firing, value: 0, since: at(0), at: at(0))])

        let recovered = evaluator.evaluate(now: at(1)) { _ in
            AlertFigures(instancesByTemplate: ["search": InstanceCounts(healthy: 1, total: 3)])
        }
        #expect(recovered.map(\.state) == [.resolved])
        #expect(recovered.first?.value == 1)
    }

    @Test func instanceRulesWithoutATemplateJudgeTheWholeFleet() {
        let rule = AlertRule(name: "small-fleet", measure: .instances, comparison: .below(3))
        let evaluator = AlertEvaluator(rules: [rule])
        let transitions = evaluator.evaluate(now: at(0)) { _ in
            AlertFigures(instancesByTemplate: ["a": InstanceCounts(healthy: 1, total: 1), "b": InstanceCounts(healthy: 0, total: 1)])
        }
        #expect(transitions.map(\.subject) == ["fleet"])
        #expect(transitions.map(\.value) == [2])
    }

    @Test func aQueueDeeperThanTheThresholdFiresAndResolves() {
        let rule = AlertRule(name: "backlog", measure: .queueDepth, comparison: .above(100))
        let evaluator = AlertEvaluator(rules: [rule])
        #expect(evaluator.evaluate(now: at(0)) { _ in AlertFigures(queueDepth: 100) }.isEmpty)
        let fired = evaluator.evaluate(now: at(1)) { _ in AlertFigures(queueDepth: 101) }
        #expect(fired.map(\.subject) == ["queue"])
        #expect(fired.map(\.state) == [.firing])
        let resolved = evaluator.evaluate(now: at(2)) { _ in AlertFigures(queueDepth: 3) }
        #expect(resolved.map(\.state) == [.resolved])
        #expect(resolved.first?.since == at(1))
    }

    @Test func aFiringAlertWhoseAgentIsGoneResolves() {
        let rule = AlertRule(name: "slow", measure: .latencyP99, comparison: .above(1))
        let evaluator = AlertEvaluator(rules: [rule])
        let slow = AlertFigures(agents: [
            "a1": RecentAgentFigures(calls: 5, errors: 0, latencyP99: 2.5, template: nil),
            "a2": RecentAgentFigures(calls: 5, errors: 0, latencyP99: 0.1, template: nil),
        ])
        #expect(evaluator.evaluate(now: at(0)) { _ in slow }.map(\.subject) == ["a1"])
        let gone = evaluator.evaluate(now: at(1)) { _ in AlertFigures() }
        #expect(gone == [AlertTransition(rule: rule, subject: "a1", state: .resolved, value: 2.5, since: at(0), at: at(1))])
    }

    @Test func tooFewCallsAreNotJudgedAndLeaveTheAlertAsItIs() {
        let rule = AlertRule(name: "errors", measure: .errorRate, comparison: .above(0.5), minimumCalls: 10)
        let evaluator = AlertEvaluator(rules: [rule])
        #expect(evaluator.evaluate(now: at(0)) { _ in agentFigures(calls: 3, errors: 3) }.isEmpty)
        #expect(evaluator.active().isEmpty)
        #expect(evaluator.evaluate(now: at(1)) { _ in agentFigures(calls: 10, errors: 9) }.map(\.state) == [.firing])
        // A lull in calls is no recovery.
        #expect(evaluator.evaluate(now: at(2)) { _ in agentFigures(calls: 1, errors: 0) }.isEmpty)
        #expect(evaluator.active().map(\.state) == [.firing])
    }

    @Test func rulesScopedToATemplateOrAnAgentJudgeOnlyThose() {
        let byTemplate = AlertRule(name: "echo-calls", measure: .calls, comparison: .above(5), template: "echo")
        let byAgent = AlertRule(name: "quiet-a9", measure: .calls, comparison: .below(1), agent: "a9")
        let evaluator = AlertEvaluator(rules: [byTemplate, byAgent])
        let figures = AlertFigures(agents: [
            "a1": RecentAgentFigures(calls: 10, errors: 0, latencyP99: 0.1, template: "echo"),
            "a2": RecentAgentFigures(calls: 10, errors: 0, latencyP99: 0.1, template: "search"),
        ])
        let transitions = evaluator.evaluate(now: at(0)) { _ in figures }
        // a9 made no calls at all: "calls below 1" sees it as 0.
        #expect(transitions.map { "\($0.rule.name):\($0.subject)" } == ["echo-calls:a1", "quiet-a9:a9"])
    }

    @Test func figuresAreTakenOncePerWindow() {
        let rules = [
            AlertRule(name: "r1", measure: .errorRate, comparison: .above(0.1), window: .seconds(60)),
            AlertRule(name: "r2", measure: .latencyP99, comparison: .above(1), window: .seconds(60)),
            AlertRule(name: "r3", measure: .calls, comparison: .above(1), window: .seconds(300)),
            AlertRule(name: "r4", measure: .queueDepth, comparison: .above(1)),
        ]
        let evaluator = AlertEvaluator(rules: rules)
        var windows: [Duration] = []
        _ = evaluator.evaluate(now: at(0)) { window in
            windows.append(window)
            return AlertFigures()
        }
        #expect(windows == [.seconds(60), .seconds(300)])
    }

    @Test func theHistoryFeedsTheRules() {
        let history = PerformanceHistory(store: InMemoryKeyValueStore(clock: ManualClock(at(0))), replica: "r1")
        let evaluator = AlertEvaluator(rules: [errorRateRule])
        func evaluate(_ now: Timestamp) -> [AlertTransition] {
            evaluator.evaluate(now: now) { window in AlertFigures(agents: history.recentFigures(window: window, now: now)) }
        }
        for minute in Int64(0)...2 {
            for second in Int64(0)..<10 {
                history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: second != 0, seconds: 0.01, at: at(minute, second))
            }
            #expect(evaluate(at(minute, 30)).isEmpty == (minute < 2))
        }
        #expect(evaluator.active().map(\.value) == [0.1])
    }

    @Test func transitionsRenderAsJSON() {
        let transition = AlertTransition(
            rule: errorRateRule, subject: "a1", state: .firing, value: 0.125, since: at(0), at: at(2))
        #expect(
            transition.json == [
                "alert": "agent-errors", "subject": "a1", "state": "firing", "severity": "critical", "measure": "errorRate",
                "threshold": .double(0.05), "comparison": "above", "value": .double(0.125),
                "since": "2026-12-07T18:00:00.000Z", "at": "2026-12-07T18:02:00.000Z",
            ])
        let active = ActiveAlert(rule: errorRateRule, subject: "a1", state: .pending, value: 0.125, since: at(0))
        #expect(active.json["state"] == "pending")
        #expect(active.json["alert"] == "agent-errors")
        #expect(active.json["since"] == "2026-12-07T18:00:00.000Z")
    }

    @Test func replacingTheRulesResolvesTheAlertsOfRulesThatChanged() {
        let queue = AlertRule(name: "backlog", measure: .queueDepth, comparison: .above(10))
        let evaluator = AlertEvaluator(rules: [queue, errorRateRule])
        _ = evaluator.evaluate(now: at(0)) { _ in AlertFigures(queueDepth: 50) }
        var stricter = queue
        stricter.comparison = .above(100)
        let transitions = evaluator.replaceRules([errorRateRule, stricter], now: at(1))
        #expect(transitions.map(\.state) == [.resolved])
        #expect(evaluator.rules == [errorRateRule, stricter])
        #expect(evaluator.active().isEmpty)
    }

    @Test func badRulesAreReported() {
        let rules = [
            AlertRule(name: "ok", measure: .calls, comparison: .above(1)),
            AlertRule(name: "ok", measure: .calls, comparison: .above(1)),
            AlertRule(name: "has space", measure: .queueDepth, comparison: .above(.nan)),
            AlertRule(name: "long", measure: .errorRate, comparison: .above(0.1), window: .seconds(3_600)),
        ]
        #expect(AlertRule.problems(in: Array(rules.prefix(1))).isEmpty)
        #expect(AlertRule.problems(in: rules).count == 4)
    }
}
