import ArgumentParser
import Histogram
import NIOCore
import NIOPosix

#if canImport(FoundationEssentials)
import Foundation
#else
import Foundation
#endif

/// Measures `ping` round trips through a real `switchboard` process over TCP and stdio:
/// sequentially and with a window of requests in flight.
@main
struct BenchmarkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-bench",
        abstract: "Ping round trips through switchboard over TCP and stdio (throughput, p50/p99/p999, gateway CPU per call)."
    )

    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "Round trips per measurement.")
    var requests: Int = 200_000

    @Option(help: "Round trips per sequential measurement.")
    var sequentialRequests: Int = 50_000

    @Option(help: "Requests kept in flight in the pipelined measurement.")
    var inFlight: Int = 64

    @Option(help: "Round trips before each measurement that are not counted.")
    var warmup: Int = 5_000

    @Option(help: "tcp, stdio or both.")
    var transport: String = "both"

    func run() async throws {
        let transports = transport == "both" ? ["tcp", "stdio"] : [transport]
        var rows: [Measurement] = []
        for name in transports {
            let gateway = try GatewayProcess.start(binary: binary, transport: name)
            defer { gateway.stop() }
            let channel = try await gateway.connect()
            for (label, window, count) in [("sequential", 1, sequentialRequests), ("\(inFlight) in flight", inFlight, requests)] {
                _ = try await PingDriver.run(on: channel, count: warmup, window: window)
                let cpuBefore = gateway.cpuTime()
                let result = try await PingDriver.run(on: channel, count: count, window: window)
                let cpu = gateway.cpuTime() - cpuBefore
                rows.append(Measurement(transport: name, mode: label, result: result, gatewayCPUSeconds: cpu))
                print(rows.last!.line)
            }
            try await channel.close()
        }
        print()
        print("| transport | mode | calls/s | p50 µs | p99 µs | p999 µs | gateway CPU µs/call |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for row in rows { print(row.markdownRow) }
    }
}

struct Measurement {
    var transport: String
    var mode: String
    var result: PingDriver.Result
    var gatewayCPUSeconds: Double

    var callsPerSecond: Double { Double(result.count) / result.seconds }
    func micros(_ percentile: Double) -> String {
        String(format: "%.1f", Double(result.histogram.valueAtPercentile(percentile)) / 1000)
    }
    var cpuPerCall: String { String(format: "%.2f", gatewayCPUSeconds * 1e6 / Double(result.count)) }

    var line: String {
        "\(transport) \(mode): \(Int(callsPerSecond)) calls/s, p50 \(micros(50)) µs, p99 \(micros(99)) µs, p999 \(micros(99.9)) µs, gateway CPU \(cpuPerCall) µs/call"
    }

    var markdownRow: String {
        "| \(transport) | \(mode) | \(Int(callsPerSecond)) | \(micros(50)) | \(micros(99)) | \(micros(99.9)) | \(cpuPerCall) |"
    }
}

/// A `switchboard serve` child process.
final class GatewayProcess {
    let process: Process
    let transport: String
    private var port = 0
    private var stdinPipe: Pipe?
    private var stdoutPipe: Pipe?

    private init(process: Process, transport: String) {
        self.process = process
        self.transport = transport
    }

