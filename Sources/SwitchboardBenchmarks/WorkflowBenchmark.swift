import ArgumentParser
import Dispatch
import Foundation
import Histogram
import NIOCore

// Workflows: steps per second, and what a step costs over calling its tool directly. See
// docs/benchmarks-workflows.md.

/// A chain of agent tasks, and wide workflows, against sequential tools/call of the same tool.
struct WorkflowBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflow",
        abstract: "Workflow steps per second and the overhead per step over calling the agent's tool directly.",
        discussion: """
            Starts `switchboard serve --listen tcp://127.0.0.1:0` and attaches one minimal agent over TCP \
            from this process (`agents/register` with one tool `echo` and --agent-concurrency; every \
            tools/call answered at once). Then, on one gateway:

            (1) direct: --direct-calls sequential tools/call of `echo` through the gateway, the baseline \
            (p50, calls/s);
            (2) chain: a workflow of --steps agent_task steps, each depending on the one before and taking \
            an input from its result (`${steps.sK.result.content[0].text}`), executed once: the time from \
            writing `workflows/execute` to reading the execution's COMPLETED event, steps/s, and the \
            overhead per step = chain time / steps − the direct p50;
            (3) parallel: one `parallel` step of --width branches, each one agent_task;
            (4) independent: --width top-level agent_task steps without dependencies. (3) and (4) are \
            executed --wide-runs times each; the table gives the median time.

            Completion is learnt from events: before each execution the client subscribes \
            (`events/subscribe`, pattern `workflows.NAME.*`) and stops the clock at the execution event \
            with a final status; delivering those events is part of what the gateway does. CPU: user + \
            system time of the gateway and of this process (client and agent), from /proc/PID/stat, per \
            step (per call for the direct path). Before the measurements, --warmup-calls calls and one \
            chain of --warmup-steps steps are run and not counted.
            """
    )

    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "agent_task steps in the chain workflow.")
    var steps: Int = 1_000

    @Option(help: "Branches of the parallel step, and steps of the independent workflow.")
    var width: Int = 200

    @Option(help: "Executions of each wide workflow (the median time is reported).")
    var wideRuns: Int = 5

    @Option(help: "Sequential tools/call round trips of the direct measurement.")
    var directCalls: Int = 20_000

    @Option(help: "tools/call round trips before the direct measurement, not counted.")
    var warmupCalls: Int = 2_000

    @Option(help: "Steps of a chain executed before the workflow measurements, not counted (0: none).")
    var warmupSteps: Int = 100

    @Option(help: "maxConcurrency the agent registers with.")
    var agentConcurrency: Int = 256

    func validate() throws {
        guard steps >= 2, width >= 1, wideRuns >= 1, directCalls >= 1, warmupCalls >= 0, warmupSteps >= 0, agentConcurrency >= 1 else {
            throw ValidationError("--steps must be at least 2, and the other counts positive")
        }
    }

    func run() async throws {
        let gateway = try JSONRPCProcess.startGateway(binary: binary, transport: "tcp")
        defer { gateway.stop() }
        let spec = SimulatedAgentSpec(agentName: "echo", tool: "echo", delayMilliseconds: 0, failureRate: 0, maxConcurrency: agentConcurrency, seed: 1)
        let agentChannels = try await SimulatedAgent.attach([spec], to: gateway)
        let bench = JSONRPCProcess.observe(pid: getpid(), name: "bench")
        let direct = try await gateway.connect()
        let control = try await gateway.connect()
        defer {
            for channel in [direct, control] + agentChannels { channel.close(promise: nil) }
        }
        try await Handshake.waitForTool("echo", on: direct)
        try await WorkflowClient.install(on: control)
        print("switchboard pid \(gateway.processID); one attached agent (tool echo, maxConcurrency \(agentConcurrency))")

        // (1) The direct path.
        if warmupCalls > 0 { _ = try await RoundTripDriver.run(on: direct, request: .echo, count: warmupCalls, window: 1) }
        let cpuBefore = (gateway.cpuTime(), bench.cpuTime())
        let calls = try await RoundTripDriver.run(on: direct, request: .echo, count: directCalls, window: 1)
        let cpuAfter = (gateway.cpuTime(), bench.cpuTime())
        let directP50 = Double(calls.histogram.valueAtPercentile(50)) / 1000
        let baseline = WorkflowRow(
            label: "direct tools/call, sequential", units: directCalls, seconds: calls.seconds,
            gatewayCPU: (cpuAfter.0 - cpuBefore.0) * 1e6 / Double(directCalls), benchCPU: (cpuAfter.1 - cpuBefore.1) * 1e6 / Double(directCalls),
            latency: directP50, overhead: nil)
        print(
            "direct: \(directCalls) calls in \(String(format: "%.3f", calls.seconds)) s = \(Int(baseline.perSecond)) calls/s; p50 \(format(directP50)) µs, "
                + "p99 \(format(Double(calls.histogram.valueAtPercentile(99)) / 1000)) µs; CPU µs/call: gateway \(format(baseline.gatewayCPU)), "
                + "bench \(format(baseline.benchCPU))")

        // Workflows: stored first, then executed.
        let chainName = "bench-chain-\(steps)"
        let parallelName = "bench-parallel-\(width)"
        let independentName = "bench-independent-\(width)"
        var sources = [
            (chainName, WorkflowSources.chain(name: chainName, steps: steps)),
            (parallelName, WorkflowSources.parallel(name: parallelName, width: width)),
            (independentName, WorkflowSources.independent(name: independentName, width: width)),
        ]
        if warmupSteps > 0 { sources.append(("bench-warmup", WorkflowSources.chain(name: "bench-warmup", steps: max(2, warmupSteps)))) }
        for (name, source) in sources {
            let started = DispatchTime.now().uptimeNanoseconds
            let created = try await WorkflowClient.call(control, method: "workflows/create", params: ["source": source])
            guard created.result != nil else { throw ValidationError("workflows/create \(name) failed: \(created.line.prefix(2_000))") }
            let millis = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
            print("workflows/create \(name): \(source.utf8.count) bytes of YAML, stored in \(String(format: "%.1f", millis)) ms")
        }
        if warmupSteps > 0 { _ = try await execute("bench-warmup", steps: max(2, warmupSteps), on: control, gateway: gateway, bench: bench) }

        // (2) The chain, once.
        let chain = try await execute(chainName, steps: steps, on: control, gateway: gateway, bench: bench)
        let perStep = chain.seconds * 1e6 / Double(steps)
        let chainRow = WorkflowRow(
            label: "chain of \(steps) steps", units: steps, seconds: chain.seconds, gatewayCPU: chain.gatewayCPU, benchCPU: chain.benchCPU,
            latency: perStep, overhead: perStep - directP50)
        print(chainRow.summary + "; overhead per step over the direct p50: \(format(perStep - directP50)) µs")

        // (3), (4) Wide workflows, --wide-runs times each.
        var rows = [baseline, chainRow]
        for (name, label) in [(parallelName, "parallel, \(width) branches"), (independentName, "\(width) independent steps")] {
            var runs: [Execution] = []
            for _ in 0..<wideRuns { runs.append(try await execute(name, steps: width, on: control, gateway: gateway, bench: bench)) }
            let median = runs.map(\.seconds).sorted()[runs.count / 2]
            let total = Double(width * runs.count)
            let row = WorkflowRow(
                label: label + (wideRuns > 1 ? " (median of \(wideRuns))" : ""), units: width, seconds: median,
                gatewayCPU: runs.map { $0.gatewayCPU * Double(width) }.reduce(0, +) / total,
                benchCPU: runs.map { $0.benchCPU * Double(width) }.reduce(0, +) / total, latency: median * 1e6 / Double(width), overhead: nil)
            print(row.summary + "; runs: " + runs.map { String(format: "%.1f", $0.seconds * 1000) }.joined(separator: ", ") + " ms")
            rows.append(row)
        }

        print()
        print("| measurement | steps (calls) | time ms | steps/s (calls/s) | µs per step (p50 per call) | overhead µs/step over direct p50 | gateway CPU µs/step | bench CPU µs/step |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in rows { print(row.markdown) }
        print()
        let cpuRatio = baseline.gatewayCPU > 0 ? String(format: "%.2f", chainRow.gatewayCPU / baseline.gatewayCPU) + "×" : "—"
        print("chain / direct: \(String(format: "%.2f", perStep / directP50))× the time of a direct call per step; gateway CPU \(cpuRatio) a direct call's")
    }

    struct Execution {
        var seconds: Double
        var gatewayCPU: Double
        var benchCPU: Double
    }

    /// Executes `name` once: from writing workflows/execute to reading its final execution event.
    private func execute(_ name: String, steps: Int, on control: any Channel, gateway: JSONRPCProcess, bench: JSONRPCProcess) async throws -> Execution {
        let subscription = try await WorkflowClient.call(control, method: "events/subscribe", params: ["pattern": "workflows.\(name).*", "queueLimit": 1000])
        let ending = try await WorkflowClient.watch(control, workflow: name)
        let cpuBefore = (gateway.cpuTime(), bench.cpuTime())
        let reply = try await WorkflowClient.call(control, method: "workflows/execute", params: ["workflowName": name])
        let end = try await ending.get()
        let cpuAfter = (gateway.cpuTime(), bench.cpuTime())
        let seconds = Double(end.at - reply.sentAt) / 1e9
        guard let executionID = (reply.result?["executionId"] as? String) else { throw ValidationError("workflows/execute failed: \(reply.line)") }
        if let id = subscription.result?["subscriptionId"] as? String {
            _ = try await WorkflowClient.call(control, method: "events/unsubscribe", params: ["subscriptionId": id])
        }
        let status = try await WorkflowClient.call(control, method: "workflows/status", params: ["executionId": executionID])
        let progress = status.result?["progress"] as? [String: Any]
        let finished = progress?["finishedSteps"] as? Int ?? -1
        let total = progress?["totalSteps"] as? Int ?? -1
        guard status.result?["status"] as? String == "COMPLETED", finished == total else {
            throw ValidationError("execution \(executionID) of \(name) ended \(end.status) with \(finished) of \(total) steps: \(status.line.prefix(2_000))")
        }
        let gatewayMillis = status.result?["totalDurationMs"] as? Int ?? -1
        print(
            "\(name) \(executionID): COMPLETED, \(finished) steps, \(end.stepEvents) step events\(end.dropped > 0 ? " (\(end.dropped) dropped)" : ""), "
                + "\(String(format: "%.1f", seconds * 1000)) ms (the gateway's totalDurationMs: \(gatewayMillis))")
        return Execution(
            seconds: seconds, gatewayCPU: (cpuAfter.0 - cpuBefore.0) * 1e6 / Double(steps), benchCPU: (cpuAfter.1 - cpuBefore.1) * 1e6 / Double(steps))
    }

}

