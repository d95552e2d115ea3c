import Access
import ArgumentParser
import Backend
import Foundation
import Histogram
import NIOCore
import Redis
import Synchronization

// The cost of a rate-limit decision: `LocalRateLimiter` in this process (nanoseconds, on the
// request path's thread) and `RedisRateLimiter` through Redis (microseconds, a round trip).

/// ns per decision of the local limiter, µs per decision through Redis.
struct LimiterBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "limiter",
        abstract: "Cost of a rate-limit decision: LocalRateLimiter (ns) and RedisRateLimiter (µs).",
        discussion: """
            Local: --local-decisions decisions per thread on one LocalRateLimiter (16 shards, the \
            monotonic clock read on each decision), on 1 and on --threads threads, for 1 key (shared by \
            the threads) and for --keys keys taken in turn (split between the threads), on the allowed path \
            (a limit never reached), the refused path (every key already spent), and the allowed path \
            of keys whose TAT has lapsed between their decisions (swept, then inserted again). The figure is wall \
            time per decision on each thread; with threads, the total decisions per second too. Rows \
            of a decision's parts timed alone (the clock, the key's hash, the lock) show where it goes.

            Redis: RedisRateLimiter on a RedisClient of --connections connections, one EVALSHA per \
            decision, first one decision at a time (--redis-decisions), then with --in-flight concurrent \
            Swift tasks (--redis-decisions × 10), for 1 key and for --keys keys; µs per decision (wall \
            time / decisions) and the p50 and p99 of a decision's latency. Against --redis URL, or a \
            redis-server started on a free loopback port (no persistence).
            """
    )

    @Option(help: "Decisions per thread per local measurement.")
    var localDecisions: Int = 10_000_000

    @Option(help: "Threads in the multi-threaded local measurement.")
    var threads: Int = 2

    @Option(help: "Distinct keys in the many-keys measurements.")
    var keys: Int = 10_000

    @Option(help: "Sequential decisions per Redis measurement (ten times as many with --in-flight).")
    var redisDecisions: Int = 20_000

    @Option(help: "Concurrent decisions in the concurrent Redis measurement.")
    var inFlight: Int = 64

    @Option(help: "Connections in the RedisClient pool.")
    var connections: Int = 4

    @Option(help: "A Redis server to use (redis://HOST:PORT); by default one is started.")
    var redis: String?

    @Option(help: "The redis-server binary to start when --redis is not given; \"\" to skip Redis.")
    var redisServer: String = "redis-server"

    func validate() throws {
        guard localDecisions > 0, threads > 0, keys > 0, redisDecisions > 0, inFlight > 0, connections > 0 else {
            throw ValidationError("counts must be positive")
        }
    }

    func run() async throws {
        print("| local limiter | keys | threads | ns per decision (per thread) | decisions/s (all threads) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for part in DecisionPart.allCases {
            print("| part alone: \(part.rawValue) | — | 1 | \(format(await part.nanoseconds(repetitions: localDecisions))) | — |")
        }
        for path in LocalMeasurement.Path.allCases {
            // One key is decided far more often than once a µs: its TAT cannot lapse.
            for keyCount in Set(path == .lapsed ? [keys] : [1, keys]).sorted() {
                for threadCount in Set([1, threads]).sorted() {
                    let result = await LocalMeasurement(path: path, keys: keyCount, threads: threadCount, decisions: localDecisions).run()
                    print("| \(path.rawValue) | \(grouped(Double(keyCount))) | \(threadCount) | \(format(result.nanosecondsPerDecision)) | "
                        + "\(grouped(result.decisionsPerSecond)) |")
                }
            }
        }
        try await runRedis()
    }

    private func runRedis() async throws {
        var started: JSONRPCProcess?
        let url: String
        if let redis {
            url = redis
        } else {
            guard !redisServer.isEmpty, let path = EventBenchmark.which(redisServer) else {
                print("\nRedis: skipped (no --redis and no redis-server found)")
                return
            }
            let server = try await EventBenchmark.startRedis(path)
            started = server
            url = "redis://127.0.0.1:\(server.port)"
        }
        defer { started?.stop() }
        let client = RedisClient(configuration: try RedisConfiguration(url: try RedisURL(url)), connections: connections)
        let version = try await client.send(["INFO", "server"]).string?.split(separator: "\r\n")
            .first { $0.hasPrefix("redis_version:") }?.dropFirst("redis_version:".count) ?? "?"
        let prefix = "bench-limiter-\(getpid()):"
        let limiter = RedisRateLimiter(
            client: client, keyPrefix: prefix, whenUnavailable: .refuse, timeout: .seconds(10),
            onAvailabilityChange: { change in print("Redis limiter: \(change)") })
        print("\nRedis \(version) at \(url); RedisClient with \(connections) connections")
        print("| Redis limiter | keys | in flight | decisions | µs per decision | decisions/s | p50 µs | p99 µs |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        // Warm-up: the script loaded, the connections open.
        _ = try await RedisMeasurement(limiter: limiter, keys: 1, window: inFlight, decisions: 2_000).run()
        for keyCount in [1, keys] {
            for window in [1, inFlight] {
                let decisions = window == 1 ? redisDecisions : redisDecisions * 10
                let result = try await RedisMeasurement(limiter: limiter, keys: keyCount, window: window, decisions: decisions).run()
                print("| allowed | \(grouped(Double(keyCount))) | \(window) | \(grouped(Double(decisions))) | \(format(result.microsPerDecision)) | "
                    + "\(grouped(result.decisionsPerSecond)) | \(format(result.p50)) | \(format(result.p99)) |")
            }
        }
        await QueueBenchmark.deleteKeys(client, matching: prefix + "*")
        await client.shutdown()
    }
}

