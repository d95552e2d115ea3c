import ArgumentParser
import Fleet
import Foundation
import Histogram

// Autoscaling in virtual time: the real `Autoscaler` of the Fleet module decides, fed once a
// second from a discrete-event simulation of calls arriving, waiting and being served by a fleet
// of instances that take a while to start. See docs/benchmarks-autoscaling.md.

/// A fixed fleet, reactive scaling and predictive scaling side by side, under a tenfold step and
/// a daily-like cycle of demand.
struct AutoscaleBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscale",
        abstract: "Fixed, reactive and predictive fleets under a tenfold step and a daily cycle, simulated in virtual time.",
        discussion: """
            No gateway runs: calls arrive as a Poisson process whose rate changes each second of virtual \
            time (seeded, so every run and every fleet sees the same calls with the same service times), \
            wait first come first served for one of the fleet's call slots (--slots per instance), and \
            hold it for --service-time. An instance is ready --cold-start seconds after it is asked for; \
            one removed stops taking calls and finishes those it has. Once a second the fleet is \
            described to Fleet's Autoscaler (DemandSample: ready, starting, slots, in flight, waiting, \
            and the arrival side as the gateway derives it: arrivals = calls finished + the change in \
            in flight + waiting, and the mean service time of the calls finished) and its decision, if \
            any, is carried out. The policies' coldStart is --cold-start, as the gateway measures it.

            Loads: step (--step-base calls/s, times --step-factor from --step-at for --step-hold \
            seconds of each --step-season) and daily (between --trough and --peak calls/s, a morning \
            and an evening peak in each --season, with --noise). Each runs for --seasons seasons and \
            only the last is measured, so that the predictive policy has its two seasons of history \
            and one to settle. The fixed fleet is sized for the load's highest rate: \
            ceil(peak × service time / (slots × target utilisation)), unless --fixed-instances.
            """
    )

    @Option(help: "step, daily or both.")
    var load: String = "both"

    @Option(help: "Seasons simulated of each load; only the last is measured (predictive needs 2 before it forecasts).")
    var seasons: Int = 4

    @Option(help: "Seed of the arrivals, the service times and the noise.")
    var seed: Int = 1

    @Option(help: "Mean seconds a call holds its slot.")
    var serviceTime: Double = 0.2

    @Option(help: "fixed (every call takes --service-time) or exponential (with that mean).")
    var serviceDistribution: String = "fixed"

    @Option(help: "Calls one instance serves at once (maxConcurrency).")
    var slots: Int = 4

    @Option(help: "Seconds from the decision to start an instance until it takes calls.")
    var coldStart: Double = 3

    @Option(help: "The latency objective in seconds (wait + service).")
    var objective: Double = 1

    @Option(name: .customLong("min"), help: "autoscale.min of the reactive and predictive policies.")
    var minimum: Int = 1

    @Option(name: .customLong("max"), help: "autoscale.max.")
    var maximum: Int = 40

    @Option(help: "autoscale.targetUtilization; also the utilisation the fixed fleet is sized for.")
    var targetUtilization: Double = 0.7

    @Option(help: "autoscale.scaleUpAfter, seconds.")
    var scaleUpAfter: Double = 5

    @Option(help: "autoscale.scaleDownAfter, seconds.")
    var scaleDownAfter: Double = 60

    @Option(help: "autoscale.cooldown, seconds.")
    var cooldown: Double = 10

    @Option(help: "autoscale.seasonBuckets of the predictive policy (its season is the load's).")
    var buckets: Int = 96

    @Option(help: "Instances of the fixed fleet; by default sized for the load's highest rate.")
    var fixedInstances: Int?

    @Option(help: "Step load: calls per second before and after the step.")
    var stepBase: Double = 5

    @Option(help: "Step load: how many times the base rate the step holds.")
    var stepFactor: Double = 10

    @Option(help: "Step load: seconds of one season; the step comes once a season.")
    var stepSeason: Double = 3_600

    @Option(help: "Step load: seconds into each season when the rate steps up.")
    var stepAt: Double = 1_800

    @Option(help: "Step load: seconds the stepped-up rate holds.")
    var stepHold: Double = 600

    @Option(help: "Daily load: seconds of one season (a day by default).")
    var season: Double = 86_400

    @Option(help: "Daily load: calls per second at night.")
    var trough: Double = 5

    @Option(help: "Daily load: calls per second at the morning peak.")
    var peak: Double = 50

    @Option(help: "Daily load: relative noise: each season's peaks move by up to this share, and each minute's rate by about it.")
    var noise: Double = 0.1

    @Flag(
        inversion: .prefixedNo,
        help: "Give the autoscaler the arrivals and mean service time of each second; without, only in flight and waiting.")
    var arrivals = true

    @Flag(help: "Print the figures as JSON (progress goes to standard error).")
    var json = false

    @Flag(help: "Print every decision of the measured season, with the autoscaler's reason.")
    var decisions = false

    func validate() throws {
        guard ["step", "daily", "both"].contains(load) else { throw ValidationError("--load: step, daily or both, not \(load)") }
        guard ["fixed", "exponential"].contains(serviceDistribution) else {
            throw ValidationError("--service-distribution: fixed or exponential, not \(serviceDistribution)")
        }
        guard seasons >= 1 else { throw ValidationError("--seasons must be at least 1") }
        guard serviceTime > 0, slots >= 1, coldStart >= 0, objective > 0 else {
            throw ValidationError("--service-time and --objective must be above 0, --slots at least 1, --cold-start 0 or more")
        }
        guard stepBase >= 0, stepFactor > 0, stepSeason >= 60, stepAt >= 0, stepHold > 0, stepAt + stepHold <= stepSeason else {
            throw ValidationError("the step (--step-at + --step-hold) must fit in --step-season (at least 60 s), with rates 0 or more")
        }
        guard season >= 60, trough >= 0, peak >= trough, noise >= 0, noise < 1 else {
            throw ValidationError("--season at least 60 s, 0 ≤ --trough ≤ --peak, 0 ≤ --noise < 1")
        }
        if let fixedInstances, fixedInstances < 1 { throw ValidationError("--fixed-instances must be at least 1") }
        let problems = policy(season: season, predictive: true).problems
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
    }

    func run() throws {
        let service: SimulatedServiceTime = serviceDistribution == "fixed" ? .fixed(serviceTime) : .exponential(mean: serviceTime)
        var profiles: [DemandProfile] = []
        if load != "daily" {
            profiles.append(
                .step(base: stepBase, factor: stepFactor, season: stepSeason, at: stepAt, hold: stepHold, seasons: seasons))
        }
        if load != "step" {
            profiles.append(
                .daily(trough: trough, peak: peak, season: season, seasons: seasons, noise: noise, seed: UInt64(truncatingIfNeeded: seed) &+ 2))
        }
        if seasons < 3 { report("with fewer than 3 seasons the predictive policy has no settled forecast in the measured one") }

        var loads: [AutoscaleLoadReport] = []
        for profile in profiles {
            let sizedFor = profile.peakRate
            let sized = Int((sizedFor * serviceTime / (Double(slots) * targetUtilization) - 1e-9).rounded(.up))
            let fixed = fixedInstances ?? max(sized, 1)
            let sizing =
                fixedInstances != nil
                ? "\(fixed) instances (--fixed-instances)"
                : "\(fixed) instances = ceil(peak \(oneDecimal(sizedFor)) calls/s × \(seconds(serviceTime)) / (\(slots) slots × \(targetUtilization)))"
            report("\(profile.name): \(profile.summary); \(Int(profile.totalSeconds)) s simulated, the last \(Int(profile.season)) s measured; fixed fleet: \(sizing)")
            var outcomes: [ScalingOutcome] = []
            for (mode, scaling) in [
                ("fixed", FleetScaling.fixed(instances: fixed)),
                ("reactive", .autoscaled(policy(season: profile.season, predictive: false))),
                ("predictive", .autoscaled(policy(season: profile.season, predictive: true))),
            ] {
                let started = ContinuousClock.now
                var simulation = FleetSimulation(
                    profile: profile, scaling: scaling, slots: slots, service: service, coldStart: coldStart, objective: objective,
                    targetUtilization: targetUtilization, samplesArrivals: arrivals, seed: UInt64(truncatingIfNeeded: seed))
                var outcome = simulation.run(mode: mode)
                let elapsed = ContinuousClock.now - started
                outcome.wallSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                report("  \(mode): \(grouped(Double(simulation.arrivals))) calls simulated in \(String(format: "%.2f", outcome.wallSeconds)) s")
                if decisions {
                    for decision in simulation.decisionLog {
                        let at = decision.at - profile.measuredFrom
                        report("    \(seconds(at)): \(decision.kind.rawValue) \(decision.from) → \(decision.to): \(decision.reason)")
                    }
                }
                outcomes.append(outcome)
            }
            loads.append(
                AutoscaleLoadReport(
                    load: profile.name, description: profile.summary, season: profile.season, seasons: profile.seasons,
                    measuredFrom: profile.measuredFrom, measuredUntil: profile.measuredUntil, peakRate: profile.peakRate,
                    fixedInstances: fixed, fixedSizing: sizing, modes: outcomes))
        }

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let document = AutoscaleReport(parameters: parameters, loads: loads)
            print(String(decoding: try encoder.encode(document), as: UTF8.self))
            return
        }
        for load in loads { printTable(load) }
    }

    private func policy(season: Double, predictive: Bool) -> AutoscalePolicy {
        AutoscalePolicy(
            minimum: minimum, maximum: maximum, targetUtilization: targetUtilization, scaleUpAfter: scaleUpAfter,
            scaleDownAfter: scaleDownAfter, cooldown: cooldown, coldStart: coldStart, predictive: predictive, seasonLength: season,
            seasonBuckets: buckets)
    }

    /// The options of the run, as given or defaulted.
    private var parameters: [String: String] {
        [
            "load": load, "seed": "\(seed)", "seasons": "\(seasons)", "serviceTime": "\(serviceTime)",
            "serviceDistribution": serviceDistribution, "slots": "\(slots)", "coldStart": "\(coldStart)", "objective": "\(objective)",
            "min": "\(minimum)", "max": "\(maximum)", "targetUtilization": "\(targetUtilization)", "scaleUpAfter": "\(scaleUpAfter)",
            "scaleDownAfter": "\(scaleDownAfter)", "cooldown": "\(cooldown)", "buckets": "\(buckets)",
            "fixedInstances": fixedInstances.map { "\($0)" } ?? "sized for the peak", "stepBase": "\(stepBase)", "stepFactor": "\(stepFactor)",
            "stepSeason": "\(stepSeason)", "stepAt": "\(stepAt)", "stepHold": "\(stepHold)", "season": "\(season)", "trough": "\(trough)",
            "peak": "\(peak)", "noise": "\(noise)", "arrivals": "\(arrivals)",
        ]
    }

    /// Progress and notes: on standard output, or standard error when the figures go out as JSON.
    private func report(_ line: String) {
        if json {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        } else {
            print(line)
        }
    }

    private func printTable(_ load: AutoscaleLoadReport) {
        let limit = seconds(objective)
        print()
        print("\(load.load): \(load.description); measured \(grouped(load.measuredFrom))–\(grouped(load.measuredUntil)) s; fixed fleet \(load.fixedSizing)")
        print()
        print(
            "| fleet | p50 ms | p99 ms | calls over \(limit) | 1-min windows with p99 over \(limit) | to capacity after the step | "
                + "short of capacity | instance-seconds | against fixed | peak instances | decisions |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        let fixed = load.modes.first { $0.mode == "fixed" }
        for row in load.modes {
            let toCapacity: String =
                switch (load.load == "step", row.secondsToCapacity) {
                case (false, _): "—"
                case (true, .some(let value)): seconds(value)
                case (true, .none): "not reached"
                }
            print(
                "| \(row.mode) | \(format(row.p50Milliseconds)) | \(format(row.p99Milliseconds)) | "
                    + "\(grouped(Double(row.callsOverObjective))) of \(grouped(Double(row.calls))) (\(percent(row.shareOverObjective))) | "
                    + "\(row.minuteWindowsOverObjective) of \(row.minuteWindows) | \(toCapacity) | \(row.secondsShortOfCapacity) s | "
                    + "\(grouped(row.instanceSeconds)) | \(fixed.map { ratio(row.instanceSeconds, $0.instanceSeconds) } ?? "—") | "
                    + "\(row.peakInstances) | \(row.decisionSummary) |")
        }
    }
}

