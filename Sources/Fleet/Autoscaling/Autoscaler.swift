/// One observation of a template's instances and the demand on them.
///
/// With `arrivals` and a mean service time, the autoscaler sizes for the offered load (the
/// arrival rate × the mean service time, by Little's law) and for clearing the calls waiting
/// within `AutoscalePolicy.backlogClearance`, and a forecast learns the offered load. Without
/// them it sizes for the calls in flight and waiting, one slot each.
public struct DemandSample: Sendable, Equatable {
    /// Instances that can take calls now.
    public var ready: Int
    /// Instances started but not yet ready.
    public var starting: Int
    /// Each instance's `maxConcurrency` (at least 1).
    public var slotsPerInstance: Int
    /// Calls in flight on the template's instances.
    public var inFlight: Int
    /// Calls and queued tasks waiting for one of the template's tools.
    public var waiting: Int
    /// Calls and tasks that arrived for the template since the previous sample: those finished
    /// meanwhile plus the change in those in flight and waiting. Nil when not counted.
    public var arrivals: Int?
    /// The mean seconds the calls that finished since the previous sample held their slot
    /// (on the instance, not waiting for it); nil when none finished, and the last mean given
    /// stands.
    public var meanServiceSeconds: Double?
    /// Seconds since the previous sample, over which `arrivals` were counted; nil for the time
    /// since the previous observation.
    public var interval: Double?

    public init(
        ready: Int, starting: Int = 0, slotsPerInstance: Int, inFlight: Int, waiting: Int = 0, arrivals: Int? = nil,
        meanServiceSeconds: Double? = nil, interval: Double? = nil
    ) {
        self.ready = ready
        self.starting = starting
        self.slotsPerInstance = slotsPerInstance
        self.inFlight = inFlight
        self.waiting = waiting
        self.arrivals = arrivals
        self.meanServiceSeconds = meanServiceSeconds
        self.interval = interval
    }

    /// Call slots asked for: those in use and those waited for.
    public var demand: Int { inFlight + waiting }

    /// Instances running or on their way: the count a decision changes.
    public var instances: Int { ready + starting }
}

/// A change of a template's instance count, for the supervisor to carry out.
public struct ScaleDecision: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// Demand stayed above capacity for the scale-up window, or the count is below the minimum.
        case scaleUp
        /// Demand stayed below capacity for the scale-down window, or the count is above the maximum.
        case scaleDown
        /// Demand arrived while no instance runs.
        case coldStart
        /// The seasonal forecast expects demand the running instances cannot carry.
        case predictive
    }

    public var kind: Kind
    /// Instances running or starting when decided.
    public var from: Int
    /// Instances to run.
    public var to: Int
    /// Why, in a sentence an operator reads, with the numbers.
    public var reason: String
    /// When, in the seconds the observations were given in.
    public var at: Double

    public init(kind: Kind, from: Int, to: Int, reason: String, at: Double) {
        self.kind = kind
        self.from = from
        self.to = to
        self.reason = reason
        self.at = at
    }
}

/// Decides when a template's instance count should change, from observations of its demand.
///
/// Pure logic: time is given with each observation, and decisions are values that the supervisor
/// carries out. The count follows demand only once a change has lasted a window (so a spike does
/// not start instances, nor a lull stop them), and not within a cooldown of the last change.
/// With a predictive policy, a seasonal forecast of demand may add instances ahead of a
/// predicted rise, and keeps instances that a predicted rise will need; it plans for a high
/// quantile of the forecast demand, not its mean.
public struct Autoscaler: Sendable {
    /// What the last observation asked for and why the count is held, for status views.
    public struct Status: Sendable, Equatable {
        /// The instance count the last observation asked for.
        public var desired: Int
        /// Why the count is not changed to `desired` yet (a window, the cooldown, the maximum);
        /// nil when nothing holds it.
        public var held: String?
        /// The highest demand forecast from now through `policy.forecastLead` seconds ahead, in call
        /// slots (the mean, before the margin for chance), once the forecast is ready.
        public var forecast: Double?
        /// Whether a predictive policy has seen enough history to forecast.
        public var forecastReady: Bool
        /// Why a predictive policy has no forecast yet; nil when it has one or is not predictive.
        public var forecastPending: String?
    }

