import Testing

@testable import Telemetry

@Suite struct GatewayMetricsTests {
    private func exposition(_ metrics: GatewayMetrics) async -> String {
        String(decoding: await metrics.exposition(), as: UTF8.self)
    }

    @Test func requestsCountByMethodAndOutcomeWithTheirDuration() async {
        let metrics = GatewayMetrics()
        let calls = metrics.requests(method: "tools/call")
        calls.record(.ok, seconds: 0.002)
        calls.record(.ok, seconds: 0.004)
        calls.record(.error, seconds: 0.5)
        #expect(metrics.requests(method: "tools/call") === calls)
        let text = await exposition(metrics)
        #expect(text.contains(#"switchboard_requests_total{method="tools/call",outcome="ok"} 2"#))
        #expect(text.contains(#"switchboard_requests_total{method="tools/call",outcome="error"} 1"#))
        #expect(text.contains(#"switchboard_request_duration_seconds_count{method="tools/call"} 3"#))
        #expect(text.contains(#"switchboard_request_duration_seconds_bucket{method="tools/call",le="0.005"} 2"#))
        #expect(text.contains("# TYPE switchboard_requests_total counter"))
    }

    @Test func aMethodAppearsOnlyOnceItIsUsed() async {
        let metrics = GatewayMetrics()
        let lazy = LazyRequestInstruments(metrics: metrics, method: "memory/get")
        #expect(!(await exposition(metrics)).contains("memory/get"))
        lazy.instruments.record(.cancelled, seconds: 0.1)
        #expect((await exposition(metrics)).contains(#"switchboard_requests_total{method="memory/get",outcome="cancelled"} 1"#))
    }

    @Test func toolSeriesPastTheCapShareOneSeries() {
        let metrics = GatewayMetrics()
        for number in 0..<GatewayMetrics.maximumToolSeries {
            _ = metrics.toolCalls(kind: "tool", name: "tool\(number)", template: "t")
        }
        let first = metrics.toolCalls(kind: "tool", name: "one-too-many", template: "t")
        let second = metrics.toolCalls(kind: "tool", name: "another", template: "u")
        #expect(first === second)
        #expect(metrics.toolCalls(kind: "tool", name: "tool7", template: "t") !== first)
    }

    @Test func aMirroredCounterAddsWhatTheTotalGained() async {
        let metrics = GatewayMetrics()
        metrics.eventsPublished.sync(total: 5)
        metrics.eventsPublished.sync(total: 5)
        metrics.eventsPublished.sync(total: 8)
        #expect((await exposition(metrics)).contains("switchboard_events_published_total 8"))
        // A total that went back was restarted: it counts from zero again.
        metrics.eventsPublished.sync(total: 2)
        #expect((await exposition(metrics)).contains("switchboard_events_published_total 10"))
    }

    @Test func aGaugeFamilyForgetsSeriesThatAreNotSetAgain() async {
        let metrics = GatewayMetrics()
        let family = metrics.gaugeFamily("agents", help: "Agents by state.")
        family.set([(labels: [("state", "IDLE")], value: 2), (labels: [("state", "BUSY")], value: 1)])
        var text = await exposition(metrics)
        #expect(text.contains(#"switchboard_agents{state="IDLE"} 2"#))
        #expect(text.contains(#"switchboard_agents{state="BUSY"} 1"#))
        family.set([(labels: [("state", "IDLE")], value: 3)])
        text = await exposition(metrics)
        #expect(text.contains(#"switchboard_agents{state="IDLE"} 3"#))
        #expect(!text.contains(#"state="BUSY""#))
    }

    @Test func scrapeHooksRunBeforeEachExposition() async {
        let metrics = GatewayMetrics()
        let family = metrics.gaugeFamily("queue_depth", help: "Depth.")
        let counter = Counter()
        metrics.onScrape { family.set([(labels: [], value: Double(counter.next()))]) }
        #expect((await exposition(metrics)).contains("switchboard_queue_depth 1"))
        #expect((await exposition(metrics)).contains("switchboard_queue_depth 2"))
    }
}

private final class Counter: Sendable {
    private let value = Mutex(0)
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
}

import Synchronization
