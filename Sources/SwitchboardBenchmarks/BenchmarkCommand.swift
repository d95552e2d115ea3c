import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Benchmarks of a real `switchboard` process. Never part of the tests; see docs/benchmarks.md and
/// scripts/bench.sh, which builds everything and runs the suite.
@main
struct BenchmarkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-bench",
        abstract: "Benchmarks of switchboard beside the agent called directly and beside other gateways.",
        subcommands: [
            PingBenchmark.self, PeersBenchmark.self, CeilingBenchmark.self, TaskThroughputBenchmark.self, PatternBenchmark.self,
            CapacityBenchmark.self, EventBenchmark.self, ProfileBenchmark.self, TLSBenchmark.self, RoutingBenchmark.self,
            QueueBenchmark.self, ReplicasBenchmark.self, WorkflowBenchmark.self, LimiterBenchmark.self, AutoscaleBenchmark.self,
            SummaryCommand.self,
        ],
        defaultSubcommand: PingBenchmark.self
    )

    /// As ArgumentParser's, with standard output line-buffered so that progress shows in a log.
    static func main() async {
        lineBufferStandardOutput()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
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

/// Where a run's headline figures go, for the table `scripts/bench.sh` prints at the end.
struct SummaryOptions: ParsableArguments {
    @Option(help: "Append the headline figures to this file (tab separated; `switchboard-bench summary FILE` prints them).")
    var summary: String?

    /// One headline: the section, what was measured, the figure, and its ratio against its peer or
    /// direct path.
    func record(_ section: String, _ what: String, _ figure: String, _ ratio: String) {
        guard let summary else { return }
        let line = [section, what, figure, ratio].map { $0.replacingOccurrences(of: "\t", with: " ") }.joined(separator: "\t") + "\n"
        if !FileManager.default.fileExists(atPath: summary) { _ = FileManager.default.createFile(atPath: summary, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: summary) else { return }
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        handle.write(Data(line.utf8))
    }
}

/// Prints the headline figures recorded with --summary as one table.
struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "summary", abstract: "Print the headline figures recorded with --summary.")

    @Argument(help: "The file given to --summary.")
    var file: String

    func run() throws {
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        print("| section | measurement | figure | against its peer or direct path |")
        print("| --- | --- | ---: | --- |")
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 4 else { continue }
            print("| \(fields[0]) | \(fields[1]) | \(fields[2]) | \(fields[3]) |")
        }
    }
}

/// `ping` round trips over TCP and stdio: the gateway's own cost per message.
struct PingBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping",
        abstract: "Ping round trips through switchboard over TCP and stdio; also shared memory (memory/set, memory/get) on the embedded backend.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var summary: SummaryOptions

    @Option(help: "tcp, stdio or both.")
    var transport: String = "both"

    @Option(help: "Methods, comma separated: ping, memory/set, memory/get (a key of its own per connection).")
    var methods: String = "ping"

    func run() async throws {
        let transports = transport == "both" ? ["tcp", "stdio"] : [transport]
        var requests: [(String, BenchmarkRequest)] = []
        for method in methods.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            switch method {
            case "ping": requests.append((method, .ping))
            case "memory/set": requests.append((method, .memorySet))
            case "memory/get": requests.append((method, .memoryGet))
            default: throw ValidationError("--methods: unknown method \(method) (ping, memory/set, memory/get)")
            }
        }
        var table = ResultTable()
        for name in transports {
            let gateway = try JSONRPCProcess.startGateway(binary: options.binary, transport: name)
            defer { gateway.stop() }
            let channel = try await gateway.connect()
            for (method, request) in requests {
                try await table.measure(
                    label: method == "ping" ? name : "\(method) over \(name)", channel: channel, request: request, options: options,
                    processes: [("gateway", gateway)])
            }
            try await channel.close()
        }
        table.print()
        for row in table.rows {
            summary.record(
                "ping", "\(row.label.hasPrefix("memory/") ? row.label : "ping over \(row.label)"), \(row.mode)",
                "\(grouped(row.callsPerSecond)) calls/s, p50 \(format(row.micros(50))) µs",
                "gateway CPU \(format(row.cpu("gateway"))) µs/call")
        }
    }
}

// MARK: - Measurements

