import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

// tools/call through switchboard beside the agent called directly and beside FastMCP's proxy
// (section 1 of docs/benchmarks.md), and the gateway's own ceiling with an agent that costs
// almost nothing (section 2).

// MARK: - peers

/// `tools/call` of `echo` on the Python SDK's low-level echo server: directly, through switchboard
/// and through FastMCP's proxy, with the SDK's client; and directly and through switchboard with
/// this process's client.
struct PeersBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peers",
        abstract: "tools/call to the Python SDK echo server: directly, through switchboard, through FastMCP's proxy.",
        discussion: """
            The agent is scripts/bench/sdk_echo_server.py (the official Python SDK's low-level Server). With the \
            SDK's own client (scripts/bench/sdk_client_bench.py, over stdio, initialize handshake): the server \
            directly; `switchboard serve --stdio` with the server as its agent; FastMCP's proxy \
            (scripts/bench/fastmcp_proxy.py: `create_proxy` over stdio to the server, served over stdio). With \
            this process's client (SwiftNIO, reads only the ids): the server directly over its stdio, and \
            switchboard over stdio. Each sequentially and with --in-flight calls outstanding; CPU per call of \
            every process from /proc/PID/stat; resident memory of each gateway process after its run.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var summary: SummaryOptions

    @Option(help: "The Python of the benchmark's virtual environment (mcp, fastmcp).")
    var python: String

    @Option(help: "The folder with sdk_echo_server.py, fastmcp_proxy.py and sdk_client_bench.py.")
    var scripts: String = "scripts/bench"

    @Option(help: "Calls per sequential measurement with the SDK's client.")
    var sdkSequential: Int = 2_000

    @Option(help: "Calls per pipelined measurement with the SDK's client.")
    var sdkRequests: Int = 5_000

    @Option(help: "Calls before each SDK measurement that are not counted.")
    var sdkWarmup: Int = 300

    func run() async throws {
        let scripts = URL(fileURLWithPath: scripts).standardizedFileURL.path
        let binary = URL(fileURLWithPath: options.binary).standardizedFileURL.path
        let server = [python, "\(scripts)/sdk_echo_server.py"]
        let configuration = try AgentConfiguration(command: server, maxConcurrency: max(options.inFlight, 64))
        defer { configuration.remove() }

        // The SDK's client on every path.
        var sdk = ResultTable()
        var memory: [(String, Int)] = []
        let direct = "SDK client → server directly"
        for (label, roles, command, baseline) in [
            (direct, "agent", server, nil as String?),
            ("SDK client → switchboard → server", "gateway,agent",
                [binary, "serve", "--stdio", "--log-level", "warning", "--config", configuration.path], direct),
            ("SDK client → FastMCP proxy → server", "gateway,agent", [python, "\(scripts)/fastmcp_proxy.py"] + server, direct),
        ] {
            let output = try runSDKClient(roles: roles, command: command)
            for row in output.rows {
                var row = row
                row.label = label
                row.baseline = baseline
                sdk.add(row)
            }
            if let rss = output.gatewayKiB { memory.append((label, rss)) }
        }

        // This process's client: the server directly over its stdio, and switchboard over stdio.
        var swift = ResultTable()
        let swiftDirect = "Swift client → server directly"
        let agent = try JSONRPCProcess.start(server, name: "agent")
        let agentChannel = try await agent.connect()
        try await Handshake.initialize(agentChannel)
        try await swift.measure(label: swiftDirect, channel: agentChannel, request: .echo, options: options, processes: [("agent", agent)])
        try await agentChannel.close()
        agent.stop()

        let gateway = try JSONRPCProcess.startGateway(binary: binary, transport: "stdio", extraArguments: ["--config", configuration.path])
        defer { gateway.stop() }
        let channel = try await gateway.connect()
        try await Handshake.initialize(channel)
        try await Handshake.waitForTool("echo", on: channel)
        let spawned = try await Handshake.agentProcessID(on: channel).map { JSONRPCProcess.observe(pid: $0, name: "agent") }
        try await swift.measure(
            label: "Swift client → switchboard → server", channel: channel, request: .echo, options: options,
            processes: [("gateway", gateway)] + (spawned.map { [("agent", $0)] } ?? []), baseline: swiftDirect)
        memory.append(("Swift client → switchboard → server", gateway.residentKiB()))
        try await channel.close()

        print()
        print("tools/call of echo on the Python SDK's low-level server (all over stdio):")
        sdk.print()
        swift.print()
        print()
        print("| gateway process | resident memory after its run |")
        print("| --- | ---: |")
        for (label, kib) in memory { print("| \(label) | \(grouped(Double(kib) / 1024)) MiB |") }

        // Headlines: switchboard against FastMCP's proxy, each against the direct path.
        for mode in ["sequential", "\(options.inFlight) in flight"] {
            guard let base = sdk.rows.first(where: { $0.label == direct && $0.mode == mode }),
                let switchboard = sdk.rows.first(where: { $0.label.contains("switchboard") && $0.mode == mode }),
                let fastmcp = sdk.rows.first(where: { $0.label.contains("FastMCP") && $0.mode == mode })
            else { continue }
            summary.record(
                "1 peers", "tools/call via switchboard, SDK client, \(mode)",
                "\(grouped(switchboard.callsPerSecond)) calls/s, p50 \(format(switchboard.micros(50))) µs",
                "\(ratio(switchboard.callsPerSecond, base.callsPerSecond)) of direct (\(grouped(base.callsPerSecond))); "
                    + "\(ratio(switchboard.callsPerSecond, fastmcp.callsPerSecond)) of FastMCP proxy (\(grouped(fastmcp.callsPerSecond)) calls/s, "
                    + "\(ratio(fastmcp.callsPerSecond, base.callsPerSecond)) of direct)")
            summary.record(
                "1 peers", "gateway CPU per call, SDK client, \(mode)",
                "switchboard \(format(switchboard.cpu("gateway"))) µs", "FastMCP proxy \(format(fastmcp.cpu("gateway"))) µs "
                    + "(\(ratio(fastmcp.cpu("gateway"), switchboard.cpu("gateway"))) of switchboard's)")
        }
        for mode in ["sequential", "\(options.inFlight) in flight"] {
            guard let base = swift.rows.first(where: { $0.label == swiftDirect && $0.mode == mode }),
                let row = swift.rows.first(where: { $0.baseline != nil && $0.mode == mode })
            else { continue }
            summary.record(
                "1 peers", "tools/call via switchboard, Swift client, \(mode)",
                "\(grouped(row.callsPerSecond)) calls/s, p50 \(format(row.micros(50))) µs",
                "\(ratio(row.callsPerSecond, base.callsPerSecond)) of direct (\(grouped(base.callsPerSecond)) calls/s, p50 \(format(base.micros(50))) µs)")
        }
        if let switchboard = memory.first(where: { $0.0.hasPrefix("SDK") && $0.0.contains("switchboard") }),
            let fastmcp = memory.first(where: { $0.0.contains("FastMCP") })
        {
            summary.record(
                "1 peers", "gateway resident memory, one agent", "switchboard \(grouped(Double(switchboard.1) / 1024)) MiB",
                "FastMCP proxy \(grouped(Double(fastmcp.1) / 1024)) MiB (\(ratio(Double(fastmcp.1), Double(switchboard.1))))")
        }
    }

    private struct SDKOutput {
        var rows: [Measurement]
        var gatewayKiB: Int?
    }

    /// Runs sdk_client_bench.py against `command` and reads its JSON lines.
    private func runSDKClient(roles: String, command: [String]) throws -> SDKOutput {
        let scripts = URL(fileURLWithPath: scripts).standardizedFileURL.path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            python, "\(scripts)/sdk_client_bench.py", "--sequential", String(sdkSequential), "--concurrent", String(sdkRequests),
            "--in-flight", String(options.inFlight), "--warmup", String(sdkWarmup), "--roles", roles, "--",
        ] + command
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("sdk_client_bench.py failed (\(process.terminationStatus)) against \(command.joined(separator: " "))")
        }
        var result = SDKOutput(rows: [])
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            if let rss = object["rss"] as? [[Any]] {
                result.gatewayKiB = rss.first(where: { ($0.first as? String) == "gateway" }).flatMap { $0.last as? Int }
                continue
            }
            let cpu = (object["cpu"] as? [[Any]] ?? []).compactMap { pair -> (String, Double)? in
                guard let name = pair.first as? String, let value = pair.last as? Double else { return nil }
                return (name, value)
            }
            result.rows.append(
                Measurement(
                    label: "", mode: object["mode"] as? String ?? "", count: object["count"] as? Int ?? 0,
                    seconds: object["seconds"] as? Double ?? 1,
                    percentiles: [50: object["p50"] as? Double ?? 0, 99: object["p99"] as? Double ?? 0, 99.9: object["p999"] as? Double ?? 0],
                    cpuPerCall: cpu))
        }
        return result
    }
}

// MARK: - ceiling

/// The gateway's own ceiling: `tools/call` of a C echo agent that answers with precomputed bytes,
/// directly and through switchboard, with the agent on stdio and on TCP.
struct CeilingBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ceiling",
        abstract: "tools/call to a minimal C echo agent, directly and through switchboard: the gateway's own ceiling.",
        discussion: """
            The agent is scripts/bench/echo_agent.c, compiled: it answers every line of a read with \
            precomputed bytes in one write, so that it costs almost nothing. Paths: the agent directly over \
            its stdio; switchboard with the agent spawned over stdio, the client over TCP and over stdio; the \
            agent directly over TCP (`--listen`); switchboard with the agent attached over TCP (`--attach`: \
            agents/register), the client over TCP. Each sequentially and with --in-flight calls outstanding.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var summary: SummaryOptions

    @Option(help: "The compiled minimal echo agent (scripts/bench/echo_agent.c).")
    var agent: String

    @Option(help: "Run the gateways with an auth section whose anonymous role has this many rules (0: none), to measure what deciding access costs a call.")
    var accessRules = 0

    @Flag(help: "With --access-rules: every tenant has a rate limit (too high to refuse anything), so that every call passes the limiter.")
    var rateLimit = false

    @Flag(help: "Run the gateways with metrics turned off (metrics.enabled: false), to measure what the metrics cost a call.")
    var metricsOff = false

    func run() async throws {
        let agent = URL(fileURLWithPath: agent).standardizedFileURL.path
        let concurrency = max(options.inFlight, 64)
        let configuration = try AgentConfiguration(
            command: [agent], maxConcurrency: concurrency, accessRules: accessRules, rateLimited: rateLimit, metricsOff: metricsOff)
        defer { configuration.remove() }
        var table = ResultTable()

        let directStdio = "agent directly (stdio)"
        do {
            let process = try JSONRPCProcess.start([agent], name: "agent")
            defer { process.stop() }
            let channel = try await process.connect()
            try await Handshake.initialize(channel)
            try await table.measure(label: directStdio, channel: channel, request: .echo, options: options, processes: [("agent", process)])
            try await channel.close()
        }
        // The default (one event loop on two cores or fewer, else one per core), and two event
        // loops: then a call whose client connection and agent pipes are served by different
        // loops hops between threads twice.
        for (transport, threads) in [("tcp", nil), ("stdio", nil), ("tcp", 2)] as [(String, Int?)] {
            let gateway = try JSONRPCProcess.startGateway(
                binary: options.binary, transport: transport,
                extraArguments: ["--config", configuration.path] + (threads.map { ["--threads", String($0)] } ?? []))
            defer { gateway.stop() }
            let channel = try await gateway.connect()
            if transport == "stdio" { try await Handshake.initialize(channel) }
            try await Handshake.waitForTool("echo", on: channel)
            let spawned = try await Handshake.agentProcessID(on: channel).map { JSONRPCProcess.observe(pid: $0, name: "agent") }
            let gatewayLabel = threads.map { "switchboard --threads \($0)" } ?? "switchboard"
            try await table.measure(
                label: "client \(transport) → \(gatewayLabel) → agent stdio", channel: channel, request: .echo, options: options,
                processes: [("gateway", gateway)] + (spawned.map { [("agent", $0)] } ?? []), baseline: directStdio)
            try await channel.close()
        }

        let directTCP = "agent directly (tcp)"
        do {
            let process = try JSONRPCProcess.startListening([agent, "--listen", "0"], name: "agent")
            defer { process.stop() }
            let channel = try await process.connect()
            try await Handshake.initialize(channel)
            try await table.measure(label: directTCP, channel: channel, request: .echo, options: options, processes: [("agent", process)])
            try await channel.close()
        }
        do {
            let gateway = try JSONRPCProcess.startGateway(binary: options.binary, transport: "tcp")
            defer { gateway.stop() }
            let attached = try JSONRPCProcess.startDetached(
                [agent, "--attach", "127.0.0.1:\(gateway.port)", "--max-concurrency", String(concurrency)], name: "agent")
            defer { attached.stop() }
            let channel = try await gateway.connect()
            try await Handshake.waitForTool("echo", on: channel)
            try await table.measure(
                label: "client tcp → switchboard → agent attached over tcp", channel: channel, request: .echo, options: options,
                processes: [("gateway", gateway), ("agent", attached)], baseline: directTCP)
            try await channel.close()
        }

        print()
        print("tools/call of echo on the minimal C agent:")
        table.print()
        for row in table.rows where row.baseline != nil {
            guard let base = table.base(of: row) else { continue }
            summary.record(
                "2 ceiling", "\(row.label), \(row.mode)",
                "\(grouped(row.callsPerSecond)) calls/s, p50 \(format(row.micros(50))) µs, gateway \(format(row.cpu("gateway"))) µs CPU/call",
                "\(ratio(row.callsPerSecond, base.callsPerSecond)) of direct (\(grouped(base.callsPerSecond)) calls/s, p50 \(format(base.micros(50))) µs)")
        }
    }
}
