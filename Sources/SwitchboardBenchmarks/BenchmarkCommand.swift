import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix

/// Benchmarks of a real `switchboard` process. Never part of the tests; see docs/benchmarks.md.
@main
struct BenchmarkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-bench",
        abstract: "Benchmarks of switchboard: ping round trips, and tools/call through the gateway against the agent directly.",
        subcommands: [PingBenchmark.self, ToolsBenchmark.self, TLSBenchmark.self, RoutingBenchmark.self, TaskThroughputBenchmark.self,
                      QueueBenchmark.self, ReplicasBenchmark.self, WorkflowBenchmark.self],
        defaultSubcommand: PingBenchmark.self
    )
}

struct CommonOptions: ParsableArguments {
    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "Round trips per pipelined measurement.")
    var requests: Int = 200_000

    @Option(help: "Round trips per sequential measurement.")
    var sequentialRequests: Int = 50_000

    @Option(help: "Requests kept in flight in the pipelined measurement.")
    var inFlight: Int = 64

    @Option(help: "Round trips before each measurement that are not counted.")
    var warmup: Int = 5_000
}

/// `ping` round trips over TCP and stdio: the gateway's own cost per message.
struct PingBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ping", abstract: "Ping round trips through switchboard over TCP and stdio.")

    @OptionGroup var options: CommonOptions

    @Option(help: "tcp, stdio or both.")
    var transport: String = "both"

    func run() async throws {
        let transports = transport == "both" ? ["tcp", "stdio"] : [transport]
        var table = ResultTable()
        for name in transports {
            let gateway = try JSONRPCProcess.startGateway(binary: options.binary, transport: name)
            defer { gateway.stop() }
            let channel = try await gateway.connect()
            try await table.measure(
                label: name, channel: channel, request: .ping, options: options, processes: [("gateway", gateway)])
            try await channel.close()
        }
        table.print()
    }
}

/// `tools/call` of an echo tool on the same MCP server, directly over its stdio and through the
/// gateway over TCP.
struct ToolsBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tools", abstract: "tools/call to an echo agent: directly, and through switchboard over TCP.")

    @OptionGroup var options: CommonOptions

    @Option(help: "The echo agent: a command line that runs an MCP server over stdio with an `echo` tool.")
    var agent: String

    func run() async throws {
        var table = ResultTable()
        let arguments = agent.split(separator: " ").map(String.init)

        let direct = try JSONRPCProcess.start(arguments, name: "agent")
        let directChannel = try await direct.connect()
        try await Handshake.initialize(directChannel)
        try await table.measure(label: "direct (stdio)", channel: directChannel, request: .echo, options: options, processes: [("agent", direct)])
        try await directChannel.close()
        direct.stop()

        let config = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-bench-\(getpid()).json")
        let template: [String: Any] = [
            "agents": ["echo": ["command": arguments[0], "args": Array(arguments.dropFirst()), "maxConcurrency": options.inFlight]],
        ]
        try JSONSerialization.data(withJSONObject: template).write(to: config)
        defer { try? FileManager.default.removeItem(at: config) }
        let gateway = try JSONRPCProcess.startGateway(binary: options.binary, transport: "tcp", extraArguments: ["--config", config.path])
        defer { gateway.stop() }
        let channel = try await gateway.connect()
        try await Handshake.waitForTool("echo", on: channel)
        let agentProcess = try await Handshake.agentProcessID(on: channel).map { JSONRPCProcess.observe(pid: $0, name: "agent") }
        try await table.measure(
            label: "through switchboard (tcp)", channel: channel, request: .echo, options: options,
            processes: [("gateway", gateway)] + (agentProcess.map { [("agent", $0)] } ?? []))
        try await channel.close()
        table.print(compareTo: "direct (stdio)")
    }
}

// MARK: - Measurements

enum BenchmarkRequest {
    case ping
    case echo

