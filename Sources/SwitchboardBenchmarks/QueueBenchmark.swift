import ArgumentParser
import Backend
import Foundation
import Histogram
import NIOCore
import Redis
import Synchronization

// The shared task queue through Redis: `RedisTaskBoard` driven directly (the library, no
// gateway), beside `redis-benchmark` running the same Lua scripts on the same server in the same
// run. See docs/benchmarks.md.

/// submit → claim → finish on `RedisTaskBoard`, then the same scripts through `redis-benchmark`.
struct QueueBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "RedisTaskBoard submit/claim/finish throughput and latency against redis-benchmark running the same scripts.",
        discussion: """
            Drives RedisTaskBoard (the library, on a RedisClient pool of --connections connections, as a \
            replica does) with --tasks tasks: every submit, then every claim, then every finish, each phase \
            timed on its own, first one operation at a time, then with --in-flight concurrent Swift tasks. \
            Each operation is one EVALSHA of the board's Lua script; its round trip (call to decoded \
            answer) goes into an HdrHistogram.

            Then, in the same run, redis-benchmark (-P 1, --precision 3) runs the same scripts, loaded with \
            SCRIPT LOAD, with the same KEYS and ARGV the board sends, -n --tasks: -c 1 against the sequential \
            run; -c --in-flight, and -c --connections -P (--in-flight / --connections), the pool's shape, against \
            the concurrent one: \
            `EVALSHA <submit> 6 KEYS... PREFIX work 5 RECORD 0 "" 3600000 3`, then \
            `EVALSHA <claim> 6 KEYS... PREFIX work bench 600000`, then finish. redis-benchmark can send \
            only one fixed command line (its only variable is __rand_int__, a random number), while \
            finish names the task it ends; so its finish script is the board's finish script with one \
            line changed: `local id = ARGV[2]` becomes `local id = redis.call('ZRANGE', LEASES, 0, 0)[1] or ''`, \
            so that each call ends the claimed task whose lease lapses first (one ZRANGE more on the \
            server; every other command of the script is the same). Each phase of both is checked \
            afterwards on the board (queue depth, leases, final states).

            Every measurement works under a key prefix of its own; the keys are deleted at the end. CPU \
            µs/op: this process (ours) or the redis-benchmark child (getrusage), and the redis-server \
            process (from /proc/PID/stat, when the server runs on this machine).
            """
    )

    @Option(help: "The Redis server: redis://[USER:PASSWORD@]HOST:PORT/DB or unix:///PATH?db=N.")
    var redis: String

    @Option(help: "Tasks per measurement (each submitted, claimed and finished once).")
    var tasks: Int = 100_000

    @Option(help: "Operations in flight in the concurrent measurement (Swift tasks; redis-benchmark -c).")
    var inFlight: Int = 64

    @Option(help: "Connections in the RedisClient pool (a replica uses 4).")
    var connections: Int = 4

    @Option(help: "Tasks of each operation before the measurements that are not counted.")
    var warmup: Int = 5_000

    @Option(help: "The redis-benchmark binary.")
    var redisBenchmark: String = "redis-benchmark"

    @Flag(help: "Measure RedisTaskBoard only.")
    var skipRedisBenchmark = false

    func validate() throws {
        guard tasks > 0, inFlight > 0, connections > 0, warmup >= 0 else { throw ValidationError("counts must be positive") }
    }

    func run() async throws {
        let url = try RedisURL(redis)
        guard !url.usesTLS else { throw ValidationError("the queue benchmark speaks plain TCP or a Unix socket to Redis") }
        let client = RedisClient(configuration: try RedisConfiguration(url: url), connections: connections)
        let server = await RedisServerObserver.find(client)
        let run = "bench-queue-\(getpid())"
        print("Redis \(server.version) at \(redis); \(tasks) tasks; RedisClient with \(connections) connections; "
            + (server.process.map { "redis-server pid \($0.processID)" } ?? "redis-server CPU not readable here"))

        var rows: [QueueRow] = []
        do {
            if warmup > 0 {
                _ = try await QueueDriver(client: client, prefix: "\(run)-warmup:", server: nil).measure(tasks: warmup, window: inFlight)
            }
            for window in [1, inFlight] {
                let mode = window == 1 ? "sequential" : "\(window) in flight"
                let ours = try await QueueDriver(client: client, prefix: "\(run)-ours-\(window):", server: server.process)
                    .measure(tasks: tasks, window: window)
                for phase in ours { print("RedisTaskBoard \(phase.kind) \(mode): \(phase.summary)") }
                if skipRedisBenchmark {
                    rows += ours.map { QueueRow(mode: mode, ours: $0, baseline: "—", theirs: nil) }
                    continue
                }
                // As asked of redis-benchmark: one connection per operation in flight; and, for the
                // figures with operations in flight, the shape of the RedisClient pool too: as many
                // connections, each with its share of the window pipelined.
                var shapes = [(clients: window, pipeline: 1)]
                if window > connections, window % connections == 0, tasks % (window / connections) == 0 { shapes.append((connections, window / connections)) }
                var baselines: [(String, [QueuePhase])] = []
                for shape in shapes {
                    let label = "-c \(shape.clients) -P \(shape.pipeline)"
                    let runner = RedisBenchmarkRunner(
                        binary: redisBenchmark, url: url, client: client, prefix: "\(run)-rb-\(shape.clients)-\(shape.pipeline):",
                        server: server.process)
                    let theirs = try await runner.measure(tasks: tasks, clients: shape.clients, pipeline: shape.pipeline)
                    for phase in theirs { print("redis-benchmark \(phase.kind) \(label): \(phase.summary)") }
                    baselines.append((label, theirs))
                }
                for (index, phase) in ours.enumerated() {
                    for (label, theirs) in baselines { rows.append(QueueRow(mode: mode, ours: phase, baseline: label, theirs: theirs[index])) }
                }
            }
        } catch {
            await Self.deleteKeys(client, matching: "\(run)-*")
            await client.shutdown()
            throw error
        }
        await Self.deleteKeys(client, matching: "\(run)-*")
        await client.shutdown()

        print()
        print("| operation | mode | RedisTaskBoard ops/s | p50 µs | p99 µs | p999 µs | redis-benchmark | ops/s | p50 µs | p99 µs | p99.9 µs | "
            + "ours / redis-benchmark ops/s | p50 ours / r-b | client CPU µs/op ours / r-b | redis-server CPU µs/op ours / r-b |")
        print("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in rows { print(row.markdown) }
    }

    /// Deletes the measurement's keys (SCAN + UNLINK), so that nothing of the run stays behind.
    static func deleteKeys(_ client: RedisClient, matching pattern: String) async {
        var cursor = "0"
        repeat {
            guard let reply = try? await client.send(["SCAN", RedisArgument(cursor), "MATCH", RedisArgument(pattern), "COUNT", 1000]),
                let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array
            else { return }
            let names = keys.compactMap(\.string)
            if !names.isEmpty { _ = try? await client.send(["UNLINK"] + names.map { RedisArgument($0) }) }
            cursor = next
        } while cursor != "0"
    }
}

