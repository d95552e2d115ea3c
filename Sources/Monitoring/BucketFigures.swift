/// One tool's calls within a bucket of time.
struct CallFigures: Sendable, Equatable {
    var calls = 0
    var errors = 0
    var latency = LatencyHistogram()

    mutating func record(succeeded: Bool, seconds: Double) {
        calls += 1
        if !succeeded { errors += 1 }
        latency.record(seconds)
    }

    mutating func merge(_ other: CallFigures) {
        calls += other.calls
        errors += other.errors
        latency.merge(other.latency)
    }
}

/// An agent's sampled load and resource use within a bucket of time.
///
/// Sums and counts rather than averages, so that buckets merge exactly; memory keeps the
/// latest sample with its time, so that the latest of several buckets can be told.
struct ResourceFigures: Sendable, Equatable {
    var loadSamples = 0
    var loadSum = 0
    var loadMaximum = 0
    var cpuSamples = 0
    var cpuSum = 0.0
    var cpuMaximum = 0.0
    var memoryLast: Int64?
    /// Milliseconds since the epoch of `memoryLast`.
    var memoryLastAt: Int64 = 0
    var memoryMaximum: Int64 = 0

    mutating func record(load: Int, cpuPercent: Double?, memoryBytes: Int64?, atMilliseconds: Int64) {
        loadSamples += 1
        loadSum += load
        loadMaximum = max(loadMaximum, load)
        if let cpuPercent, cpuPercent.isFinite {
            cpuSamples += 1
            cpuSum += cpuPercent
            cpuMaximum = max(cpuMaximum, cpuPercent)
        }
        if let memoryBytes {
            if memoryLast == nil || atMilliseconds >= memoryLastAt {
                memoryLast = memoryBytes
                memoryLastAt = atMilliseconds
            }
            memoryMaximum = max(memoryMaximum, memoryBytes)
        }
    }

    mutating func merge(_ other: ResourceFigures) {
        loadSamples += other.loadSamples
        loadSum += other.loadSum
        loadMaximum = max(loadMaximum, other.loadMaximum)
        cpuSamples += other.cpuSamples
        cpuSum += other.cpuSum
        cpuMaximum = max(cpuMaximum, other.cpuMaximum)
        if let last = other.memoryLast, memoryLast == nil || other.memoryLastAt >= memoryLastAt {
            memoryLast = last
            memoryLastAt = other.memoryLastAt
        }
        memoryMaximum = max(memoryMaximum, other.memoryMaximum)
    }
}

/// Everything known about one agent in one bucket of time (a minute, an hour or a day), by
/// tool: the unit that is recorded, stored, merged across replicas and rolled up.
struct BucketFigures: Sendable, Equatable {
    var template: String?
    var tools: [String: CallFigures] = [:]
    var resources = ResourceFigures()

    var isEmpty: Bool { tools.isEmpty && resources.loadSamples == 0 }

    /// Calls and resource samples: what is lost if the bucket is.
    var sampleCount: Int {
        tools.values.reduce(resources.loadSamples) { $0 + $1.calls }
    }

    /// All tools' calls together.
    var allCalls: CallFigures {
        var total = CallFigures()
        for figures in tools.values { total.merge(figures) }
        return total
    }

    mutating func merge(_ other: BucketFigures) {
        if let template = other.template { self.template = template }
        for (tool, figures) in other.tools {
            tools[tool, default: CallFigures()].merge(figures)
        }
        resources.merge(other.resources)
    }
}
