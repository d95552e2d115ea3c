import ArgumentParser
import Dispatch
import Foundation
import Histogram
import NIOCore
import Redis

// Replicas sharing one Redis server: tasks through K `switchboard serve --redis` processes, and a
// tools/call that crosses from one replica to the agent of another. See docs/benchmarks.md.

/// Tasks spread over K replicas' client connections, and tools/call across replicas against the
/// same call at the agent's own replica.
struct ReplicasBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicas",
        abstract: "Tasks through 1, 2 or 3 replicas sharing Redis, and tools/call across replicas against the agent's own replica.",
        discussion: """
            Starts --replicas processes `switchboard serve --listen tcp://127.0.0.1:0 --redis URL --replica-id rN` \
            and attaches to each, over TCP from this process, one minimal agent (the benchmark's own, in Swift: \
            `agents/register` with one tool `work` and --agent-concurrency, then every tools/call answered at \
            once). One client connection per replica then runs --tasks tasks (tasks/submit, then tasks/result \
            on its reply) with --in-flight tasks in flight in all, split evenly over the connections; any \
            replica's agent may run any task (the board in Redis decides). Reported: tasks/s, submit → result \
            and submit → agent latency, and the CPU time of each replica, of redis-server (when it runs on this \
            machine) and of this process (clients and agents), from /proc/PID/stat, per task.

            With two replicas or more, one more agent, serving only the tool `echo`, attaches to r2; \
            tools/call of `echo` is measured at r2 (the agent's own replica) and at r1 (forwarded to r2 \
            through Redis pub-sub), sequentially and with --in-flight calls in flight, and compared.
            """
    )

    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "The Redis server the replicas share: redis://HOST:PORT/DB.")
    var redis: String

    @Option(help: "How many replicas to start (1 to 9).")
    var replicas: Int = 1

    @Option(help: "Tasks in the measurement.")
    var tasks: Int = 20_000

    @Option(help: "Tasks (and, for the cross-replica figure, calls) in flight in all.")
    var inFlight: Int = 64

    @Option(help: "maxConcurrency each agent registers with.")
    var agentConcurrency: Int = 64

    @Option(help: "Tasks before the measurement that are not counted.")
    var warmup: Int = 2_000

    @Option(help: "tools/call round trips per cross-replica measurement with calls in flight.")
    var callRequests: Int = 20_000

    @Option(help: "tools/call round trips per sequential cross-replica measurement.")
    var callSequentialRequests: Int = 5_000

    @Option(help: "tools/call round trips before each cross-replica measurement that are not counted.")
    var callWarmup: Int = 1_000

    @Flag(help: "Skip the cross-replica tools/call figure.")
    var skipCalls = false

    func validate() throws {
        guard (1...9).contains(replicas) else { throw ValidationError("--replicas must be from 1 to 9") }
        guard tasks > 0, inFlight >= replicas, agentConcurrency > 0, warmup >= 0, callRequests > 0, callSequentialRequests > 0, callWarmup >= 0 else {
            throw ValidationError("counts must be positive, and --in-flight at least --replicas")
        }
        guard inFlight < 1_024 else { throw ValidationError("--in-flight must stay below the gateway's 1,024 requests in flight per connection") }
    }

    func run() async throws {
        let client = RedisClient(configuration: try RedisConfiguration(url: try RedisURL(redis)), connections: 1)
        let redisServer = await RedisServerObserver.find(client).process
        let bench = JSONRPCProcess.observe(pid: getpid(), name: "bench")
        let names = (1...replicas).map { "r\($0)" }

        var gateways: [JSONRPCProcess] = []
        defer { gateways.forEach { $0.stop() } }
        for name in names {
            gateways.append(try JSONRPCProcess.startGateway(
                binary: binary, transport: "tcp", extraArguments: ["--redis", redis, "--replica-id", name]))
        }
        var agentChannels: [any Channel] = []
        for (index, gateway) in gateways.enumerated() {
            let spec = SimulatedAgentSpec(
                agentName: "work", tool: "work", delayMilliseconds: 0, failureRate: 0, maxConcurrency: agentConcurrency, seed: UInt64(index))
            agentChannels += try await SimulatedAgent.attach([spec], to: gateway)
        }
        let crossCalls = replicas >= 2 && !skipCalls
        var echoChannels: [any Channel] = []
        if crossCalls {
            let spec = SimulatedAgentSpec(agentName: "echo", tool: "echo", delayMilliseconds: 0, failureRate: 0, maxConcurrency: agentConcurrency, seed: 99)
            echoChannels = try await SimulatedAgent.attach([spec], to: gateways[1])
        }
        var clients: [any Channel] = []
        for gateway in gateways { clients.append(try await gateway.connect()) }
        defer {
            for channel in clients + agentChannels + echoChannels { channel.close(promise: nil) }
        }
        for channel in clients { try await ReplicaProbe.waitForReplicas(replicas, on: channel) }
        if crossCalls { try await Handshake.waitForTool("echo", on: clients[0]) }
        print("\(replicas) replica(s) \(names.joined(separator: ", ")) on \(redis); each with one agent (tool work, maxConcurrency \(agentConcurrency))"
            + (crossCalls ? "; r2 also with an echo agent" : ""))

        // Tasks.
        if warmup > 0 { _ = try await runTasks(warmup, on: clients) }
        for channel in agentChannels { _ = try await SimulatedAgent.takeTally(of: channel) }
        let commandsBefore = await RedisCommandStats.read(client)
        let cpuBefore = (gateways.map { $0.cpuTime() }, redisServer?.cpuTime(), bench.cpuTime())
        let outcome = try await runTasks(tasks, on: clients)
        let cpuAfter = (gateways.map { $0.cpuTime() }, redisServer?.cpuTime(), bench.cpuTime())
        let commandsAfter = await RedisCommandStats.read(client)
        var assignment = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
        var callsPerReplica: [Int] = []
        for channel in agentChannels {
            let tally = try await SimulatedAgent.takeTally(of: channel)
            assignment.add(tally.assignment)
            callsPerReplica.append(tally.calls)
        }
        let row = ReplicaTaskRow(
            replicas: replicas, tasks: tasks, inFlight: inFlight, seconds: outcome.seconds, succeeded: outcome.succeeded,
            endToEnd: outcome.endToEnd, assignment: assignment,
            replicaCPU: zip(cpuAfter.0, cpuBefore.0).map { ($0 - $1) * 1e6 / Double(tasks) },
            redisCPU: cpuAfter.1.flatMap { after in cpuBefore.1.map { (after - $0) * 1e6 / Double(tasks) } },
            benchCPU: (cpuAfter.2 - cpuBefore.2) * 1e6 / Double(tasks), callsPerReplica: callsPerReplica)
        print(row.summary)
        print("Redis commands per task (calls, server µs): " + RedisCommandStats.perUnit(commandsBefore, commandsAfter, units: tasks))

        // tools/call across replicas, once the replicas have gone quiet after the tasks.
        var callRows: [CrossCallRow] = []
        if crossCalls {
            let quietAfter = await RedisCommandStats.waitForQuiet(client)
            print("Redis quiet (under 400 commands/s) \(String(format: "%.2f", quietAfter)) s after the last task result")
            for (label, at) in [("at r2 (agent's replica)", 1), ("at r1 → agent on r2", 0)] {
                for (mode, window, count) in [("sequential", 1, callSequentialRequests), ("\(inFlight) in flight", inFlight, callRequests)] {
                    _ = try await RoundTripDriver.run(on: clients[at], request: .echo, count: min(callWarmup, count), window: window)
                    let commandsBefore = await RedisCommandStats.read(client)
                    let before = (gateways[0].cpuTime(), gateways[1].cpuTime(), redisServer?.cpuTime())
                    let result = try await RoundTripDriver.run(on: clients[at], request: .echo, count: count, window: window)
                    let after = (gateways[0].cpuTime(), gateways[1].cpuTime(), redisServer?.cpuTime())
                    let commandsAfter = await RedisCommandStats.read(client)
                    let perCall = { (delta: Double) in delta * 1e6 / Double(count) }
                    let callRow = CrossCallRow(
                        replicas: replicas, label: label, mode: mode, result: result,
                        cpu: [perCall(after.0 - before.0), perCall(after.1 - before.1)],
                        redisCPU: after.2.flatMap { a in before.2.map { perCall(a - $0) } })
                    print(callRow.summary)
                    print("  Redis commands per call: " + RedisCommandStats.perUnit(commandsBefore, commandsAfter, units: count))
                    callRows.append(callRow)
                }
            }
        }

        await client.shutdown()

        print()
        print("tasks table:")
        print(ReplicaTaskRow.header)
        print(row.markdown)
        if !callRows.isEmpty {
            print()
            print("calls table:")
            print(CrossCallRow.header)
            for callRow in callRows {
                let direct = callRows.first { $0.label.hasPrefix("at r2") && $0.mode == callRow.mode }
                print(callRow.markdown(comparedTo: callRow.label.hasPrefix("at r2") ? nil : direct))
            }
        }
    }

    /// `count` tasks over the connections at once, `inFlight` in flight in all (split evenly).
    private func runTasks(_ count: Int, on clients: [any Channel]) async throws -> (seconds: Double, succeeded: Int, endToEnd: Histogram<UInt64>) {
        let share = { (total: Int, index: Int) in total / clients.count + (index < total % clients.count ? 1 : 0) }
        let started = DispatchTime.now().uptimeNanoseconds
        return try await withThrowingTaskGroup(of: TaskDriver.Outcome?.self) { group in
            for (index, channel) in clients.enumerated() {
                let plan = TaskDriver.Plan(
                    count: share(count, index), window: share(inFlight, index), burst: false, taskType: "work", extraParams: "")
                guard plan.count > 0 else { continue }
                group.addTask { try await TaskDriver.run(on: channel, plan: plan) }
            }
            var succeeded = 0
            var endToEnd = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
            for try await outcome in group {
                guard let outcome else { continue }
                succeeded += outcome.succeeded
                endToEnd.add(outcome.endToEnd)
            }
            return (Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, succeeded, endToEnd)
        }
    }
}

