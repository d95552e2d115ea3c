import Testing

@testable import Fleet

/// 4 calls per instance (8 slots at 50%); waiting calls are to be cleared within 5 s + 5 s.
private func policy(minimum: Int = 1, maximum: Int = 10, predictive: Bool = false, coldStart: Double = 5) -> AutoscalePolicy {
    AutoscalePolicy(
        minimum: minimum, maximum: maximum, targetUtilization: 0.5, scaleUpAfter: 5, scaleDownAfter: 60, cooldown: 10,
        coldStart: coldStart, predictive: predictive, seasonLength: 240, seasonBuckets: 24)
}

/// A second of a template with `ready` instances of 8 slots, as the gateway describes it.
private func second(
    ready: Int, inFlight: Int, waiting: Int = 0, arrivals: Int?, service: Double? = 0.2, interval: Double? = 1
) -> DemandSample {
    DemandSample(
        ready: ready, slotsPerInstance: 8, inFlight: inFlight, waiting: waiting, arrivals: arrivals, meanServiceSeconds: service,
        interval: interval)
}

@Suite("Autoscaler, from arrivals")
struct ArrivalAutoscalerTests {
    @Test func aBacklogIsClearedWithinTheScaleUpWindowAndAColdStartNotGivenASlotEach() {
        var autoscaler = Autoscaler(policy: policy())
        // 100 calls/s of 200 ms offer 20 calls; 2 instances serve 16 at once, and 100 wait.
        let backlog = second(ready: 2, inFlight: 16, waiting: 100, arrivals: 100)
        for time in 0..<5 { #expect(autoscaler.observe(backlog, at: Double(time)) == nil) }
        #expect(
            autoscaler.observe(backlog, at: 5)
                == ScaleDecision(
                    kind: .scaleUp, from: 2, to: 6,
                    reason: "demand 22 calls (20.0 offered at 100.0/s × 200 ms, 2.0 to clear 100 waiting within 10.0 s) "
                        + "needs 6 instances at 50% of 8 slots; 2 run; sustained 5.0 s",
                    at: 5))
    }

    @Test func withoutArrivalsEveryWaitingCallCountsAsASlot() {
        var autoscaler = Autoscaler(policy: policy())
        let backlog = second(ready: 2, inFlight: 16, waiting: 100, arrivals: nil, service: nil, interval: nil)
        for time in 0..<5 { _ = autoscaler.observe(backlog, at: Double(time)) }
        #expect(autoscaler.observe(backlog, at: 5)?.to == 10)
    }

    @Test func theOfferedLoadIsAveragedOverTheScaleUpWindow() {
        var autoscaler = Autoscaler(policy: policy())
        for time in 0..<10 { _ = autoscaler.observe(second(ready: 1, inFlight: 0, arrivals: 0), at: Double(time)) }
        // A burst of 50 calls in one second is 10 slot-seconds of work: 2 calls over the 5 s window.
        _ = autoscaler.observe(second(ready: 1, inFlight: 8, waiting: 2, arrivals: 50), at: 10)
        #expect(autoscaler.status.desired == 1)
    }