/// A limit no measurement reaches, and one every key has already spent. Both keep every key's
/// TAT ahead of now (1 s more per decision against a window of decades), so that each decision
/// finds its key known: a key whose TAT had passed is swept and met as a new one, the slower
/// path of a key's first request.
private let neverReached = RateLimit(perSecond: 1, burst: 1 << 62)
private let alreadySpent = RateLimit(perSecond: 0.001, burst: 1)

private func benchmarkKeys(_ count: Int) -> [String] {
    // Keys as a gateway builds them (tenant and principal), long enough to live on the heap.
    (0..<count).map { "tenant-\($0 % 7):principal-\($0)" }
}

/// One local measurement, on dedicated threads (not the cooperative pool).
private struct LocalMeasurement: Sendable {
    enum Path: String, CaseIterable, Sendable {
        case allowed = "allowed"
        case refused = "refused"
        /// Allowed, each key's TAT lapsed since its last decision (1 µs interval; many keys
        /// only): most have been swept and are inserted again, as a key's first request is.
        case lapsed = "allowed, TAT lapsed (re-inserted)"

        var limit: RateLimit {
            switch self {
            case .allowed: neverReached
            case .refused: alreadySpent
            case .lapsed: RateLimit(perSecond: 1e6, burst: 1)
            }
        }
    }

    var path: Path
    var keys: Int
    var threads: Int
    var decisions: Int

    struct Result {
        var nanosecondsPerDecision: Double
        var decisionsPerSecond: Double
    }

    func run() async -> Result {
        let limiter = LocalRateLimiter()
        let keys = benchmarkKeys(self.keys)
        let limit = path.limit
        // Every key known (and, for the refused path, spent) before timing.
        for key in keys { _ = limiter.admit(key: key, limit: limit) }
        let decisions = self.decisions
        let threadCount = threads
        let perThread = await onThreads(threadCount) { thread in
            let start = DispatchTime.now().uptimeNanoseconds
            var allowed = 0
            // One key is shared by the threads; many keys are split between them.
            let own = keys.count == 1 ? keys[...] : keys[(thread * keys.count / threadCount)..<((thread + 1) * keys.count / threadCount)]
            var index = own.startIndex
            for _ in 0..<decisions {
                if limiter.admit(key: own[index], limit: limit).isAllowed { allowed += 1 }
                index += 1
                if index == own.endIndex { index = own.startIndex }
            }
            let elapsed = DispatchTime.now().uptimeNanoseconds - start
            precondition(allowed == (limit == alreadySpent ? 0 : decisions), "the \(limit) path was not taken every time")
            return elapsed
        }
        let wall = Double(perThread.max() ?? 1)
        let mean = Double(perThread.reduce(0, +)) / Double(perThread.count)
        return Result(nanosecondsPerDecision: mean / Double(decisions), decisionsPerSecond: Double(decisions * threadCount) / (wall / 1e9))
    }
}