    public private(set) var policy: AutoscalePolicy
    public private(set) var status: Status

    /// The reactive need above the count, since when.
    private var demandAbove = SustainedCondition()
    /// The target below the count, since when, with the highest demand seen meanwhile.
    private var demandBelow = SustainedCondition()
    private var lastDecision: ScaleDecision?
    private var lastObservedAt: Double?
    /// Recent arrivals, for the offered load.
    private var arrivals = ArrivalWindow()
    /// Per-bucket demand for the forecast; kept only while the policy is predictive.
    private var history: BucketedDemandHistory?

    /// - Precondition: `policy.problems` is empty.
    public init(policy: AutoscalePolicy) {
        precondition(policy.problems.isEmpty, "invalid autoscale policy: \(policy.problems.joined(separator: "; "))")
        self.policy = policy
        history = policy.predictive ? BucketedDemandHistory(bucketLength: policy.bucketLength, bucketsPerSeason: policy.seasonBuckets) : nil
        status = Status(desired: policy.minimum, held: nil, forecast: nil, forecastReady: false, forecastPending: nil)
        status.forecastPending = forecastPending
    }

    /// Changes the policy at run time, keeping the windows, the cooldown and, while the seasons
    /// keep their shape, the demand history.
    ///
    /// - Precondition: `policy.problems` is empty.
    public mutating func update(policy newPolicy: AutoscalePolicy) {
        precondition(newPolicy.problems.isEmpty, "invalid autoscale policy: \(newPolicy.problems.joined(separator: "; "))")
        let seasonsReshaped = newPolicy.seasonLength != policy.seasonLength || newPolicy.seasonBuckets != policy.seasonBuckets
        if !newPolicy.predictive {
            history = nil
        } else if history == nil || seasonsReshaped {
            // Buckets of another length would teach the model a different season.
            history = BucketedDemandHistory(bucketLength: newPolicy.bucketLength, bucketsPerSeason: newPolicy.seasonBuckets)
        }
        policy = newPolicy
        if history?.forecast.isReady != true {
            status.forecast = nil
            status.forecastReady = false
        }
        status.forecastPending = forecastPending
    }

    /// Feeds one observation (about once a second) and returns a decision when the instance count
    /// should change. Times must not run backwards; one that does counts as the latest time seen.
    public mutating func observe(_ sample: DemandSample, at time: Double) -> ScaleDecision? {
        let now = max(time, lastObservedAt ?? time)
        let offered = offeredLoad(of: sample, at: now)
        lastObservedAt = now

        let reading = DemandReading(sample: sample, offered: offered, policy: policy)
        let outlook = history.flatMap { ForecastOutlook(history: $0, policy: policy, slotsPerInstance: sample.slotsPerInstance, now: now) }
        let target = max(reading.needed, outlook?.neededAtLead ?? 0)
        demandAbove.observe(reading.needed > reading.current, demand: reading.callSlots, need: reading.unboundedNeed, at: now)
        demandBelow.observe(target < reading.current, demand: reading.callSlots, need: reading.unboundedNeed, at: now)

        let verdict = decide(reading, outlook: outlook, target: target, now: now)
        status.forecast = outlook?.demandWithinLead
        status.forecastReady = outlook != nil
        status.forecastPending = forecastPending
        switch verdict {
        case .change(let decision):
            status.desired = decision.to
            status.held = nil
            lastDecision = decision
            demandAbove.reset()
            demandBelow.reset()
            return decision
        case .hold(let desired, let reason):
            status.desired = desired
            status.held = reason
            return nil
        }
    }

