import Testing

@testable import Fleet

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Demand forecast")
struct DemandForecastTests {
    /// 50 calls, ±20 over a season of 24 buckets.
    static func daily(_ t: Int) -> Double { 50 + 20 * sin(2 * Double.pi * Double(t) / 24) }

    static func forecast(of series: (Int) -> Double, count: Int, seasonLength: Int = 24) -> DemandForecast {
        var forecast = DemandForecast(seasonLength: seasonLength)
        for t in 0..<count { forecast.append(series(t)) }
        return forecast
    }

    @Test func forecastsASeasonalCycleOneSeasonAheadAfterThreeSeasons() throws {
        let forecast = Self.forecast(of: Self.daily, count: 72)
        for h in 1...24 {
            let expected = Self.daily(72 + h - 1)
            let predicted = try #require(forecast.forecast(stepsAhead: h))
            #expect(abs(predicted - expected) <= 0.03 * expected, "step \(h): \(predicted) for \(expected)")
        }
    }

    @Test func followsALinearTrend() throws {
        let rising = { (t: Int) in 10 + 2 * Double(t) }
        let forecast = Self.forecast(of: rising, count: 72)
        for h in [1, 5, 24] {
            let predicted = try #require(forecast.forecast(stepsAhead: h))
            #expect(abs(predicted - rising(72 + h - 1)) < 0.5, "step \(h): \(predicted)")
        }
    }

    @Test func followsANoisyCycleWithTrend() throws {
        // A deterministic ±3 jitter on a rising cycle.
        var seed: UInt64 = 42
        let noise = (0..<120).map { _ -> Double in
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(seed >> 33) / Double(1 << 31) * 6 - 3
        }
        let series = { (t: Int) in Self.daily(t) + 0.2 * Double(t) }
        let forecast = Self.forecast(of: { series($0) + noise[$0] }, count: 96)
        for h in 1...24 {
            let predicted = try #require(forecast.forecast(stepsAhead: h))
            #expect(abs(predicted - series(96 + h - 1)) < 8, "step \(h): \(predicted)")
        }
    }

    @Test func followsALevelShiftWithinASeason() throws {
        let shifted = { (t: Int) in Self.daily(t) + (t >= 72 ? 30 : 0) }
        let forecast = Self.forecast(of: shifted, count: 96)
        let predicted = try #require(forecast.forecast(stepsAhead: 1))
        #expect(abs(predicted - shifted(96)) < 0.05 * shifted(96))
    }

    @Test func isNotReadyBeforeTwoFullSeasons() {
        var forecast = Self.forecast(of: Self.daily, count: 47)
        #expect(!forecast.isReady)
        #expect(forecast.forecast(stepsAhead: 1) == nil)
        #expect(forecast.parameters == nil)

        forecast.append(Self.daily(47))
        #expect(forecast.isReady)
        #expect(forecast.forecast(stepsAhead: 1) != nil)
        #expect(forecast.parameters != nil)
    }

    @Test func fitsParametersFromTheGrid() throws {
        let forecast = Self.forecast(of: Self.daily, count: 48)
        let parameters = try #require(forecast.parameters)
        #expect([0.1, 0.3, 0.5, 0.7, 0.9].contains(parameters.alpha))
        #expect([0, 0.05, 0.1, 0.3].contains(parameters.beta))
        #expect([0.1, 0.3, 0.5, 0.7, 0.9].contains(parameters.gamma))
    }

    @Test func keepsABoundedHistory() throws {
        var forecast = DemandForecast(seasonLength: 24, maximumSeasons: 4)
        for t in 0..<(100 * 24 + 7) {
            forecast.append(Self.daily(t))
            #expect(forecast.history.count < 5 * 24)
        }
        // The kept history still starts on a season's first bucket, so the cycle stays in phase.
        #expect(forecast.history.count == 4 * 24 + 7)
        let predicted = try #require(forecast.forecast(stepsAhead: 3))
        #expect(abs(predicted - Self.daily(100 * 24 + 9)) < 1)
    }

    @Test func neverForecastsNegativeDemand() throws {
        let falling = { (t: Int) in max(0, 100 - 2 * Double(t)) }
        let forecast = Self.forecast(of: falling, count: 48)
        #expect(try #require(forecast.forecast(stepsAhead: 24)) >= 0)
    }
}

@Suite("Bucketed demand history")
struct BucketedDemandHistoryTests {
    @Test func averagesTheObservationsOfEachBucket() {
        var history = BucketedDemandHistory(bucketLength: 10, bucketsPerSeason: 4)
        for second in 0..<10 { history.record(second < 5 ? 2 : 4, at: Double(second)) }
        history.record(0, at: 10)
        #expect(history.forecast.history == [3])
    }

    @Test func weighsEachIntervalOfArrivalsByItsLength() {
        var history = BucketedDemandHistory(bucketLength: 10, bucketsPerSeason: 4)
        // 2 calls for 1 s and 10 for 3 s: 8 on average, not 6; an interval of no time adds nothing.
        history.record(work: 2, over: 1, at: 1)
        history.record(work: 30, over: 3, at: 4)
        history.record(work: 50, over: 0, at: 5)
        history.record(work: 0, over: 1, at: 10)
        #expect(history.forecast.history == [8])
    }

    @Test func carriesTheLastMeanThroughUnobservedBuckets() {
        var history = BucketedDemandHistory(bucketLength: 10, bucketsPerSeason: 4)
        history.record(6, at: 0)
        history.record(1, at: 35)
        #expect(history.forecast.history == [6, 6, 6])
    }

    @Test func startsOverAfterASeasonWithoutObservations() {
        var history = BucketedDemandHistory(bucketLength: 10, bucketsPerSeason: 4)
        history.record(6, at: 0)
        history.record(1, at: 50)
        #expect(history.forecast.history.isEmpty)
        #expect(history.forecast.appendedCount == 0)
    }
}