/// The parts of a local decision, timed alone, to show where its time goes.
private enum DecisionPart: String, CaseIterable {
    case clock = "clock read (NIODeadline.now)"
    case hash = "String.hashValue of a 20-byte key"
    case lock = "Synchronization.Mutex lock + unlock (a shard's lock)"

    func nanoseconds(repetitions: Int) async -> Double {
        let elapsed = await onThreads(1) { _ in
            let start = DispatchTime.now().uptimeNanoseconds
            var sum = 0
            switch self {
            case .clock:
                for _ in 0..<repetitions { sum &+= Int(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds) }
            case .hash:
                let key = benchmarkKeys(1)[0]
                for _ in 0..<repetitions { sum &+= key.hashValue }
            case .lock:
                let mutex = Mutex(0)
                for _ in 0..<repetitions { sum &+= mutex.withLock { $0 &+= 1; return $0 } }
            }
            precondition(sum != 0)
            return DispatchTime.now().uptimeNanoseconds - start
        }
        return Double(elapsed[0]) / Double(repetitions)
    }
}

/// Runs `body(i)` on `count` new threads at once; answers their results in order.
private func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> UInt64) async -> [UInt64] {
    await withCheckedContinuation { continuation in
        let results = ThreadResults(count: count)
        for index in 0..<count {
            Thread {
                if let all = results.store(body(index), at: index) { continuation.resume(returning: all) }
            }.start()
        }
    }
}

/// The threads' results; the last to arrive gets them all.
private final class ThreadResults: Sendable {
    private let state: Mutex<(remaining: Int, values: [UInt64])>

    init(count: Int) {
        state = Mutex((count, [UInt64](repeating: 0, count: count)))
    }

    func store(_ value: UInt64, at index: Int) -> [UInt64]? {
        state.withLock { state in
            state.values[index] = value
            state.remaining -= 1
            return state.remaining == 0 ? state.values : nil
        }
    }
}

/// A counter shared by concurrent tasks.
private final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)

    /// The value before adding 1.
    func next() -> Int { value.add(1, ordering: .relaxed).oldValue }
    var current: Int { value.load(ordering: .relaxed) }
}

/// One Redis measurement: `decisions` decisions with `window` of them in flight.
private struct RedisMeasurement {
    var limiter: RedisRateLimiter
    var keys: Int
    var window: Int
    var decisions: Int

    struct Result {
        var microsPerDecision: Double
        var decisionsPerSecond: Double
        var p50: Double
        var p99: Double
    }

    func run() async throws -> Result {
        let keys = benchmarkKeys(self.keys)
        let next = SharedCounter()
        let refused = SharedCounter()
        let limiter = self.limiter
        let decisions = self.decisions
        let started = DispatchTime.now().uptimeNanoseconds
        let histogram = await withTaskGroup(of: Histogram<UInt64>.self) { group in
            for _ in 0..<min(window, decisions) {
                group.addTask {
                    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
                    while true {
                        let index = next.next()
                        guard index < decisions else { break }
                        let start = DispatchTime.now().uptimeNanoseconds
                        if await !limiter.admit(key: keys[index % keys.count], limit: neverReached).isAllowed {
                            _ = refused.next()
                        }
                        _ = histogram.record(DispatchTime.now().uptimeNanoseconds - start)
                    }
                    return histogram
                }
            }
            var total = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
            for await part in group { total.add(part) }
            return total
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        guard refused.current == 0 else {
            throw ValidationError("\(refused.current) decisions were refused: Redis was not reached every time")
        }
        return Result(
            microsPerDecision: seconds * 1e6 / Double(decisions), decisionsPerSecond: Double(decisions) / seconds,
            p50: Double(histogram.valueAtPercentile(50)) / 1000, p99: Double(histogram.valueAtPercentile(99)) / 1000)
    }
}