    /// Takes in the sample's arrivals and teaches the forecast the demand of its interval: the
    /// slot-seconds the arrivals bring per second when they are counted, the calls in flight and
    /// waiting when not. Returns the offered load over the arrival window; nil without arrivals or
    /// before a mean service time is known.
    private mutating func offeredLoad(of sample: DemandSample, at now: Double) -> OfferedLoad? {
        guard let count = sample.arrivals, let seconds = sample.interval ?? lastObservedAt.map({ now - $0 }) else {
            history?.record(Double(sample.demand), at: now)
            return nil
        }
        let service = sample.meanServiceSeconds ?? arrivals.meanServiceSeconds ?? 0
        arrivals.record(
            arrivals: count, over: seconds, meanServiceSeconds: sample.meanServiceSeconds, endingAt: now,
            window: policy.arrivalWindow(meanServiceSeconds: service))
        guard let offered = arrivals.offeredLoad, let known = arrivals.meanServiceSeconds else {
            history?.record(Double(sample.demand), at: now)
            return nil
        }
        // Arrivals counted over no time still bring their work, but make no rate on their own.
        if seconds > 0 { history?.record(work: Double(max(count, 0)) * known, over: seconds, at: now) }
        return offered
    }

    private enum Verdict {
        case change(ScaleDecision)
        case hold(desired: Int, because: String?)
    }

    private func decide(_ reading: DemandReading, outlook: ForecastOutlook?, target: Int, now: Double) -> Verdict {
        let current = reading.current
        if current == 0 && reading.sample.demand > 0 {
            let to = max(1, target)
            return atOnce(.coldStart, reading, to: to, now: now, reason: "\(reading.demandNeeds(to)); none run; starting at once")
        }
        if current > policy.maximum {
            return atOnce(.scaleDown, reading, to: policy.maximum, now: now, reason: "\(running(current)), above autoscale.max \(policy.maximum)")
        }
        if current < policy.minimum {
            return atOnce(.scaleUp, reading, to: policy.minimum, now: now, reason: "\(running(current)), below autoscale.min \(policy.minimum)")
        }
        if target > current {
            return scaleUp(reading, outlook: outlook, to: target, now: now)
        }
        if target < current {
            return scaleDown(reading, outlook: outlook, now: now)
        }
        if reading.unboundedNeed > policy.maximum {
            let demandNeeds = reading.demandNeeds(reading.unboundedNeed, notingCap: false)
            return .hold(desired: current, because: "at autoscale.max \(policy.maximum): \(demandNeeds)")
        }
        return .hold(desired: current, because: nil)
    }

    /// A change that enforces the policy or starts from zero: no window, no cooldown. Only a
    /// change the supervisor has not had the cooldown to carry out yet is not asked for again.
    private func atOnce(_ kind: ScaleDecision.Kind, _ reading: DemandReading, to: Int, now: Double, reason: String) -> Verdict {
        if let last = lastDecision, last.kind == kind, last.to == to, now - last.at < policy.cooldown {
            return .hold(desired: to, because: "waiting for the change to \(instances(to)) asked for at \(seconds(last.at))")
        }
        return .change(ScaleDecision(kind: kind, from: reading.current, to: to, reason: reason, at: now))
    }

    private func scaleUp(_ reading: DemandReading, outlook: ForecastOutlook?, to target: Int, now: Double) -> Verdict {
        if let outlook, outlook.neededAtLead > reading.needed {
            // The forecast asks for more than the demand now: acting at once is the point of it.
            if let cooling = coolingDown(at: now) {
                return .hold(desired: target, because: cooling)
            }
            let reason = "\(outlook.describedAtLead); demand now \(reading.demandPhrase); \(reading.current) run"
            return .change(ScaleDecision(kind: .predictive, from: reading.current, to: target, reason: reason, at: now))
        }
        let sustained = demandAbove.duration(at: now)
        if sustained < policy.scaleUpAfter {
            return .hold(
                desired: target,
                because: "\(instances(target)) needed for \(seconds(sustained)) of autoscale.scaleUpAfter \(seconds(policy.scaleUpAfter))")
        }
        if let cooling = coolingDown(at: now) {
            return .hold(desired: target, because: cooling)
        }
        let reason = "\(reading.demandNeeds(reading.unboundedNeed)); \(reading.current) run; sustained \(seconds(sustained))"
        return .change(ScaleDecision(kind: .scaleUp, from: reading.current, to: target, reason: reason, at: now))
    }

