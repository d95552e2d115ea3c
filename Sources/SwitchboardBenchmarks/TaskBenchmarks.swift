import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix

// Benchmarks of the task layer (tasks/submit + tasks/result) against simulated agents that attach
// to a real `switchboard serve` process over TCP from this process. See docs/benchmarks.md.

// MARK: - routing

/// How well learned routing picks agents whose speed and reliability it is not told: N attached
/// agents with hidden delays and failure rates, M tasks through tasks/submit with a window in flight,
/// compared with an oracle that knows the hidden values and with round robin.
struct RoutingBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routing",
        abstract: "Learned routing against agents of hidden speed and reliability, beside an oracle and round robin.",
        discussion: """
            Starts `switchboard serve --listen tcp://127.0.0.1:0` once per window and attaches the simulated \
            agents over TCP from this process: each registers the same agentName with one tool `work` and \
            answers each tools/call after its hidden delay, failing (isError) with its hidden probability. \
            M tasks go through tasks/submit (maxRetries, backoff fixed 0) with `window` tasks in flight, each \
            awaited with tasks/result; the gateway starts cold (nothing learned) for every window.

            The oracle knows every delay d and failure rate f: an attempt on an agent yields a success at \
            rate (1 - f) / d per slot, so the throughput-optimal use of `window` tasks fills the slots of \
            the agents with the highest rate first (a fractional knapsack): that prefix is the oracle's \
            set. Its time is simulated (discrete events, the same window, capacities and retry rule, no \
            gateway or network overhead; the mean of --simulation-runs seeds). Round robin is simulated the \
            same way: the next agent in turn that has a free slot (and was not tried by this task, when \
            one such is free). "switchboard rule (sim)" simulates the gateway's selection rule with the \
            true values instead of learned ones: min of d / (1 - f) × (1 + load), untried agents first. \
            quality = oracle time / time; "in oracle set" = share of attempts that went to the oracle's set.

            "oracle set only (measured)" runs the oracle's choice for real: a fresh gateway with only the \
            agents of the oracle's set attached, so the gateway and network overhead is in its time too; \
            "vs measured oracle set" = that time / switchboard's time with every agent attached: the share of \
            the loss that is routing rather than overhead.
            """
    )

    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "Tasks per window.")
    var tasks: Int = 3_000

    @Option(help: "Windows of tasks in flight, comma separated; one measurement (and one fresh gateway) each.")
    var windows: String = "4,8,12,16,24"

    @Option(help: "Hidden per-agent delays in milliseconds, comma separated.")
    var delays: String = "2,5,10,20,40,80"

    @Option(help: "Hidden per-agent failure probabilities, comma separated (same count as --delays).")
    var failureRates: String = "0,0,0.05,0.3,0,0.6"

    @Option(help: "maxConcurrency each agent registers with.")
    var maxConcurrency: Int = 4

    @Option(help: "maxRetries of each task (backoff fixed 0).")
    var maxRetries: Int = 2

    @Option(help: "Simulation runs (seeds) averaged for the oracle and the baselines.")
    var simulationRuns: Int = 20

    @Option(help: "Seed of the agents' failure draws.")
    var seed: UInt64 = 1

    private var agents: [SimulatedAgentSpec] {
        get throws {
            let delayList = delays.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            let failureList = failureRates.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !delayList.isEmpty, delayList.count == failureList.count else {
                throw ValidationError("--delays and --failure-rates need the same number of values")
            }
            return zip(delayList, failureList).enumerated().map { index, pair in
                SimulatedAgentSpec(
                    agentName: "worker", tool: "work", delayMilliseconds: pair.0, failureRate: pair.1,
                    maxConcurrency: maxConcurrency, seed: seed &+ UInt64(index) &* 0x9E37_79B9)
            }
        }
    }

    private var windowList: [Int] { windows.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        guard tasks > 0, maxConcurrency > 0, simulationRuns > 0, !windowList.isEmpty, windowList.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("counts must be positive")
        }
        guard (0...100).contains(maxRetries) else { throw ValidationError("--max-retries must be from 0 to 100") }
        let specs = try agents
        guard specs.allSatisfy({ $0.delayMilliseconds >= 0 && (0...1).contains($0.failureRate) }) else {
            throw ValidationError("delays must be >= 0 and failure rates from 0 to 1")
        }
    }

    func run() async throws {
        let specs = try agents
        let model = specs.map { RoutingSimulation.Agent(delay: $0.delayMilliseconds, failure: $0.failureRate, capacity: $0.maxConcurrency) }
        let labels = specs.map { String(format: "%g ms %g%%", $0.delayMilliseconds, $0.failureRate * 100) }
        print("agents (delay, failure; maxConcurrency \(maxConcurrency) each): \(labels.joined(separator: " | "))")
        print("expected cost per success d / (1 - f), ms: "
            + model.map { $0.failure >= 1 ? "∞" : format($0.delay / (1 - $0.failure)) }.joined(separator: " | "))

        var rows: [RoutingRow] = []
        for window in windowList {
            let oracleSet = RoutingSimulation.oracleSet(model, window: window)
            let fluid = RoutingSimulation.fluidMilliseconds(model, window: window, tasks: tasks)
            print()
            print("window \(window): oracle set \(oracleSet.sorted().map { labels[$0] }.joined(separator: ", ")); "
                + "fluid bound \(String(format: "%.3f", fluid / 1000)) s")

            let simulated: [(String, RoutingSimulation.Policy)] = [
                ("oracle (sim)", .oracle(oracleSet)), ("round robin (sim)", .roundRobin), ("switchboard rule (sim)", .switchboardRule),
            ]
            var oracleSeconds = 0.0
            for (index, (label, policy)) in simulated.enumerated() {
                let outcome = RoutingSimulation.mean(
                    model, tasks: tasks, window: window, maxRetries: maxRetries, policy: policy, runs: simulationRuns, seed: seed)
                if index == 0 { oracleSeconds = outcome.seconds }
                let row = RoutingRow(
                    window: window, label: label, seconds: outcome.seconds, tasks: tasks, succeeded: outcome.succeeded,
                    attempts: outcome.attempts, oracleSet: oracleSet, oracleSeconds: oracleSeconds)
                print(row.summary(labels))
                rows.append(row)
            }

            // The oracle's choice run for real: only its set attached, so that the gateway's and the
            // network's overhead is in both; then every agent, the gateway choosing.
            var measuredOracleSeconds: Double?
            for (label, members) in [("oracle set only (measured)", oracleSet), ("**switchboard (measured)**", Set(specs.indices))] {
                let measured = try await measure(specs, attaching: members, window: window)
                var row = RoutingRow(
                    window: window, label: label, seconds: measured.seconds, tasks: tasks,
                    succeeded: Double(measured.succeeded), attempts: measured.attempts.map(Double.init), oracleSet: oracleSet,
                    oracleSeconds: oracleSeconds)
                if let measuredOracleSeconds { row.measuredOracleSeconds = measuredOracleSeconds } else { measuredOracleSeconds = measured.seconds }
                print(row.summary(labels))
                rows.append(row)
            }
        }

        print()
        print("| window | routing | time s | tasks/s | succeeded | attempts/task | in oracle set | quality | vs measured oracle set | "
            + labels.joined(separator: " | ") + " |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + labels.map { _ in "---:" }.joined(separator: " | ") + " |")
        for row in rows { print(row.markdown) }
    }

    private struct Measured {
        var seconds: Double
        var succeeded: Int
        var attempts: [Int]
    }

    /// One run on a fresh gateway with the agents of `members` attached; attempts by agent index.
    private func measure(_ specs: [SimulatedAgentSpec], attaching members: Set<Int>, window: Int) async throws -> Measured {
        let gateway = try JSONRPCProcess.startGateway(binary: binary, transport: "tcp")
        defer { gateway.stop() }
        let attached = members.sorted()
        let agentChannels = try await SimulatedAgent.attach(attached.map { specs[$0] }, to: gateway)
        let client = try await gateway.connect()
        let plan = TaskDriver.Plan(
            count: tasks, window: window, burst: false, taskType: specs[0].tool,
            extraParams: #","maxRetries":\#(maxRetries),"backoff":"fixed","backoffDelay":0"#)
        let outcome = try await TaskDriver.run(on: client, plan: plan)
        var attempts = Array(repeating: 0, count: specs.count)
        for (index, channel) in zip(attached, agentChannels) { attempts[index] = try await SimulatedAgent.takeTally(of: channel).calls }
        try await client.close()
        for channel in agentChannels { try? await channel.close() }
        return Measured(seconds: outcome.seconds, succeeded: outcome.succeeded, attempts: attempts)
    }
}

private struct RoutingRow {
    var window: Int
    var label: String
    var seconds: Double
    var tasks: Int
    var succeeded: Double
    var attempts: [Double]
    var oracleSet: Set<Int>
    var oracleSeconds: Double
    /// The oracle's set run for real (only those agents attached), for the measured switchboard row.
    var measuredOracleSeconds: Double?

    var totalAttempts: Double { attempts.reduce(0, +) }
    var inOracleSet: Double {
        totalAttempts == 0 ? 0 : attempts.enumerated().filter { oracleSet.contains($0.offset) }.map(\.element).reduce(0, +) / totalAttempts
    }
    var quality: Double { oracleSeconds / seconds }
    var shares: [Double] { attempts.map { totalAttempts == 0 ? 0 : $0 / totalAttempts } }

    func summary(_ labels: [String]) -> String {
        "  \(label): \(String(format: "%.3f", seconds)) s, \(Int(Double(tasks) / seconds)) tasks/s, "
            + "succeeded \(String(format: "%.2f", succeeded / Double(tasks) * 100))%, "
            + "attempts/task \(String(format: "%.3f", totalAttempts / Double(tasks))), "
            + "in oracle set \(String(format: "%.1f", inOracleSet * 100))%, quality \(String(format: "%.2f", quality))"
            + (measuredOracleSeconds.map { ", vs measured oracle set \(String(format: "%.2f", $0 / seconds))" } ?? "") + "; shares: "
            + zip(labels, shares).map { "\($0) \(String(format: "%.1f", $1 * 100))%" }.joined(separator: ", ")
    }

    var markdown: String {
        "| \(window) | \(label) | \(String(format: "%.3f", seconds)) | \(Int(Double(tasks) / seconds)) | "
            + "\(String(format: "%.2f", succeeded / Double(tasks) * 100))% | \(String(format: "%.3f", totalAttempts / Double(tasks))) | "
            + "\(String(format: "%.1f", inOracleSet * 100))% | \(String(format: "%.2f", quality)) | "
            + (measuredOracleSeconds.map { String(format: "%.2f", $0 / seconds) } ?? "—") + " | "
            + shares.map { String(format: "%.1f%%", $0 * 100) }.joined(separator: " | ") + " |"
    }
}

/// Discrete-event simulation of a window of tasks over agents with delays, failure rates and
/// capacities, under a routing policy; times in milliseconds.
enum RoutingSimulation {
    struct Agent {
        var delay: Double
        var failure: Double
        var capacity: Int
        /// Successes per millisecond per slot.
        var rate: Double { delay <= 0 ? (failure >= 1 ? 0 : .infinity) : (1 - failure) / delay }
    }

    enum Policy {
        /// Only agents of the set, highest success rate first (untried first).
        case oracle(Set<Int>)
        /// The next agent in turn with a free slot (untried first).
        case roundRobin
        /// The gateway's rule with the true values: min of d / (1 - f) × (1 + (inFlight + 1) / capacity), untried first.
        case switchboardRule
    }

    struct Outcome {
        var seconds: Double
        var succeeded: Double
        var attempts: [Double]
    }

    /// The agents whose slots a throughput-optimal router uses with `window` tasks in flight: the
    /// highest rates first until their slots hold the window.
    static func oracleSet(_ agents: [Agent], window: Int) -> Set<Int> {
        var chosen: Set<Int> = []
        var slots = 0
        for index in agents.indices.sorted(by: { agents[$0].rate > agents[$1].rate }) where slots < window && agents[index].rate > 0 {
            chosen.insert(index)
            slots += agents[index].capacity
        }
        return chosen
    }

    /// Tasks over the best throughput the window allows (every slot busy, no overhead, no tail).
    static func fluidMilliseconds(_ agents: [Agent], window: Int, tasks: Int) -> Double {
        var left = Double(window)
        var rate = 0.0
        for agent in agents.sorted(by: { $0.rate > $1.rate }) where left > 0 {
            let slots = min(left, Double(agent.capacity))
            rate += slots * agent.rate
            left -= slots
        }
        return Double(tasks) / rate
    }

    static func mean(_ agents: [Agent], tasks: Int, window: Int, maxRetries: Int, policy: Policy, runs: Int, seed: UInt64) -> Outcome {
        var total = Outcome(seconds: 0, succeeded: 0, attempts: Array(repeating: 0, count: agents.count))
        for run in 0..<runs {
            let outcome = simulate(agents, tasks: tasks, window: window, maxRetries: maxRetries, policy: policy, seed: seed &+ UInt64(run) &* 7919)
            total.seconds += outcome.seconds / Double(runs)
            total.succeeded += outcome.succeeded / Double(runs)
            for index in agents.indices { total.attempts[index] += outcome.attempts[index] / Double(runs) }
        }
        return total
    }

    private struct SimTask {
        var tried: Set<Int> = []
        var attempts = 0
    }

    private struct Event {
        var time: Double
        var agent: Int
        var task: SimTask
    }

    static func simulate(_ agents: [Agent], tasks: Int, window: Int, maxRetries: Int, policy: Policy, seed: UInt64) -> Outcome {
        var random = SplitMix64(seed: seed)
        var now = 0.0
        var inFlight = Array(repeating: 0, count: agents.count)
        var lastAssigned = Array(repeating: 0, count: agents.count)
        var sequence = 0
        var attempts = Array(repeating: 0.0, count: agents.count)
        var queue: [SimTask] = []
        var queueHead = 0
        var running: [Event] = []
        var submitted = 0
        var finished = 0
        var succeeded = 0
        var turn = 0

        func choose(_ task: SimTask) -> Int? {
            let free = agents.indices.filter { inFlight[$0] < agents[$0].capacity }
            switch policy {
            case .oracle(let set):
                let inSet = free.filter { set.contains($0) }
                let fresh = inSet.filter { !task.tried.contains($0) }
                return (fresh.isEmpty ? inSet : fresh).max { agents[$0].rate < agents[$1].rate }
            case .roundRobin:
                var fallback: Int?
                for step in 0..<agents.count {
                    let index = (turn + step) % agents.count
                    guard inFlight[index] < agents[index].capacity else { continue }
                    if !task.tried.contains(index) { return index }
                    if fallback == nil { fallback = index }
                }
                return fallback
            case .switchboardRule:
                let fresh = free.filter { !task.tried.contains($0) }
                func cost(_ index: Int) -> (Double, Int) {
                    let agent = agents[index]
                    let expected = agent.delay / max(1 - agent.failure, 0.02)
                    return (expected * (1 + Double(inFlight[index] + 1) / Double(agent.capacity)), lastAssigned[index])
                }
                return (fresh.isEmpty ? free : fresh).min { cost($0) < cost($1) }
            }
        }

        func submit() {
            queue.append(SimTask())
            submitted += 1
        }

        func dispatch() {
            // One tool: when the head cannot be placed, nothing behind it can be either.
            while queueHead < queue.count, let agent = choose(queue[queueHead]) {
                var task = queue[queueHead]
                queueHead += 1
                task.tried.insert(agent)
                task.attempts += 1
                inFlight[agent] += 1
                sequence += 1
                lastAssigned[agent] = sequence
                turn = agent + 1
                attempts[agent] += 1
                running.append(Event(time: now + agents[agent].delay, agent: agent, task: task))
            }
            if queueHead > 4096 {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
        }

        for _ in 0..<min(window, tasks) { submit() }
        dispatch()
        while finished < tasks {
            guard let next = running.indices.min(by: { running[$0].time < running[$1].time }) else { break }  // stuck: no agent
            let event = running.remove(at: next)
            now = event.time
            inFlight[event.agent] -= 1
            let failed = Double.random(in: 0..<1, using: &random) < agents[event.agent].failure
            if !failed {
                succeeded += 1
                finished += 1
                if submitted < tasks { submit() }
            } else if event.task.attempts <= maxRetries {
                queue.append(event.task)
            } else {
                finished += 1
                if submitted < tasks { submit() }
            }
            dispatch()
        }
        return Outcome(seconds: now / 1000, succeeded: Double(succeeded), attempts: attempts)
    }
}

// MARK: - tasks

/// Throughput of tasks/submit + tasks/result with fast echo agents, how long a task waits from its
/// submission until its agent receives the call, and how soon a queued task reaches an agent that
/// has just become free.
struct TaskThroughputBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "tasks/submit + tasks/result throughput and assignment latency with attached echo agents.",
        discussion: """
            Starts `switchboard serve --listen tcp://127.0.0.1:0` and attaches --agents simulated agents over \
            TCP from this process (one tool `work`, answered at once, never failing). One client connection \
            then measures: (1) `window`: tasks/submit, then tasks/result on its reply, keeping --window tasks \
            in flight; (2) `burst`: --burst tasks/submit written at once, then tasks/result for each (at most \
            --window outstanding) while the agents drain the queue. Every task carries the time its submit was \
            written in taskData; the agent that receives the call records now − that time: the assignment \
            latency (submit → agent). CPU µs/task: user + system CPU of the gateway, and of this process \
            (client and agents), over the measurement.

            (3) Assignment with a queue: a fresh gateway per count of --assignment-agents, each agent of \
            maxConcurrency 1. First a sequential tools/call through the gateway to those agents (the minimal \
            hop, for comparison); then --assignment-queue tasks plus those to be taken are submitted while \
            each agent holds its first call unanswered, so that they all queue. Each agent then answers at \
            once and records, for every next tools/call, the gap from its reply having been written to its \
            socket to that call arriving: how soon the gateway hands queued work to an agent that has just \
            become free. --warmup assignments first (not recorded), then --assignments recorded; after both \
            each agent holds a call again, and gateway/status gives the queue depth before and after the \
            recorded ones (at least --assignment-queue throughout). The target is p99 ≤ 100 µs.
            """
    )

    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "Attached echo agents.")
    var agents: Int = 8

    @Option(help: "maxConcurrency each agent registers with.")
    var agentConcurrency: Int = 32

    @Option(help: "Tasks in the windowed measurement.")
    var tasks: Int = 50_000

    @Option(help: "Tasks in flight in the windowed measurement (and tasks/result outstanding in the burst).")
    var window: Int = 256

    @Option(help: "Tasks submitted at once in the burst measurement.")
    var burst: Int = 10_000

    @Option(help: "Tasks before the measurements that are not counted (also assignments before the recorded ones).")
    var warmup: Int = 5_000

    @Option(help: "Agents (maxConcurrency 1 each) of the assignment measurement, comma separated; one fresh gateway each.")
    var assignmentAgents: String = "1,4"

    @Option(help: "Tasks that stay queued behind the agents while assignments are recorded.")
    var assignmentQueue: Int = 10_000

    @Option(help: "Assignments recorded per count of agents.")
    var assignments: Int = 20_000

    @Option(help: "Sequential tools/call round trips through the gateway to the assignment agents (the comparison).")
    var sequentialRequests: Int = 5_000

    @OptionGroup var summary: SummaryOptions

    /// Task assignment p99 with 10,000 tasks queued, in microseconds: the performance target.
    static let assignmentTargetMicroseconds = 100.0

    private var assignmentAgentCounts: [Int] {
        assignmentAgents.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    func validate() throws {
        guard agents > 0, agentConcurrency > 0, tasks > 0, window > 0, burst > 0, warmup >= 0 else {
            throw ValidationError("counts must be positive")
        }
        guard !assignmentAgentCounts.isEmpty, assignmentAgentCounts.allSatisfy({ $0 > 0 }), assignmentQueue >= 0, assignments > 0,
            sequentialRequests > 0
        else {
            throw ValidationError("--assignment-agents, --assignments and --sequential-requests must be positive")
        }
        guard window < 1_024 else { throw ValidationError("--window must stay below the gateway's 1,024 requests in flight per connection") }
    }

    func run() async throws {
        let specs = (0..<agents).map { index in
            SimulatedAgentSpec(agentName: "echo", tool: "work", delayMilliseconds: 0, failureRate: 0, maxConcurrency: agentConcurrency, seed: UInt64(index))
        }
        let bench = JSONRPCProcess.observe(pid: getpid(), name: "bench")
        var calls = ResultTable()

        // The floor: tools/call straight to one simulated agent, in this process, over TCP.
        let direct = "tools/call directly to one agent"
        do {
            let (server, port) = try await SimulatedAgent.serve(specs[0])
            let channel = try await JSONRPCProcess.connect(port: port)
            try await calls.measure(
                label: direct, mode: "window \(window)", channel: channel, request: .call(tool: "work"), count: tasks, window: window,
                warmup: warmup, processes: [("bench", bench)])
            try await channel.close()
            try await server.close()
        }

        let relayed = "tools/call through switchboard"
        var rows: [ThroughputRow] = []
        do {
            let gateway = try JSONRPCProcess.startGateway(binary: binary, transport: "tcp")
            defer { gateway.stop() }
            let agentChannels = try await SimulatedAgent.attach(specs, to: gateway)
            let client = try await gateway.connect()
            try await calls.measure(
                label: relayed, mode: "window \(window)", channel: client, request: .call(tool: "work"), count: tasks, window: window,
                warmup: warmup, processes: [("gateway", gateway), ("bench", bench)], baseline: direct)

            if warmup > 0 {
                _ = try await TaskDriver.run(on: client, plan: .init(count: warmup, window: window, burst: false, taskType: "work", extraParams: ""))
            }
            for (mode, plan) in [
                ("window \(window)", TaskDriver.Plan(count: tasks, window: window, burst: false, taskType: "work", extraParams: "")),
                ("\(grouped(Double(burst))) queued at once", TaskDriver.Plan(count: burst, window: window, burst: true, taskType: "work", extraParams: "")),
            ] {
                for channel in agentChannels { _ = try await SimulatedAgent.takeTally(of: channel) }
                let cpuBefore = (gateway.cpuTime(), bench.cpuTime())
                let outcome = try await TaskDriver.run(on: client, plan: plan)
                let cpuAfter = (gateway.cpuTime(), bench.cpuTime())
                var assignment = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
                var calls = 0
                for channel in agentChannels {
                    let tally = try await SimulatedAgent.takeTally(of: channel)
                    assignment.add(tally.assignment)
                    calls += tally.calls
                }
                let row = ThroughputRow(
                    mode: mode, outcome: outcome, assignment: assignment, calls: calls,
                    gatewayCPU: (cpuAfter.0 - cpuBefore.0) * 1e6 / Double(plan.count),
                    benchCPU: (cpuAfter.1 - cpuBefore.1) * 1e6 / Double(plan.count))
                print(row.summary)
                rows.append(row)
            }
            try await client.close()
            for channel in agentChannels { try? await channel.close() }
        }

        // Assignment with a queue, on a fresh gateway for each count of agents.
        var assignmentRows: [AssignmentRow] = []
        for count in assignmentAgentCounts {
            let row = try await measureAssignment(agents: count, bench: bench)
            print(row.summary)
            assignmentRows.append(row)
        }

        // The task rows beside the calls: tasks/s and submit → result against a relayed call.
        for row in rows {
            calls.add(
                Measurement(
                    label: "tasks/submit + tasks/result", mode: row.mode, count: row.outcome.count, seconds: row.outcome.seconds,
                    percentiles: Measurement.percentiles(of: row.outcome.endToEnd),
                    cpuPerCall: [("gateway", row.gatewayCPU), ("bench", row.benchCPU)], baseline: relayed))
        }

        print()
        print("tools/call and tasks with \(agents) simulated echo agents (maxConcurrency \(agentConcurrency) each) attached over TCP "
            + "(latency: call round trip, or submit → result):")
        calls.print(unit: "calls or tasks/s")
        print()
        print("| mode | tasks | tasks/s | submit → agent p50 ms | p99 ms | p999 ms | submit → result p50 ms | p99 ms | gateway CPU µs/task | bench CPU µs/task |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in rows { print(row.markdown) }

        let directRow = calls.rows.first { $0.label == direct }
        let relayedRow = calls.rows.first { $0.label == relayed }
        for row in rows {
            var against = ""
            if let relayedRow {
                against = "\(ratio(row.tasksPerSecond, relayedRow.callsPerSecond)) of tools/call through switchboard (\(grouped(relayedRow.callsPerSecond))/s)"
            }
            if let directRow {
                against += "; \(ratio(row.tasksPerSecond, directRow.callsPerSecond)) of tools/call directly (\(grouped(directRow.callsPerSecond))/s)"
            }
            summary.record(
                "3 tasks", "tasks/submit + tasks/result, \(row.mode)",
                "\(grouped(row.tasksPerSecond)) tasks/s, submit → agent p50 \(ThroughputRow.millis(row.assignment, 50)) ms, "
                    + "p99 \(ThroughputRow.millis(row.assignment, 99)) ms, gateway \(format(row.gatewayCPU)) µs CPU/task", against)
        }

        print()
        print("task assignment with \(grouped(Double(assignmentQueue)))+ tasks queued, simulated agents of maxConcurrency 1 answering at once "
            + "(gap: the agent's reply written → the next tools/call arriving at it; beside a sequential tools/call through switchboard to "
            + "the same agents):")
        print("| agents | assignments | assignments/s | queued at start → end | gap p50 µs | p99 µs | p999 µs | max µs | "
            + "gateway CPU µs/assignment | bench CPU µs/assignment | tools/call sequential p50 µs | p99 µs | p99 against the 100 µs target |")
        print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for row in assignmentRows { print(row.markdown) }
        for row in assignmentRows {
            summary.record(
                "3 tasks", "task assignment, \(row.agentsText), \(grouped(Double(row.queuedAtEnd)))+ queued",
                "p50 \(format(row.micros(50))) µs, p99 \(format(row.micros(99))) µs, p999 \(format(row.micros(99.9))) µs, "
                    + "max \(format(row.maxMicros)) µs, gateway \(format(row.gatewayCPU)) µs CPU/assignment",
                "p99 \(ratio(row.micros(99), Self.assignmentTargetMicroseconds)) of the 100 µs target; p50 \(ratio(row.micros(50), row.relayed.micros(50))), "
                    + "p99 \(ratio(row.micros(99), row.relayed.micros(99))) of a sequential tools/call through switchboard to the same "
                    + "\(row.agents == 1 ? "agent" : "agents") (p50 \(format(row.relayed.micros(50))) µs, p99 \(format(row.relayed.micros(99))) µs)")
        }

        // The engine's own share, without the two trips through the kernel.
        let engine = try await EngineAssignment.measure(queued: assignmentQueue, warmup: warmup, assignments: assignments)
        print()
        print("task assignment inside the gateway's task engine, no sockets (one agent instance of maxConcurrency 1 answering on the "
            + "event loop; gap: its answer → the engine's next call), queued \(grouped(Double(engine.queuedAtStart))) → "
            + "\(grouped(Double(engine.queuedAtEnd))): \(engine.assignments) assignments in \(String(format: "%.3f", engine.seconds)) s; "
            + "gap p50 \(format(engine.micros(50))) µs, p99 \(format(engine.micros(99))) µs, p999 \(format(engine.micros(99.9))) µs, "
            + "max \(format(Double(engine.gaps.max) / 1000)) µs")
        summary.record(
            "3 tasks", "task assignment inside the engine (no sockets), \(grouped(Double(engine.queuedAtEnd)))+ queued",
            "p50 \(format(engine.micros(50))) µs, p99 \(format(engine.micros(99))) µs, p999 \(format(engine.micros(99.9))) µs",
            "p99 \(ratio(engine.micros(99), Self.assignmentTargetMicroseconds)) of the 100 µs target")
    }

    /// Assignment latency with `agents` agents of maxConcurrency 1 and at least `assignmentQueue`
    /// tasks queued behind them, on a gateway of its own.
    private func measureAssignment(agents: Int, bench: JSONRPCProcess) async throws -> AssignmentRow {
        let gateway = try JSONRPCProcess.startGateway(binary: binary, transport: "tcp")
        defer { gateway.stop() }
        let specs = (0..<agents).map { index in
            SimulatedAgentSpec(agentName: "drain", tool: "work", delayMilliseconds: 0, failureRate: 0, maxConcurrency: 1, seed: UInt64(index))
        }
        let agentChannels = try await SimulatedAgent.attach(specs, to: gateway)
        let client = try await gateway.connect()

        // The comparison, while nothing is queued: the same agents called through the gateway one
        // call at a time, the least a hop through it costs.
        var calls = ResultTable()
        try await calls.measure(
            label: "tools/call through switchboard to the same agents", mode: "sequential", channel: client, request: .call(tool: "work"),
            count: sequentialRequests, window: 1, warmup: warmup, processes: [("gateway", gateway), ("bench", bench)])

        // Every agent holds its first call, so that the rest of the submissions queue up behind them.
        for channel in agentChannels { try await QueueDrainingAgent.takeOver(channel) }
        let warmupPerAgent = (warmup + agents - 1) / agents
        let recordedPerAgent = (assignments + agents - 1) / agents
        let submitted = assignmentQueue + agents * (1 + warmupPerAgent + recordedPerAgent)
        _ = try await TaskDriver.run(
            on: client, plan: .init(count: submitted, window: 0, burst: true, taskType: "work", extraParams: "", submitOnly: true))
        for channel in agentChannels { try await QueueDrainingAgent.holdingCall(of: channel).get() }

        if warmupPerAgent > 0 {
            for drain in agentChannels.map({ QueueDrainingAgent.drain($0, assignments: warmupPerAgent, recording: false) }) {
                _ = try await drain.get()
            }
        }
        let queuedAtStart = try await Self.queuedTasks(on: client)
        let cpuBefore = (gateway.cpuTime(), bench.cpuTime())
        let started = DispatchTime.now().uptimeNanoseconds
        var gaps = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
        var recorded = 0
        for drain in agentChannels.map({ QueueDrainingAgent.drain($0, assignments: recordedPerAgent, recording: true) }) {
            let tally = try await drain.get()
            gaps.add(tally.gaps)
            recorded += tally.assignments
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let cpuAfter = (gateway.cpuTime(), bench.cpuTime())
        let queuedAtEnd = try await Self.queuedTasks(on: client)
        try await client.close()
        for channel in agentChannels { try? await channel.close() }
        return AssignmentRow(
            agents: agents, assignments: recorded, seconds: seconds, gaps: gaps, queuedAtStart: queuedAtStart, queuedAtEnd: queuedAtEnd,
            gatewayCPU: (cpuAfter.0 - cpuBefore.0) * 1e6 / Double(recorded), benchCPU: (cpuAfter.1 - cpuBefore.1) * 1e6 / Double(recorded),
            relayed: calls.rows[0])
    }

    /// The gateway's count of queued tasks (gateway/status).
    private static func queuedTasks(on client: any Channel) async throws -> Int {
        let status = try await Handshake.exchange(client, #"{"jsonrpc":"2.0","id":"status","method":"gateway/status"}"#)
        guard let queued = LineScan.integerValue(after: Array(#""queued":"#.utf8), in: ByteBuffer(string: status).readableBytesView) else {
            throw ValidationError("gateway/status without a task queue: \(status)")
        }
        return queued
    }
}

private struct AssignmentRow {
    var agents: Int
    var assignments: Int
    var seconds: Double
    /// Nanoseconds from an agent's reply being written to its next tools/call arriving.
    var gaps: Histogram<UInt64>
    var queuedAtStart: Int
    var queuedAtEnd: Int
    var gatewayCPU: Double
    var benchCPU: Double
    /// Sequential tools/call through the gateway to the same agents, nothing queued.
    var relayed: Measurement

    var agentsText: String { agents == 1 ? "1 agent (maxConcurrency 1)" : "\(agents) agents (maxConcurrency 1 each)" }

    func micros(_ percentile: Double) -> Double { Double(gaps.valueAtPercentile(percentile)) / 1000 }

    var maxMicros: Double { Double(gaps.max) / 1000 }

    var summary: String {
        "task assignment, \(agentsText), queued \(grouped(Double(queuedAtStart))) → \(grouped(Double(queuedAtEnd))): "
            + "\(assignments) assignments in \(String(format: "%.3f", seconds)) s = \(grouped(Double(assignments) / seconds))/s; "
            + "gap p50 \(format(micros(50))) µs, p99 \(format(micros(99))) µs, p999 \(format(micros(99.9))) µs, max \(format(maxMicros)) µs; "
            + "CPU µs/assignment: gateway \(format(gatewayCPU)), bench \(format(benchCPU))"
    }

    var markdown: String {
        "| \(agents) | \(assignments) | \(grouped(Double(assignments) / seconds)) | \(grouped(Double(queuedAtStart))) → \(grouped(Double(queuedAtEnd))) | "
            + "\(format(micros(50))) | \(format(micros(99))) | \(format(micros(99.9))) | \(format(maxMicros)) | \(format(gatewayCPU)) | "
            + "\(format(benchCPU)) | \(format(relayed.micros(50))) | \(format(relayed.micros(99))) | "
            + "\(ratio(micros(99), TaskThroughputBenchmark.assignmentTargetMicroseconds)) |"
    }
}

private struct ThroughputRow {
    var mode: String
    var outcome: TaskDriver.Outcome
    var assignment: Histogram<UInt64>
    var calls: Int
    var gatewayCPU: Double
    var benchCPU: Double

    var tasksPerSecond: Double { Double(outcome.count) / outcome.seconds }

    static func millis(_ histogram: Histogram<UInt64>, _ percentile: Double) -> String {
        String(format: "%.3f", Double(histogram.valueAtPercentile(percentile)) / 1e6)
    }

    var summary: String {
        var text = "\(mode): \(outcome.count) tasks (\(outcome.succeeded) completed, \(calls) agent calls) in "
            + "\(String(format: "%.3f", outcome.seconds)) s = \(Int(tasksPerSecond)) tasks/s; submit → agent p50 \(Self.millis(assignment, 50)) ms, "
            + "p99 \(Self.millis(assignment, 99)) ms, p999 \(Self.millis(assignment, 99.9)) ms, max \(String(format: "%.3f", Double(assignment.max) / 1e6)) ms"
        if outcome.burst {
            text += "; all submits acknowledged after \(String(format: "%.3f", outcome.submittedSeconds)) s"
        } else {
            text += "; submit → result p50 \(Self.millis(outcome.endToEnd, 50)) ms, p99 \(Self.millis(outcome.endToEnd, 99)) ms"
        }
        return text + "; CPU µs/task: gateway \(format(gatewayCPU)), bench \(format(benchCPU))"
    }

    var markdown: String {
        let endToEnd = outcome.burst ? "— | —" : "\(Self.millis(outcome.endToEnd, 50)) | \(Self.millis(outcome.endToEnd, 99))"
        return "| \(mode) | \(outcome.count) | \(Int(tasksPerSecond)) | \(Self.millis(assignment, 50)) | \(Self.millis(assignment, 99)) | "
            + "\(Self.millis(assignment, 99.9)) | \(endToEnd) | \(format(gatewayCPU)) | \(format(benchCPU)) |"
    }
}

// MARK: - The simulated agent

struct SimulatedAgentSpec: Sendable {
    var agentName: String
    var tool: String
    var delayMilliseconds: Double
    var failureRate: Double
    var maxConcurrency: Int
    var seed: UInt64
    /// False: tools/call is never answered (the call holds its slot), for tasks that stay queued.
    var answersCalls = true
}

/// What one simulated agent saw since the last look.
struct AgentTally: Sendable {
    var calls = 0
    var failures = 0
    /// Nanoseconds from the submit that carried `benchT` to the call's arrival here.
    var assignment = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
}

/// An agent attached over TCP: registers, then answers each tools/call after its delay, failing
/// (a result with isError) with its probability; answers ping. Lives on its channel's event loop.
final class SimulatedAgent: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let spec: SimulatedAgentSpec
    private let delay: TimeAmount
    private var random: SplitMix64
    private var registered: EventLoopPromise<Void>?
    private(set) var tally = AgentTally()
    private var pendingFlush = false

    init(spec: SimulatedAgentSpec, registered: EventLoopPromise<Void>?) {
        self.spec = spec
        self.delay = .nanoseconds(Int64(spec.delayMilliseconds * 1_000_000))
        self.random = SplitMix64(seed: spec.seed)
        self.registered = registered
    }

    /// Connects and registers each agent, one after the other; returns their channels.
    static func attach(_ specs: [SimulatedAgentSpec], to gateway: JSONRPCProcess) async throws -> [any Channel] {
        try await attach(specs, port: gateway.port)
    }

    /// Connects and registers each agent to the gateway on `port`, one after the other.
    static func attach(_ specs: [SimulatedAgentSpec], port: Int) async throws -> [any Channel] {
        var channels: [any Channel] = []
        for spec in specs {
            let channel = try await JSONRPCProcess.connect(port: port)
            let promise = channel.eventLoop.makePromise(of: Void.self)
            try await channel.eventLoop.submit {
                let agent = SimulatedAgent(spec: spec, registered: promise)
                try channel.pipeline.syncOperations.addHandler(agent)
                let register = #"{"jsonrpc":"2.0","id":"register","method":"agents/register","params":{"agentName":"\#(spec.agentName)","#
                    + #""maxConcurrency":\#(spec.maxConcurrency),"tools":[{"name":"\#(spec.tool)","description":"benchmark work","#
                    + #""inputSchema":{"type":"object"}}]}}"#
                channel.writeAndFlush(ByteBuffer(string: register + "\n"), promise: nil)
            }.get()
            try await promise.futureResult.get()
            channels.append(channel)
        }
        return channels
    }

    /// Connects and registers agents, up to `concurrency` at a time; returns the channels of those
    /// that registered and the errors of the others.
    static func attachMany(
        _ specs: [SimulatedAgentSpec], to gateway: JSONRPCProcess, concurrency: Int
    ) async -> (channels: [any Channel], errors: [String]) {
        var channels: [any Channel] = []
        var errors: [String] = []
        let port = gateway.port
        await withTaskGroup(of: Result<any Channel, any Error>.self) { group in
            var next = 0
            func startOne() {
                let spec = specs[next]
                next += 1
                group.addTask {
                    do { return .success(try await attach([spec], port: port)[0]) } catch { return .failure(error) }
                }
            }
            while next < specs.count, next < concurrency { startOne() }
            for await outcome in group {
                switch outcome {
                case .success(let channel): channels.append(channel)
                case .failure(let error): errors.append("\(error)")
                }
                if next < specs.count { startOne() }
            }
        }
        return (channels, errors)
    }

    /// A TCP listener in this process whose connections are served by simulated agents, so that
    /// the agent can be called directly (no registration); returns the listener and its port.
    static func serve(_ spec: SimulatedAgentSpec) async throws -> (any Channel, Int) {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplyLineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(SimulatedAgent(spec: spec, registered: nil))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return (server, server.localAddress?.port ?? 0)
    }

    /// The agent's tally since the last call, which starts a new one.
    static func takeTally(of channel: any Channel) async throws -> AgentTally {
        try await channel.eventLoop.submit {
            let agent = try channel.pipeline.syncOperations.handler(type: SimulatedAgent.self)
            defer { agent.tally = AgentTally() }
            return agent.tally
        }.get()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let arrived = DispatchTime.now().uptimeNanoseconds
        let line = unwrapInboundIn(data)
        let view = line.readableBytesView
        let id = LineScan.rawValue(after: LineScan.idKey, in: view)
        guard let method = LineScan.stringValue(after: LineScan.methodKey, in: view) else {
            // A response: the one to agents/register.
            if let registered {
                self.registered = nil
                if LineScan.find(LineScan.errorKey, in: view) != nil {
                    registered.fail(ValidationError("agents/register failed: \(String(buffer: line))"))
                } else {
                    registered.succeed()
                }
            }
            return
        }
        guard let id else { return }  // a notification (cancelled, list_changed): nothing to do
        var reply = context.channel.allocator.buffer(capacity: 128)
        reply.writeString(#"{"jsonrpc":"2.0","id":"#)
        reply.writeBytes(id)
        switch method {
        case "tools/call" where !spec.answersCalls:
            tally.calls += 1
            return
        case "tools/call":
            tally.calls += 1
            if let stamp = LineScan.integerValue(after: LineScan.stampKey, in: view), stamp > 0, arrived >= UInt64(stamp) {
                _ = tally.assignment.record(arrived - UInt64(stamp))
            }
            let fails = spec.failureRate > 0 && Double.random(in: 0..<1, using: &random) < spec.failureRate
            if fails {
                tally.failures += 1
                reply.writeString(#","result":{"content":[{"type":"text","text":"failed"}],"isError":true}}"#)
            } else {
                reply.writeString(#","result":{"content":[{"type":"text","text":"ok"}]}}"#)
            }
        case "ping":
            reply.writeString(#","result":{}}"#)
        default:
            reply.writeString(#","error":{"code":-32601,"message":"Method not found"}}"#)
        }
        reply.writeInteger(UInt8(ascii: "\n"))
        if method == "tools/call", delay > .zero {
            let channel = context.channel
            context.eventLoop.scheduleTask(in: delay) { [reply] in channel.writeAndFlush(reply, promise: nil) }
        } else {
            context.write(wrapOutboundOut(reply), promise: nil)
            pendingFlush = true
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if pendingFlush {
            pendingFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        registered?.fail(ValidationError("the gateway closed the agent's connection before it registered"))
        registered = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        registered?.fail(error)
        registered = nil
        context.close(promise: nil)
    }
}

/// What a draining agent took in one drain.
struct DrainTally: Sendable {
    var assignments = 0
    /// Nanoseconds from the agent's reply being written to its next tools/call arriving.
    var gaps = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
}

/// An attached agent of maxConcurrency 1 that takes queued tasks one at a time, answering each at
/// once, and measures how soon the gateway hands it the next. Between drains it holds the call it
/// was last given unanswered, so that its one slot stays taken and the queue behind it stays as it
/// is. It takes over a connection a `SimulatedAgent` registered. Lives on its channel's event loop.
final class QueueDrainingAgent: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The id of the tools/call held unanswered, as it came.
    private var heldCallID: [UInt8]?
    private var holding: EventLoopPromise<Void>?
    /// Calls still to take in this drain; at 0 the next call is held.
    private var remaining = 0
    private var recording = false
    /// When the last reply to a tools/call was written to the socket.
    private var repliedAt: UInt64 = 0
    private var tally = DrainTally()
    private var drained: EventLoopPromise<DrainTally>?

    /// Replaces the SimulatedAgent on `channel` (the connection it registered) with a draining
    /// agent that holds the next call it is given.
    static func takeOver(_ channel: any Channel) async throws {
        try await channel.eventLoop.submit {
            let agent = try channel.pipeline.syncOperations.handler(type: SimulatedAgent.self)
            channel.pipeline.syncOperations.removeHandler(agent, promise: nil)
            try channel.pipeline.syncOperations.addHandler(QueueDrainingAgent())
        }.get()
    }

    /// Completes once the agent holds a call.
    static func holdingCall(of channel: any Channel) -> EventLoopFuture<Void> {
        channel.eventLoop.flatSubmit {
            do {
                let agent = try channel.pipeline.syncOperations.handler(type: QueueDrainingAgent.self)
                if agent.heldCallID != nil { return channel.eventLoop.makeSucceededVoidFuture() }
                let promise = agent.holding ?? channel.eventLoop.makePromise(of: Void.self)
                agent.holding = promise
                return promise.futureResult
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
    }

    /// Answers the held call, then takes the next `assignments` calls the gateway hands over,
    /// answering all but the last at once and holding the last; with `recording`, the gap before
    /// each of them goes into the tally.
    static func drain(_ channel: any Channel, assignments: Int, recording: Bool) -> EventLoopFuture<DrainTally> {
        channel.eventLoop.flatSubmit {
            do {
                let context = try channel.pipeline.syncOperations.context(handlerType: QueueDrainingAgent.self)
                let agent = try channel.pipeline.syncOperations.handler(type: QueueDrainingAgent.self)
                guard let held = agent.heldCallID, assignments > 0, agent.drained == nil else {
                    throw ValidationError("a drain needs a held call and no other drain under way")
                }
                let promise = channel.eventLoop.makePromise(of: DrainTally.self)
                agent.drained = promise
                agent.remaining = assignments
                agent.recording = recording
                agent.tally = DrainTally()
                agent.heldCallID = nil
                agent.answer(held, context: context)
                return promise.futureResult
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
    }

    private func answer(_ id: [UInt8], context: ChannelHandlerContext) {
        var reply = context.channel.allocator.buffer(capacity: 96)
        reply.writeString(#"{"jsonrpc":"2.0","id":"#)
        reply.writeBytes(id)
        reply.writeString(#","result":{"content":[{"type":"text","text":"ok"}]}}"# + "\n")
        context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
        // After the flush: the gap starts once the reply is in the socket, on its way to the gateway.
        repliedAt = DispatchTime.now().uptimeNanoseconds
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let arrived = DispatchTime.now().uptimeNanoseconds
        let line = unwrapInboundIn(data)
        let view = line.readableBytesView
        // Responses and notifications need nothing.
        guard let method = LineScan.stringValue(after: LineScan.methodKey, in: view), let id = LineScan.rawValue(after: LineScan.idKey, in: view)
        else { return }
        guard method == "tools/call" else {
            // Health pings are answered at once; they are not assignments.
            var reply = context.channel.allocator.buffer(capacity: 96)
            reply.writeString(#"{"jsonrpc":"2.0","id":"#)
            reply.writeBytes(id)
            reply.writeString(method == "ping" ? #","result":{}}"# + "\n" : #","error":{"code":-32601,"message":"Method not found"}}"# + "\n")
            context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
            return
        }
        guard remaining > 0 else {
            heldCallID = id
            holding?.succeed()
            holding = nil
            return
        }
        remaining -= 1
        tally.assignments += 1
        if recording { _ = tally.gaps.record(arrived - repliedAt) }
        guard remaining == 0 else { return answer(id, context: context) }
        // The drain's last call is held: the slot stays taken, the queue stays where it is.
        heldCallID = id
        let tally = self.tally
        drained?.succeed(tally)
        drained = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        let closed = ValidationError("the gateway closed the agent's connection")
        holding?.fail(closed)
        holding = nil
        drained?.fail(closed)
        drained = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        holding?.fail(error)
        holding = nil
        drained?.fail(error)
        drained = nil
        context.close(promise: nil)
    }
}

// MARK: - The task client

/// Drives tasks/submit and tasks/result on one connection, on its event loop. Submit request ids
/// are 0..<count, result request ids count + task.
final class TaskDriver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Plan: Sendable {
        var count: Int
        /// Tasks in flight (window mode) or tasks/result requests outstanding (burst mode).
        var window: Int
        /// Write every submit at once first.
        var burst: Bool
        var taskType: String
        /// Appended to tasks/submit params, starting with a comma.
        var extraParams: String
        /// Done when every submit is acknowledged; no tasks/result (the tasks stay in flight).
        var submitOnly = false
    }

    struct Outcome: Sendable {
        var count: Int
        var succeeded: Int
        var burst: Bool
        /// From the first submit to the last result.
        var seconds: Double
        /// From the first submit to the last submit's reply.
        var submittedSeconds: Double
        /// Each task from its submit being written to its result being read.
        var endToEnd: Histogram<UInt64>
    }

    private let plan: Plan
    private let promise: EventLoopPromise<Outcome>
    private var submitTimes: [UInt64]
    private var pendingResults: [(Int, ByteBuffer)] = []
    private var pendingHead = 0
    private var submitted = 0
    private var acknowledged = 0
    private var resultsOutstanding = 0
    private var done = 0
    private var succeeded = 0
    private var started: UInt64 = 0
    private var submittedAt: UInt64 = 0
    private var endToEnd = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    private var pendingFlush = false
    private var finished = false

    private init(plan: Plan, promise: EventLoopPromise<Outcome>) {
        self.plan = plan
        self.promise = promise
        self.submitTimes = Array(repeating: 0, count: plan.count)
    }

    static func run(on channel: any Channel, plan: Plan) async throws -> Outcome {
        let promise = channel.eventLoop.makePromise(of: Outcome.self)
        try await channel.eventLoop.submit {
            let driver = TaskDriver(plan: plan, promise: promise)
            try channel.pipeline.syncOperations.addHandler(driver)
            driver.start(channel)
        }.get()
        let outcome: Outcome
        do {
            outcome = try await promise.futureResult.get()
        } catch {
            try? await channel.eventLoop.submit {
                let driver = try channel.pipeline.syncOperations.handler(type: TaskDriver.self)
                channel.pipeline.syncOperations.removeHandler(driver, promise: nil)
            }.get()
            throw error
        }
        try await channel.eventLoop.submit {
            let driver = try channel.pipeline.syncOperations.handler(type: TaskDriver.self)
            channel.pipeline.syncOperations.removeHandler(driver, promise: nil)
        }.get()
        return outcome
    }

    private func start(_ channel: any Channel) {
        started = DispatchTime.now().uptimeNanoseconds
        if plan.burst {
            while submitted < plan.count {
                sendSubmit(on: channel)
                if submitted % 64 == 0 { channel.flush() }
            }
        } else {
            for _ in 0..<min(plan.window, plan.count) { sendSubmit(on: channel) }
        }
        channel.flush()
    }

    private func sendSubmit(on channel: any Channel) {
        let task = submitted
        submitted += 1
        var buffer = channel.allocator.buffer(capacity: 192 + plan.extraParams.utf8.count)
        let now = DispatchTime.now().uptimeNanoseconds
        buffer.writeString(#"{"jsonrpc":"2.0","id":\#(task),"method":"tasks/submit","params":{"taskType":"\#(plan.taskType)","#)
        buffer.writeString(#""taskData":{"benchT":\#(now),"benchN":\#(task)}\#(plan.extraParams)}}"#)
        buffer.writeInteger(UInt8(ascii: "\n"))
        submitTimes[task] = now
        channel.write(buffer, promise: nil)
    }

    private func sendResult(task: Int, taskID: ByteBuffer, on channel: any Channel) {
        var buffer = channel.allocator.buffer(capacity: 96)
        buffer.writeString(#"{"jsonrpc":"2.0","id":\#(plan.count + task),"method":"tasks/result","params":{"taskId":""#)
        var id = taskID
        buffer.writeBuffer(&id)
        buffer.writeString("\"}}\n")
        resultsOutstanding += 1
        channel.write(buffer, promise: nil)
        pendingFlush = true
    }

    private func fail(_ message: String) {
        guard !finished else { return }
        finished = true
        promise.fail(ValidationError(message))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = DispatchTime.now().uptimeNanoseconds
        let line = unwrapInboundIn(data)
        let view = line.readableBytesView
        guard !finished, let id = LineScan.integerValue(after: LineScan.idKey, in: view), id >= 0, id < 2 * plan.count else { return }
        if id < plan.count {
            // A submit's reply: the task's id.
            guard let start = LineScan.find(LineScan.taskIDKey, in: view),
                let end = view[start...].firstIndex(of: UInt8(ascii: "\""))
            else {
                return fail("tasks/submit failed: \(String(buffer: line))")
            }
            let taskID = line.getSlice(at: start, length: end - start)!
            acknowledged += 1
            if acknowledged == plan.count { submittedAt = now }
            if plan.submitOnly {
                _ = endToEnd.record(now - submitTimes[id])
                if acknowledged == plan.count {
                    finished = true
                    promise.succeed(
                        Outcome(
                            count: plan.count, succeeded: 0, burst: plan.burst, seconds: Double(now - started) / 1e9,
                            submittedSeconds: Double(now - started) / 1e9, endToEnd: endToEnd))
                }
                return
            }
            if plan.burst {
                pendingResults.append((id, taskID))
                drainPendingResults(context.channel)
            } else {
                sendResult(task: id, taskID: taskID, on: context.channel)
            }
            return
        }
        let task = id - plan.count
        resultsOutstanding -= 1
        done += 1
        if LineScan.find(LineScan.errorKey, in: view) == nil { succeeded += 1 }
        _ = endToEnd.record(now - submitTimes[task])
        if plan.burst {
            drainPendingResults(context.channel)
        } else if submitted < plan.count {
            sendSubmit(on: context.channel)
            pendingFlush = true
        }
        if done == plan.count {
            finished = true
            promise.succeed(
                Outcome(
                    count: plan.count, succeeded: succeeded, burst: plan.burst, seconds: Double(now - started) / 1e9,
                    submittedSeconds: Double(submittedAt - started) / 1e9, endToEnd: endToEnd))
        }
    }

    private func drainPendingResults(_ channel: any Channel) {
        while resultsOutstanding < plan.window, pendingHead < pendingResults.count {
            let (task, taskID) = pendingResults[pendingHead]
            pendingHead += 1
            sendResult(task: task, taskID: taskID, on: channel)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if pendingFlush {
            pendingFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail("the gateway closed the connection (\(done) of \(plan.count) tasks done)")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail("connection error: \(error)")
        context.close(promise: nil)
    }
}

// MARK: - Helpers

/// Finds the few values the benchmarks read in a JSON line without a JSON parser (the keys they
/// look for appear nowhere else in these messages).
enum LineScan {
    static let idKey = Array(#""id":"#.utf8)
    static let methodKey = Array(#""method":""#.utf8)
    static let errorKey = Array(#""error":"#.utf8)
    static let taskIDKey = Array(#""taskId":""#.utf8)
    static let stampKey = Array(#""benchT":"#.utf8)

    /// The index just after the first occurrence of `pattern`.
    static func find(_ pattern: [UInt8], in view: ByteBufferView) -> Int? {
        guard let first = pattern.first, view.count >= pattern.count else { return nil }
        var index = view.startIndex
        let last = view.endIndex - pattern.count
        while index <= last {
            if view[index] == first, view[index..<(index + pattern.count)].elementsEqual(pattern) { return index + pattern.count }
            index += 1
        }
        return nil
    }

    static func integerValue(after key: [UInt8], in view: ByteBufferView) -> Int? {
        guard var cursor = find(key, in: view) else { return nil }
        while cursor < view.endIndex, view[cursor] == UInt8(ascii: " ") { cursor += 1 }
        var value = 0
        var digits = 0
        while cursor < view.endIndex, view[cursor] >= 0x30, view[cursor] <= 0x39 {
            value = value &* 10 &+ Int(view[cursor] - 0x30)
            cursor += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    static func stringValue(after key: [UInt8], in view: ByteBufferView) -> String? {
        guard let start = find(key, in: view), let end = view[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return String(decoding: view[start..<end], as: UTF8.self)
    }

    /// The bytes of a string or number value after `key` (a string with its quotes), as they are.
    static func rawValue(after key: [UInt8], in view: ByteBufferView) -> [UInt8]? {
        guard var cursor = find(key, in: view) else { return nil }
        while cursor < view.endIndex, view[cursor] == UInt8(ascii: " ") { cursor += 1 }
        guard cursor < view.endIndex else { return nil }
        if view[cursor] == UInt8(ascii: "\"") {
            guard let close = view[(cursor + 1)...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return Array(view[cursor...close])
        }
        var end = cursor
        while end < view.endIndex, view[end] == UInt8(ascii: "-") || (view[end] >= 0x30 && view[end] <= 0x39) { end += 1 }
        return end > cursor ? Array(view[cursor..<end]) : nil
    }
}

/// A small seeded generator, so that runs draw the same failures.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
