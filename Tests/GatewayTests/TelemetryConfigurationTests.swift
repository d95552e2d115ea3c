import JSONRPC
import Monitoring
import Testing

@testable import Gateway

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The `metrics`, `tracing`, `logging`, `history` and `alerts` sections, and what a relayed
/// call's result says of the tool.
@Suite("Telemetry configuration")
struct TelemetryConfigurationTests {
    func load(_ text: String) throws -> GatewaySettings {
        let file = "\(FileManager.default.temporaryDirectory.path)/switchboard-telemetry-\(UInt64.random(in: 0...UInt64.max)).yaml"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        return try ConfigurationFile(path: file, environment: [:]).load(into: GatewaySettings())
    }

    func problems(_ text: String) -> [String] {
        do {
            _ = try load(text)
            return []
        } catch let error as ConfigurationFile.Problems {
            return error.all.map(\.message)
        } catch {
            return ["\(error)"]
        }
    }

    @Test func everySectionIsRead() throws {
        let settings = try load(
            """
            metrics: {enabled: false}
            tracing: {endpoint: "http://collector:4318", serviceName: edge, samplingRatio: 0.25, headers: {x-api-key: k}}
            logging: {accessLog: true}
            history: {minutes: 2h, hours: 7d, days: 90d, flushSeconds: 5, sampleSeconds: 1}
            alerts:
              evaluateSeconds: 2
              topic: ops.alerts
              rules:
                - {name: errors, measure: errorRate, above: 0.05, window: 2m, for: 2m, minimumCalls: 20, template: echo, webhook: "https://hooks.example/a"}
                - {name: backlog, measure: queueDepth, above: 100}
            """)
        let telemetry = settings.telemetry
        #expect(!telemetry.metricsEnabled)
        #expect(telemetry.tracing.endpoint == "http://collector:4318")
        #expect(telemetry.tracing.serviceName == "edge")
        #expect(telemetry.tracing.samplingRatio == 0.25)
        #expect(telemetry.tracing.headers == ["x-api-key": "k"])
        #expect(telemetry.accessLog)
        #expect(telemetry.history.retention.minutes == .seconds(7200))
        #expect(telemetry.history.retention.hours == .seconds(7 * 86_400))
        #expect(telemetry.history.retention.days == .seconds(90 * 86_400))
        #expect(telemetry.history.flushInterval == .seconds(5))
        #expect(telemetry.alertInterval == .seconds(2))
        #expect(telemetry.alertTopic == "ops.alerts")
        #expect(telemetry.alerts.map(\.name) == ["errors", "backlog"])
        let errors = try #require(telemetry.alerts.first)
        #expect(errors.measure == .errorRate)
        #expect(errors.comparison == .above(0.05))
        #expect(errors.window == .seconds(120) && errors.holdFor == .seconds(120))
        #expect(errors.minimumCalls == 20 && errors.template == "echo" && errors.webhook == "https://hooks.example/a")
    }

    @Test func mistakesAreNamed() {
        let found = problems(
            """
            tracing: {endpoint: "collector:4318", samplingRatio: 2}
            alerts:
              - {name: a, measure: errorRate}
              - {name: b, measure: nope, above: 1}
              - {name: c, measure: calls, above: 1, window: 1h}
              - {name: c, measure: calls, above: 2}
              - {name: "bad name", measure: calls, above: 1}
              - {name: d, measure: calls, above: 1, for: soon}
            """)
        #expect(found.contains("tracing.endpoint must be an http:// or https:// URL (OTLP over HTTP)"))
        #expect(found.contains("tracing.samplingRatio must be between 0 and 1"))
        #expect(found.contains("alert a needs a threshold: above: N or below: N"))
        #expect(found.contains { $0.hasPrefix("unknown measure \"nope\"") })
        #expect(found.contains { $0.contains("\"c\": the window must be at most") })
        #expect(found.contains("alert \"c\" is defined twice"))
        #expect(found.contains { $0.contains("bad name") })
        #expect(found.contains("alert for must be a duration such as 90s, 2m, 24h or 30d"))
    }

    @Test func aToolErrorIsFoundWithoutReadingEveryResult() throws {
        func result(_ text: String) throws -> RawJSON { try RawJSON(validating: text) }
        #expect(AgentCallRouter.isToolError(try result(#"{"content":[],"isError":true}"#)))
        #expect(AgentCallRouter.isToolError(try result(#"{"isError":true}"#)))
        #expect(!AgentCallRouter.isToolError(try result(#"{"content":[],"isError":false}"#)))
        #expect(!AgentCallRouter.isToolError(try result(#"{"content":[{"type":"text","text":"ERROR everywhere: \"isError\":true"}]}"#)))
        #expect(!AgentCallRouter.isToolError(try result(#"{"content":[{"type":"text","text":"Every Error"}]}"#)))
        #expect(!AgentCallRouter.isToolError(try result(#"{}"#)))
    }
}