    /// Scales down to what the highest demand of the window needs, so a lull at the window's end
    /// does not shed instances the window's busier moments used; to zero only when that highest
    /// demand was none. A predicted rise within the window keeps the instances it will need.
    private func scaleDown(_ reading: DemandReading, outlook: ForecastOutlook?, now: Double) -> Verdict {
        let current = reading.current
        let peakDemand = demandBelow.peakDemand
        let peakNeed = demandBelow.peakNeed
        let forecastNeed = outlook?.neededInScaleDownWindow ?? 0
        let keep = max(policy.bounded(peakNeed), forecastNeed)
        let desired = min(keep, current)
        if reading.sample.starting > 0 {
            return .hold(desired: desired, because: "no scale-down while \(running(reading.sample.starting, "starting"))")
        }
        let calm = demandBelow.duration(at: now)
        if calm < policy.scaleDownAfter {
            return .hold(
                desired: desired,
                because: "fewer instances needed for \(seconds(calm)) of autoscale.scaleDownAfter \(seconds(policy.scaleDownAfter))")
        }
        if let outlook, keep >= current {
            return .hold(desired: current, because: "keeping \(current): \(outlook.describedPeak)")
        }
        if let cooling = coolingDown(at: now) {
            return .hold(desired: desired, because: cooling)
        }
        var reason =
            peakNeed == 0
            ? "no demand for \(seconds(calm))"
            : "demand peaked at \(calls(peakDemand)) over the last \(seconds(calm)), which needs \(instances(peakNeed)) \(reading.capacityPhrase)"
        if let outlook, forecastNeed > policy.bounded(peakNeed) {
            reason += "; \(outlook.describedPeak)"
        } else if policy.minimum > peakNeed {
            reason += "; autoscale.min is \(policy.minimum)"
        }
        reason += "; \(current) run"
        return .change(ScaleDecision(kind: .scaleDown, from: current, to: keep, reason: reason, at: now))
    }

    /// Why the cooldown still holds a change, or nil when it has passed.
    private func coolingDown(at now: Double) -> String? {
        guard let last = lastDecision else { return nil }
        let since = now - last.at
        guard since < policy.cooldown else { return nil }
        return "cooling down: the last change was \(seconds(since)) ago; autoscale.cooldown is \(seconds(policy.cooldown))"
    }

    private var forecastPending: String? {
        guard let history, !history.forecast.isReady else { return nil }
        return "forecast needs 2 seasons of history; \(oneDecimal(history.forecast.seasonsSeen)) seen"
    }
}

/// How long a condition has held without a break, and the highest demand seen meanwhile, with
/// the most instances it needed; it starts over when the condition breaks.
struct SustainedCondition: Sendable {
    private(set) var since: Double?
    /// Call slots.
    private(set) var peakDemand = 0.0
    /// Instances, before the policy's bounds.
    private(set) var peakNeed = 0

    mutating func observe(_ holds: Bool, demand: Double, need: Int, at now: Double) {
        guard holds else {
            reset()
            return
        }
        if since == nil {
            since = now
            peakDemand = demand
            peakNeed = need
        } else {
            peakDemand = max(peakDemand, demand)
            peakNeed = max(peakNeed, need)
        }
    }

    mutating func reset() {
        since = nil
        peakDemand = 0
        peakNeed = 0
    }

    func duration(at now: Double) -> Double { since.map { now - $0 } ?? 0 }
}

/// One sample seen through a policy: the call slots its demand needs, the instances for them,
/// and the words for them.
private struct DemandReading {
    let sample: DemandSample
    let policy: AutoscalePolicy
    /// The offered load over the arrival window; nil when the sample has no arrivals.
    let offered: OfferedLoad?
    /// Extra call slots that clear the calls waiting within the policy's backlog clearance.
    let clearing: Double
    /// Call slots needed: the offered load and the clearing, or without arrivals the calls in
    /// flight and waiting.
    let callSlots: Double
    /// Instances the demand needs, before the policy's bounds; at least 1 while calls are in
    /// flight or waiting.
    let unboundedNeed: Int
    /// Instances the demand needs, within the policy's bounds.
    let needed: Int