private struct ReplicaTaskRow {
    var replicas: Int
    var tasks: Int
    var inFlight: Int
    var seconds: Double
    var succeeded: Int
    var endToEnd: Histogram<UInt64>
    var assignment: Histogram<UInt64>
    /// CPU µs per task, each replica.
    var replicaCPU: [Double]
    var redisCPU: Double?
    var benchCPU: Double
    var callsPerReplica: [Int]

    var tasksPerSecond: Double { Double(tasks) / seconds }

    static func millis(_ histogram: Histogram<UInt64>, _ percentile: Double) -> String {
        String(format: "%.2f", Double(histogram.valueAtPercentile(percentile)) / 1e6)
    }

    var shares: String {
        let total = max(1, callsPerReplica.reduce(0, +))
        return callsPerReplica.map { "\(Int((Double($0) / Double(total) * 100).rounded()))%" }.joined(separator: " / ")
    }

    var summary: String {
        "\(replicas) replica(s): \(tasks) tasks (\(succeeded) completed) in \(String(format: "%.3f", seconds)) s = \(Int(tasksPerSecond)) tasks/s; "
            + "submit → result p50 \(Self.millis(endToEnd, 50)) ms, p99 \(Self.millis(endToEnd, 99)) ms; submit → agent p50 "
            + "\(Self.millis(assignment, 50)) ms, p99 \(Self.millis(assignment, 99)) ms; CPU µs/task: "
            + replicaCPU.enumerated().map { "r\($0.offset + 1) \(format($0.element))" }.joined(separator: ", ")
            + (redisCPU.map { ", redis-server \(format($0))" } ?? "") + ", bench \(format(benchCPU)); agent calls per replica \(shares)"
    }