// MARK: - What is reported

struct AutoscaleReport: Encodable {
    var parameters: [String: String]
    var loads: [AutoscaleLoadReport]
}

struct AutoscaleLoadReport: Encodable {
    var load: String
    var description: String
    var season: Double
    var seasons: Int
    var measuredFrom: Double
    var measuredUntil: Double
    var peakRate: Double
    var fixedInstances: Int
    var fixedSizing: String
    var modes: [ScalingOutcome]
}

/// One fleet's figures over the measured season.
struct ScalingOutcome: Encodable {
    var mode: String
    /// Calls that arrived in the measured season.
    var calls = 0
    var p50Milliseconds = 0.0
    var p99Milliseconds = 0.0
    var callsOverObjective = 0
    var shareOverObjective = 0.0
    /// Minutes (by arrival) with at least one call, and those whose p99 (nearest rank) is over the objective.
    var minuteWindows = 0
    var minuteWindowsOverObjective = 0
    /// From the step until ready slots at the target utilisation carry the stepped-up demand; 0
    /// when they already did; nil when they never did while the step held, or the load has no step.
    var secondsToCapacity: Double?
    /// Seconds (sampled at each whole second) when ready slots at the target utilisation carried
    /// less than the load's rate × the mean service time.
    var secondsShortOfCapacity = 0
    /// The integral of instances starting, ready or draining.
    var instanceSeconds = 0.0
    var peakInstances = 0
    /// Decisions by kind (scaleUp, scaleDown, coldStart, predictive) in the measured season.
    var decisions: [String: Int] = [:]
    var wallSeconds = 0.0