    init(sample: DemandSample, offered: OfferedLoad?, policy: AutoscalePolicy) {
        self.sample = sample
        self.offered = offered
        self.policy = policy
        if let offered {
            // A waiting call needs a slot for one service time, not for as long as it waits: the
            // slots that serve the backlog's work within the clearance time.
            clearing = Double(sample.waiting) * offered.meanServiceSeconds / policy.backlogClearance
            callSlots = offered.callSlots + clearing
        } else {
            clearing = 0
            callSlots = Double(sample.demand)
        }
        let need = policy.instancesCarrying(demand: callSlots, slotsPerInstance: sample.slotsPerInstance)
        unboundedNeed = sample.demand > 0 ? max(need, 1) : need
        needed = policy.bounded(unboundedNeed)
    }

    var current: Int { sample.instances }

    /// "23 calls (14 in flight, 9 waiting)"; with arrivals "14.5 calls (10.0 offered at
    /// 50.0/s × 200 ms, 4.5 to clear 180 waiting within 8.0 s)" or "10.0 calls (offered at
    /// 50.0/s × 200 ms)".
    var demandPhrase: String {
        guard let offered else { return "\(calls(sample.demand)) (\(sample.inFlight) in flight, \(sample.waiting) waiting)" }
        let offeredAt = "\(figure(offered.arrivalsPerSecond))/s × \(duration(offered.meanServiceSeconds))"
        guard sample.waiting > 0 else { return "\(calls(callSlots)) (offered at \(offeredAt))" }
        return "\(calls(callSlots)) (\(oneDecimal(offered.callSlots)) offered at \(offeredAt), "
            + "\(oneDecimal(clearing)) to clear \(sample.waiting) waiting within \(seconds(policy.backlogClearance)))"
    }

    /// "at 70% of 8 slots"
    var capacityPhrase: String {
        "at \(Int((policy.targetUtilization * 100).rounded()))% of \(slots(sample.slotsPerInstance))"
    }

    /// "demand 23 calls (14 in flight, 9 waiting) needs 5 instances at 70% of 8 slots", noting
    /// the cap when `count` is above the maximum.
    func demandNeeds(_ count: Int, notingCap: Bool = true) -> String {
        let cap = notingCap && count > policy.maximum ? ", capped at autoscale.max \(policy.maximum)" : ""
        return "demand \(demandPhrase) needs \(instances(count)) \(capacityPhrase)\(cap)"
    }
}

/// What a ready forecast says about the demand ahead, in instances under the policy. The
/// forecast is of each bucket's mean; instances are planned for a high quantile of it
/// (`AutoscalePolicy.forecastDemand(mean:)`).
private struct ForecastOutlook {
    let policy: AutoscalePolicy
    let slotsPerInstance: Int
    /// The highest mean forecast from now through the lead, and the instances it needs.
    let demandWithinLead: Double
    let neededAtLead: Int
    /// The highest mean forecast from now through the scale-down window, and the instances it needs.
    let peakDemandInScaleDownWindow: Double
    let neededInScaleDownWindow: Int

    /// Nil until the forecast is ready.
    init?(history: BucketedDemandHistory, policy: AutoscalePolicy, slotsPerInstance: Int, now: Double) {
        guard let withinLead = history.peakDemand(through: now + policy.forecastLead),
            let peak = history.peakDemand(through: now + policy.scaleDownAfter)
        else { return nil }
        self.policy = policy
        self.slotsPerInstance = slotsPerInstance
        demandWithinLead = withinLead
        neededAtLead = policy.bounded(policy.instancesCarrying(demand: policy.forecastDemand(mean: withinLead), slotsPerInstance: slotsPerInstance))
        peakDemandInScaleDownWindow = peak
        neededInScaleDownWindow = policy.bounded(policy.instancesCarrying(demand: policy.forecastDemand(mean: peak), slotsPerInstance: slotsPerInstance))
    }

