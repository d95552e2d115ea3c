import Backend
import JSONRPC

/// One bucket of an agent's history, every replica's figures merged.
public struct HistoryPoint: Sendable, Equatable {
    public var start: Timestamp
    public var period: HistoryPeriod
    /// The template the agent was last recorded with in this bucket.
    public var template: String?
    public var calls: Int
    public var errors: Int
    /// errors / calls; 0 when there were no calls.
    public var errorRate: Double
    /// Nil when there were no calls.
    public var latency: LatencySummary?
    /// Calls in flight, over the resource samples; nil when none was taken.
    public var load: SampleSummary?
    public var cpuPercent: SampleSummary?
    public var memoryBytes: MemorySummary?
    /// By tool name; calls that are not tool calls (tasks, message requests) are under "".
    public var tools: [String: ToolFigures]

    public init(
        start: Timestamp, period: HistoryPeriod, template: String? = nil, calls: Int, errors: Int, latency: LatencySummary?,
        load: SampleSummary? = nil, cpuPercent: SampleSummary? = nil, memoryBytes: MemorySummary? = nil,
        tools: [String: ToolFigures] = [:]
    ) {
        self.start = start
        self.period = period
        self.template = template
        self.calls = calls
        self.errors = errors
        self.errorRate = calls > 0 ? Double(errors) / Double(calls) : 0
        self.latency = latency
        self.load = load
        self.cpuPercent = cpuPercent
        self.memoryBytes = memoryBytes
        self.tools = tools
    }

    /// Camel-case keys, times as ISO 8601 in UTC, seconds as numbers; figures that were not
    /// recorded are left out rather than written as zero.
    public var json: JSONValue {
        var members: [String: JSONValue] = [
            "start": .string(start.iso8601),
            "period": .string(period.rawValue),
            "calls": .integer(Int64(calls)),
            "errors": .integer(Int64(errors)),
            "errorRate": .double(rounded(errorRate, digits: 4)),
            "tools": .object(tools.mapValues(\.json)),
        ]
        if let template { members["template"] = .string(template) }
        if let latency { members["latency"] = latency.json }
        if let load { members["load"] = load.json }
        if let cpuPercent { members["cpuPercent"] = cpuPercent.json }
        if let memoryBytes { members["memoryBytes"] = memoryBytes.json }
        return .object(members)
    }

    /// The point of one bucket's merged figures; when `tool` is given, the calls are that
    /// tool's alone, and nil when the tool had none.
    init?(start: Int64, period: HistoryPeriod, figures: BucketFigures, tool: String?) {
        var tools = figures.tools
        if let tool {
            guard let only = tools[tool] else { return nil }
            tools = [tool: only]
        }
        var total = CallFigures()
        for figures in tools.values { total.merge(figures) }
        let resources = figures.resources
        self.init(
            start: Timestamp(secondsSinceEpoch: start), period: period, template: figures.template,
            calls: total.calls, errors: total.errors, latency: total.latency.summary,
            load: resources.loadSamples > 0
                ? SampleSummary(
                    average: Double(resources.loadSum) / Double(resources.loadSamples), maximum: Double(resources.loadMaximum))
                : nil,
            cpuPercent: resources.cpuSamples > 0
                ? SampleSummary(average: resources.cpuSum / Double(resources.cpuSamples), maximum: resources.cpuMaximum) : nil,
            memoryBytes: resources.memoryLast.map { MemorySummary(last: $0, maximum: resources.memoryMaximum) },
            tools: tools.mapValues(ToolFigures.init))
    }
}

/// One tool's calls in a history point.
public struct ToolFigures: Sendable, Equatable {
    public var calls: Int
    public var errors: Int
    public var latency: LatencySummary?

    public init(calls: Int, errors: Int, latency: LatencySummary?) {
        self.calls = calls
        self.errors = errors
        self.latency = latency
    }

    public var errorRate: Double { calls > 0 ? Double(errors) / Double(calls) : 0 }

    init(_ figures: CallFigures) {
        self.init(calls: figures.calls, errors: figures.errors, latency: figures.latency.summary)
    }

    public var json: JSONValue {
        var members: [String: JSONValue] = [
            "calls": .integer(Int64(calls)),
            "errors": .integer(Int64(errors)),
            "errorRate": .double(rounded(errorRate, digits: 4)),
        ]
        if let latency { members["latency"] = latency.json }
        return .object(members)
    }
}

/// The average and the maximum of periodic samples (load, CPU percent).
public struct SampleSummary: Sendable, Equatable {
    public var average: Double
    public var maximum: Double

    public init(average: Double, maximum: Double) {
        self.average = average
        self.maximum = maximum
    }

    public var json: JSONValue {
        ["average": .double(rounded(average, digits: 3)), "maximum": .double(rounded(maximum, digits: 3))]
    }
}

/// Memory samples: the latest one and the largest.
public struct MemorySummary: Sendable, Equatable {
    public var last: Int64
    public var maximum: Int64

    public init(last: Int64, maximum: Int64) {
        self.last = last
        self.maximum = maximum
    }

    public var json: JSONValue {
        ["last": .integer(last), "maximum": .integer(maximum)]
    }
}

extension LatencySummary {
    /// Seconds to the microsecond.
    public var json: JSONValue {
        [
            "p50": .double(rounded(p50, digits: 6)),
            "p95": .double(rounded(p95, digits: 6)),
            "p99": .double(rounded(p99, digits: 6)),
            "max": .double(rounded(maximum, digits: 6)),
            "mean": .double(rounded(mean, digits: 6)),
        ]
    }
}

/// `value` to `digits` decimals: ratios and seconds read better without the float's noise.
func rounded(_ value: Double, digits: Int) -> Double {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    return (value * scale).rounded() / scale
}