    func line(id: Int, into buffer: inout ByteBuffer) {
        switch self {
        case .ping:
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"ping"}"#)
        case .echo:
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello, agent"}}}"#)
        }
        buffer.writeInteger(UInt8(ascii: "\n"))
    }
}

struct Measurement {
    var label: String
    var mode: String
    var result: RoundTripDriver.Result
    var cpuPerCall: [(String, Double)]

    var callsPerSecond: Double { Double(result.count) / result.seconds }

    func micros(_ percentile: Double) -> Double {
        Double(result.histogram.valueAtPercentile(percentile)) / 1000
    }
}

struct ResultTable {
    var rows: [Measurement] = []

    mutating func measure(
        label: String, channel: any Channel, request: BenchmarkRequest, options: CommonOptions,
        processes: [(String, JSONRPCProcess)]
    ) async throws {
        for (mode, window, count) in [("sequential", 1, options.sequentialRequests), ("\(options.inFlight) in flight", options.inFlight, options.requests)] {
            _ = try await RoundTripDriver.run(on: channel, request: request, count: min(options.warmup, count), window: window)
            let before = processes.map { $0.1.cpuTime() }
            let result = try await RoundTripDriver.run(on: channel, request: request, count: count, window: window)
            let cpu = zip(processes, before).map { process, start in (process.0, (process.1.cpuTime() - start) * 1e6 / Double(count)) }
            let row = Measurement(label: label, mode: mode, result: result, cpuPerCall: cpu)
            rows.append(row)
            Swift.print(
                "\(label) \(mode): \(Int(row.callsPerSecond)) calls/s, p50 \(format(row.micros(50))) µs, p99 \(format(row.micros(99))) µs, "
                    + "p999 \(format(row.micros(99.9))) µs, CPU µs/call: "
                    + cpu.map { "\($0.0) \(format($0.1))" }.joined(separator: ", "))
        }
    }

    func print(compareTo baseline: String? = nil) {
        Swift.print()
        Swift.print("| path | mode | calls/s | p50 µs | p99 µs | p999 µs | CPU µs/call |" + (baseline == nil ? "" : " vs direct |"))
        Swift.print("| --- | --- | ---: | ---: | ---: | ---: | --- |" + (baseline == nil ? "" : " --- |"))
        for row in rows {
            var line = "| \(row.label) | \(row.mode) | \(Int(row.callsPerSecond)) | \(format(row.micros(50))) | \(format(row.micros(99))) | "
                + "\(format(row.micros(99.9))) | \(row.cpuPerCall.map { "\($0.0) \(format($0.1))" }.joined(separator: ", ")) |"
            if let baseline {
                if row.label != baseline, let base = rows.first(where: { $0.label == baseline && $0.mode == row.mode }) {
                    line += " \(format(row.callsPerSecond / base.callsPerSecond * 100))% throughput, p50 +\(format(row.micros(50) - base.micros(50))) µs |"
                } else {
                    line += " — |"
                }
            }
            Swift.print(line)
        }
    }
}

func format(_ value: Double) -> String {
    String(format: value >= 100 ? "%.0f" : "%.1f", value)
}

// MARK: - Processes

/// A child process that speaks JSON-RPC: the gateway (over TCP or stdio) or an agent (stdio).
final class JSONRPCProcess {
    let processID: Int32
    private let process: Process?
    private var port = 0
    private var stdinPipe: Pipe?
    private var stdoutPipe: Pipe?

    private init(process: Process?, processID: Int32) {
        self.process = process
        self.processID = processID
    }

    /// A process started elsewhere (an agent the gateway spawned), for its CPU time.
    static func observe(pid: Int32, name: String) -> JSONRPCProcess {
        JSONRPCProcess(process: nil, processID: pid)
    }