    /// "7: 2 scaleUp, 3 scaleDown, 2 predictive"
    var decisionSummary: String {
        let total = decisions.values.reduce(0, +)
        guard total > 0 else { return "0" }
        return "\(total): " + decisions.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    }
}

// MARK: - Loads

/// Calls per second, constant within each second of virtual time, over whole seasons.
struct DemandProfile {
    let name: String
    let summary: String
    let season: Double
    let seasons: Int
    /// The rate of each second of the run.
    let rates: [Double]
    /// When the step of the measured season comes, and when it ends; nil for a load without one.
    let step: Range<Double>?

    var totalSeconds: Double { Double(rates.count) }
    var measuredFrom: Double { season * Double(seasons - 1) }
    var measuredUntil: Double { season * Double(seasons) }
    var peakRate: Double { rates.max() ?? 0 }

    /// `base` calls/s, `base × factor` from `at` for `hold` seconds of every season.
    static func step(base: Double, factor: Double, season: Double, at: Double, hold: Double, seasons: Int) -> DemandProfile {
        let count = Int((season * Double(seasons)).rounded(.up))
        let rates = (0..<count).map { second -> Double in
            let phase = Double(second).truncatingRemainder(dividingBy: season)
            return phase >= at && phase < at + hold ? base * factor : base
        }
        let stepStart = season * Double(seasons - 1) + at
        return DemandProfile(
            name: "step",
            summary: "\(oneDecimal(base)) calls/s, ×\(oneDecimal(factor)) = \(oneDecimal(base * factor)) calls/s from \(seconds(at)) "
                + "for \(seconds(hold)) of each \(seconds(season)) season",
            season: season, seasons: seasons, rates: rates, step: stepStart..<(stepStart + hold))
    }

