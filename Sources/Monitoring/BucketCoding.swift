import Backend
import JSONRPC
import NIOCore

/// The stored form of a bucket: compact JSON with stable field names.
///
/// ```
/// {"version":1,"agent":"a1","replica":"r1","period":"minute","start":"2026-12-07T18:01:00.000Z",
///  "template":"echo-server",
///  "tools":{"echo":{"calls":3,"errors":1,
///                   "latency":{"count":3,"sum":0.0061,"min":0.0012,"max":0.0031,"buckets":[[69,1],[78,2]]}}},
///  "load":{"samples":6,"sum":9,"max":3},
///  "cpu":{"samples":6,"sum":120.5,"max":40},
///  "memory":{"last":73400320,"at":1796666519000,"max":80000000}}
/// ```
///
/// Everything is a count, a sum or an extreme, so any number of stored buckets merge exactly.
/// `buckets` are `[index, count]` pairs of `LatencyHistogram`'s layout; `version` names that
/// layout, and a reader skips a version it does not know rather than misread it. Calls that
/// are not tool calls are under the tool "". `start`, `agent` and `replica` repeat the key for
/// a person reading the store; readers take them from the key.
enum BucketCoding {
    static let version: Int64 = 1

    static func encode(
        _ figures: BucketFigures, agent: String, replica: String, period: HistoryPeriod, start: Int64
    ) -> ByteBuffer {
        var document: [String: JSONValue] = [
            "version": .integer(version),
            "agent": .string(agent),
            "replica": .string(replica),
            "period": .string(period.rawValue),
            "start": .string(Timestamp(secondsSinceEpoch: start).iso8601),
            "tools": .object(figures.tools.mapValues(encode)),
        ]
        if let template = figures.template { document["template"] = .string(template) }
        let resources = figures.resources
        if resources.loadSamples > 0 {
            document["load"] = [
                "samples": .integer(Int64(resources.loadSamples)), "sum": .integer(Int64(resources.loadSum)),
                "max": .integer(Int64(resources.loadMaximum)),
            ]
        }
        if resources.cpuSamples > 0 {
            document["cpu"] = [
                "samples": .integer(Int64(resources.cpuSamples)), "sum": .double(resources.cpuSum),
                "max": .double(resources.cpuMaximum),
            ]
        }
        if let last = resources.memoryLast {
            document["memory"] = [
                "last": .integer(last), "at": .integer(resources.memoryLastAt), "max": .integer(resources.memoryMaximum),
            ]
        }
        var buffer = ByteBuffer()
        JSONValue.object(document).write(to: &buffer)
        return buffer
    }

    private static func encode(_ figures: CallFigures) -> JSONValue {
        var members: [String: JSONValue] = [
            "calls": .integer(Int64(figures.calls)),
            "errors": .integer(Int64(figures.errors)),
        ]
        let latency = figures.latency
        if !latency.isEmpty {
            members["latency"] = [
                "count": .integer(Int64(latency.count)),
                "sum": .double(latency.sum),
                "min": .double(latency.minimum),
                "max": .double(latency.maximum),
                "buckets": .array(latency.nonEmptyBuckets.map { [.integer(Int64($0.index)), .integer(Int64($0.count))] }),
            ]
        }
        return .object(members)
    }

    /// The figures of a stored bucket; nil when it is not one this version can read.
    static func decode(_ buffer: ByteBuffer) -> BucketFigures? {
        guard let raw = try? RawJSON(validating: buffer), let document = raw.decoded().objectValue,
            document["version"]?.integerValue == version, let tools = document["tools"]?.objectValue
        else { return nil }
        var figures = BucketFigures()
        figures.template = document["template"]?.stringValue
        for (tool, value) in tools {
            guard let call = decodeCalls(value) else { return nil }
            figures.tools[tool] = call
        }
        if let load = document["load"]?.objectValue {
            guard let samples = load["samples"]?.integerValue, let sum = load["sum"]?.integerValue,
                let maximum = load["max"]?.integerValue
            else { return nil }
            figures.resources.loadSamples = Int(samples)
            figures.resources.loadSum = Int(sum)
            figures.resources.loadMaximum = Int(maximum)
        }
        if let cpu = document["cpu"]?.objectValue {
            guard let samples = cpu["samples"]?.integerValue, let sum = cpu["sum"]?.numberValue,
                let maximum = cpu["max"]?.numberValue
            else { return nil }
            figures.resources.cpuSamples = Int(samples)
            figures.resources.cpuSum = sum
            figures.resources.cpuMaximum = maximum
        }
        if let memory = document["memory"]?.objectValue {
            guard let last = memory["last"]?.integerValue, let at = memory["at"]?.integerValue,
                let maximum = memory["max"]?.integerValue
            else { return nil }
            figures.resources.memoryLast = last
            figures.resources.memoryLastAt = at
            figures.resources.memoryMaximum = maximum
        }
        return figures
    }

    private static func decodeCalls(_ value: JSONValue) -> CallFigures? {
        guard let members = value.objectValue, let calls = members["calls"]?.integerValue,
            let errors = members["errors"]?.integerValue
        else { return nil }
        var figures = CallFigures(calls: Int(calls), errors: Int(errors))
        if let latency = members["latency"]?.objectValue {
            guard let count = latency["count"]?.integerValue, let sum = latency["sum"]?.numberValue,
                let minimum = latency["min"]?.numberValue, let maximum = latency["max"]?.numberValue,
                case .array(let pairs)? = latency["buckets"]
            else { return nil }
            var buckets: [LatencyHistogram.Bucket] = []
            buckets.reserveCapacity(pairs.count)
            for pair in pairs {
                guard case .array(let parts) = pair, parts.count == 2, let index = parts[0].integerValue,
                    let bucketCount = parts[1].integerValue
                else { return nil }
                buckets.append(LatencyHistogram.Bucket(index: Int(index), count: Int(bucketCount)))
            }
            guard
                let histogram = LatencyHistogram(
                    count: Int(count), sum: sum, minimum: minimum, maximum: maximum, buckets: buckets)
            else { return nil }
            figures.latency = histogram
        }
        return figures
    }
}

extension JSONValue {
    /// An integer or a double, as a double.
    var numberValue: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .double(let value): value
        case .raw(let raw): raw.decoded().numberValue
        default: nil
        }
    }
}