// MARK: - What both sides run

/// The task records the board stores: what the engine writes for a new task and for a completed
/// one (the same shape as its JSON, with a short result), the same bytes for both sides.
enum QueueRecords {
    static let queue = "work"
    static let priority = 5
    static let maximumClaims = 3
    static let owner = "bench"
    static let leaseMilliseconds = 600_000
    static let retentionMilliseconds = 3_600_000

    static let pending = ByteBuffer(
        string: #"{"taskType":"work","taskData":{"text":"hello, agent","n":1},"priority":5,"timeoutMs":300000,"maxRetries":2,"#
            + #""backoff":{"kind":"exponential","delayMs":1000},"retentionMs":3600000,"minimumMatch":1,"state":"PENDING","#
            + #""createdAt":"2026-11-25T10:00:00.000Z","lastUpdatedAt":"2026-11-25T10:00:00.000Z","attempts":[]}"#)

    static let completed = ByteBuffer(
        string: #"{"taskType":"work","taskData":{"text":"hello, agent","n":1},"priority":5,"timeoutMs":300000,"maxRetries":2,"#
            + #""backoff":{"kind":"exponential","delayMs":1000},"retentionMs":3600000,"minimumMatch":1,"state":"COMPLETED","#
            + #""createdAt":"2026-11-25T10:00:00.000Z","lastUpdatedAt":"2026-11-25T10:00:00.004Z","#
            + #""attempts":[{"agent":"echo@1","match":1,"started":"2026-11-25T10:00:00.001Z","ended":"2026-11-25T10:00:00.004Z","replica":"r1"}],"#
            + #""startTime":"2026-11-25T10:00:00.001Z","completionTime":"2026-11-25T10:00:00.004Z","#
            + #""assignedAgent":{"id":"echo@1","name":"echo"},"result":{"content":[{"type":"text","text":"ok"}]}}"#)

    /// KEYS of every board script, in the order `RedisTaskBoard` passes them.
    static func keys(prefix: String) -> [String] {
        ["task-seq", "queues", "leases", "delayed", "tasks", "dead-letter"].map { prefix + $0 }
    }
}

/// One phase (submit, claim or finish) of one side.
struct QueuePhase: Sendable {
    var kind: String
    var count: Int
    var seconds: Double
    var p50: Double
    var p99: Double
    var p999: Double
    /// CPU seconds of the client (this process, or redis-benchmark) and of redis-server.
    var clientCPU: Double
    var serverCPU: Double?

    var opsPerSecond: Double { Double(count) / seconds }
    var clientMicrosPerOp: Double { clientCPU * 1e6 / Double(count) }
    var serverMicrosPerOp: Double? { serverCPU.map { $0 * 1e6 / Double(count) } }

    var summary: String {
        "\(Int(opsPerSecond)) ops/s, p50 \(format(p50)) µs, p99 \(format(p99)) µs, p999 \(format(p999)) µs; CPU µs/op client \(format(clientMicrosPerOp))"
            + (serverMicrosPerOp.map { ", redis-server \(format($0))" } ?? "")
    }
}

private struct QueueRow {
    var mode: String
    var ours: QueuePhase
    var baseline: String
    var theirs: QueuePhase?

    var markdown: String {
        let left = "| \(ours.kind) | \(mode) | \(Int(ours.opsPerSecond)) | \(format(ours.p50)) | \(format(ours.p99)) | \(format(ours.p999)) |"
        guard let theirs else { return left + " — | — | — | — | — | — | — | \(format(ours.clientMicrosPerOp)) / — | — |" }
        let server = ours.serverMicrosPerOp.flatMap { mine in theirs.serverMicrosPerOp.map { "\(format(mine)) / \(format($0))" } } ?? "—"
        return left + " \(baseline) | \(Int(theirs.opsPerSecond)) | \(format(theirs.p50)) | \(format(theirs.p99)) | \(format(theirs.p999)) | "
            + "\(String(format: "%.2f", ours.opsPerSecond / theirs.opsPerSecond))× | \(String(format: "%.2f", ours.p50 / theirs.p50))× | "
            + "\(format(ours.clientMicrosPerOp)) / \(format(theirs.clientMicrosPerOp)) | \(server) |"
    }
}

// MARK: - RedisTaskBoard

/// Submits, claims and finishes `tasks` tasks on a board of its own prefix, `window` at a time.
private struct QueueDriver {
    let board: RedisTaskBoard
    let server: JSONRPCProcess?

    init(client: RedisClient, prefix: String, server: JSONRPCProcess?) {
        self.board = RedisTaskBoard(client: client, keyPrefix: prefix)
        self.server = server
    }

    func measure(tasks: Int, window: Int) async throws -> [QueuePhase] {
        let board = self.board
        let submit = try await phase("submit", tasks: tasks, window: window) { _ in
            let outcome = try await board.submit(BoardSubmission(
                queue: QueueRecords.queue, priority: QueueRecords.priority, idempotencyTTL: .milliseconds(QueueRecords.retentionMilliseconds),
                maximumClaims: QueueRecords.maximumClaims, record: QueueRecords.pending))
            guard case .created = outcome else { throw ValidationError("submit answered \(outcome)") }
        }
        let claimed = ClaimedIDs(count: tasks)
        let claim = try await phase("claim", tasks: tasks, window: window) { index in
            guard let task = try await board.claim(
                from: QueueRecords.queue, owner: QueueRecords.owner, lease: .milliseconds(QueueRecords.leaseMilliseconds))
            else { throw ValidationError("claim found the queue empty") }
            claimed.set(index, task.id)
        }
        let ids = claimed.all
        let finish = try await phase("finish", tasks: tasks, window: window) { index in
            guard try await board.finish(
                ids[index], owner: QueueRecords.owner, state: "COMPLETED", record: QueueRecords.completed,
                retention: .milliseconds(QueueRecords.retentionMilliseconds), deadLetter: false) != nil
            else { throw ValidationError("finish of \(ids[index]) was refused") }
        }
        return [submit, claim, finish]
    }

    /// Runs `operation(0..<tasks)` with `window` concurrent Swift tasks taking the next index.
    private func phase(
        _ kind: String, tasks: Int, window: Int, _ operation: @escaping @Sendable (Int) async throws -> Void
    ) async throws -> QueuePhase {
        let next = IndexCounter()
        let cpuBefore = (ProcessCPU.own(), server?.cpuTime())
        let started = DispatchTime.now().uptimeNanoseconds
        let histogram = try await withThrowingTaskGroup(of: Histogram<UInt64>.self) { group in
            for _ in 0..<min(window, tasks) {
                group.addTask {
                    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
                    while true {
                        let index = next.take()
                        guard index < tasks else { break }
                        let start = DispatchTime.now().uptimeNanoseconds
                        try await operation(index)
                        _ = histogram.record(DispatchTime.now().uptimeNanoseconds - start)
                    }
                    return histogram
                }
            }
            var total = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
            for try await part in group { total.add(part) }
            return total
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let serverCPU = server.flatMap { process in cpuBefore.1.map { process.cpuTime() - $0 } }
        func micros(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
        return QueuePhase(
            kind: kind, count: tasks, seconds: seconds, p50: micros(50), p99: micros(99), p999: micros(99.9),
            clientCPU: ProcessCPU.own() - cpuBefore.0, serverCPU: serverCPU)
    }
}

private final class IndexCounter: Sendable {
    private let value = Mutex(0)
    func take() -> Int { value.withLock { value in defer { value += 1 }; return value } }
}

private final class ClaimedIDs: Sendable {
    private let ids: Mutex<[String]>
    init(count: Int) { ids = Mutex(Array(repeating: "", count: count)) }
    func set(_ index: Int, _ id: String) { ids.withLock { $0[index] = id } }
    var all: [String] { ids.withLock { $0 } }
}

// MARK: - redis-benchmark

/// The same scripts through `redis-benchmark`, checked on the board afterwards.
private struct RedisBenchmarkRunner {
    let binary: String
    let url: RedisURL
    let client: RedisClient
    let prefix: String
    let server: JSONRPCProcess?

    /// The board's finish script, taking the task to end from the leases instead of ARGV[2].
    static func finishFromLeases() throws -> String {
        guard let finish = RedisTaskBoard.scriptSources["finish"] else { throw ValidationError("RedisTaskBoard has no finish script") }
        let line = "local id = ARGV[2]\n"
        guard finish.components(separatedBy: line).count == 2 else {
            throw ValidationError("the finish script no longer starts with `\(line.dropLast())`: update the benchmark")
        }
        return finish.replacingOccurrences(of: line, with: "local id = redis.call('ZRANGE', LEASES, 0, 0)[1] or ''\n")
    }

    func measure(tasks: Int, clients: Int, pipeline: Int) async throws -> [QueuePhase] {
        guard let submitSource = RedisTaskBoard.scriptSources["submit"], let claimSource = RedisTaskBoard.scriptSources["claim"] else {
            throw ValidationError("RedisTaskBoard has no submit or claim script")
        }
        let submitSHA = try await load(submitSource)
        let claimSHA = try await load(claimSource)
        let finishSHA = try await load(try Self.finishFromLeases())
        let keys = ["6"] + QueueRecords.keys(prefix: prefix) + [prefix]
        let board = RedisTaskBoard(client: client, keyPrefix: prefix)
        let pending = String(buffer: QueueRecords.pending)
        let completed = String(buffer: QueueRecords.completed)

        let submit = try run(
            "submit", tasks: tasks, clients: clients, pipeline: pipeline,
            ["EVALSHA", submitSHA] + keys + [
                QueueRecords.queue, String(QueueRecords.priority), pending, "0", "", String(QueueRecords.retentionMilliseconds),
                String(QueueRecords.maximumClaims),
            ])
        let queued = try await board.queueDepths()[QueueRecords.queue] ?? 0
        guard queued == tasks else { throw ValidationError("after redis-benchmark's submits \(queued) tasks are queued, not \(tasks)") }

        let claim = try run(
            "claim", tasks: tasks, clients: clients, pipeline: pipeline,
            ["EVALSHA", claimSHA] + keys + [QueueRecords.queue, QueueRecords.owner, String(QueueRecords.leaseMilliseconds)])
        let left = try await board.queueDepths()[QueueRecords.queue] ?? 0
        let leased = try await client.send(["ZCARD", RedisArgument(prefix + "leases")]).integer ?? -1
        guard left == 0, leased == tasks else { throw ValidationError("after redis-benchmark's claims \(left) are queued and \(leased) leased") }

        let finish = try run(
            "finish", tasks: tasks, clients: clients, pipeline: pipeline,
            ["EVALSHA", finishSHA] + keys + [
                "chosen-by-the-script", "1", QueueRecords.owner, "COMPLETED", completed, String(QueueRecords.retentionMilliseconds), "0",
                "10000",
            ])
        let stillLeased = try await client.send(["ZCARD", RedisArgument(prefix + "leases")]).integer ?? -1
        let first = try await board.get("task-1")?.state
        let last = try await board.get("task-\(tasks)")?.state
        guard stillLeased == 0, first == "COMPLETED", last == "COMPLETED" else {
            throw ValidationError("after redis-benchmark's finishes \(stillLeased) are leased; task-1 \(first ?? "?"), task-\(tasks) \(last ?? "?")")
        }
        return [submit, claim, finish]
    }

    private func load(_ source: String) async throws -> String {
        guard let sha = try await client.send(["SCRIPT", "LOAD", RedisArgument(source)]).string else {
            throw ValidationError("SCRIPT LOAD did not answer a SHA1")
        }
        return sha
    }

    private func run(_ kind: String, tasks: Int, clients: Int, pipeline: Int, _ command: [String]) throws -> QueuePhase {
        var arguments = ["-n", String(tasks), "-c", String(clients), "-P", String(pipeline), "--precision", "3"]
        switch url.endpoint {
        case .tcp(let host, let port): arguments += ["-h", host, "-p", String(port)]
        case .unix(let path): arguments += ["-s", path]
        }
        if let password = url.password {
            if let user = url.username { arguments += ["--user", user] }
            arguments += ["-a", password]
        }
        if url.database != 0 { arguments += ["--dbnum", String(url.database)] }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [binary] + arguments + command
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        let cpuBefore = (ProcessCPU.children(), server?.cpuTime())
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let clientCPU = ProcessCPU.children() - cpuBefore.0
        let serverCPU = server.flatMap { process in cpuBefore.1.map { process.cpuTime() - $0 } }
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0, let parsed = RedisBenchmarkOutput(text) else {
            throw ValidationError("redis-benchmark \(kind) failed (status \(process.terminationStatus)):\n\(text.suffix(2_000))")
        }
        return QueuePhase(
            kind: kind, count: tasks, seconds: Double(tasks) / parsed.requestsPerSecond, p50: parsed.p50, p99: parsed.p99,
            p999: parsed.p999, clientCPU: clientCPU, serverCPU: serverCPU)
    }
}

/// What the benchmark reads from redis-benchmark's report: the throughput summary, p50 and p99
/// of the latency summary, and the first step of its percentile distribution at or past 99.9 %
/// (it prints 99.902 %); latencies in µs.
struct RedisBenchmarkOutput {
    var requestsPerSecond: Double
    var p50: Double
    var p99: Double
    var p999: Double

    init?(_ text: String) {
        let lines = text.replacingOccurrences(of: "\r", with: "\n").split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let throughput = lines.first(where: { $0.hasPrefix("throughput summary:") }),
            let rps = throughput.split(separator: " ").dropFirst(2).first.flatMap({ Double($0) }),
            let header = lines.firstIndex(where: { $0.hasPrefix("avg") && $0.contains("p50") }), header + 1 < lines.count
        else { return nil }
        let names = lines[header].split(separator: " ").map(String.init)
        let values = lines[header + 1].split(separator: " ").compactMap { Double($0) }
        guard names.count == values.count, let p50 = names.firstIndex(of: "p50"), let p99 = names.firstIndex(of: "p99") else { return nil }
        var p999: Double?
        if let start = lines.firstIndex(of: "Latency by percentile distribution:") {
            for line in lines[(start + 1)...] {
                // "99.902% <= 0.583 milliseconds (cumulative count 99903)"
                let parts = line.split(separator: " ")
                guard parts.count >= 3, parts[0].hasSuffix("%"), let percent = Double(parts[0].dropLast()), let value = Double(parts[2]) else { break }
                if percent >= 99.9 {
                    p999 = value
                    break
                }
            }
        }
        requestsPerSecond = rps
        self.p50 = values[p50] * 1000
        self.p99 = values[p99] * 1000
        self.p999 = (p999 ?? values[values.count - 1]) * 1000
    }
}

// MARK: - CPU

enum ProcessCPU {
    /// User + system CPU seconds of this process, every thread.
    static func own() -> Double { seconds(RUSAGE_SELF.rawValue) }

    /// User + system CPU seconds of the children that have exited and been waited for.
    static func children() -> Double { seconds(RUSAGE_CHILDREN.rawValue) }

    private static func seconds(_ who: Int32) -> Double {
        var usage = rusage()
        getrusage(who, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
    }
}

/// The Redis server's version and, when it runs on this machine, its process (for its CPU time).
struct RedisServerObserver {
    var version: String
    var process: JSONRPCProcess?

    static func find(_ client: RedisClient) async -> RedisServerObserver {
        guard let info = try? await client.send(["INFO", "server"]).string else { return RedisServerObserver(version: "?", process: nil) }
        func field(_ name: String) -> String? {
            info.split(whereSeparator: \.isNewline).first { $0.hasPrefix(name + ":") }.map { String($0.dropFirst(name.count + 1)) }
        }
        let version = field("redis_version") ?? "?"
        guard let pid = field("process_id").flatMap({ Int32($0) }),
            let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe"),
            executable.contains("redis")
        else { return RedisServerObserver(version: version, process: nil) }
        return RedisServerObserver(version: version, process: JSONRPCProcess.observe(pid: pid, name: "redis-server"))
    }
}