    /// Two peaks a season: the morning one (at 9/24 of the season, `peak` calls/s) and a lower,
    /// wider evening one (at 20/24, 80% as high), over `trough` calls/s at night. Noise: each
    /// season's rise above the trough is scaled by a factor within 1 ± `noise`, and each minute's
    /// rate by 1 + `noise` × an autocorrelated normal (0.9 from one minute to the next).
    static func daily(trough: Double, peak: Double, season: Double, seasons: Int, noise: Double, seed: UInt64) -> DemandProfile {
        func bump(_ phase: Double, centre: Double, width: Double) -> Double {
            // Wrapped around the season, so that the night joins the next day smoothly.
            (-1...1).reduce(0.0) { sum, shift in
                let distance = (phase - centre - Double(shift)) / width
                return sum + exp(-0.5 * distance * distance)
            }
        }
        func shape(_ phase: Double) -> Double {
            bump(phase, centre: 9.0 / 24, width: 1.5 / 24) + 0.8 * bump(phase, centre: 20.0 / 24, width: 2.0 / 24)
        }
        let highest = (0..<1_000).map { shape(Double($0) / 1_000) }.max() ?? 1

        var random = Xoshiro256StarStar(seed: seed)
        let seasonFactors = (0..<seasons).map { _ in 1 + noise * (2 * random.uniform() - 1) }
        let count = Int((season * Double(seasons)).rounded(.up))
        var minuteNoise: [Double] = []
        var level = random.normal()
        for _ in 0...(count / 60) {
            minuteNoise.append(level)
            level = 0.9 * level + (1 - 0.81).squareRoot() * random.normal()
        }
        let rates = (0..<count).map { second -> Double in
            let time = Double(second)
            let seasonIndex = min(Int(time / season), seasons - 1)
            let phase = time.truncatingRemainder(dividingBy: season) / season
            let clean = trough + (peak - trough) * seasonFactors[seasonIndex] * shape(phase) / highest
            return max(0, clean * (1 + noise * minuteNoise[second / 60]))
        }
        return DemandProfile(
            name: "daily",
            summary: "\(oneDecimal(trough))–\(oneDecimal(peak)) calls/s, peaks at 9/24 and 20/24 of each \(seconds(season)) season, "
                + "noise \(Int((noise * 100).rounded()))%",
            season: season, seasons: seasons, rates: rates, step: nil)
    }
}

