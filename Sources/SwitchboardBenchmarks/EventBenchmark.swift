import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// events/publish to 1 and to 100 subscribers through switchboard, beside Redis PUBLISH and
/// SUBSCRIBE with the same client (section 6 of docs/benchmarks.md).
struct EventBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "events/publish to N subscribers: publishes/s, deliveries/s and publish → delivery latency, beside Redis pub/sub.",
        discussion: """
            A fresh `switchboard serve --listen tcp://127.0.0.1:0` per subscriber count; --subscribers \
            connections from this process (all of the client on one event loop) each send events/subscribe to the topic `bench`; one more \
            connection publishes (events/publish, the send time in `data`), sequentially and with --in-flight \
            publishes outstanding. Every subscriber records publish → delivery for each \
            notifications/events/message; the measurement ends when every event reached every subscriber \
            (or nothing arrived for 3 s: the rest count as lost). The peer is redis-server (PUBLISH and \
            SUBSCRIBE over RESP, the same client code and timing), when --redis-server is found.
            """
    )

    @OptionGroup var summary: SummaryOptions

    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "The redis-server binary of the peer; \"\" to skip it.")
    var redisServer: String = "redis-server"

    @Option(help: "Subscriber counts, comma separated.")
    var subscribers: String = "1,100"

    @Option(help: "Publishes per pipelined measurement (to more than 10 subscribers: this × 10 / subscribers).")
    var publishes: Int = 100_000

    @Option(help: "Publishes per sequential measurement (scaled as --publishes).")
    var sequentialPublishes: Int = 20_000

    @Option(help: "Publishes kept in flight in the pipelined measurement.")
    var inFlight: Int = 64

    @Option(help: "Publishes before each measurement that are not counted.")
    var warmup: Int = 2_000

    private var subscriberCounts: [Int] { subscribers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        guard !subscriberCounts.isEmpty, subscriberCounts.allSatisfy({ $0 > 0 }), publishes > 0, sequentialPublishes > 0, inFlight > 0 else {
            throw ValidationError("counts must be positive")
        }
    }

    func run() async throws {
        raiseFileLimit()
        let redis = redisServer.isEmpty ? nil : Self.which(redisServer)
        if redis == nil && !redisServer.isEmpty { print("\(redisServer) not found: no Redis rows") }
        var rows: [EventRow] = []
        for count in subscriberCounts {
            for system in ["switchboard"] + (redis == nil ? [] : ["redis"]) {
                let server: JSONRPCProcess
                if system == "redis" {
                    server = try await Self.startRedis(redis!)
                } else {
                    server = try JSONRPCProcess.startGateway(binary: binary, transport: "tcp")
                }
                defer { server.stop() }
                // The client on one event loop (one thread): on two cores, a second client thread
                // competing with the server's delays deliveries by whole scheduler slices.
                let loop = MultiThreadedEventLoopGroup.singleton.next()
                var subscriberChannels: [any Channel] = []
                for _ in 0..<count {
                    let channel = try await server.connect(on: loop)
                    try await EventSubscriber.subscribe(channel, redis: system == "redis")
                    subscriberChannels.append(channel)
                }
                let publisher = try await server.connect(on: loop)
                let request: BenchmarkRequest = system == "redis" ? .redisPublish(topic: "bench") : .publish(topic: "bench")
                // Fewer publishes to many subscribers: about as many deliveries as to 10.
                let scale = { (total: Int) in count <= 10 ? total : max(1_000, total * 10 / count) }
                for (mode, window, total) in [
                    ("sequential", 1, scale(sequentialPublishes)), ("\(inFlight) in flight", inFlight, scale(publishes)),
                ] {
                    _ = try await RoundTripDriver.run(on: publisher, request: request, count: min(warmup, total), window: window)
                    _ = try await EventSubscriber.collect(subscriberChannels, expecting: min(warmup, total) * count)
                    let cpuBefore = server.cpuTime()
                    let started = DispatchTime.now().uptimeNanoseconds
                    let result = try await RoundTripDriver.run(on: publisher, request: request, count: total, window: window)
                    let tally = try await EventSubscriber.collect(subscriberChannels, expecting: total * count)
                    let row = EventRow(
                        system: system, subscribers: count, mode: mode, publish: Measurement(label: system, mode: mode, result: result, cpuPerCall: []),
                        deliveries: tally.received, expected: total * count,
                        deliverySeconds: Double(max(tally.lastArrival, started + 1) - started) / 1e9, latency: tally.latency,
                        serverCPU: (server.cpuTime() - cpuBefore) * 1e6 / Double(total))
                    print(row.summary)
                    rows.append(row)
                }
                try await publisher.close()
                for channel in subscriberChannels { try? await channel.close() }
            }
        }

        print()
        print("| server | subscribers | mode | publishes/s | deliveries/s | publish p50 µs | delivery p50 µs | p99 µs | p999 µs | lost | server CPU µs/publish | against Redis |")
        print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for row in rows {
            let base = rows.first { $0.system == "redis" && $0.subscribers == row.subscribers && $0.mode == row.mode }
            let against = row.system == "redis" ? "—" : base.map { row.comparison(to: $0) } ?? "—"
            print(row.markdown + " \(against) |")
            if row.system == "switchboard" {
                summary.record(
                    "6 events", "events/publish to \(row.subscribers) subscriber\(row.subscribers == 1 ? "" : "s"), \(row.mode)",
                    "\(grouped(row.publishesPerSecond)) publishes/s, \(grouped(row.deliveriesPerSecond)) deliveries/s, delivery p50 "
                        + "\(format(row.micros(50))) µs" + (row.lost > 0 ? ", \(grouped(Double(row.lost))) lost" : ""),
                    base.map { "Redis: \(grouped($0.publishesPerSecond)) publishes/s, \(grouped($0.deliveriesPerSecond)) deliveries/s, p50 \(format($0.micros(50))) µs (\(row.comparison(to: $0)))" } ?? "—")
            }
        }
    }

    static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// redis-server on a free loopback port, without persistence.
    static func startRedis(_ path: String) async throws -> JSONRPCProcess {
        let port = try freePort()
        let server = try JSONRPCProcess.startDetached(
            [path, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"],
            name: "redis")
        for _ in 0..<100 {
            if let channel = try? await JSONRPCProcess.connect(port: port) {
                try await channel.close()
                server.port = port
                return server
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        server.stop()
        throw ValidationError("redis-server did not start listening on port \(port)")
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw ValidationError("cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

private struct EventRow {
    var system: String
    var subscribers: Int
    var mode: String
    var publish: Measurement
    var deliveries: Int
    var expected: Int
    var deliverySeconds: Double
    var latency: Histogram<UInt64>
    var serverCPU: Double

    var publishesPerSecond: Double { publish.callsPerSecond }
    var deliveriesPerSecond: Double { Double(deliveries) / deliverySeconds }
    var lost: Int { expected - deliveries }
    func micros(_ percentile: Double) -> Double { Double(latency.valueAtPercentile(percentile)) / 1000 }

    func comparison(to base: EventRow) -> String {
        "\(ratio(publishesPerSecond, base.publishesPerSecond)) publishes/s, \(ratio(deliveriesPerSecond, base.deliveriesPerSecond)) deliveries/s, "
            + "delivery p50 \(ratio(micros(50), base.micros(50)))"
    }

    var summary: String {
        "\(system), \(subscribers) subscribers, \(mode): \(grouped(publishesPerSecond)) publishes/s (p50 \(format(publish.micros(50))) µs), "
            + "\(grouped(Double(deliveries))) of \(grouped(Double(expected))) delivered, \(grouped(deliveriesPerSecond)) deliveries/s, "
            + "publish → delivery p50 \(format(micros(50))) µs, p99 \(format(micros(99))) µs, p999 \(format(micros(99.9))) µs; "
            + "server CPU \(format(serverCPU)) µs/publish"
    }

    var markdown: String {
        "| \(system) | \(subscribers) | \(mode) | \(grouped(publishesPerSecond)) | \(grouped(deliveriesPerSecond)) | \(format(publish.micros(50))) | "
            + "\(format(micros(50))) | \(format(micros(99))) | \(format(micros(99.9))) | \(grouped(Double(lost))) | \(format(serverCPU)) |"
    }
}

/// What a subscriber saw since the last look.
struct SubscriberTally: Sendable {
    var received = 0
    var lastArrival: UInt64 = 0
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
}

/// A subscriber connection: records publish → delivery of every event (the publish time is `t` in
/// the data), for switchboard's notifications and Redis's messages alike.
final class EventSubscriber: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let redis: Bool
    private var subscribed: EventLoopPromise<Void>?
    private var tally = SubscriberTally()
    private static let timeKey = Array(#""t":"#.utf8)

    private init(redis: Bool, subscribed: EventLoopPromise<Void>) {
        self.redis = redis
        self.subscribed = subscribed
    }

    static func subscribe(_ channel: any Channel, redis: Bool) async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(EventSubscriber(redis: redis, subscribed: promise))
            let request = redis
                ? "*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n"
                : #"{"jsonrpc":"2.0","id":"subscribe","method":"events/subscribe","params":{"topic":"bench"}}"# + "\n"
            channel.writeAndFlush(ByteBuffer(string: request), promise: nil)
        }.get()
        try await promise.futureResult.get()
    }

    /// Waits until the subscribers received `expected` events in all (or nothing arrived for 3 s),
    /// then takes their tallies.
    static func collect(_ channels: [any Channel], expecting expected: Int) async throws -> SubscriberTally {
        var last = -1
        var quietSince = DispatchTime.now().uptimeNanoseconds
        while true {
            var received = 0
            for channel in channels { received += try await peek(channel) }
            if received >= expected { break }
            let now = DispatchTime.now().uptimeNanoseconds
            if received != last {
                last = received
                quietSince = now
            } else if now - quietSince > 3_000_000_000 {
                break
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        var total = SubscriberTally()
        for channel in channels {
            let tally = try await take(channel)
            total.received += tally.received
            total.lastArrival = max(total.lastArrival, tally.lastArrival)
            total.latency.add(tally.latency)
        }
        return total
    }

    private static func peek(_ channel: any Channel) async throws -> Int {
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: EventSubscriber.self).tally.received
        }.get()
    }

    private static func take(_ channel: any Channel) async throws -> SubscriberTally {
        try await channel.eventLoop.submit {
            let subscriber = try channel.pipeline.syncOperations.handler(type: EventSubscriber.self)
            defer { subscriber.tally = SubscriberTally() }
            return subscriber.tally
        }.get()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = DispatchTime.now().uptimeNanoseconds
        let line = unwrapInboundIn(data)
        let view = line.readableBytesView
        if let subscribed {
            let confirmed = redis ? view.first == UInt8(ascii: ":") : LineScan.find(Array(#""subscriptionId""#.utf8), in: view) != nil
            if confirmed {
                self.subscribed = nil
                subscribed.succeed()
            } else if !redis, LineScan.find(LineScan.errorKey, in: view) != nil {
                self.subscribed = nil
                subscribed.fail(ValidationError("events/subscribe failed: \(String(buffer: line))"))
            }
            return
        }
        guard let sent = LineScan.integerValue(after: Self.timeKey, in: view), sent > 0, now >= UInt64(sent) else { return }
        _ = tally.latency.record(now - UInt64(sent))
        tally.received += 1
        tally.lastArrival = now
    }

    func channelInactive(context: ChannelHandlerContext) {
        subscribed?.fail(ValidationError("the server closed a subscriber's connection"))
        subscribed = nil
        context.fireChannelInactive()
    }
}
