import Foundation
import Testing

@testable import Monitoring

@Suite("Latency histogram")
struct LatencyHistogramTests {
    /// The true quantile as the histogram defines it: the sample of rank ⌊q·(n − 1)⌋.
    private func exactPercentile(_ sorted: [Double], _ quantile: Double) -> Double {
        sorted[Int((quantile * Double(sorted.count - 1)).rounded(.down))]
    }

    private func expectWithinRelativeError(_ samples: [Double], quantiles: [Double] = [0.5, 0.9, 0.95, 0.99, 0.999]) {
        var histogram = LatencyHistogram()
        for sample in samples { histogram.record(sample) }
        let sorted = samples.sorted()
        for quantile in quantiles {
            let exact = exactPercentile(sorted, quantile)
            let estimate = histogram.percentile(quantile)!
            let error = abs(estimate - exact) / exact
            #expect(error <= LatencyHistogram.relativeError + 1e-9, "p\(quantile * 100): \(estimate) for \(exact)")
        }
        #expect(histogram.maximum == sorted.last)
        #expect(histogram.minimum == sorted.first)
        #expect(abs(histogram.mean! - samples.reduce(0, +) / Double(samples.count)) < 1e-9)
    }

    @Test func percentilesOfAUniformSpreadAreWithinTheStatedError() {
        expectWithinRelativeError((1...10_000).map { Double($0) / 1_000 })
    }

    @Test func percentilesOfALongTailedSpreadAreWithinTheStatedError() {
        // Log-uniform from 0.2 ms to a minute: every bucket of the range is used.
        var numbers = SeededNumbers(seed: 7)
        let samples = (0..<50_000).map { _ in 0.000_2 * pow(300_000, numbers.next()) }
        expectWithinRelativeError(samples)
    }

    @Test func percentilesOfATightClusterAreWithinTheStatedError() {
        var numbers = SeededNumbers(seed: 11)
        let samples = (0..<10_000).map { _ in 0.020 + 0.002 * numbers.next() }
        expectWithinRelativeError(samples)
    }

    @Test func aSingleSampleIsItsOwnEveryPercentile() {
        var histogram = LatencyHistogram()
        histogram.record(0.042)
        #expect(histogram.summary == LatencySummary(p50: 0.042, p95: 0.042, p99: 0.042, maximum: 0.042, mean: 0.042))
    }

    @Test func latenciesOutsideTheDistinguishedRangeAreClampedToWhatWasSeen() {
        var histogram = LatencyHistogram()
        histogram.record(0.000_01)
        histogram.record(-1)
        histogram.record(3_600)
        #expect(histogram.count == 3)
        #expect(histogram.minimum == 0)
        #expect(histogram.percentile(0) == 0.000_1 || histogram.percentile(0)! <= 0.000_1)
        #expect(histogram.percentile(1) == 3_600)
    }

    @Test func anEmptyHistogramHasNoPercentiles() {
        let histogram = LatencyHistogram()
        #expect(histogram.percentile(0.5) == nil)
        #expect(histogram.summary == nil)
        #expect(histogram.mean == nil)
    }

    @Test func mergingTwoHistogramsGivesTheHistogramOfTheUnion() {
        var numbers = SeededNumbers(seed: 3)
        let fast = (0..<2_000).map { _ in 0.001 + 0.004 * numbers.next() }
        let slow = (0..<500).map { _ in 0.5 + 2 * numbers.next() }
        var first = LatencyHistogram()
        var second = LatencyHistogram()
        var union = LatencyHistogram()
        for sample in fast {
            first.record(sample)
            union.record(sample)
        }
        for sample in slow {
            second.record(sample)
            union.record(sample)
        }
        var merged = first
        merged.merge(second)

        #expect(merged.nonEmptyBuckets == union.nonEmptyBuckets)
        #expect(merged.count == union.count)
        #expect(merged.minimum == union.minimum)
        #expect(merged.maximum == union.maximum)
        #expect(abs(merged.sum - union.sum) < 1e-9)
        for quantile in [0.5, 0.9, 0.99] {
            #expect(merged.percentile(quantile) == union.percentile(quantile))
        }
    }

    @Test func aStoredHistogramReadsBackAsItWas() {
        var histogram = LatencyHistogram()
        for sample in [0.003, 0.004, 0.250, 12.5] { histogram.record(sample) }
        let rebuilt = LatencyHistogram(
            count: histogram.count, sum: histogram.sum, minimum: histogram.minimum, maximum: histogram.maximum,
            buckets: histogram.nonEmptyBuckets)
        #expect(rebuilt == histogram)
        #expect(LatencyHistogram(count: 5, sum: 1, minimum: 0, maximum: 1, buckets: histogram.nonEmptyBuckets) == nil)
    }
}