enum SimulatedServiceTime {
    case fixed(Double)
    case exponential(mean: Double)

    var mean: Double {
        switch self {
        case .fixed(let value), .exponential(let value): value
        }
    }
}

enum FleetScaling {
    case fixed(instances: Int)
    case autoscaled(AutoscalePolicy)
}

// MARK: - The simulation

/// A fleet of instances with call slots, a first-come first-served queue in front of them, and
/// (unless fixed) the real `Autoscaler` observing them once a second. Virtual time, in seconds.
struct FleetSimulation {
    private enum Phase { case starting, ready, draining, gone }

    private struct Instance {
        var phase: Phase
        var readyAt: Double
        var busy = 0
    }

    private let profile: DemandProfile
    private let slots: Int
    private let service: SimulatedServiceTime
    private let coldStart: Double
    private let objective: Double
    private let targetUtilization: Double
    private let samplesArrivals: Bool
    private var autoscaler: Autoscaler?

    private var arrivalRandom: Xoshiro256StarStar
    private var serviceRandom: Xoshiro256StarStar

    private var instances: [Instance] = []
    private var reusable: [Int] = []
    /// Ready instances that take calls.
    private var active: [Int] = []
    /// Instances starting, the soonest ready first (every cold start takes as long).
    private var starting: [Int] = []
    private var freeSlots = 0
    private var inFlight = 0
    private var waiting = ArrivalQueue()
    private var completions = CompletionHeap()
    /// Instances starting, ready or draining.
    private var held = 0
    private var accountedUntil = 0.0
    /// What the gateway reads between two samples: calls finished and the time they spent on
    /// their instances, and the calls in flight and waiting at the previous sample.
    private var finishedSinceSample = 0
    private var serviceSecondsSinceSample = 0.0
    private var demandAtLastSample: Int?
    private var lastSampleAt = 0.0

    private(set) var arrivals = 0
    /// The decisions of the measured season, in order.
    private(set) var decisionLog: [ScaleDecision] = []
    private var outcome = ScalingOutcome(mode: "")
    private var latencies = Histogram<UInt64>(highestTrackableValue: 86_400_000_000)
    private var minuteCalls: [Int]
    private var minuteOverObjective: [Int]

