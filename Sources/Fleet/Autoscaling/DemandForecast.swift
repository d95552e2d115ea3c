/// Forecasts seasonal demand by additive Holt-Winters (triple exponential smoothing): a level, a
/// trend and one additive term per position in the season, each smoothed towards new values.
///
/// Values arrive one per bucket (a bucket's mean demand). The smoothing parameters are refitted
/// by grid search once per completed season, not on every value, so appending stays O(1)
/// amortised; history is bounded to the last `maximumSeasons` complete seasons plus the one in
/// progress.
public struct DemandForecast: Sendable {
    /// Buckets in one season (m).
    public let seasonLength: Int
    /// Complete seasons kept for fitting.
    public let maximumSeasons: Int

    /// The kept values, oldest first; the first is always the first bucket of a season.
    private(set) var history: [Double] = []
    /// Every value appended since the start, kept or not.
    private(set) var appendedCount = 0
    private var model: HoltWintersModel?

    public init(seasonLength m: Int, maximumSeasons: Int = 4) {
        precondition(m >= 2, "a season needs at least 2 buckets, not \(m)")
        // Two seasons initialise the model; fitting needs a season's one-step errors beyond them.
        precondition(maximumSeasons >= 2, "the forecast keeps at least 2 seasons, not \(maximumSeasons)")
        self.seasonLength = m
        self.maximumSeasons = maximumSeasons
    }

    /// Adds one bucket's mean demand.
    public mutating func append(_ value: Double) {
        precondition(value.isFinite, "demand must be a finite number, not \(value)")
        history.append(value)
        appendedCount += 1
        _ = model?.learn(value)
        if appendedCount % seasonLength == 0 {
            completeSeason()
        }
    }

    /// Whether two full seasons have been seen, so the model has been fitted.
    public var isReady: Bool { model != nil }

    /// Demand expected `h` buckets after the last appended one (`h` >= 1); nil before two full
    /// seasons have been seen. Never negative.
    public func forecast(stepsAhead h: Int) -> Double? {
        precondition(h >= 1, "a forecast looks at least one bucket ahead, not \(h)")
        return model.map { max(0, $0.forecast(stepsAhead: h)) }
    }

    /// The smoothing parameters of the last fit; nil before two full seasons have been seen.
    public var parameters: (alpha: Double, beta: Double, gamma: Double)? {
        model.map { ($0.parameters.alpha, $0.parameters.beta, $0.parameters.gamma) }
    }

    /// Seasons of values appended so far, for telling an operator how far the forecast has come.
    var seasonsSeen: Double { Double(appendedCount) / Double(seasonLength) }

    private mutating func completeSeason() {
        let surplus = history.count - maximumSeasons * seasonLength
        if surplus > 0 {
            // The history holds whole seasons here, so dropping whole seasons keeps it starting on
            // a season's first bucket.
            history.removeFirst(surplus)
        }
        if history.count >= 2 * seasonLength {
            model = HoltWintersModel.fitted(to: history, seasonLength: seasonLength)
        }
    }
}

/// The state of additive Holt-Winters after the values it has learnt, with its parameters.
struct HoltWintersModel: Sendable {
    struct Parameters: Sendable, Equatable {
        var alpha: Double
        var beta: Double
        var gamma: Double
    }

    /// The coarse grid searched on every refit: wide enough to tell a steady cycle from a drifting
    /// one, small enough (100 runs over at most a few hundred values) to refit in microseconds.
    static let parameterGrid: [Parameters] = {
        let smoothing = [0.1, 0.3, 0.5, 0.7, 0.9]
        let trendSmoothing = [0, 0.05, 0.1, 0.3]
        return smoothing.flatMap { alpha in
            trendSmoothing.flatMap { beta in smoothing.map { gamma in Parameters(alpha: alpha, beta: beta, gamma: gamma) } }
        }
    }()

    let parameters: Parameters
    private(set) var level: Double
    private(set) var trend: Double
    private(set) var seasonal: [Double]
    /// Position in the season of the next value.
    private var nextSlot: Int

    /// The model initialised from the first two seasons of `values` (which starts on a season's
    /// first bucket), positioned before the second season so that it can learn it.
    ///
    /// The trend is the change between the seasons' means per bucket; the level is the first
    /// season's mean carried along that trend to its last bucket; each seasonal term is the mean,
    /// over both seasons, of how far that bucket sits from the trend line.
    init(initialisedFrom values: [Double], seasonLength m: Int, parameters: Parameters) {
        let firstMean = values[0..<m].reduce(0, +) / Double(m)
        let secondMean = values[m..<2 * m].reduce(0, +) / Double(m)
        let trend = (secondMean - firstMean) / Double(m)
        let middle = Double(m - 1) / 2
        seasonal = (0..<m).map { slot in
            let offset = trend * (Double(slot) - middle)
            return ((values[slot] - firstMean - offset) + (values[m + slot] - secondMean - offset)) / 2
        }
        self.parameters = parameters
        self.trend = trend
        level = firstMean + trend * middle
        nextSlot = 0
    }