private struct WorkflowRow {
    var label: String
    var units: Int
    var seconds: Double
    var gatewayCPU: Double
    var benchCPU: Double
    /// µs per step (workflows) or the p50 of a call (direct).
    var latency: Double
    var overhead: Double?

    var perSecond: Double { Double(units) / seconds }

    var summary: String {
        "\(label): \(units) steps in \(String(format: "%.1f", seconds * 1000)) ms = \(Int(perSecond)) steps/s, \(format(latency)) µs per step; "
            + "CPU µs/step: gateway \(format(gatewayCPU)), bench \(format(benchCPU))"
    }

    var markdown: String {
        "| \(label) | \(units) | \(String(format: "%.1f", seconds * 1000)) | \(Int(perSecond)) | \(format(latency)) | "
            + "\(overhead.map(format) ?? "—") | \(format(gatewayCPU)) | \(format(benchCPU)) |"
    }
}

// MARK: - Definitions

/// The benchmark's workflows, written as YAML.
enum WorkflowSources {
    /// `steps` agent tasks, each depending on the one before and reading its result.
    static func chain(name: String, steps: Int) -> String {
        var text = "workflowName: \(name)\nversion: \"1\"\nsteps:\n"
        for index in 0..<steps {
            text += "  - id: s\(index)\n    type: agent_task\n    tool: echo\n"
            if index == 0 {
                text += "    input: {text: start, n: 0}\n"
            } else {
                text += "    dependencies: [s\(index - 1)]\n"
                text += "    input: {text: \"${steps.s\(index - 1).result.content[0].text}\", n: \(index)}\n"
            }
        }
        return text
    }