    /// "forecast demand up to 30.5 calls within 15.0 s needs 6 instances at 70% of 8 slots"
    var describedAtLead: String {
        "forecast demand up to \(oneDecimal(demandWithinLead)) calls within \(seconds(policy.forecastLead)) "
            + "needs \(instances(neededAtLead)) \(sizing(for: demandWithinLead))"
    }

    /// "forecast demand peaks at 30.5 calls within 60.0 s, which needs 6 instances at 70% of 8 slots"
    var describedPeak: String {
        "forecast demand peaks at \(oneDecimal(peakDemandInScaleDownWindow)) calls within \(seconds(policy.scaleDownAfter)), "
            + "which needs \(instances(neededInScaleDownWindow)) \(sizing(for: peakDemandInScaleDownWindow))"
    }

    /// "at 70% of 8 slots" when the target utilisation governs; "for 16.7 calls (mean + 2√mean)
    /// with all 4 slots in use" when the margin for chance does.
    private func sizing(for mean: Double) -> String {
        let planned = policy.forecastDemand(mean: mean)
        guard planned > mean else {
            return "at \(Int((policy.targetUtilization * 100).rounded()))% of \(slots(slotsPerInstance))"
        }
        let deviations = AutoscalePolicy.forecastDeviations
        let quantile = mean + deviations * mean.squareRoot()
        let multiple = deviations == deviations.rounded() ? "\(Int(deviations))" : "\(deviations)"
        return "for \(oneDecimal(quantile)) calls (mean + \(multiple)√mean) with all \(slots(slotsPerInstance)) in use"
    }
}

// MARK: - Words for numbers in reasons

private func instances(_ count: Int) -> String { count == 1 ? "1 instance" : "\(count) instances" }

/// "1 instance runs", "3 instances run"; "1 instance is starting", "2 instances are starting".
private func running(_ count: Int, _ doing: String? = nil) -> String {
    guard let doing else { return count == 1 ? "1 instance runs" : "\(count) instances run" }
    return count == 1 ? "1 instance is \(doing)" : "\(count) instances are \(doing)"
}

private func calls(_ count: Int) -> String { count == 1 ? "1 call" : "\(count) calls" }

/// "12 calls" for a whole number, "10.3 calls" otherwise.
private func calls(_ amount: Double) -> String {
    amount == amount.rounded() && abs(amount) < 1e15 ? calls(Int(amount)) : "\(oneDecimal(amount)) calls"
}

private func slots(_ count: Int) -> String { count == 1 ? "1 slot" : "\(count) slots" }

private func seconds(_ value: Double) -> String { "\(oneDecimal(value)) s" }

/// "200 ms", "1.5 ms", "2.3 s".
private func duration(_ value: Double) -> String {
    guard value < 1 else { return seconds(value) }
    let milliseconds = value * 1_000
    return milliseconds >= 10 ? "\(Int(milliseconds.rounded())) ms" : "\(oneDecimal(milliseconds)) ms"
}

/// One decimal from 1 up ("50.0"), two significant digits below ("0.20", "0.033").
private func figure(_ value: Double) -> String {
    guard value > 0, value < 1 else { return oneDecimal(value) }
    var decimals = 1
    var scaled = value * 10
    while scaled < 10, decimals < 9 {
        scaled *= 10
        decimals += 1
    }
    let digits = "\(Int(scaled.rounded()))"
    guard digits.count <= decimals else { return oneDecimal(value) }
    return "0." + String(repeating: "0", count: decimals - digits.count) + digits
}

/// `value` with one decimal ("5.0", "1.3"), without Foundation's formatters.
private func oneDecimal(_ value: Double) -> String {
    let tenths = (value * 10).rounded()
    guard tenths.isFinite, abs(tenths) < 1e15 else { return "\(value)" }
    let whole = Int(tenths)
    let sign = whole < 0 ? "-" : ""
    return "\(sign)\(abs(whole) / 10).\(abs(whole) % 10)"
}