    init(
        profile: DemandProfile, scaling: FleetScaling, slots: Int, service: SimulatedServiceTime, coldStart: Double, objective: Double,
        targetUtilization: Double, samplesArrivals: Bool, seed: UInt64
    ) {
        self.profile = profile
        self.slots = slots
        self.service = service
        self.coldStart = coldStart
        self.objective = objective
        self.targetUtilization = targetUtilization
        self.samplesArrivals = samplesArrivals
        // The same seed for every fleet: the same calls arrive, and each takes as long, whatever
        // the fleet does.
        arrivalRandom = Xoshiro256StarStar(seed: seed)
        serviceRandom = Xoshiro256StarStar(seed: seed &+ 1)
        let minutes = Int((profile.season / 60).rounded(.up))
        minuteCalls = Array(repeating: 0, count: minutes)
        minuteOverObjective = Array(repeating: 0, count: minutes)
        let initial: Int
        switch scaling {
        case .fixed(let count):
            initial = count
        case .autoscaled(let policy):
            autoscaler = Autoscaler(policy: policy)
            initial = policy.minimum
        }
        for _ in 0..<initial {
            instances.append(Instance(phase: .ready, readyAt: 0))
            active.append(instances.count - 1)
        }
        freeSlots = initial * slots
        held = initial
    }

    /// Runs every season, then lets the calls that arrived finish, and returns the figures of the
    /// measured season.
    mutating func run(mode: String) -> ScalingOutcome {
        outcome = ScalingOutcome(mode: mode)
        let seconds = profile.rates.count
        tick(at: 0)
        var second = 0
        while true {
            let boundary = Double(second + 1)
            let rate = second < seconds ? profile.rates[second] : 0
            var arrival = nextArrival(after: Double(second), rate: rate, before: boundary)
            // Within the second: instances becoming ready, then calls finishing, then calls
            // arriving, in time order; readiness and finishes at the boundary come before its tick.
            while true {
                let ready = starting.first.map { instances[$0].readyAt } ?? .infinity
                let completion = completions.first?.time ?? .infinity
                if ready <= boundary, ready <= completion, ready <= arrival {
                    becomeReady(at: ready)
                } else if completion <= boundary, completion <= arrival {
                    complete(at: completion)
                } else if arrival < boundary {
                    arrive(at: arrival)
                    arrival = nextArrival(after: arrival, rate: rate, before: boundary)
                } else {
                    break
                }
            }
            second += 1
            if second >= seconds, waiting.isEmpty, inFlight == 0 { break }
            tick(at: Double(second))
        }
        account(until: profile.measuredUntil)

        outcome.p50Milliseconds = Double(latencies.valueAtPercentile(50)) / 1_000
        outcome.p99Milliseconds = Double(latencies.valueAtPercentile(99)) / 1_000
        outcome.shareOverObjective = outcome.calls > 0 ? Double(outcome.callsOverObjective) / Double(outcome.calls) : 0
        for (calls, over) in zip(minuteCalls, minuteOverObjective) where calls > 0 {
            outcome.minuteWindows += 1
            // Nearest rank: the p99 is the ceil(0.99 n)-th smallest latency.
            if over > calls - (99 * calls + 99) / 100 { outcome.minuteWindowsOverObjective += 1 }
        }
        return outcome
    }

    private mutating func nextArrival(after time: Double, rate: Double, before boundary: Double) -> Double {
        guard rate > 0 else { return .infinity }
        // A Poisson process is memoryless: a gap that crosses the boundary is drawn again from
        // there at the next second's rate.
        let next = time + arrivalRandom.exponential(mean: 1 / rate)
        return next < boundary ? next : .infinity
    }

    /// Whether `time` falls in the measured season.
    private func isMeasuring(_ time: Double) -> Bool { time >= profile.measuredFrom && time < profile.measuredUntil }

    // MARK: Events

    private mutating func arrive(at time: Double) {
        arrivals += 1
        if freeSlots > 0 {
            dispatch(arrivedAt: time, at: time, on: leastLoaded())
        } else {
            waiting.append(time)
        }
    }

    private mutating func complete(at time: Double) {
        let finished = completions.removeFirst()
        let id = finished.instance
        instances[id].busy -= 1
        inFlight -= 1
        finishedSinceSample += 1
        serviceSecondsSinceSample += finished.duration
        switch instances[id].phase {
        case .ready:
            freeSlots += 1
            // Calls wait only while no slot is free, so this is the one slot to take.
            if let arrived = waiting.popFirst() { dispatch(arrivedAt: arrived, at: time, on: id) }
        case .draining:
            if instances[id].busy == 0 { retire(id, at: time) }
        case .starting, .gone:
            preconditionFailure("a call finished on an instance that was not serving")
        }
    }

