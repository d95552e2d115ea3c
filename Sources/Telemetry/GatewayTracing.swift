import Logging
import OTel
import ServiceContextModule
import ServiceLifecycle
import Tracing

/// Where spans go and how many: the `tracing:` section, under the standard OpenTelemetry
/// variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER_ARG`…), which
/// win as they do in every OpenTelemetry SDK.
public struct TracingSettings: Sendable, Equatable {
    /// The OTLP/HTTP base URL (spans go to `<endpoint>/v1/traces`); nil: no tracing unless the
    /// environment names one.
    public var endpoint: String?
    public var serviceName: String = "switchboard"
    /// The share of new traces recorded (a trace a caller sampled is always followed: parent-based).
    public var samplingRatio: Double = 1.0
    /// Extra headers for the exporter (an API key of a tracing service, say).
    public var headers: [String: String] = [:]

    public init() {}
}

/// The gateway's spans: one per request, per relayed call, per task attempt and per workflow step,
/// named and attributed after OpenTelemetry's MCP conventions (`mcp.method.name`,
/// `gen_ai.tool.name`, `gen_ai.operation.name`, `jsonrpc.request.id`, `error.type`), exported
/// over OTLP/HTTP by swift-otel.
public final class GatewayTracing: Sendable {
    private let tracer: any Tracer

    init(tracer: any Tracer) {
        self.tracer = tracer
    }

    /// A tracer and the service that exports its spans (run it with the gateway; it flushes on
    /// shutdown), or nil when neither the settings nor the environment ask for tracing.
    public static func make(
        settings: TracingSettings, environment: [String: String], logger: Logger
    ) throws -> (tracing: GatewayTracing, exporter: any Service)? {
        if environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" { return nil }
        let fromEnvironment = environment["OTEL_EXPORTER_OTLP_ENDPOINT"] ?? environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        guard settings.endpoint != nil || fromEnvironment != nil else { return nil }
        var configuration = OTel.Configuration.default
        configuration.serviceName = settings.serviceName
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        configuration.traces.sampler = .parentBasedTraceIDRatio(ratio: settings.samplingRatio) ?? .parentBasedAlwaysOn
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        configuration.traces.otlpExporter.headers = settings.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if let endpoint = settings.endpoint {
            configuration.traces.otlpExporter.endpoint = endpoint.hasSuffix("/v1/traces")
                ? endpoint : (endpoint.hasSuffix("/") ? "\(endpoint)v1/traces" : "\(endpoint)/v1/traces")
        }
        // Spans leave in small batches soon after they end: an operator looks at a trace seconds
        // after the request, not minutes.
        configuration.traces.batchSpanProcessor.scheduleDelay = .milliseconds(500)
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        return (GatewayTracing(tracer: backend.factory), backend.service)
    }

    /// Starts a span under `parent`: a caller's context, one of ours, or none (a new trace).
    public func startSpan(_ name: String, kind: SpanKind, parent: TraceParent) -> TraceSpan {
        startSpan(name, kind: kind, parent: parent, at: DefaultTracerClock.now)
    }

    /// A span that began at `millisecondsSinceEpoch`: what is known only once it is over (a task
    /// attempt, told by the record the task engine keeps, on whichever replica ran it).
    public func startSpan(_ name: String, kind: SpanKind, parent: TraceParent, millisecondsSinceEpoch: Int64) -> TraceSpan {
        startSpan(name, kind: kind, parent: parent, at: DefaultTracerClock.Instant(nanosecondsSinceEpoch: UInt64(max(0, millisecondsSinceEpoch)) * 1_000_000))
    }

    private func startSpan(_ name: String, kind: SpanKind, parent: TraceParent, at instant: DefaultTracerClock.Instant) -> TraceSpan {
        var context = ServiceContext.topLevel
        switch parent {
        case .none:
            break
        case .remote(let remote):
            var carrier: [String: String] = ["traceparent": remote.traceparent]
            if let state = remote.tracestate { carrier["tracestate"] = state }
            tracer.extract(carrier, into: &context, using: DictionaryExtractor())
        case .span(let span):
            context = span.span.context
        }
        let span = tracer.startSpan(name, context: context, ofKind: kind, at: instant, function: "", file: "", line: 0)
        var carrier: [String: String] = [:]
        tracer.inject(span.context, into: &carrier, using: DictionaryInjector())
        let own = carrier["traceparent"].flatMap { TraceContext(traceparent: $0, tracestate: carrier["tracestate"]) }
        return TraceSpan(span: span, context: own)
    }
}

/// What a new span hangs from.
public enum TraceParent: Sendable {
    case none
    case remote(TraceContext)
    case span(TraceSpan)

    public init(_ remote: TraceContext?) {
        self = remote.map(TraceParent.remote) ?? .none
    }
}

/// A span in progress, with the trace context that names it to agents and logs. A class: a
/// request carries an optional one through its handler, which costs a pointer when tracing is
/// off.
public final class TraceSpan: Sendable {
    let span: any Span
    /// Its own context, to pass on (nil when the tracer records nothing for it).
    public let context: TraceContext?

    init(span: any Span, context: TraceContext?) {
        self.span = span
        self.context = context
    }

    public func setAttribute(_ key: String, _ value: String) { span.attributes[key] = SpanAttribute.string(value) }
    public func setAttribute(_ key: String, _ value: Int) { span.attributes[key] = SpanAttribute.int64(Int64(value)) }
    public func setAttribute(_ key: String, _ value: Double) { span.attributes[key] = SpanAttribute.double(value) }

    /// Ends the span; with `errorType`, as failed (`error.type` and an error status).
    public func end(errorType: String? = nil, message: String? = nil) {
        if let errorType {
            span.attributes["error.type"] = SpanAttribute.string(errorType)
            span.setStatus(SpanStatus(code: .error, message: message))
        }
        span.end()
    }

    /// Ends the span at a time already past.
    public func end(millisecondsSinceEpoch: Int64, errorType: String? = nil, message: String? = nil) {
        if let errorType {
            span.attributes["error.type"] = SpanAttribute.string(errorType)
            span.setStatus(SpanStatus(code: .error, message: message))
        }
        span.end(at: DefaultTracerClock.Instant(nanosecondsSinceEpoch: UInt64(max(0, millisecondsSinceEpoch)) * 1_000_000))
    }
}

private struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

private struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}
