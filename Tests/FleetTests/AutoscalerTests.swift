import Testing

@testable import Fleet

/// A template's instances that carry out every decision at once, observed once a second.
private struct SimulatedFleet {
    var autoscaler: Autoscaler
    var ready: Int
    var starting = 0
    var slotsPerInstance = 8
    private(set) var decisions: [ScaleDecision] = []

    init(_ policy: AutoscalePolicy, ready: Int) {
        autoscaler = Autoscaler(policy: policy)
        self.ready = ready
    }

    /// Observes each second from `start` through `end` with `demand(t)` calls, as many in flight
    /// as the ready instances take and the rest waiting; returns the decisions made meanwhile.
    @discardableResult
    mutating func run(from start: Int, through end: Int, demand: (Int) -> Int) -> [ScaleDecision] {
        var made: [ScaleDecision] = []
        for second in start...end {
            if let decision = observe(demand: demand(second), at: Double(second)) {
                made.append(decision)
            }
        }
        return made
    }

    @discardableResult
    mutating func run(from start: Int, through end: Int, demand: Int) -> [ScaleDecision] {
        run(from: start, through: end) { _ in demand }
    }

    mutating func observe(demand: Int, at time: Double) -> ScaleDecision? {
        let inFlight = min(demand, ready * slotsPerInstance)
        let sample = DemandSample(
            ready: ready, starting: starting, slotsPerInstance: slotsPerInstance, inFlight: inFlight, waiting: demand - inFlight)
        guard let decision = autoscaler.observe(sample, at: time) else { return nil }
        decisions.append(decision)
        ready = decision.to
        starting = 0
        return decision
    }
}

/// 4 calls per instance: 8 slots at 50%.
private func policy(
    minimum: Int = 1, maximum: Int = 10, scaleUpAfter: Double = 5, scaleDownAfter: Double = 60, cooldown: Double = 10
) -> AutoscalePolicy {
    AutoscalePolicy(
        minimum: minimum, maximum: maximum, targetUtilization: 0.5, scaleUpAfter: scaleUpAfter, scaleDownAfter: scaleDownAfter,
        cooldown: cooldown)
}

@Suite("Autoscaler, reactive")
struct ReactiveAutoscalerTests {
    @Test func aSpikeShorterThanTheScaleUpWindowDoesNotScale() {
        var fleet = SimulatedFleet(policy(), ready: 2)
        #expect(fleet.run(from: 0, through: 4, demand: 40).isEmpty)
        #expect(fleet.autoscaler.status.desired == 10)
        #expect(fleet.autoscaler.status.held == "10 instances needed for 4.0 s of autoscale.scaleUpAfter 5.0 s")
        #expect(fleet.run(from: 5, through: 100, demand: 8).isEmpty)
        #expect(fleet.autoscaler.status == .init(desired: 2, held: nil, forecast: nil, forecastReady: false, forecastPending: nil))
    }