    private mutating func becomeReady(at time: Double) {
        let id = starting.removeFirst()
        instances[id].phase = .ready
        active.append(id)
        freeSlots += slots
        for _ in 0..<slots {
            guard let arrived = waiting.popFirst() else { break }
            dispatch(arrivedAt: arrived, at: time, on: id)
        }
        checkCapacity(at: time)
    }

    private mutating func dispatch(arrivedAt arrival: Double, at time: Double, on id: Int) {
        let duration: Double =
            switch service {
            case .fixed(let value): value
            case .exponential(let mean): serviceRandom.exponential(mean: mean)
            }
        instances[id].busy += 1
        freeSlots -= 1
        inFlight += 1
        completions.insert(CallCompletion(time: time + duration, duration: duration, instance: id))

        guard isMeasuring(arrival) else { return }
        let latency = time - arrival + duration
        _ = latencies.record(UInt64(min(latency * 1e6, 86_400e6)))
        outcome.calls += 1
        let minute = min(Int((arrival - profile.measuredFrom) / 60), minuteCalls.count - 1)
        minuteCalls[minute] += 1
        if latency > objective {
            outcome.callsOverObjective += 1
            minuteOverObjective[minute] += 1
        }
    }

    /// The ready instance with the fewest calls, as the registry picks; only called with a slot free.
    private func leastLoaded() -> Int {
        var best = active[0]
        var fewest = Int.max
        for id in active where instances[id].busy < fewest {
            best = id
            fewest = instances[id].busy
            if fewest == 0 { break }
        }
        return best
    }

    // MARK: Scaling

    private mutating func tick(at time: Double) {
        let second = Int(time)
        if isMeasuring(time), second < profile.rates.count {
            let carried = Double(active.count * slots) * targetUtilization
            if carried < profile.rates[second] * service.mean - 1e-9 { outcome.secondsShortOfCapacity += 1 }
        }
        checkCapacity(at: time)
        let sample = describe(at: time)
        // Through optional chaining, so that the autoscaler is changed in place, not copied.
        if let decision = autoscaler?.observe(sample, at: time) {
            if isMeasuring(time) {
                outcome.decisions[decision.kind.rawValue, default: 0] += 1
                decisionLog.append(decision)
            }
            scale(to: decision.to, at: time)
        }
        if isMeasuring(time) { outcome.peakInstances = max(outcome.peakInstances, held) }
    }

    /// The fleet as the gateway describes it. Arrivals are not counted directly but derived, as
    /// the gateway derives them from counters it has: the calls finished since the last sample
    /// plus the change in those in flight and waiting; the mean service time is that of the
    /// calls finished, nil when none did.
    private mutating func describe(at time: Double) -> DemandSample {
        let demand = inFlight + waiting.count
        var sample = DemandSample(
            ready: active.count, starting: starting.count, slotsPerInstance: slots, inFlight: inFlight, waiting: waiting.count)
        if samplesArrivals, let previous = demandAtLastSample {
            sample.arrivals = max(finishedSinceSample + demand - previous, 0)
            sample.meanServiceSeconds = finishedSinceSample > 0 ? serviceSecondsSinceSample / Double(finishedSinceSample) : nil
            sample.interval = time - lastSampleAt
        }
        demandAtLastSample = demand
        lastSampleAt = time
        finishedSinceSample = 0
        serviceSecondsSinceSample = 0
        return sample
    }

    /// Time to capacity after the measured step: the first moment, from the step on, when ready
    /// slots at the target utilisation carry the step's demand.
    private mutating func checkCapacity(at time: Double) {
        guard let step = profile.step, outcome.secondsToCapacity == nil, step.contains(time) else { return }
        let demand = profile.rates[Int(time)] * service.mean
        if Double(active.count * slots) * targetUtilization >= demand - 1e-9 { outcome.secondsToCapacity = time - step.lowerBound }
    }