    /// The best model on the grid for `values`: the one with the least sum of squared one-step
    /// errors over everything after the first season, having learnt all of `values`.
    static func fitted(to values: [Double], seasonLength m: Int) -> HoltWintersModel {
        let runs = parameterGrid.lazy.map { parameters in
            var model = HoltWintersModel(initialisedFrom: values, seasonLength: m, parameters: parameters)
            var squaredError = 0.0
            for value in values[m...] {
                let error = model.learn(value)
                squaredError += error * error
            }
            return (model: model, squaredError: squaredError)
        }
        // The grid is never empty. Of equal fits the first on the grid, the smoothest, wins.
        return runs.min { $0.squaredError < $1.squaredError }!.model
    }

    /// Takes in the next value and returns how far the one-step forecast missed it.
    @discardableResult
    mutating func learn(_ value: Double) -> Double {
        let (alpha, beta, gamma) = (parameters.alpha, parameters.beta, parameters.gamma)
        let error = value - (level + trend + seasonal[nextSlot])
        let previousLevel = level
        level = alpha * (value - seasonal[nextSlot]) + (1 - alpha) * (level + trend)
        trend = beta * (level - previousLevel) + (1 - beta) * trend
        seasonal[nextSlot] = gamma * (value - level) + (1 - gamma) * seasonal[nextSlot]
        nextSlot = (nextSlot + 1) % seasonal.count
        return error
    }

    /// The value expected `h` steps after the last one learnt; may be negative.
    func forecast(stepsAhead h: Int) -> Double {
        level + Double(h) * trend + seasonal[(nextSlot + h - 1) % seasonal.count]
    }
}

/// Turns timed demand observations into the per-bucket means a `DemandForecast` learns from, and
/// answers forecasts for points in time rather than bucket steps.
struct BucketedDemandHistory: Sendable {
    let bucketLength: Double
    private(set) var forecast: DemandForecast
    /// The bucket the observations now fall in; it is appended once a later bucket begins.
    private var openBucket: Int?
    /// The open bucket's demand × the time it stands for, and that time.
    private var openSum = 0.0
    private var openWeight = 0.0

    init(bucketLength: Double, bucketsPerSeason: Int) {
        self.bucketLength = bucketLength
        forecast = DemandForecast(seasonLength: bucketsPerSeason)
    }

    /// Records a demand seen at a moment; each such observation weighs as much as one second.
    mutating func record(_ demand: Double, at now: Double) {
        record(work: demand, over: 1, at: now)
    }

    /// Records `work` slot-seconds of demand that arrived over the `seconds` ending at `now`:
    /// the bucket's mean is weighted by time, so a short interval counts for little.
    mutating func record(work: Double, over seconds: Double, at now: Double) {
        guard seconds > 0 else { return }
        let bucket = self.bucket(at: now)
        guard let open = openBucket, bucket > open else {
            if openBucket == nil { openBucket = bucket }
            openSum += work
            openWeight += seconds
            return
        }
        let mean = openSum / openWeight
        forecast.append(mean)
        let unobserved = bucket - open - 1
        if unobserved >= forecast.seasonLength {
            // A season without observations leaves nothing to carry forward: start over rather
            // than teach the model a season of made-up values.
            forecast = DemandForecast(seasonLength: forecast.seasonLength, maximumSeasons: forecast.maximumSeasons)
        } else {
            // Buckets nobody observed keep the seasons aligned; the last demand seen is the best
            // guess for them.
            for _ in 0..<unobserved { forecast.append(mean) }
        }
        openBucket = bucket
        openSum = work
        openWeight = seconds
    }

    /// The highest demand forecast for the buckets from the open one through the one holding
    /// `end`, looking at most one season ahead: beyond that the season repeats.
    func peakDemand(through end: Double) -> Double? {
        guard let open = openBucket, forecast.isReady else { return nil }
        let steps = min(max(bucket(at: end) - open, 0), forecast.seasonLength) + 1
        return (1...steps).compactMap { forecast.forecast(stepsAhead: $0) }.max()
    }

    private func bucket(at time: Double) -> Int {
        Int((time / bucketLength).rounded(.down))
    }
}