    static func start(_ arguments: [String], name: String) throws -> JSONRPCProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        let child = JSONRPCProcess(process: process, processID: process.processIdentifier)
        child.stdinPipe = input
        child.stdoutPipe = output
        return child
    }

    static func startGateway(binary: String, transport: String, extraArguments: [String] = []) throws -> JSONRPCProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        let stderr = Pipe()
        process.standardError = stderr
        var input: Pipe?
        var output: Pipe?
        switch transport {
        case "tcp":
            process.arguments = ["serve", "--listen", "tcp://127.0.0.1:0", "--log-level", "info"] + extraArguments
        case "stdio":
            process.arguments = ["serve", "--stdio", "--log-level", "info"] + extraArguments
            input = Pipe()
            output = Pipe()
            process.standardInput = input
            process.standardOutput = output
        default:
            throw ValidationError("unknown transport \(transport) (tcp or stdio)")
        }
        try process.run()
        let gateway = JSONRPCProcess(process: process, processID: process.processIdentifier)
        gateway.stdinPipe = input
        gateway.stdoutPipe = output
        // Wait for the gateway to say it is ready; for TCP the line carries the port.
        let marker = transport == "tcp" ? "listening on tcp://" : "serving on stdio"
        var seen = ""
        while true {
            if let range = seen.range(of: marker), transport != "tcp" || seen[range.upperBound...].contains("\n") { break }
            let data = stderr.fileHandleForReading.availableData
            guard !data.isEmpty else { throw ValidationError("switchboard exited before it was ready:\n\(seen)") }
            seen += String(decoding: data, as: UTF8.self)
        }
        if transport == "tcp", let range = seen.range(of: marker) {
            let address = seen[range.upperBound...].prefix { $0 != "\n" && $0 != " " }
            gateway.port = Int(address.split(separator: ":").last ?? "") ?? 0
        }
        // Keep draining stderr so that the child never blocks on a full pipe.
        stderr.fileHandleForReading.readabilityHandler = { handle in _ = handle.availableData }
        return gateway
    }

    func connect() async throws -> any Channel {
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Void> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplyLineDecoder()))
            }
        }
        if let stdinPipe, let stdoutPipe {
            return try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer(initializer)
                .takingOwnershipOfDescriptors(
                    input: dup(stdoutPipe.fileHandleForReading.fileDescriptor),
                    output: dup(stdinPipe.fileHandleForWriting.fileDescriptor))
                .get()
        }
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer(initializer)
            .connect(host: "127.0.0.1", port: port)
            .get()
    }

    /// User plus system CPU seconds the process has used, from /proc.
    func cpuTime() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(processID)/stat", encoding: .utf8),
            let close = stat.range(of: ") ", options: .backwards)
        else { return 0 }
        let fields = stat[close.upperBound...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func stop() {
        try? stdinPipe?.fileHandleForWriting.close()
        guard let process else { return }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

/// The few exchanges a benchmark needs before it starts measuring.
enum Handshake {
    static func initialize(_ channel: any Channel) async throws {
        _ = try await exchange(
            channel,
            #"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"switchboard-bench","version":"1"}}}"#)
        try await channel.writeAndFlush(ByteBuffer(string: #"{"jsonrpc":"2.0","method":"notifications/initialized"}"# + "\n"))
    }

    /// Waits (bounded) until the gateway lists `tool`: its agent has started.
    static func waitForTool(_ tool: String, on channel: any Channel) async throws {
        for _ in 0..<600 {
            let reply = try await exchange(channel, #"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#)
            if reply.contains(#""name":"\#(tool)""#) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("the gateway never listed the tool \(tool)")
    }

    static func agentProcessID(on channel: any Channel) async throws -> Int32? {
        let reply = try await exchange(channel, #"{"jsonrpc":"2.0","id":"agents","method":"agents/list"}"#)
        guard let range = reply.range(of: #""processId":"#) else { return nil }
        return Int32(reply[range.upperBound...].prefix { $0.isNumber })
    }

    private static func exchange(_ channel: any Channel, _ line: String) async throws -> String {
        let collector = LineCollector(promise: channel.eventLoop.makePromise(of: String.self))
        try await channel.pipeline.addHandler(collector).get()
        try await channel.writeAndFlush(ByteBuffer(string: line + "\n"))
        let reply = try await collector.promise.futureResult.get()
        try await channel.pipeline.removeHandler(collector).get()
        return reply
    }

    private final class LineCollector: ChannelInboundHandler, RemovableChannelHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<String>
        init(promise: EventLoopPromise<String>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let line = String(buffer: unwrapInboundIn(data))
            // Skip notifications (list_changed and the like); the reply has an id.
            if line.contains(#""id":"#) { promise.succeed(line) }
        }
    }
}

/// Splits replies into lines; the driver reads only the id.
struct ReplyLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return .needMoreData }
        let line = buffer.readSlice(length: newline - buffer.readerIndex)!
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}

/// Sends `count` requests keeping `window` in flight and records each round trip, all on the
/// channel's event loop so that the client adds as little as it can to what is measured.
final class RoundTripDriver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Result: Sendable {
        var count: Int
        var seconds: Double
        var histogram: Histogram<UInt64>
    }

    private let request: BenchmarkRequest
    private let count: Int
    private let window: Int
    private var sent = 0
    private var received = 0
    private var sendTimes: [UInt64]
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    private var started: UInt64 = 0
    private let promise: EventLoopPromise<Result>
    private var pendingWrites = false

    private init(request: BenchmarkRequest, count: Int, window: Int, promise: EventLoopPromise<Result>) {
        self.request = request
        self.count = count
        self.window = window
        self.promise = promise
        self.sendTimes = Array(repeating: 0, count: count)
    }

    static func run(on channel: any Channel, request: BenchmarkRequest, count: Int, window: Int) async throws -> Result {
        let promise = channel.eventLoop.makePromise(of: Result.self)
        try await channel.eventLoop.submit {
            let driver = RoundTripDriver(request: request, count: count, window: window, promise: promise)
            try channel.pipeline.syncOperations.addHandler(driver)
            driver.start(channel)
        }.get()
        let result = try await promise.futureResult.get()
        try await channel.eventLoop.submit {
            let driver = try channel.pipeline.syncOperations.handler(type: RoundTripDriver.self)
            channel.pipeline.syncOperations.removeHandler(driver, promise: nil)
        }.get()
        return result
    }

    private func start(_ channel: any Channel) {
        started = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<min(window, count) { send(on: channel) }
        channel.flush()
    }

    private func send(on channel: any Channel) {
        let id = sent
        sent += 1
        var buffer = channel.allocator.buffer(capacity: 128)
        request.line(id: id, into: &buffer)
        sendTimes[id] = DispatchTime.now().uptimeNanoseconds
        channel.write(buffer, promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let id = Self.readID(unwrapInboundIn(data)), id < count else { return }  // a notification
        _ = histogram.record(now - sendTimes[id])
        received += 1
        if sent < count {
            send(on: context.channel)
            pendingWrites = true
            if window == 1 {
                context.flush()
                pendingWrites = false
            }
        }
        if received == count {
            promise.succeed(Result(count: count, seconds: Double(now - started) / 1e9, histogram: histogram))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if pendingWrites {
            context.flush()
            pendingWrites = false
        }
        context.fireChannelReadComplete()
    }

    /// The integer after `"id":` near the start of a reply, without a JSON parser.
    private static func readID(_ line: ByteBuffer) -> Int? {
        let view = line.readableBytesView
        let pattern = Array(#""id":"#.utf8)
        let limit = min(view.count, 64)
        var index = view.startIndex
        while index + pattern.count <= view.startIndex + limit {
            if view[index..<(index + pattern.count)].elementsEqual(pattern) {
                var cursor = index + pattern.count
                while cursor < view.endIndex, view[cursor] == UInt8(ascii: " ") { cursor += 1 }
                var value = 0
                var digits = 0
                while cursor < view.endIndex, view[cursor] >= 0x30, view[cursor] <= 0x39 {
                    value = value * 10 + Int(view[cursor] - 0x30)
                    cursor += 1
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            index += 1
        }
        return nil
    }
}