    /// One parallel step whose `width` branches are one agent task each.
    static func parallel(name: String, width: Int) -> String {
        var text = "workflowName: \(name)\nversion: \"1\"\nsteps:\n  - id: fan\n    type: parallel\n    branches:\n"
        for index in 0..<width {
            text += "      - id: b\(index)\n        type: agent_task\n        tool: echo\n        input: {text: wide, n: \(index)}\n"
        }
        return text
    }

    /// `width` top-level agent tasks without dependencies.
    static func independent(name: String, width: Int) -> String {
        var text = "workflowName: \(name)\nversion: \"1\"\nsteps:\n"
        for index in 0..<width {
            text += "  - id: t\(index)\n    type: agent_task\n    tool: echo\n    input: {text: wide, n: \(index)}\n"
        }
        return text
    }
}

// MARK: - The control connection

/// A client connection for the workflows/* and events/* requests: replies matched by id, and the
/// events of a watched workflow counted until its execution ends. Lives on its channel's event
/// loop; times are taken there, when a request is written and when a line is read.
final class WorkflowClient: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Reply {
        var line: String
        var sentAt: UInt64
        /// The parsed `result` object (nil for an error).
        var result: [String: Any]?
    }

    struct Ending: Sendable {
        var status: String
        var at: UInt64
        var stepEvents: Int
        var dropped: Int
    }

    private struct Watch {
        var topic: [UInt8]
        var stepEvents = 0
        var dropped = 0
        var promise: EventLoopPromise<Ending>
    }

    private static let notificationKey = Array(#""method":"notifications/events/message""#.utf8)
    private static let executionEvent = Array(#""event":"execution""#.utf8)
    private static let stepEvent = Array(#""event":"step""#.utf8)
    private static let droppedKey = Array(#""dropped":"#.utf8)
    private static let finalStatuses = ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"].map { Array(#""status":"\#($0)""#.utf8) }

    private var nextID = 1
    private var pending: [Int: (sentAt: UInt64, promise: EventLoopPromise<(String, UInt64)>)] = [:]
    private var watches: [Watch] = []

    static func install(on channel: any Channel) async throws {
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(WorkflowClient())
        }.get()
    }

    /// Sends one request and waits for its reply.
    static func call(_ channel: any Channel, method: String, params: [String: any Sendable]) async throws -> Reply {
        let request: [String: Any] = ["jsonrpc": "2.0", "method": method, "params": params]
        let body = try JSONSerialization.data(withJSONObject: request, options: [.withoutEscapingSlashes])
        let promise = channel.eventLoop.makePromise(of: (String, UInt64).self)
        try await channel.eventLoop.submit {
            let client = try channel.pipeline.syncOperations.handler(type: WorkflowClient.self)
            client.send(body, promise: promise, on: channel)
        }.get()
        let (line, sentAt) = try await promise.futureResult.get()
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return Reply(line: line, sentAt: sentAt, result: object?["result"] as? [String: Any])
    }

    /// Starts watching the events of `workflow`'s executions; the future gives the first final
    /// execution event (the caller runs one execution at a time).
    static func watch(_ channel: any Channel, workflow: String) async throws -> EventLoopFuture<Ending> {
        let promise = channel.eventLoop.makePromise(of: Ending.self)
        try await channel.eventLoop.submit {
            let client = try channel.pipeline.syncOperations.handler(type: WorkflowClient.self)
            client.watches.append(Watch(topic: Array(#""topic":"workflows.\#(workflow)."#.utf8), promise: promise))
        }.get()
        return promise.futureResult
    }

    private func send(_ body: Data, promise: EventLoopPromise<(String, UInt64)>, on channel: any Channel) {
        let id = nextID
        nextID += 1
        // The members as JSONSerialization wrote them, with the id first.
        var buffer = channel.allocator.buffer(capacity: body.count + 24)
        buffer.writeString(#"{"id":\#(id),"#)
        buffer.writeBytes(body.dropFirst())
        buffer.writeInteger(UInt8(ascii: "\n"))
        let now = DispatchTime.now().uptimeNanoseconds
        pending[id] = (now, promise)
        channel.writeAndFlush(buffer, promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = DispatchTime.now().uptimeNanoseconds
        let line = unwrapInboundIn(data)
        let view = line.readableBytesView
        if LineScan.find(Self.notificationKey, in: view) != nil {
            guard let index = watches.firstIndex(where: { LineScan.find($0.topic, in: view) != nil }) else { return }
            if let dropped = LineScan.integerValue(after: Self.droppedKey, in: view) { watches[index].dropped = max(watches[index].dropped, dropped) }
            if LineScan.find(Self.stepEvent, in: view) != nil {
                watches[index].stepEvents += 1
            } else if LineScan.find(Self.executionEvent, in: view) != nil,
                let final = Self.finalStatuses.firstIndex(where: { LineScan.find($0, in: view) != nil })
            {
                let watch = watches.remove(at: index)
                let status = ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"][final]
                watch.promise.succeed(Ending(status: status, at: now, stepEvents: watch.stepEvents, dropped: watch.dropped))
            }
            return
        }
        guard let id = LineScan.integerValue(after: LineScan.idKey, in: view), let entry = pending.removeValue(forKey: id) else { return }
        entry.promise.succeed((String(buffer: line), entry.sentAt))
    }

    func channelInactive(context: ChannelHandlerContext) {
        let closed = ValidationError("the gateway closed the control connection")
        for entry in pending.values { entry.promise.fail(closed) }
        for watch in watches { watch.promise.fail(closed) }
        pending = [:]
        watches = []
        context.fireChannelInactive()
    }
}