    static let header = """
        | replicas | tasks | in flight | tasks/s | submit → result p50 ms | p99 ms | submit → agent p50 ms | p99 ms | \
        CPU µs/task per replica | all replicas | redis-server | bench (clients + agents) | tasks run per replica |
        | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |
        """

    var markdown: String {
        "| \(replicas) | \(tasks) | \(inFlight) | \(Int(tasksPerSecond)) | \(Self.millis(endToEnd, 50)) | \(Self.millis(endToEnd, 99)) | "
            + "\(Self.millis(assignment, 50)) | \(Self.millis(assignment, 99)) | \(replicaCPU.map(format).joined(separator: " / ")) | "
            + "\(format(replicaCPU.reduce(0, +))) | \(redisCPU.map(format) ?? "—") | \(format(benchCPU)) | \(shares) |"
    }
}

private struct CrossCallRow {
    var replicas: Int
    var label: String
    var mode: String
    var result: RoundTripDriver.Result
    /// CPU µs per call of r1 and r2.
    var cpu: [Double]
    var redisCPU: Double?

    var callsPerSecond: Double { Double(result.count) / result.seconds }
    func micros(_ percentile: Double) -> Double { Double(result.histogram.valueAtPercentile(percentile)) / 1000 }

    var summary: String {
        "tools/call \(label) \(mode): \(Int(callsPerSecond)) calls/s, p50 \(format(micros(50))) µs, p99 \(format(micros(99))) µs, "
            + "p999 \(format(micros(99.9))) µs; CPU µs/call r1 \(format(cpu[0])), r2 \(format(cpu[1]))"
            + (redisCPU.map { ", redis-server \(format($0))" } ?? "")
    }