    static func start(binary: String, transport: String) throws -> GatewayProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        let stderr = Pipe()
        process.standardError = stderr
        let gateway = GatewayProcess(process: process, transport: transport)
        switch transport {
        case "tcp":
            process.arguments = ["serve", "--listen", "tcp://127.0.0.1:0", "--log-level", "info"]
        case "stdio":
            process.arguments = ["serve", "--stdio", "--log-level", "info"]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            gateway.stdinPipe = input
            gateway.stdoutPipe = output
        default:
            throw ValidationError("unknown transport \(transport) (tcp or stdio)")
        }
        try process.run()
        // Wait for the gateway to say it is ready; for TCP the line carries the port.
        let marker = transport == "tcp" ? "listening on tcp://" : "serving on stdio"
        var seen = ""
        while !seen.contains(marker) || (transport == "tcp" && !seen[seen.range(of: marker)!.upperBound...].contains("\n")) {
            let data = stderr.fileHandleForReading.availableData
            guard !data.isEmpty else { throw ValidationError("switchboard exited before it was ready:\n\(seen)") }
            seen += String(decoding: data, as: UTF8.self)
        }
        if transport == "tcp" {
            let address = seen[seen.range(of: marker)!.upperBound...].prefix { $0 != "\n" && $0 != " " }
            gateway.port = Int(address.split(separator: ":").last ?? "") ?? 0
        }
        // Keep draining stderr so the child never blocks on a full pipe.
        stderr.fileHandleForReading.readabilityHandler = { handle in _ = handle.availableData }
        return gateway
    }

    func connect() async throws -> any Channel {
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Void> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplyLineDecoder()))
            }
        }
        if transport == "tcp" {
            return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer(initializer)
                .connect(host: "127.0.0.1", port: port)
                .get()
        }
        let input = dup(stdoutPipe!.fileHandleForReading.fileDescriptor)
        let output = dup(stdinPipe!.fileHandleForWriting.fileDescriptor)
        return try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer(initializer)
            .takingOwnershipOfDescriptors(input: input, output: output)
            .get()
    }

    /// User plus system CPU seconds the gateway has used, from /proc.
    func cpuTime() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
            let afterName = stat.range(of: ") ")
        else { return 0 }
        let fields = stat[afterName.upperBound...].split(separator: " ")
        // Fields 14 and 15 of stat (utime, stime), counted after the command name.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return (user + system) / ticks
    }

    func stop() {
        try? stdinPipe?.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
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

/// Sends `count` pings keeping `window` in flight and records each round trip, all on the
/// channel's event loop so that the client adds as little as it can to what is measured.
final class PingDriver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Result: Sendable {
        var count: Int
        var seconds: Double
        var histogram: Histogram<UInt64>
    }

    private let count: Int
    private let window: Int
    private var sent = 0
    private var received = 0
    private var sendTimes: [UInt64]
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    private var started: UInt64 = 0
    private let promise: EventLoopPromise<Result>
    private var pendingWrites = false

    private init(count: Int, window: Int, promise: EventLoopPromise<Result>) {
        self.count = count
        self.window = window
        self.promise = promise
        self.sendTimes = Array(repeating: 0, count: count)
    }

    static func run(on channel: any Channel, count: Int, window: Int) async throws -> Result {
        let promise = channel.eventLoop.makePromise(of: Result.self)
        try await channel.eventLoop.submit {
            let driver = PingDriver(count: count, window: window, promise: promise)
            try channel.pipeline.syncOperations.addHandler(driver)
            driver.start(channel)
        }.get()
        let result = try await promise.futureResult.get()
        try await channel.eventLoop.submit {
            let driver = try channel.pipeline.syncOperations.handler(type: PingDriver.self)
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
        var buffer = channel.allocator.buffer(capacity: 48)
        buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"method":"ping"}"#)
        buffer.writeInteger(UInt8(ascii: "\n"))
        sendTimes[id] = DispatchTime.now().uptimeNanoseconds
        channel.write(buffer, promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = DispatchTime.now().uptimeNanoseconds
        let line = unwrapInboundIn(data)
        // Replies start with {"jsonrpc":"2.0","id":N — read N without a JSON parser.
        var id = 0
        var index = line.readerIndex + 22
        while let digit = line.getInteger(at: index, as: UInt8.self), digit >= 0x30, digit <= 0x39 {
            id = id * 10 + Int(digit - 0x30)
            index += 1
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
            let seconds = Double(now - started) / 1e9
            promise.succeed(Result(count: count, seconds: seconds, histogram: histogram))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if pendingWrites {
            context.flush()
            pendingWrites = false
        }
        context.fireChannelReadComplete()
    }
}