enum BenchmarkRequest {
    case ping
    /// `memory/set` of one key to a small object (the same key each time: a write that replaces).
    case memorySet
    /// `memory/get` of that key.
    case memoryGet
    /// `tools/call` of `echo` with the text every agent of the benchmarks answers.
    case echo
    /// `tools/call` of another tool, with the same arguments.
    case call(tool: String)
    /// `tasks/scatter` of `echo` over every instance.
    case scatter
    /// `tasks/pipeline` of `stages` calls of `echo`, each fed the text of the one before.
    case pipeline(stages: Int)
    /// `events/publish` to `topic`, the send time in the data.
    case publish(topic: String)
    /// Redis `PUBLISH` to `topic`, the send time in the message; Redis answers in order, without ids.
    case redisPublish(topic: String)

    static let echoArguments = #"{"text":"hello, agent"}"#

    /// Replies are matched by their position rather than by an id.
    var answeredInOrder: Bool {
        if case .redisPublish = self { return true }
        return false
    }

    func line(id: Int, now: UInt64, into buffer: inout ByteBuffer) {
        switch self {
        case .ping:
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"ping"}"#)
        case .memorySet:
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"memory/set","params":{"key":"bench","value":{"n":\#(id),"text":"hello"}}}"#)
        case .memoryGet:
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"memory/get","params":{"key":"bench"}}"#)
        case .echo:
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"echo","arguments":\#(Self.echoArguments)}}"#)
        case .call(let tool):
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"\#(tool)","arguments":\#(Self.echoArguments)}}"#)
        case .scatter:
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"tasks/scatter","params":{"tool":"echo","arguments":\#(Self.echoArguments)}}"#)
        case .pipeline(let stages):
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"tasks/pipeline","params":{"stages":[{"tool":"echo","arguments":\#(Self.echoArguments)}"#)
            for _ in 1..<max(stages, 1) {
                buffer.writeString(#",{"tool":"echo","arguments":{"text":"${previous.text}"}}"#)
            }
            buffer.writeString("]}}")
        case .publish(let topic):
            buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"events/publish","params":{"topic":"\#(topic)","data":{"t":\#(now)}}}"#)
        case .redisPublish(let topic):
            let message = #"{"t":\#(now)}"#
            buffer.writeString("*3\r\n$7\r\nPUBLISH\r\n$\(topic.utf8.count)\r\n\(topic)\r\n$\(message.utf8.count)\r\n\(message)\r")
        }
        buffer.writeInteger(UInt8(ascii: "\n"))
    }
}

/// One measured configuration: a path, a mode, its rate, latency percentiles and CPU per call.
struct Measurement {
    var label: String
    var mode: String
    var count: Int
    var seconds: Double
    /// Percentile → microseconds (50, 99 and 99.9 at least).
    var percentiles: [Double: Double]
    var cpuPerCall: [(String, Double)]
    /// The label of the row (same mode) this one is compared with.
    var baseline: String?

    init(label: String, mode: String, count: Int, seconds: Double, percentiles: [Double: Double], cpuPerCall: [(String, Double)], baseline: String? = nil) {
        self.label = label
        self.mode = mode
        self.count = count
        self.seconds = seconds
        self.percentiles = percentiles
        self.cpuPerCall = cpuPerCall
        self.baseline = baseline
    }

    init(label: String, mode: String, result: RoundTripDriver.Result, cpuPerCall: [(String, Double)], baseline: String? = nil) {
        self.init(
            label: label, mode: mode, count: result.count, seconds: result.seconds,
            percentiles: Self.percentiles(of: result.histogram), cpuPerCall: cpuPerCall, baseline: baseline)
    }

    static func percentiles(of histogram: Histogram<UInt64>) -> [Double: Double] {
        var values: [Double: Double] = [:]
        for percentile in [50.0, 90, 99, 99.9] { values[percentile] = Double(histogram.valueAtPercentile(percentile)) / 1000 }
        return values
    }

    var callsPerSecond: Double { Double(count) / seconds }

    func micros(_ percentile: Double) -> Double { percentiles[percentile] ?? 0 }

    /// CPU µs per call of the processes whose name starts with `name`, summed.
    func cpu(_ name: String) -> Double { cpuPerCall.filter { $0.0.hasPrefix(name) }.map(\.1).reduce(0, +) }

    var cpuText: String { cpuPerCall.map { "\($0.0) \(format($0.1))" }.joined(separator: ", ") }
}

struct ResultTable {
    var rows: [Measurement] = []

    /// Sequential, then `options.inFlight` in flight, on `channel`; CPU of `processes` from /proc.
    mutating func measure(
        label: String, channel: any Channel, request: BenchmarkRequest, options: CommonOptions,
        processes: [(String, JSONRPCProcess)], baseline: String? = nil
    ) async throws {
        for (mode, window, count) in [("sequential", 1, options.sequentialRequests), ("\(options.inFlight) in flight", options.inFlight, options.requests)] {
            try await measure(label: label, mode: mode, channel: channel, request: request, count: count, window: window, warmup: options.warmup, processes: processes, baseline: baseline)
        }
    }

    mutating func measure(
        label: String, mode: String, channel: any Channel, request: BenchmarkRequest, count: Int, window: Int, warmup: Int,
        processes: [(String, JSONRPCProcess)], baseline: String? = nil
    ) async throws {
        if warmup > 0 {
            _ = try await RoundTripDriver.run(on: channel, request: request, count: min(warmup, count), window: window)
        }
        let before = processes.map { $0.1.cpuTime() }
        let result = try await RoundTripDriver.run(on: channel, request: request, count: count, window: window)
        // Processes of the same name (the instances of one template) count together.
        var cpu: [(String, Double)] = []
        for (process, start) in zip(processes, before) {
            let used = (process.1.cpuTime() - start) * 1e6 / Double(count)
            if let index = cpu.firstIndex(where: { $0.0 == process.0 }) { cpu[index].1 += used } else { cpu.append((process.0, used)) }
        }
        add(Measurement(label: label, mode: mode, result: result, cpuPerCall: cpu, baseline: baseline))
    }

    mutating func add(_ row: Measurement) {
        rows.append(row)
        Swift.print(
            "\(row.label) \(row.mode): \(grouped(row.callsPerSecond)) calls/s, p50 \(format(row.micros(50))) µs, p99 \(format(row.micros(99))) µs, "
                + "p999 \(format(row.micros(99.9))) µs, CPU µs/call: \(row.cpuText)"
                + (comparison(row).map { "; vs \(row.baseline ?? ""): \($0)" } ?? ""))
    }

    func base(of row: Measurement) -> Measurement? {
        guard let baseline = row.baseline else { return nil }
        return rows.first { $0.label == baseline && $0.mode == row.mode } ?? rows.first { $0.label == baseline }
    }

    /// Throughput ratio and p50 difference against the row's baseline.
    func comparison(_ row: Measurement) -> String? {
        guard let base = base(of: row) else { return nil }
        let difference = row.micros(50) - base.micros(50)
        return "\(ratio(row.callsPerSecond, base.callsPerSecond)) calls/s, p50 \(difference >= 0 ? "+" : "−")\(format(abs(difference))) µs"
    }

    func print(firstColumn: String = "path", unit: String = "calls/s") {
        Swift.print()
        Swift.print("| \(firstColumn) | mode | \(unit) | p50 µs | p99 µs | p999 µs | CPU µs per call | against |")
        Swift.print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
        for row in rows {
            let against = comparison(row).map { "\($0) vs \(row.baseline ?? "")" } ?? "—"
            Swift.print(
                "| \(row.label) | \(row.mode) | \(grouped(row.callsPerSecond)) | \(format(row.micros(50))) | \(format(row.micros(99))) | "
                    + "\(format(row.micros(99.9))) | \(row.cpuText) | \(against) |")
        }
    }
}

func format(_ value: Double) -> String {
    abs(value) >= 1_000 ? grouped(value) : String(format: abs(value) >= 100 ? "%.0f" : "%.1f", value)
}

/// An integer with thousands separators: 17,157.
func grouped(_ value: Double) -> String {
    guard value.isFinite else { return "—" }
    let digits = String(Int(value.rounded()))
    var result = ""
    for (index, character) in digits.reversed().enumerated() {
        if index > 0, index % 3 == 0, character != "-" { result.append(",") }
        result.append(character)
    }
    return String(result.reversed())
}

/// Standard output line-buffered even into a file or a pipe.
func lineBufferStandardOutput() {
    // `stdout` is a C global, which Swift 6 will not read outside the main actor; the symbol's
    // address gives the same FILE pointer.
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "stdout") else { return }
    let file = symbol.assumingMemoryBound(to: UnsafeMutablePointer<FILE>?.self).pointee
    setvbuf(file, nil, _IOLBF, 0)
}

/// Raises the soft limit of open files to the hard limit (children inherit it).
func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

func fileLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
}

/// A configuration file with one agent template, in a temporary file that `remove()` deletes.
struct AgentConfiguration {
    let path: String

    /// `accessRules`: with more than 0, an `auth` section whose anonymous role has that many
    /// rules, all naming a target (so that every call is decided on its tool, the dearer path),
    /// the one allowing the benchmark's tool last. `rateLimited`: every tenant has a rate limit
    /// too high to refuse anything, so that every call passes the limiter.
    init(
        name: String = "echo", command: [String], instances: Int = 1, maxConcurrency: Int, accessRules: Int = 0, rateLimited: Bool = false,
        metricsOff: Bool = false
    ) throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-bench-\(getpid())-\(UUID().uuidString).json")
        var template: [String: Any] = [
            "agents": [name: ["command": command[0], "args": Array(command.dropFirst()), "instances": instances, "maxConcurrency": maxConcurrency]],
        ]
        if metricsOff { template["metrics"] = ["enabled": false] }
        if accessRules > 0 {
            let others = (1..<max(accessRules - 3, 1)).map { "tools/call:other_\($0)__*" }
            let allow = others + ["tools/list", "agents/list", "tools/call:\(name)"]
            var auth: [String: Any] = ["anonymous": "bench", "roles": ["bench": ["allow": allow, "deny": ["tools/call:forbidden_*"]]]]
            if rateLimited { auth["rateLimits"] = AccessConfiguration.unrefusedRateLimits }
            template["auth"] = auth
        }
        try JSONSerialization.data(withJSONObject: template).write(to: url)
        path = url.path
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A configuration with only an `auth` section: the anonymous role (the benchmark's client) has
/// `rules` rules naming targets, and the agent registers with an API key that owns its name.
struct AccessConfiguration {
    let path: String
    let agentKey = "bench-agent-key"

    /// A rate limit for every tenant that nothing in a benchmark reaches.
    static var unrefusedRateLimits: [String: Any] { ["tenants": ["*": ["perSecond": 1_000_000_000, "burst": 1_000_000_000]]] }

    init(rules: Int, tool: String = "echo", rateLimited: Bool = false) throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-bench-access-\(getpid())-\(UUID().uuidString).json")
        let others = (1..<max(rules - 3, 1)).map { "tools/call:other_\($0)__*" }
        let configuration: [String: Any] = [
            "auth": [
                "anonymous": "bench",
                "roles": ["bench": ["allow": others + ["tools/list", "agents/list", "tools/call:\(tool)"], "deny": ["tools/call:forbidden_*"]]],
                // SHA-256 of "bench-agent-key".
                "apiKeys": [["name": "bench-agent", "sha256": "820237229165607b06ec7d85845f53177446090a67c891a4c00f38eb52b94721", "roles": ["agent"], "agentNames": [tool]]],
                "activateNewVersions": true,
            ].merging(rateLimited ? ["rateLimits": Self.unrefusedRateLimits] : [:]) { $1 },
        ]
        try JSONSerialization.data(withJSONObject: configuration).write(to: url)
        path = url.path
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

// MARK: - Processes

/// A child process that speaks JSON-RPC: the gateway (over TCP or stdio) or an agent (stdio or
/// TCP); or a process observed by its id for its CPU time and memory.
final class JSONRPCProcess {
    let processID: Int32
    let name: String
    private let process: Process?
    var port = 0
    private var stdinPipe: Pipe?
    private var stdoutPipe: Pipe?

    private init(process: Process?, processID: Int32, name: String) {
        self.process = process
        self.processID = processID
        self.name = name
    }

    /// A process started elsewhere (an agent the gateway spawned), for its CPU time and memory.
    static func observe(pid: Int32, name: String) -> JSONRPCProcess {
        JSONRPCProcess(process: nil, processID: pid, name: name)
    }

    private static func launch(_ arguments: [String], environment: [String: String] = [:], configure: (Process) -> Void) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        configure(process)
        try process.run()
        return process
    }

    /// A program that speaks JSON-RPC on its stdin and stdout (an MCP server over stdio).
    static func start(_ arguments: [String], name: String) throws -> JSONRPCProcess {
        let input = Pipe()
        let output = Pipe()
        let process = try launch(arguments) {
            $0.standardInput = input
            $0.standardOutput = output
            $0.standardError = FileHandle.standardError
        }
        let child = JSONRPCProcess(process: process, processID: process.processIdentifier, name: name)
        child.stdinPipe = input
        child.stdoutPipe = output
        return child
    }

    /// A program that listens on TCP and writes `port N` on its stdout once it does.
    static func startListening(_ arguments: [String], name: String) throws -> JSONRPCProcess {
        let output = Pipe()
        let process = try launch(arguments) {
            $0.standardInput = FileHandle.nullDevice
            $0.standardOutput = output
            $0.standardError = FileHandle.standardError
        }
        let child = JSONRPCProcess(process: process, processID: process.processIdentifier, name: name)
        var seen = ""
        while !seen.contains("\n") {
            let data = output.fileHandleForReading.availableData
            guard !data.isEmpty else { throw ValidationError("\(name) exited before it listened") }
            seen += String(decoding: data, as: UTF8.self)
        }
        guard let range = seen.range(of: "port "), let port = Int(seen[range.upperBound...].prefix { $0.isNumber }) else {
            throw ValidationError("\(name) did not say its port: \(seen)")
        }
        child.port = port
        return child
    }

    /// A program that needs no pipes (an agent that attaches itself to the gateway).
    static func startDetached(_ arguments: [String], name: String) throws -> JSONRPCProcess {
        let process = try launch(arguments) {
            $0.standardInput = FileHandle.nullDevice
            $0.standardOutput = FileHandle.nullDevice
            $0.standardError = FileHandle.standardError
        }
        return JSONRPCProcess(process: process, processID: process.processIdentifier, name: name)
    }

    /// `switchboard serve` over TCP (port 0) or stdio; `wrapper` runs it under another program
    /// (valgrind) that keeps its process id.
    static func startGateway(
        binary: String, transport: String, extraArguments: [String] = [], wrapper: [String] = [], environment: [String: String] = [:],
        logLevel: String = "info"
    ) throws -> JSONRPCProcess {
        let stderr = Pipe()
        var input: Pipe?
        var output: Pipe?
        var arguments: [String]
        switch transport {
        case "tcp":
            arguments = ["serve", "--listen", "tcp://127.0.0.1:0", "--log-level", logLevel] + extraArguments
        case "stdio":
            arguments = ["serve", "--stdio", "--log-level", logLevel] + extraArguments
            input = Pipe()
            output = Pipe()
        default:
            throw ValidationError("unknown transport \(transport) (tcp or stdio)")
        }
        let process = try launch(wrapper + [binary] + arguments, environment: environment) {
            $0.standardError = stderr
            if let input, let output {
                $0.standardInput = input
                $0.standardOutput = output
            } else {
                $0.standardInput = FileHandle.nullDevice
            }
        }
        let gateway = JSONRPCProcess(process: process, processID: process.processIdentifier, name: "gateway")
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

    /// A connection to the process: its stdio when it has pipes, else its TCP port. Pinned to
    /// `eventLoop` when one is given.
    func connect(on eventLoop: (any EventLoop)? = nil) async throws -> any Channel {
        let group: any EventLoopGroup = eventLoop ?? MultiThreadedEventLoopGroup.singleton
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Void> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplyLineDecoder()))
            }
        }
        if let stdinPipe, let stdoutPipe {
            return try await NIOPipeBootstrap(group: group)
                .channelInitializer(initializer)
                .takingOwnershipOfDescriptors(
                    input: dup(stdoutPipe.fileHandleForReading.fileDescriptor),
                    output: dup(stdinPipe.fileHandleForWriting.fileDescriptor))
                .get()
        }
        return try await ClientBootstrap(group: group)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer(initializer)
            .connect(host: "127.0.0.1", port: port)
            .get()
    }

    /// A connection to a TCP port on the loopback, with the reply line decoder.
    static func connect(port: Int, on eventLoop: (any EventLoop)? = nil) async throws -> any Channel {
        let listening = JSONRPCProcess(process: nil, processID: getpid(), name: "listener")
        listening.port = port
        return try await listening.connect(on: eventLoop)
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

    /// Resident memory in KiB (VmRSS), from /proc.
    func residentKiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(processID)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    var isRunning: Bool { process?.isRunning ?? (kill(processID, 0) == 0) }

    /// Ends the process: its stdin closed, SIGTERM, and SIGKILL if it is still there after 10 s.
    func stop() {
        try? stdinPipe?.fileHandleForWriting.close()
        guard let process else { return }
        kill(processID, SIGTERM)
        for _ in 0..<1_000 {
            if !process.isRunning { return }
            usleep(10_000)
        }
        kill(processID, SIGKILL)
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
    static func waitForTool(_ tool: String, on channel: any Channel, attempts: Int = 600) async throws {
        for _ in 0..<attempts {
            let reply = try await exchange(channel, #"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#)
            if reply.contains(#""name":"\#(tool)""#) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("the gateway never listed the tool \(tool)")
    }

    /// The process ids of the gateway's spawned agents.
    static func agentProcessIDs(on channel: any Channel) async throws -> [Int32] {
        let reply = try await exchange(channel, #"{"jsonrpc":"2.0","id":"agents","method":"agents/list"}"#)
        var ids: [Int32] = []
        var rest = reply[...]
        while let range = rest.range(of: #""processId":"#) {
            rest = rest[range.upperBound...]
            if let id = Int32(rest.prefix { $0.isNumber }) { ids.append(id) }
        }
        return ids
    }

    static func agentProcessID(on channel: any Channel) async throws -> Int32? {
        try await agentProcessIDs(on: channel).first
    }

    /// Sends one request line and returns the first line that carries an id.
    static func exchange(_ channel: any Channel, _ line: String) async throws -> String {
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
        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ValidationError("the connection closed before the reply"))
            context.fireChannelInactive()
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
/// channel's event loop so that the client adds as little as it can to what is measured. A reply
/// that is a JSON-RPC error fails the run.
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
    private var finished = false

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
        defer {
            channel.eventLoop.execute {
                if let driver = try? channel.pipeline.syncOperations.handler(type: RoundTripDriver.self) {
                    channel.pipeline.syncOperations.removeHandler(driver, promise: nil)
                }
            }
        }
        return try await promise.futureResult.get()
    }

    private func start(_ channel: any Channel) {
        started = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<min(window, count) { send(on: channel) }
        channel.flush()
    }

    private func send(on channel: any Channel) {
        let id = sent
        sent += 1
        var buffer = channel.allocator.buffer(capacity: 192)
        let now = DispatchTime.now().uptimeNanoseconds
        request.line(id: id, now: now, into: &buffer)
        sendTimes[id] = now
        channel.write(buffer, promise: nil)
    }

    private func fail(_ error: any Error) {
        guard !finished else { return }
        finished = true
        promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = DispatchTime.now().uptimeNanoseconds
        let line = unwrapInboundIn(data)
        guard !finished else { return }
        let id: Int
        if request.answeredInOrder {
            guard line.readableBytes > 0, line.getInteger(at: line.readerIndex, as: UInt8.self) != UInt8(ascii: "-") else {
                return fail(ValidationError("error reply: \(String(buffer: line))"))
            }
            id = received
        } else {
            guard let read = Self.readID(line), read < count else { return }  // a notification
            if Self.isError(line) { return fail(ValidationError("error reply: \(String(buffer: line).prefix(600))")) }
            id = read
        }
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
            finished = true
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

    func channelInactive(context: ChannelHandlerContext) {
        fail(ValidationError("the connection closed after \(received) of \(count) replies"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    private static let idKey = Array(#""id":"#.utf8)
    private static let errorKey = Array(#","error":{"#.utf8)

    /// A JSON-RPC error response: `"error":` right after the id (every server here writes the id
    /// first).
    private static func isError(_ line: ByteBuffer) -> Bool {
        let view = line.readableBytesView
        let limit = view.startIndex + min(view.count, 96)
        return LineScan.find(errorKey, in: view[view.startIndex..<limit]) != nil
    }

    /// The integer after `"id":` near the start of a reply, without a JSON parser.
    static func readID(_ line: ByteBuffer) -> Int? {
        let view = line.readableBytesView
        let limit = view.startIndex + min(view.count, 64)
        guard var cursor = LineScan.find(idKey, in: view[view.startIndex..<limit]) else { return nil }
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
}