    @Test func callsLongerThanTheScaleUpWindowAreAveragedOverTheirServiceTime() {
        var autoscaler = Autoscaler(policy: policy())
        // A 20 s call every other second offers 10 calls, whichever 5 s are looked at.
        for time in 0...60 {
            _ = autoscaler.observe(second(ready: 3, inFlight: 10, arrivals: time % 2, service: 20), at: Double(time))
            if time >= 20 { #expect(autoscaler.status.desired == 3, "at \(time) s") }
        }
    }

    @Test func theIntervalIsTheTimeSinceThePreviousObservationWhenNotGiven() throws {
        var autoscaler = Autoscaler(policy: policy())
        // 40 calls every 2 s: 20/s of 500 ms, 10 calls.
        let decisions = (0...6).compactMap { step in
            autoscaler.observe(second(ready: 1, inFlight: 8, arrivals: 40, service: 0.5, interval: nil), at: Double(2 * step))
        }
        let decision = try #require(decisions.first)
        #expect(decision.to == 3)
        #expect(decision.reason.hasPrefix("demand 10 calls (offered at 20.0/s × 500 ms) needs 3 instances"))
    }

    @Test func aMeanServiceTimeStandsForSecondsInWhichNoCallFinished() {
        var window = ArrivalWindow()
        window.record(arrivals: 10, over: 1, meanServiceSeconds: 0.5, endingAt: 1, window: 5)
        window.record(arrivals: 10, over: 1, meanServiceSeconds: nil, endingAt: 2, window: 5)
        #expect(window.offeredLoad == OfferedLoad(arrivalsPerSecond: 10, meanServiceSeconds: 0.5))
    }

    @Test func theServiceTimeOfAWindowIsWeightedByArrivals() {
        var window = ArrivalWindow()
        window.record(arrivals: 30, over: 1, meanServiceSeconds: 1, endingAt: 1, window: 5)
        window.record(arrivals: 10, over: 1, meanServiceSeconds: 3, endingAt: 2, window: 5)
        // 30 + 30 slot-seconds over 2 s.
        #expect(window.offeredLoad?.callSlots == 30)
        #expect(window.offeredLoad?.meanServiceSeconds == 1.5)
    }

    @Test func intervalsOlderThanTheWindowAreDroppedButTheLatestIsKept() {
        var window = ArrivalWindow()
        window.record(arrivals: 100, over: 1, meanServiceSeconds: 1, endingAt: 1, window: 2)
        window.record(arrivals: 10, over: 1, meanServiceSeconds: 1, endingAt: 2, window: 2)
        window.record(arrivals: 20, over: 1, meanServiceSeconds: 1, endingAt: 3, window: 2)
        #expect(window.offeredLoad?.arrivalsPerSecond == 15)
        window.record(arrivals: 8, over: 4, meanServiceSeconds: 1, endingAt: 13, window: 2)
        #expect(window.offeredLoad?.arrivalsPerSecond == 2)
    }

    @Test func anIntervalLongerThanTheWindowCountsForTheShareInsideIt() throws {
        var window = ArrivalWindow()
        // An hour since the previous sample (a replica that has just begun to lead), then a busy second.
        window.record(arrivals: 3_600, over: 3_600, meanServiceSeconds: 1, endingAt: 3_600, window: 5)
        window.record(arrivals: 10, over: 1, meanServiceSeconds: 1, endingAt: 3_601, window: 5)
        // 4 of the hour's calls fall in the last 5 s, with the second's 10.
        let rate = try #require(window.offeredLoad?.arrivalsPerSecond)
        #expect(abs(rate - 14.0 / 5) < 1e-9)
    }

    @Test func noOfferedLoadBeforeAServiceTimeIsKnown() {
        var autoscaler = Autoscaler(policy: policy())
        // No call has finished yet: the 20 waiting are counted a slot each, as without arrivals.
        let waiting = second(ready: 1, inFlight: 0, waiting: 20, arrivals: 20, service: nil)
        for time in 0..<5 { _ = autoscaler.observe(waiting, at: Double(time)) }
        #expect(autoscaler.observe(waiting, at: 5)?.to == 5)
    }

    @Test func aCallInFlightKeepsAnInstanceThoughNoneArrive() {
        var autoscaler = Autoscaler(policy: policy(minimum: 0))
        _ = autoscaler.observe(second(ready: 1, inFlight: 1, arrivals: 1), at: 0)
        for time in 1...120 { #expect(autoscaler.observe(second(ready: 1, inFlight: 1, arrivals: 0, service: nil), at: Double(time)) == nil) }
        let idle = (121...190).compactMap { time in autoscaler.observe(second(ready: 1, inFlight: 0, arrivals: 0, service: nil), at: Double(time)) }
        #expect(idle == [ScaleDecision(kind: .scaleDown, from: 1, to: 0, reason: "no demand for 60.0 s; 1 run", at: 181)])
    }

    @Test func scalesDownToWhatTheHighestOfferedLoadOfTheWindowNeeds() throws {
        var autoscaler = Autoscaler(policy: policy())
        // 10 calls/s of 200 ms: 2 calls, 1 instance; 30/s for 5 s of the window: 6 calls, 2 instances.
        let decisions = (0...70).compactMap { time in
            autoscaler.observe(second(ready: 6, inFlight: 2, arrivals: (30..<35).contains(time) ? 30 : 10), at: Double(time))
        }
        let decision = try #require(decisions.first)
        #expect(decision.to == 2)
        #expect(decision.reason == "demand peaked at 6 calls over the last 60.0 s, which needs 2 instances at 50% of 8 slots; 6 run")
    }
}

@Suite("Autoscaler, predictive, from arrivals")
struct ArrivalForecastTests {
    /// 10 calls/s of 200 ms (2 calls), and 80/s (16 calls) from 120 s to 180 s of every 240 s.
    static func rate(_ time: Int) -> Int { (120..<180).contains(time % 240) ? 80 : 10 }

    @Test func theForecastLearnsTheOfferedLoadNotTheBacklog() throws {
        var learnsArrivals = Autoscaler(policy: policy(predictive: true))
        var learnsQueue = Autoscaler(policy: policy(predictive: true))
        // One instance serves 40 calls/s: the rush leaves up to 2,400 calls waiting, the
        // autoscaler's decisions not carried out.
        var waiting = 0
        for time in 0..<590 {
            let arrivals = Self.rate(time)
            let served = min(waiting + arrivals, 40)
            waiting += arrivals - served
            let inFlight = min(served / 5, 8)
            _ = learnsArrivals.observe(second(ready: 1, inFlight: inFlight, waiting: waiting, arrivals: arrivals), at: Double(time))
            _ = learnsQueue.observe(second(ready: 1, inFlight: inFlight, waiting: waiting, arrivals: nil, service: nil, interval: nil), at: Double(time))
        }
        // Within 15 s of 589 s lies the third season's rush, at 600 s.
        let forecast = try #require(learnsArrivals.status.forecast)
        #expect(abs(forecast - 16) < 0.5)
        #expect(try #require(learnsQueue.status.forecast) > 100)
    }

    @Test func theForecastLooksAheadByTheColdStart() throws {
        var autoscaler = Autoscaler(policy: policy(predictive: true, coldStart: 60))
        var ready = 1
        var decisions: [ScaleDecision] = []
        for time in 0..<720 {
            let arrivals = Self.rate(time)
            let sample = second(ready: ready, inFlight: min(arrivals / 5, 8 * ready), arrivals: arrivals)
            if let decision = autoscaler.observe(sample, at: Double(time)) {
                decisions.append(decision)
                ready = decision.to
            }
        }
        // The third season's rush starts at 600 s; instances asked for now take 60 s to start.
        let early = try #require(decisions.first { $0.at >= 480 && $0.to > $0.from })
        #expect(early.kind == .predictive)
        #expect(early.at <= 540)
        #expect(early.to == 4)
        #expect(early.reason.hasPrefix("forecast demand up to 16.0 calls within 70.0 s needs 4 instances at 50% of 8 slots"))
    }

    @Test func aForecastIsPlannedForAHighQuantileWhenTheTargetLeavesLittleRoom() throws {
        // 2 slots at 90%: a forecast of 18 calls is planned as 18 + 2√18 = 26.5 with every slot in use.
        let policy = AutoscalePolicy(
            minimum: 1, maximum: 20, targetUtilization: 0.9, scaleUpAfter: 5, scaleDownAfter: 60, cooldown: 10, predictive: true,
            seasonLength: 240, seasonBuckets: 24)
        var autoscaler = Autoscaler(policy: policy)
        var ready = 1
        var decisions: [ScaleDecision] = []
        for time in 0..<720 {
            // 18 calls in flight from 120 s to 180 s of each season, 1 otherwise.
            let calls = (120..<180).contains(time % 240) ? 18 : 1
            let sample = DemandSample(ready: ready, slotsPerInstance: 2, inFlight: min(calls, 2 * ready), waiting: max(calls - 2 * ready, 0))
            if let decision = autoscaler.observe(sample, at: Double(time)) {
                decisions.append(decision)
                ready = decision.to
            }
        }
        // The third season's rush starts at 600 s.
        let early = try #require(decisions.first { $0.at >= 560 && $0.kind == .predictive })
        #expect(early.at < 600)
        #expect(early.to == 14)
        #expect(
            early.reason.hasPrefix(
                "forecast demand up to 18.0 calls within 15.0 s needs 14 instances for 26.5 calls (mean + 2√mean) with all 2 slots in use"))
    }
}
