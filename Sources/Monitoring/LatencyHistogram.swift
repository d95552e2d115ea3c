#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Latencies counted in fixed log-scale buckets.
///
/// Every histogram uses the same bucket boundaries, so histograms recorded anywhere — two
/// replicas, sixty minutes of an hour — add up bucket by bucket into exactly the histogram of
/// all their samples. Percentiles computed from a sum are therefore as good as percentiles of
/// the raw samples, within `relativeError`; averaging per-minute percentiles would not be.
///
/// Bucket 0 holds everything up to 0.1 ms; bucket `i` holds (0.1 ms·γ^(i-1), 0.1 ms·γ^i] with
/// γ = (1 + ε)/(1 − ε), ε = 4 %, up to about ten minutes; the last bucket holds everything
/// longer. An estimate is the point of its bucket that is within ε of both ends, clamped to the
/// exact minimum and maximum. About 200 buckets exist; a histogram stores only the window
/// between its lowest and highest non-empty bucket.
public struct LatencyHistogram: Sendable {
    /// The bound of bucket 0: shorter latencies are not told apart.
    public static let smallestDistinguished = 0.000_1
    /// The bound of the error of a percentile, relative to the true value (for latencies
    /// between `smallestDistinguished` and `largestDistinguished`).
    public static let relativeError = 0.04
    /// Above this all latencies share one bucket (their estimates are the maximum).
    public static let largestDistinguished = 600.0

    static let growth = (1 + relativeError) / (1 - relativeError)
    static let logGrowth = log(growth)
    /// Bucket 0, the distinguished buckets, and the overflow bucket.
    static let bucketCount = Int((log(largestDistinguished / smallestDistinguished) / logGrowth).rounded(.up)) + 2

    public private(set) var count = 0
    public private(set) var sum = 0.0
    /// Exact; `.infinity` while empty.
    public private(set) var minimum = Double.infinity
    /// Exact; 0 while empty.
    public private(set) var maximum = 0.0

    /// Counts of the buckets `firstIndex ..< firstIndex + counts.count`.
    private(set) var firstIndex = 0
    private(set) var counts: [Int] = []

    public init() {}

    public var isEmpty: Bool { count == 0 }

    public var mean: Double? { count == 0 ? nil : sum / Double(count) }

    /// Adds one latency. Negative, NaN and infinite values count as 0: a caller's bad clock
    /// reading must not make the stored sum unreadable.
    public mutating func record(_ seconds: Double) {
        let value = seconds > 0 && seconds.isFinite ? seconds : 0
        count += 1
        sum += value
        minimum = Swift.min(minimum, value)
        maximum = Swift.max(maximum, value)
        add(1, toBucket: Self.bucketIndex(of: value))
    }

    /// Adds every sample of `other`: the result is the histogram of both sets of samples.
    public mutating func merge(_ other: LatencyHistogram) {
        guard !other.isEmpty else { return }
        count += other.count
        sum += other.sum
        minimum = Swift.min(minimum, other.minimum)
        maximum = Swift.max(maximum, other.maximum)
        for (offset, bucketCount) in other.counts.enumerated() where bucketCount > 0 {
            add(bucketCount, toBucket: other.firstIndex + offset)
        }
    }

    /// The `quantile` (0…1) of the samples by the nearest-rank definition: the sample of rank
    /// ⌈quantile·count⌉ in ascending order (1-based), within `relativeError`, so that the p99 of
    /// a few calls is their slowest, as an operator reading a latency objective expects; nil
    /// when empty.
    public func percentile(_ quantile: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = Swift.max(0, Int((Swift.min(Swift.max(quantile, 0), 1) * Double(count)).rounded(.up)) - 1)
        var seen = 0
        for (offset, bucketCount) in counts.enumerated() {
            seen += bucketCount
            if seen > rank {
                let index = firstIndex + offset
                if index == Self.bucketCount - 1 { return maximum }
                return Swift.min(Swift.max(Self.representative(ofBucket: index), minimum), maximum)
            }
        }
        return maximum
    }