    static let header = """
        | replicas | tools/call | mode | calls/s | p50 µs | p99 µs | p999 µs | CPU µs/call r1 / r2 / redis-server | calls/s vs at r2 | p50 vs at r2 |
        | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |
        """

    func markdown(comparedTo direct: CrossCallRow?) -> String {
        let comparison = direct.map {
            "\(String(format: "%.2f", callsPerSecond / $0.callsPerSecond))× | \(String(format: "%.2f", micros(50) / $0.micros(50)))×"
        } ?? "— | —"
        return "| \(replicas) | \(label) | \(mode) | \(Int(callsPerSecond)) | \(format(micros(50))) | \(format(micros(99))) | "
            + "\(format(micros(99.9))) | \(format(cpu[0])) / \(format(cpu[1])) / \(redisCPU.map(format) ?? "—") | \(comparison) |"
    }
}

/// Waits until a replica's directory shows every replica.
enum ReplicaProbe {
    static func waitForReplicas(_ count: Int, on channel: any Channel) async throws {
        for _ in 0..<150 {
            let reply = try await exchange(channel, #"{"jsonrpc":"2.0","id":"status","method":"gateway/status"}"#)
            if reply.components(separatedBy: #""replicaId""#).count - 1 >= count { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("the replicas did not all see each other within 15 s")
    }

    private static func exchange(_ channel: any Channel, _ line: String) async throws -> String {
        let collector = Collector(promise: channel.eventLoop.makePromise(of: String.self))
        try await channel.pipeline.addHandler(collector).get()
        try await channel.writeAndFlush(ByteBuffer(string: line + "\n"))
        let reply = try await collector.promise.futureResult.get()
        try await channel.pipeline.removeHandler(collector).get()
        return reply
    }

    private final class Collector: ChannelInboundHandler, RemovableChannelHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<String>
        init(promise: EventLoopPromise<String>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let line = String(buffer: unwrapInboundIn(data))
            // Skip notifications (list_changed and the like): the reply has the request's id.
            if line.contains(#""id":"status""#) { promise.succeed(line) }
        }
    }
}

/// `INFO commandstats`: calls and server µs per command, to see what an operation costs Redis.
enum RedisCommandStats {
    static func read(_ client: RedisClient) async -> [String: (calls: Double, micros: Double)] {
        guard let info = try? await client.send(["INFO", "commandstats"]).string else { return [:] }
        var stats: [String: (calls: Double, micros: Double)] = [:]
        // cmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,rejected_calls=0,failed_calls=0
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
            let parts = line.dropFirst("cmdstat_".count).split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            var calls = 0.0
            var micros = 0.0
            for field in parts[1].split(separator: ",") {
                let pair = field.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, let value = Double(pair[1]) else { continue }
                if pair[0] == "calls" { calls = value } else if pair[0] == "usec" { micros = value }
            }
            stats[String(parts[0])] = (calls, micros)
        }
        return stats
    }

    /// Waits (at most 20 s) until the server runs fewer than 100 commands in 250 ms; returns the seconds waited.
    static func waitForQuiet(_ client: RedisClient) async -> Double {
        let started = DispatchTime.now().uptimeNanoseconds
        var last = await read(client).values.reduce(0) { $0 + $1.calls }
        for _ in 0..<80 {
            try? await Task.sleep(for: .milliseconds(250))
            let now = await read(client).values.reduce(0) { $0 + $1.calls }
            if now - last < 100 { break }
            last = now
        }
        return Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
    }

    /// The commands that ran in between, most server time first, per unit of work.
    static func perUnit(_ before: [String: (calls: Double, micros: Double)], _ after: [String: (calls: Double, micros: Double)], units: Int) -> String {
        let deltas = after.compactMap { name, value -> (String, Double, Double)? in
            let calls = value.calls - (before[name]?.calls ?? 0)
            let micros = value.micros - (before[name]?.micros ?? 0)
            // Leave out what is too rare to matter, and this benchmark's own INFO.
            return name != "info" && calls / Double(units) >= 0.005 ? (name, calls / Double(units), micros / Double(units)) : nil
        }.sorted { $0.2 > $1.2 }
        guard !deltas.isEmpty else { return "not readable" }
        // The commands a script runs count as themselves too, and their time is inside the script's.
        return deltas.map { "\($0.0) \(String(format: "%.2f", $0.1)) (\(format($0.2)) µs)" }.joined(separator: ", ")
    }
}
