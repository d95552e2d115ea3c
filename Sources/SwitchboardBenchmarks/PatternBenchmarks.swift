import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix

// Scatter-gather and pipelines through switchboard against the same calls made directly
// (section 4 of docs/benchmarks.md).

struct PatternBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "patterns",
        abstract: "tasks/scatter over N agents and a K-stage tasks/pipeline, against the same calls made directly.",
        discussion: """
            The agents are --agents instances of the minimal C echo agent. Directly: this process starts them \
            itself, talks to each over its stdio (every connection on one event loop), and makes the same \
            calls — a scatter is one tools/call to every agent at once, done when all answered; a pipeline is \
            --stages tools/call one after the other, each on the next agent. Through switchboard: one gateway \
            spawns the agents (a template with `instances`), and one request does it — `tasks/scatter` of \
            echo (aggregation all), or `tasks/pipeline` of --stages echo stages, each fed \
            `${previous.text}`. The client reaches the gateway over TCP. Each sequentially and with \
            --in-flight operations outstanding.
            """
    )

    @OptionGroup var summary: SummaryOptions

    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "The compiled minimal echo agent (scripts/bench/echo_agent.c).")
    var agent: String

    @Option(help: "Agent instances the scatter goes to.")
    var agents: Int = 8

    @Option(help: "Stages of the pipeline.")
    var stages: Int = 3

    @Option(help: "Operations per pipelined measurement.")
    var operations: Int = 20_000

    @Option(help: "Operations per sequential measurement.")
    var sequentialOperations: Int = 5_000

    @Option(help: "Operations kept in flight in the pipelined measurement.")
    var inFlight: Int = 16

    @Option(help: "Operations before each measurement that are not counted.")
    var warmup: Int = 1_000

    func validate() throws {
        guard agents > 0, stages > 0, stages <= 64, stages <= agents, operations > 0, sequentialOperations > 0, inFlight > 0 else {
            throw ValidationError("counts must be positive, --stages at most 64 and at most --agents")
        }
    }

    func run() async throws {
        let agent = URL(fileURLWithPath: agent).standardizedFileURL.path
        let modes = [("sequential", 1, sequentialOperations), ("\(inFlight) in flight", inFlight, operations)]
        var table = ResultTable()
        let scatterDirect = "scatter directly: \(agents) calls at once"
        let pipelineDirect = "pipeline directly: \(stages) calls in turn"

        // Directly: the agents on one event loop with this process's client.
        do {
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            var processes: [JSONRPCProcess] = []
            var channels: [any Channel] = []
            defer { for process in processes { process.stop() } }
            for index in 0..<agents {
                let process = try JSONRPCProcess.start([agent], name: "agent \(index)")
                processes.append(process)
                let channel = try await process.connect(on: loop)
                try await Handshake.initialize(channel)
                channels.append(channel)
            }
            let observed = processes.map { ("agents", $0) }
            for (label, plan) in [(scatterDirect, [Array(0..<agents)]), (pipelineDirect, (0..<stages).map { [$0] })] {
                for (mode, window, count) in modes {
                    _ = try await FanOutDriver.run(channels: channels, on: loop, plan: plan, count: min(warmup, count), window: window)
                    let before = observed.map { $0.1.cpuTime() }
                    let result = try await FanOutDriver.run(channels: channels, on: loop, plan: plan, count: count, window: window)
                    let cpu = zip(observed, before).map { ($0.1.cpuTime() - $1) }.reduce(0, +) * 1e6 / Double(count)
                    table.add(Measurement(label: label, mode: mode, result: result, cpuPerCall: [("agents", cpu)]))
                }
            }
            for channel in channels { try? await channel.close() }
        }

        // Through switchboard.
        do {
            let configuration = try AgentConfiguration(command: [agent], instances: agents, maxConcurrency: 64)
            defer { configuration.remove() }
            let gateway = try JSONRPCProcess.startGateway(binary: binary, transport: "tcp", extraArguments: ["--config", configuration.path])
            defer { gateway.stop() }
            let channel = try await gateway.connect()
            try await Handshake.waitForTool("echo", on: channel)
            try await waitForInstances(on: channel)
            let spawned = try await Handshake.agentProcessIDs(on: channel).map { JSONRPCProcess.observe(pid: $0, name: "agents") }
            let processes = [("gateway", gateway)] + spawned.map { ("agents", $0) }
            for (label, request, baseline) in [
                ("tasks/scatter through switchboard (\(agents) instances)", BenchmarkRequest.scatter, scatterDirect),
                ("tasks/pipeline through switchboard (\(stages) stages)", BenchmarkRequest.pipeline(stages: stages), pipelineDirect),
            ] {
                for (mode, window, count) in modes {
                    try await table.measure(
                        label: label, mode: mode, channel: channel, request: request, count: count, window: window, warmup: warmup,
                        processes: processes, baseline: baseline)
                }
            }
            try await channel.close()
        }

        print()
        print("Scatter-gather over \(agents) minimal agents and a \(stages)-stage pipeline (operations/s; CPU per operation):")
        table.print(firstColumn: "operation", unit: "operations/s")
        for row in table.rows where row.baseline != nil {
            guard let base = table.base(of: row) else { continue }
            let overhead = row.micros(50) - base.micros(50)
            summary.record(
                "4 patterns", "\(row.label.components(separatedBy: " through").first ?? row.label), \(row.mode)",
                "\(grouped(row.callsPerSecond)) ops/s, p50 \(format(row.micros(50))) µs, gateway \(format(row.cpu("gateway"))) µs CPU/op",
                "\(ratio(row.callsPerSecond, base.callsPerSecond)) of direct (\(grouped(base.callsPerSecond)) ops/s); p50 overhead \(format(overhead)) µs")
        }
    }

    /// Waits until a scatter reaches every instance (they start one by one).
    private func waitForInstances(on channel: any Channel) async throws {
        for _ in 0..<600 {
            let reply = try await Handshake.exchange(
                channel, #"{"jsonrpc":"2.0","id":"check","method":"tasks/scatter","params":{"tool":"echo","arguments":\#(BenchmarkRequest.echoArguments)}}"#)
            if reply.contains(#""targets":\#(agents)"#), reply.contains(#""succeeded":\#(agents)"#) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("the gateway never had \(agents) instances of echo ready")
    }
}

/// Operations made of stages of calls on several connections, all on one event loop: a stage's
/// calls go out at once, the next stage starts when they all answered, an operation ends with its
/// last stage. Keeps `window` operations in flight and records each operation's time.
final class FanOutDriver {
    private let channels: [any Channel]
    private let plan: [[Int]]
    private let count: Int
    private let window: Int
    private let promise: EventLoopPromise<RoundTripDriver.Result>
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    private var started: UInt64 = 0
    private var begun = 0
    private var done = 0
    private var nextID = 0
    /// Call id → operation slot.
    private var calls: [Int: Int] = [:]
    private var slots: [Slot]
    private var freeSlots: [Int]
    private var dirty: Set<Int> = []
    private var finished = false

    private struct Slot {
        var start: UInt64 = 0
        var stage = 0
        var outstanding = 0
    }

    private init(channels: [any Channel], plan: [[Int]], count: Int, window: Int, promise: EventLoopPromise<RoundTripDriver.Result>) {
        self.channels = channels
        self.plan = plan
        self.count = count
        self.window = window
        self.promise = promise
        self.slots = Array(repeating: Slot(), count: window)
        self.freeSlots = Array((0..<window).reversed())
    }

    static func run(channels: [any Channel], on loop: any EventLoop, plan: [[Int]], count: Int, window: Int) async throws -> RoundTripDriver.Result {
        let promise = loop.makePromise(of: RoundTripDriver.Result.self)
        try await loop.submit {
            let driver = FanOutDriver(channels: channels, plan: plan, count: count, window: window, promise: promise)
            for (index, channel) in channels.enumerated() {
                precondition(channel.eventLoop === loop, "every connection of a FanOutDriver must be on its event loop")
                try channel.pipeline.syncOperations.addHandler(FanOutHandler(driver: driver, index: index))
            }
            driver.start()
        }.get()
        defer {
            loop.execute {
                for channel in channels {
                    if let handler = try? channel.pipeline.syncOperations.handler(type: FanOutHandler.self) {
                        channel.pipeline.syncOperations.removeHandler(handler, promise: nil)
                    }
                }
            }
        }
        return try await promise.futureResult.get()
    }

    private func start() {
        started = DispatchTime.now().uptimeNanoseconds
        while begun < count, !freeSlots.isEmpty { begin() }
        flushDirty()
    }

    private func begin() {
        let slot = freeSlots.removeLast()
        begun += 1
        slots[slot] = Slot(start: DispatchTime.now().uptimeNanoseconds, stage: 0, outstanding: 0)
        sendStage(slot)
    }

    private func sendStage(_ slot: Int) {
        let targets = plan[slots[slot].stage]
        slots[slot].outstanding = targets.count
        for target in targets {
            let id = nextID
            nextID += 1
            calls[id] = slot
            let channel = channels[target]
            var buffer = channel.allocator.buffer(capacity: 160)
            BenchmarkRequest.echo.line(id: id, now: 0, into: &buffer)
            channel.write(buffer, promise: nil)
            dirty.insert(target)
        }
    }

    fileprivate func received(_ line: ByteBuffer) {
        guard !finished, let id = RoundTripDriver.readID(line), let slot = calls.removeValue(forKey: id) else { return }
        slots[slot].outstanding -= 1
        guard slots[slot].outstanding == 0 else { return }
        if slots[slot].stage + 1 < plan.count {
            slots[slot].stage += 1
            sendStage(slot)
            return
        }
        let now = DispatchTime.now().uptimeNanoseconds
        _ = histogram.record(now - slots[slot].start)
        done += 1
        freeSlots.append(slot)
        if begun < count { begin() }
        if done == count {
            finished = true
            flushDirty()
            promise.succeed(RoundTripDriver.Result(count: count, seconds: Double(now - started) / 1e9, histogram: histogram))
        }
    }

    fileprivate func flushDirty() {
        for index in dirty { channels[index].flush() }
        dirty.removeAll(keepingCapacity: true)
    }

    fileprivate func failed(_ error: any Error) {
        guard !finished else { return }
        finished = true
        promise.fail(error)
    }
}

private final class FanOutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let driver: FanOutDriver
    private let index: Int

    init(driver: FanOutDriver, index: Int) {
        self.driver = driver
        self.index = index
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        driver.received(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        driver.flushDirty()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        driver.failed(ValidationError("agent \(index) closed its connection"))
        context.fireChannelInactive()
    }
}