    /// p50, p95, p99, maximum and mean; nil when empty.
    public var summary: LatencySummary? {
        guard count > 0, let p50 = percentile(0.5), let p95 = percentile(0.95), let p99 = percentile(0.99), let mean else {
            return nil
        }
        return LatencySummary(p50: p50, p95: p95, p99: p99, maximum: maximum, mean: mean)
    }

    /// The non-empty buckets in ascending order: what is stored, and what two histograms of
    /// the same samples share whatever order the samples came in.
    public var nonEmptyBuckets: [Bucket] {
        counts.enumerated().compactMap { offset, bucketCount in
            bucketCount > 0 ? Bucket(index: firstIndex + offset, count: bucketCount) : nil
        }
    }

    public struct Bucket: Sendable, Hashable {
        public var index: Int
        public var count: Int

        public init(index: Int, count: Int) {
            self.index = index
            self.count = count
        }
    }

    /// Rebuilds a stored histogram; nil when the figures do not describe one (a bucket out of
    /// range, counts that do not add up).
    public init?(count: Int, sum: Double, minimum: Double, maximum: Double, buckets: [Bucket]) {
        guard count >= 0, sum.isFinite, buckets.allSatisfy({ (0..<Self.bucketCount).contains($0.index) && $0.count > 0 }),
            buckets.reduce(0, { $0 + $1.count }) == count
        else { return nil }
        self.init()
        guard count > 0 else { return }
        guard minimum.isFinite, maximum.isFinite, minimum <= maximum else { return nil }
        self.count = count
        self.sum = sum
        self.minimum = minimum
        self.maximum = maximum
        for bucket in buckets { add(bucket.count, toBucket: bucket.index) }
    }

    // MARK: Buckets

    static func bucketIndex(of seconds: Double) -> Int {
        guard seconds > smallestDistinguished else { return 0 }
        let index = Int((log(seconds / smallestDistinguished) / logGrowth).rounded(.up))
        return Swift.min(Swift.max(index, 1), bucketCount - 1)
    }

    /// The point within ε of both ends of the bucket: 2·low·high/(low + high).
    static func representative(ofBucket index: Int) -> Double {
        guard index > 0 else { return smallestDistinguished }
        let low = smallestDistinguished * pow(growth, Double(index - 1))
        return low * 2 * growth / (1 + growth)
    }

    private mutating func add(_ amount: Int, toBucket index: Int) {
        // The window grows by a margin so that latencies wandering around their usual range
        // rarely reallocate it.
        let margin = 8
        if counts.isEmpty {
            firstIndex = Swift.max(0, index - margin)
            counts = Array(repeating: 0, count: Swift.min(Self.bucketCount, index + margin + 1) - firstIndex)
        } else if index < firstIndex {
            let newFirst = Swift.max(0, index - margin)
            counts.insert(contentsOf: repeatElement(0, count: firstIndex - newFirst), at: 0)
            firstIndex = newFirst
        } else if index >= firstIndex + counts.count {
            let newEnd = Swift.min(Self.bucketCount, index + margin + 1)
            counts.append(contentsOf: repeatElement(0, count: newEnd - firstIndex - counts.count))
        }
        counts[index - firstIndex] += amount
    }
}

extension LatencyHistogram: Equatable {
    /// Equal when they hold the same samples by bucket, the same extremes and the same sum
    /// (however their windows were grown).
    public static func == (lhs: LatencyHistogram, rhs: LatencyHistogram) -> Bool {
        lhs.count == rhs.count && lhs.sum == rhs.sum && lhs.minimum == rhs.minimum && lhs.maximum == rhs.maximum
            && lhs.nonEmptyBuckets == rhs.nonEmptyBuckets
    }
}

/// Latency percentiles, in seconds.
public struct LatencySummary: Sendable, Equatable {
    public var p50: Double
    public var p95: Double
    public var p99: Double
    public var maximum: Double
    public var mean: Double

    public init(p50: Double, p95: Double, p99: Double, maximum: Double, mean: Double) {
        self.p50 = p50
        self.p95 = p95
        self.p99 = p99
        self.maximum = maximum
        self.mean = mean
    }
}