    @Test func sustainedDemandScalesUpToExactlyTheNeededCount() {
        var fleet = SimulatedFleet(policy(), ready: 2)
        let decisions = fleet.run(from: 0, through: 5, demand: 23)
        #expect(
            decisions == [
                ScaleDecision(
                    kind: .scaleUp, from: 2, to: 6,
                    reason: "demand 23 calls (16 in flight, 7 waiting) needs 6 instances at 50% of 8 slots; 2 run; sustained 5.0 s",
                    at: 5)
            ])
        #expect(fleet.autoscaler.status.desired == 6)
        #expect(fleet.autoscaler.status.held == nil)
    }

    @Test func theScaleUpWindowRestartsWhenDemandDips() {
        var fleet = SimulatedFleet(policy(), ready: 2)
        let decisions = fleet.run(from: 0, through: 20) { second in second == 4 ? 8 : 23 }
        #expect(decisions.map(\.at) == [10])
    }

    @Test func exactlyFullInstancesNeedNoMore() {
        // 21 calls fill 10 instances at 70% of 3 slots, though 0.7 * 3 is a little under 2.1 in binary.
        var fleet = SimulatedFleet(AutoscalePolicy(maximum: 20), ready: 10)
        fleet.slotsPerInstance = 3
        #expect(fleet.run(from: 0, through: 30, demand: 21).isEmpty)
        #expect(fleet.autoscaler.status.desired == 10)
    }

    @Test func theCooldownHoldsASecondChange() {
        var fleet = SimulatedFleet(policy(), ready: 2)
        fleet.run(from: 0, through: 5, demand: 23)
        #expect(fleet.run(from: 6, through: 14, demand: 36).isEmpty)
        #expect(fleet.autoscaler.status.held == "cooling down: the last change was 9.0 s ago; autoscale.cooldown is 10.0 s")
        #expect(fleet.run(from: 15, through: 15, demand: 36).map(\.to) == [9])
    }

    @Test func scalesUpToTheMaximumAndNoFurther() throws {
        var fleet = SimulatedFleet(policy(maximum: 5), ready: 2)
        let decision = try #require(fleet.run(from: 0, through: 5, demand: 100).first)
        #expect(decision.to == 5)
        #expect(decision.reason.contains("needs 25 instances at 50% of 8 slots, capped at autoscale.max 5"))
        #expect(fleet.run(from: 6, through: 200, demand: 100).isEmpty)
        #expect(fleet.autoscaler.status.desired == 5)
        #expect(fleet.autoscaler.status.held == "at autoscale.max 5: demand 100 calls (40 in flight, 60 waiting) needs 25 instances at 50% of 8 slots")
    }

    @Test func scalesDownToTheMinimumAfterIdleness() {
        var fleet = SimulatedFleet(policy(minimum: 2), ready: 6)
        #expect(fleet.run(from: 0, through: 59, demand: 0).isEmpty)
        #expect(fleet.autoscaler.status.held == "fewer instances needed for 59.0 s of autoscale.scaleDownAfter 60.0 s")
        #expect(
            fleet.run(from: 60, through: 60, demand: 0) == [
                ScaleDecision(kind: .scaleDown, from: 6, to: 2, reason: "no demand for 60.0 s; autoscale.min is 2; 6 run", at: 60)
            ])
    }

    @Test func scalesDownOnlyAsFarAsTheBusiestMomentOfTheWindowNeeds() {
        var fleet = SimulatedFleet(policy(), ready: 6)
        // Mostly idle, but 12 calls (3 instances) once in the window.
        let decisions = fleet.run(from: 0, through: 60) { second in second == 30 ? 12 : 0 }
        #expect(
            decisions == [
                ScaleDecision(
                    kind: .scaleDown, from: 6, to: 3,
                    reason: "demand peaked at 12 calls over the last 60.0 s, which needs 3 instances at 50% of 8 slots; 6 run", at: 60)
            ])
    }

    @Test func scalesToZeroOnlyAfterAWholeWindowWithoutDemandAndColdStartsBack() {
        var fleet = SimulatedFleet(policy(minimum: 0), ready: 3)
        // A call now and then keeps one instance for the first window.
        #expect(fleet.run(from: 0, through: 60) { second in second < 10 ? 1 : 0 }.map(\.to) == [1])
        #expect(fleet.run(from: 61, through: 120, demand: 0).isEmpty)
        #expect(fleet.run(from: 121, through: 121, demand: 0).map(\.to) == [0])

        // Within the cooldown of the scale to zero: a cold start does not wait for it.
        let coldStart = fleet.run(from: 122, through: 122, demand: 6)
        #expect(
            coldStart == [
                ScaleDecision(
                    kind: .coldStart, from: 0, to: 2,
                    reason: "demand 6 calls (0 in flight, 6 waiting) needs 2 instances at 50% of 8 slots; none run; starting at once", at: 122)
            ])
    }

    @Test func aColdStartIsNotAskedForAgainWhileTheSupervisorCarriesItOut() {
        var autoscaler = Autoscaler(policy: policy(minimum: 0))
        let idle = DemandSample(ready: 0, slotsPerInstance: 8, inFlight: 0, waiting: 3)
        #expect(autoscaler.observe(idle, at: 0)?.kind == .coldStart)
        #expect(autoscaler.observe(idle, at: 1) == nil)
        #expect(autoscaler.status.held == "waiting for the change to 1 instance asked for at 0.0 s")
        #expect(autoscaler.observe(DemandSample(ready: 0, starting: 1, slotsPerInstance: 8, inFlight: 0, waiting: 3), at: 2) == nil)
    }

    @Test func doesNotScaleDownWhileInstancesAreStarting() {
        var fleet = SimulatedFleet(policy(), ready: 4)
        fleet.starting = 1
        #expect(fleet.run(from: 0, through: 200, demand: 0).isEmpty)
        #expect(fleet.autoscaler.status.held == "no scale-down while 1 instance is starting")
        fleet.starting = 0
        #expect(fleet.run(from: 201, through: 201, demand: 0).map(\.to) == [1])
    }

    @Test func belowTheMinimumScalesUpAtOnce() {
        var fleet = SimulatedFleet(policy(minimum: 3), ready: 1)
        #expect(
            fleet.run(from: 0, through: 0, demand: 0) == [
                ScaleDecision(kind: .scaleUp, from: 1, to: 3, reason: "1 instance runs, below autoscale.min 3", at: 0)
            ])
    }

    @Test func aPolicyUpdateBelowTheCountScalesDownToTheNewMaximumAtOnce() {
        var fleet = SimulatedFleet(policy(), ready: 2)
        fleet.run(from: 0, through: 5, demand: 32)
        #expect(fleet.ready == 8)
        fleet.autoscaler.update(policy: policy(maximum: 5))
        // Within the cooldown of the scale-up: the policy's bounds do not wait for it.
        #expect(
            fleet.run(from: 6, through: 6, demand: 32) == [
                ScaleDecision(kind: .scaleDown, from: 8, to: 5, reason: "8 instances run, above autoscale.max 5", at: 6)
            ])
    }

    @Test func aPolicyUpdateKeepsTheWindowInProgress() {
        var fleet = SimulatedFleet(policy(), ready: 2)
        fleet.run(from: 0, through: 3, demand: 23)
        fleet.autoscaler.update(policy: policy(maximum: 20))
        #expect(fleet.run(from: 4, through: 5, demand: 23).map(\.at) == [5])
    }

    @Test func timeRunningBackwardsDoesNotStretchAWindow() {
        var autoscaler = Autoscaler(policy: policy())
        let busy = DemandSample(ready: 2, slotsPerInstance: 8, inFlight: 16, waiting: 7)
        #expect(autoscaler.observe(busy, at: 10) == nil)
        #expect(autoscaler.observe(busy, at: 3) == nil)
        #expect(autoscaler.observe(busy, at: 15)?.at == 15)
    }
}