    private mutating func scale(to count: Int, at time: Double) {
        let current = active.count + starting.count
        if count > current {
            account(until: time)
            for _ in current..<count {
                let instance = Instance(phase: .starting, readyAt: time + coldStart)
                let id: Int
                if let free = reusable.popLast() {
                    instances[free] = instance
                    id = free
                } else {
                    instances.append(instance)
                    id = instances.count - 1
                }
                starting.append(id)
                held += 1
            }
        } else if count < current {
            var surplus = current - count
            // Instances still starting go first (the last asked for first), then ready ones, the
            // idlest first; one with calls drains: it takes no more and finishes those it has.
            while surplus > 0, let id = starting.popLast() {
                retire(id, at: time)
                surplus -= 1
            }
            guard surplus > 0 else { return }
            let chosen = active.sorted { instances[$0].busy < instances[$1].busy }.prefix(surplus)
            for id in chosen {
                active.removeAll { $0 == id }
                freeSlots -= slots - instances[id].busy
                if instances[id].busy == 0 {
                    retire(id, at: time)
                } else {
                    instances[id].phase = .draining
                }
            }
        }
    }

    private mutating func retire(_ id: Int, at time: Double) {
        account(until: time)
        instances[id].phase = .gone
        reusable.append(id)
        held -= 1
    }

    /// Adds the instance-seconds held since the last change, within the measured season.
    private mutating func account(until time: Double) {
        let from = max(accountedUntil, profile.measuredFrom)
        let until = min(time, profile.measuredUntil)
        if until > from { outcome.instanceSeconds += Double(held) * (until - from) }
        accountedUntil = max(accountedUntil, time)
    }
}

/// Arrival times of waiting calls, first come first served.
private struct ArrivalQueue {
    private var times: [Double] = []
    private var head = 0

    var isEmpty: Bool { head == times.count }
    var count: Int { times.count - head }

    mutating func append(_ time: Double) { times.append(time) }

    mutating func popFirst() -> Double? {
        guard head < times.count else { return nil }
        let time = times[head]
        head += 1
        if head == times.count {
            times.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 4_096, head * 2 >= times.count {
            times.removeFirst(head)
            head = 0
        }
        return time
    }
}

/// A call in service: when it finishes, how long it holds its slot, and on which instance.
private struct CallCompletion {
    var time: Double
    var duration: Double
    var instance: Int
}

/// Calls in service by when they finish, the soonest first: a binary min-heap.
private struct CompletionHeap {
    private var items: [CallCompletion] = []

    var first: CallCompletion? { items.first }

    mutating func insert(_ item: CallCompletion) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].time < items[parent].time else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeFirst() -> CallCompletion {
        let first = items[0]
        let last = items.removeLast()
        guard !items.isEmpty else { return first }
        items[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < items.count else { break }
            let right = left + 1
            let smaller = right < items.count && items[right].time < items[left].time ? right : left
            guard items[smaller].time < items[parent].time else { break }
            items.swapAt(parent, smaller)
            parent = smaller
        }
        return first
    }
}

/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64: fast, and the same numbers on
/// every platform, which Foundation's generators do not promise.
struct Xoshiro256StarStar {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    init(seed: UInt64) {
        var seeding = SplitMix64(seed: seed)
        state = (seeding.next(), seeding.next(), seeding.next(), seeding.next())
    }

    mutating func next() -> UInt64 {
        let result = rotate(state.1 &* 5, 7) &* 9
        let shifted = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= shifted
        state.3 = rotate(state.3, 45)
        return result
    }

    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    mutating func exponential(mean: Double) -> Double { -mean * log(1 - uniform()) }

    /// Standard normal, by Box and Muller.
    mutating func normal() -> Double {
        let radius = (-2 * log(1 - uniform())).squareRoot()
        return radius * cos(2 * Double.pi * uniform())
    }

    private func rotate(_ value: UInt64, _ bits: UInt64) -> UInt64 { (value << bits) | (value >> (64 - bits)) }
}

// MARK: - Words for numbers

private func seconds(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? "\(Int(value)) s" : String(format: "%.3g s", value)
}

private func oneDecimal(_ value: Double) -> String { String(format: "%.1f", value) }

/// "1.38%"; a share under 0.01% with two significant digits ("0.00018%") rather than as none.
private func percent(_ share: Double) -> String {
    share > 0 && share < 0.0001 ? String(format: "%.2g%%", share * 100) : String(format: "%.2f%%", share * 100)
}
