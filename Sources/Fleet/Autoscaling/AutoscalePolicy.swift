/// How one template's instance count follows its demand: the bounds, the utilisation to aim for,
/// how long a change in demand must last before the count follows it, how long an instance takes
/// to start, and whether a seasonal forecast of demand may start instances before the demand
/// arrives.
public struct AutoscalePolicy: Sendable, Equatable {
    /// The fewest instances to keep; 0 lets the template scale to zero when idle.
    public var minimum: Int
    /// The most instances to run; at least `max(minimum, 1)`.
    public var maximum: Int
    /// The share of each instance's concurrency slots to aim for, in (0, 1]. Below 1 it leaves
    /// headroom for bursts that arrive faster than an instance starts.
    public var targetUtilization: Double
    /// Seconds the demand must stay above capacity before instances are added.
    public var scaleUpAfter: Double
    /// Seconds the demand must stay below capacity before instances are removed.
    public var scaleDownAfter: Double
    /// Seconds after any change before the next one; a cold start from zero does not wait.
    public var cooldown: Double
    /// Seconds from asking for an instance until it takes calls. A forecast looks at least this
    /// far ahead, and waiting calls are to be cleared within the scale-up window and this.
    public var coldStart: Double
    /// Whether a seasonal forecast of demand may raise the count ahead of the demand.
    public var predictive: Bool
    /// Seconds in one season of the demand cycle (a day by default).
    public var seasonLength: Double
    /// Demand samples the forecaster keeps per season (96: quarter hours of a day).
    public var seasonBuckets: Int

    public init(
        minimum: Int = 1,
        maximum: Int,
        targetUtilization: Double = 0.7,
        scaleUpAfter: Double = 5,
        scaleDownAfter: Double = 60,
        cooldown: Double = 10,
        coldStart: Double = 5,
        predictive: Bool = false,
        seasonLength: Double = 86_400,
        seasonBuckets: Int = 96
    ) {
        self.minimum = minimum
        self.maximum = maximum
        self.targetUtilization = targetUtilization
        self.scaleUpAfter = scaleUpAfter
        self.scaleDownAfter = scaleDownAfter
        self.cooldown = cooldown
        self.coldStart = coldStart
        self.predictive = predictive
        self.seasonLength = seasonLength
        self.seasonBuckets = seasonBuckets
    }

    /// Problems with the values, as messages naming the member (e.g. "autoscale.max (2) is below
    /// autoscale.min (3)"); empty when valid.
    public var problems: [String] {
        var problems: [String] = []
        if minimum < 0 {
            problems.append("autoscale.min (\(minimum)) must not be negative")
        }
        if maximum < 1 {
            problems.append("autoscale.max (\(maximum)) must be at least 1")
        } else if maximum < minimum {
            problems.append("autoscale.max (\(maximum)) is below autoscale.min (\(minimum))")
        }
        if !(targetUtilization > 0 && targetUtilization <= 1) {
            problems.append("autoscale.targetUtilization (\(targetUtilization)) must be above 0 and at most 1")
        }
        for (name, seconds) in [("scaleUpAfter", scaleUpAfter), ("scaleDownAfter", scaleDownAfter), ("cooldown", cooldown), ("coldStart", coldStart)]
        where !(seconds.isFinite && seconds >= 0) {
            problems.append("autoscale.\(name) (\(seconds)) must be a number of seconds, 0 or more")
        }
        if !(seasonLength.isFinite && seasonLength > 0) {
            problems.append("autoscale.seasonLength (\(seasonLength)) must be a number of seconds above 0")
        }
        if seasonBuckets < 2 {
            problems.append("autoscale.seasonBuckets (\(seasonBuckets)) must be at least 2")
        }
        return problems
    }

    /// Seconds of demand that one forecaster bucket averages.
    public var bucketLength: Double { seasonLength / Double(seasonBuckets) }

    /// How far ahead a forecast looks: the cold start (or the scale-up window, when reactive
    /// scaling takes longer to act) plus one bucket, so that instances asked for on a forecast
    /// are ready before the bucket they are needed in begins.
    public var forecastLead: Double { max(scaleUpAfter, coldStart) + bucketLength }

    /// Seconds within which the instances asked for should clear the calls waiting: the time they
    /// take to come (the scale-up window and a cold start), at least one second. Sooner would
    /// start instances that sit idle once the short backlog is gone.
    public var backlogClearance: Double { max(scaleUpAfter + coldStart, 1) }

    /// Seconds over which arrivals are averaged into an offered load: the scale-up window, or one
    /// mean service time when calls last longer, so that the average is no noisier than a count
    /// of the calls in flight.
    func arrivalWindow(meanServiceSeconds: Double) -> Double { max(scaleUpAfter, meanServiceSeconds) }

    /// Call slots to plan for a forecast of `mean` calls: a forecast is of a bucket's mean, and the
    /// calls in flight at a moment spread around it like a Poisson count. The more of the mean at
    /// the target utilisation and its high quantile (mean + 2·√mean, about the 98th percentile)
    /// with every slot in use.
    func forecastDemand(mean: Double) -> Double {
        guard mean > 0 else { return 0 }
        return max(mean, targetUtilization * (mean + Self.forecastDeviations * mean.squareRoot()))
    }

    /// Standard deviations above the mean that a forecast plans for.
    static let forecastDeviations = 2.0
}

extension AutoscalePolicy {
    /// Instances that carry `demand` call slots at the target utilisation, before the bounds.
    func instancesCarrying(demand: Double, slotsPerInstance: Int) -> Int {
        guard demand > 0 else { return 0 }
        let callsPerInstance = Double(max(slotsPerInstance, 1)) * targetUtilization
        // The tolerance keeps a demand that fills instances exactly (56 calls at 70% of 8 slots)
        // from rounding up to one more because 0.7 * 8 is not exact in binary.
        let instances = (demand / callsPerInstance - 1e-9).rounded(.up)
        return instances >= Double(Int.max) ? Int.max : Int(instances)
    }

    /// `count` held within `[minimum, maximum]`.
    func bounded(_ count: Int) -> Int { min(max(count, minimum), maximum) }
}