@Suite("Autoscale policy")
struct AutoscalePolicyTests {
    @Test func defaultsAreValid() {
        #expect(AutoscalePolicy(maximum: 4).problems.isEmpty)
        #expect(AutoscalePolicy(minimum: 0, maximum: 1).problems.isEmpty)
    }

    @Test func aMaximumBelowTheMinimumIsNamed() {
        #expect(AutoscalePolicy(minimum: 3, maximum: 2).problems == ["autoscale.max (2) is below autoscale.min (3)"])
    }

    @Test func everyBadValueIsNamed() {
        let policy = AutoscalePolicy(
            minimum: -1, maximum: 0, targetUtilization: 1.5, scaleUpAfter: -1, scaleDownAfter: .nan, cooldown: -2,
            seasonLength: 0, seasonBuckets: 1)
        #expect(
            policy.problems == [
                "autoscale.min (-1) must not be negative",
                "autoscale.max (0) must be at least 1",
                "autoscale.targetUtilization (1.5) must be above 0 and at most 1",
                "autoscale.scaleUpAfter (-1.0) must be a number of seconds, 0 or more",
                "autoscale.scaleDownAfter (nan) must be a number of seconds, 0 or more",
                "autoscale.cooldown (-2.0) must be a number of seconds, 0 or more",
                "autoscale.seasonLength (0.0) must be a number of seconds above 0",
                "autoscale.seasonBuckets (1) must be at least 2",
            ])
    }

    @Test func aNegativeColdStartIsNamed() {
        #expect(AutoscalePolicy(maximum: 2, coldStart: -1).problems == ["autoscale.coldStart (-1.0) must be a number of seconds, 0 or more"])
    }

    @Test func theForecastLooksAheadByTheColdStartOrTheScaleUpWindowAndOneBucket() {
        // Buckets of 900 s: a day of 96.
        #expect(AutoscalePolicy(maximum: 2, scaleUpAfter: 5, coldStart: 3).forecastLead == 905)
        #expect(AutoscalePolicy(maximum: 2, scaleUpAfter: 5, coldStart: 60).forecastLead == 960)
    }

    @Test func waitingCallsAreToBeClearedWithinTheScaleUpWindowAndAColdStart() {
        #expect(AutoscalePolicy(maximum: 2, scaleUpAfter: 5, coldStart: 60).backlogClearance == 65)
        #expect(AutoscalePolicy(maximum: 2, scaleUpAfter: 0, coldStart: 0).backlogClearance == 1)
    }

    @Test func aForecastIsPlannedForItsMeanAtTheTargetOrAHighQuantileWithEverySlotInUse() {
        // 32 calls at 50%: the target's headroom (64 slots) is more than 32 + 2√32 = 43.3.
        #expect(AutoscalePolicy(maximum: 2, targetUtilization: 0.5).forecastDemand(mean: 32) == 32)
        // 9 calls at 90%: 9 + 2√9 = 15 slots, which is 13.5 calls at 90%.
        #expect(abs(AutoscalePolicy(maximum: 2, targetUtilization: 0.9).forecastDemand(mean: 9) - 13.5) < 1e-9)
        #expect(AutoscalePolicy(maximum: 2).forecastDemand(mean: 0) == 0)
    }

    @Test func aZeroUtilizationIsRefused() {
        #expect(AutoscalePolicy(maximum: 2, targetUtilization: 0).problems == ["autoscale.targetUtilization (0.0) must be above 0 and at most 1"])
    }
}

@Suite("Autoscaler, predictive")
struct PredictiveAutoscalerTests {
    /// A day-like cycle in 240 s of 24 ten-second buckets.
    static func policy(predictive: Bool, scaleDownAfter: Double = 60) -> AutoscalePolicy {
        AutoscalePolicy(
            minimum: 1, maximum: 10, targetUtilization: 0.5, scaleUpAfter: 5, scaleDownAfter: scaleDownAfter, cooldown: 10,
            predictive: predictive, seasonLength: 240, seasonBuckets: 24)
    }

    /// 2 calls, rising to 32 (8 instances) from 120 s to 180 s of every season.
    static func dailyRush(_ second: Int) -> Int { (120..<180).contains(second % 240) ? 32 : 2 }

    /// The first scale-up at or after `second`.
    static func firstScaleUp(in decisions: [ScaleDecision], after second: Double) -> ScaleDecision? {
        decisions.first { $0.at >= second && $0.to > $0.from }
    }

    @Test func startsInstancesBeforeAPredictedRiseThatReactiveScalingMeetsOnlyAfterItArrives() throws {
        var reactive = SimulatedFleet(Self.policy(predictive: false), ready: 1)
        var predictive = SimulatedFleet(Self.policy(predictive: true), ready: 1)
        reactive.run(from: 0, through: 719, demand: Self.dailyRush)
        predictive.run(from: 0, through: 719, demand: Self.dailyRush)

        // The third season's rush starts at 600 s; the forecast is ready after two seasons.
        let early = try #require(Self.firstScaleUp(in: predictive.decisions, after: 480))
        let late = try #require(Self.firstScaleUp(in: reactive.decisions, after: 480))
        #expect(early.kind == .predictive)
        #expect(early.to == 8)
        #expect(early.at < 600)
        #expect(late.kind == .scaleUp)
        #expect(late.at >= 600)
        #expect(early.at < late.at)
        #expect(
            early.reason
                == "forecast demand up to 32.0 calls within 15.0 s needs 8 instances at 50% of 8 slots; demand now 2 calls (2 in flight, 0 waiting); 1 run")
    }

    @Test func behavesReactivelyUntilTwoSeasonsAreSeen() {
        var reactive = SimulatedFleet(Self.policy(predictive: false), ready: 1)
        var predictive = SimulatedFleet(Self.policy(predictive: true), ready: 1)
        reactive.run(from: 0, through: 311, demand: Self.dailyRush)
        predictive.run(from: 0, through: 311, demand: Self.dailyRush)
        #expect(predictive.decisions == reactive.decisions)
        #expect(predictive.autoscaler.status.forecastReady == false)
        #expect(predictive.autoscaler.status.forecast == nil)
        #expect(predictive.autoscaler.status.forecastPending == "forecast needs 2 seasons of history; 1.3 seen")
        #expect(reactive.autoscaler.status.forecastPending == nil)

        predictive.run(from: 312, through: 480, demand: Self.dailyRush)
        #expect(predictive.autoscaler.status.forecastReady)
        #expect(predictive.autoscaler.status.forecastPending == nil)
        #expect(predictive.autoscaler.status.forecast.map { abs($0 - 2) < 0.01 } == true)
    }

    @Test func keepsInstancesThroughALullBeforeAPredictedRise() {
        // Two rushes a season, 60 s apart: longer than the 40 s scale-down window.
        func twoRushes(_ second: Int) -> Int {
            let phase = second % 240
            return (60..<100).contains(phase) || (160..<200).contains(phase) ? 32 : 2
        }
        var reactive = SimulatedFleet(Self.policy(predictive: false, scaleDownAfter: 40), ready: 1)
        var predictive = SimulatedFleet(Self.policy(predictive: true, scaleDownAfter: 40), ready: 1)
        reactive.run(from: 0, through: 719, demand: twoRushes)
        predictive.run(from: 0, through: 719, demand: twoRushes)

        // The lull of the third season runs from 580 s to 640 s; reactive scaling is back up by 645 s.
        let lull = { (decision: ScaleDecision) in (580..<660).contains(decision.at) }
        #expect(reactive.decisions.filter(lull).map(\.kind) == [.scaleDown, .scaleUp])
        #expect(predictive.decisions.filter(lull).isEmpty)
        #expect(predictive.ready == 8)
    }

    @Test func turningPredictionOffDropsTheHistory() {
        var predictive = SimulatedFleet(Self.policy(predictive: true), ready: 1)
        predictive.run(from: 0, through: 500, demand: Self.dailyRush)
        #expect(predictive.autoscaler.status.forecastReady)
        predictive.autoscaler.update(policy: Self.policy(predictive: false))
        #expect(predictive.autoscaler.status.forecastReady == false)
        predictive.autoscaler.update(policy: Self.policy(predictive: true))
        #expect(predictive.autoscaler.status.forecastPending == "forecast needs 2 seasons of history; 0.0 seen")
    }
}
