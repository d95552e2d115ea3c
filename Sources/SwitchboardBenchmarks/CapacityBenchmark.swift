import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// Memory per idle attached agent and per queued task, and how many of each one gateway process
/// holds (section 5 of docs/benchmarks.md).
struct CapacityBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capacity",
        abstract: "Resident memory per idle attached agent and per queued task; the most agents and tasks one gateway holds.",
        discussion: """
            Agents: a fresh `switchboard serve --listen tcp://127.0.0.1:0`; this process opens --agents TCP \
            connections to it (--attach-concurrency at a time), each registering (agents/register) as an \
            instance of `idle` with one tool, and then stays idle (it answers the gateway's health pings). \
            Memory per agent = (VmRSS after − VmRSS before) / agents registered. \
            Tasks: a fresh gateway with one attached agent offering `hold` (maxConcurrency 1) that never \
            answers; --tasks tasks/submit of `hold` written at once on one connection; once all are \
            acknowledged, one runs and the rest wait in the queue. Memory per task = (VmRSS after − VmRSS \
            before) / tasks. \
            Peer (with --python): the resident memory of FastMCP's proxy and of switchboard, each with the \
            Python SDK echo server as its one agent, idle. Raise the open-files limit first (scripts/bench.sh \
            does): each agent is a descriptor in both processes.
            """
    )

    @OptionGroup var summary: SummaryOptions

    @Option(help: "The switchboard binary to start (a release build).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "Idle agents to attach.")
    var agents: Int = 10_000

    @Option(help: "Agents connecting and registering at once.")
    var attachConcurrency: Int = 128

    @Option(help: "Tasks to keep in flight.")
    var tasks: Int = 100_000

    @Option(help: "The Python of the benchmark's virtual environment; with it, FastMCP's proxy's idle memory is measured too.")
    var python: String?

    @Option(help: "The folder with sdk_echo_server.py and fastmcp_proxy.py.")
    var scripts: String = "scripts/bench"

    func run() async throws {
        raiseFileLimit()
        let limit = fileLimit()
        var agentCount = agents
        if limit < agents + 256 {
            agentCount = max(0, limit - 256)
            print("the open-files limit is \(limit): attaching \(agentCount) agents, not \(agents) (raise it with ulimit -n)")
        }

        // Idle attached agents, all from this one address: over the default connection caps.
        let caps = try ConnectionCapsConfiguration(connections: agentCount + 64)
        defer { caps.remove() }
        let gateway = try JSONRPCProcess.startGateway(binary: binary, transport: "tcp", extraArguments: ["--config", caps.path])
        let client = try await gateway.connect()
        try await Task.sleep(for: .seconds(1))
        let idleKiB = gateway.residentKiB()
        let specs = (0..<agentCount).map { index in
            SimulatedAgentSpec(agentName: "idle", tool: "work", delayMilliseconds: 0, failureRate: 0, maxConcurrency: 16, seed: UInt64(index))
        }
        let cpuBefore = gateway.cpuTime()
        let started = DispatchTime.now().uptimeNanoseconds
        // In chunks, to show how registering costs as the registry grows.
        var channels: [any Channel] = []
        var errors: [String] = []
        var chunkRates: [String] = []
        let chunk = max(1, min(1_000, agentCount / 10))
        for first in stride(from: 0, to: specs.count, by: chunk) {
            let chunkCPU = gateway.cpuTime()
            let chunkStarted = DispatchTime.now().uptimeNanoseconds
            let attached = await SimulatedAgent.attachMany(Array(specs[first..<min(first + chunk, specs.count)]), to: gateway, concurrency: attachConcurrency)
            channels += attached.channels
            errors += attached.errors
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - chunkStarted) / 1e9
            let cpu = (gateway.cpuTime() - chunkCPU) * 1e6 / Double(max(attached.channels.count, 1))
            let rate = "\(grouped(Double(first + attached.channels.count))): \(grouped(Double(attached.channels.count) / seconds))/s, \(format(cpu)) µs"
            chunkRates.append(rate)
            print("agents registered up to \(rate) gateway CPU each")
        }
        let attachSeconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let attachCPU = gateway.cpuTime() - cpuBefore
        try await Task.sleep(for: .seconds(2))
        let agentsKiB = gateway.residentKiB()
        let status = try await Handshake.exchange(client, #"{"jsonrpc":"2.0","id":"status","method":"gateway/status"}"#)
        let listed = LineScan.integerValue(after: Array(#""count":"#.utf8), in: ByteBuffer(string: status).readableBytesView) ?? -1
        let perAgent = channels.isEmpty ? 0 : Double(agentsKiB - idleKiB) * 1024 / Double(channels.count)
        print("agents: \(channels.count) of \(agentCount) registered in \(String(format: "%.2f", attachSeconds)) s "
            + "(\(grouped(Double(channels.count) / attachSeconds))/s, gateway CPU \(format(attachCPU * 1e6 / Double(max(channels.count, 1)))) µs each); "
            + "gateway/status counts \(listed); RSS \(grouped(Double(idleKiB) / 1024)) MiB idle → \(grouped(Double(agentsKiB) / 1024)) MiB: "
            + "\(grouped(perAgent)) bytes per agent")
        if let error = errors.first { print("\(errors.count) agents failed to attach; the first: \(error)") }
        await withTaskGroup(of: Void.self) { group in
            for channel in channels { group.addTask { try? await channel.close() } }
        }
        try? await client.close()
        gateway.stop()

        // Tasks in flight behind an agent that never answers.
        let taskGateway = try JSONRPCProcess.startGateway(binary: binary, transport: "tcp")
        defer { taskGateway.stop() }
        let sink = try await SimulatedAgent.attach(
            [SimulatedAgentSpec(agentName: "sink", tool: "hold", delayMilliseconds: 0, failureRate: 0, maxConcurrency: 1, seed: 0, answersCalls: false)],
            to: taskGateway)
        let taskClient = try await taskGateway.connect()
        try await Task.sleep(for: .seconds(1))
        let taskIdleKiB = taskGateway.residentKiB()
        let taskCPUBefore = taskGateway.cpuTime()
        let outcome = try await TaskDriver.run(
            on: taskClient, plan: .init(count: tasks, window: 0, burst: true, taskType: "hold", extraParams: "", submitOnly: true))
        let taskCPU = taskGateway.cpuTime() - taskCPUBefore
        try await Task.sleep(for: .seconds(2))
        let tasksKiB = taskGateway.residentKiB()
        let taskStatus = try await Handshake.exchange(taskClient, #"{"jsonrpc":"2.0","id":"status","method":"gateway/status"}"#)
        let queued = LineScan.integerValue(after: Array(#""queued":"#.utf8), in: ByteBuffer(string: taskStatus).readableBytesView) ?? -1
        let perTask = Double(tasksKiB - taskIdleKiB) * 1024 / Double(tasks)
        print("tasks: \(tasks) submitted in \(String(format: "%.2f", outcome.seconds)) s (\(grouped(Double(tasks) / outcome.seconds))/s, "
            + "gateway CPU \(format(taskCPU * 1e6 / Double(tasks))) µs each); gateway/status queued \(queued); "
            + "RSS \(grouped(Double(taskIdleKiB) / 1024)) MiB → \(grouped(Double(tasksKiB) / 1024)) MiB: \(grouped(perTask)) bytes per task")
        try? await taskClient.close()
        for channel in sink { try? await channel.close() }

        // The peer: an idle FastMCP proxy and an idle switchboard, each with the SDK echo server.
        var peer: (fastmcp: Int, switchboard: Int)?
        if let python {
            peer = try await idlePeers(python: python)
            if let peer {
                print("idle with the Python SDK echo server as the one agent: FastMCP proxy \(grouped(Double(peer.fastmcp) / 1024)) MiB, "
                    + "switchboard \(grouped(Double(peer.switchboard) / 1024)) MiB")
            }
        }

        print()
        print("| what | count held | resident memory | per item | against |")
        print("| --- | ---: | ---: | ---: | --- |")
        let agentsAgainst = peer.map { "one idle FastMCP proxy (\(grouped(Double($0.fastmcp) / 1024)) MiB) = \(grouped(Double($0.fastmcp) * 1024 / max(perAgent, 1))) idle agents" } ?? "—"
        print("| gateway, idle | — | \(grouped(Double(idleKiB) / 1024)) MiB | — | \(peer.map { "FastMCP proxy idle with one agent: \(grouped(Double($0.fastmcp) / 1024)) MiB; switchboard with one agent: \(grouped(Double($0.switchboard) / 1024)) MiB" } ?? "—") |")
        print("| idle attached agents | \(grouped(Double(channels.count))) of \(grouped(Double(agentCount))) | \(grouped(Double(agentsKiB) / 1024)) MiB | \(grouped(perAgent)) B | \(agentsAgainst) |")
        print("| tasks in flight (1 running, the rest queued) | \(grouped(Double(queued >= 0 ? queued + 1 : tasks))) of \(grouped(Double(tasks))) | \(grouped(Double(tasksKiB) / 1024)) MiB | \(grouped(perTask)) B | submitted at \(grouped(Double(tasks) / outcome.seconds))/s |")

        if let firstChunk = chunkRates.first, let lastChunk = chunkRates.last {
            summary.record(
                "5 capacity", "agents/register rate and gateway CPU per register, first and last \(grouped(Double(chunk)))",
                "at \(firstChunk)", "at \(lastChunk)")
        }
        summary.record(
            "5 capacity", "idle attached agents held (asked \(grouped(Double(agentCount))))",
            "\(grouped(Double(channels.count))), \(grouped(perAgent)) B RSS each", agentsAgainst)
        summary.record(
            "5 capacity", "tasks in flight held (asked \(grouped(Double(tasks))))",
            "\(grouped(Double(queued >= 0 ? queued + 1 : 0))), \(grouped(perTask)) B RSS each",
            "submitted at \(grouped(Double(tasks) / outcome.seconds))/s; gateway idle \(grouped(Double(idleKiB) / 1024)) MiB")
        if let peer {
            summary.record(
                "5 capacity", "gateway RSS, idle, one Python agent", "switchboard \(grouped(Double(peer.switchboard) / 1024)) MiB",
                "FastMCP proxy \(grouped(Double(peer.fastmcp) / 1024)) MiB (\(ratio(Double(peer.fastmcp), Double(peer.switchboard))))")
        }
    }

    /// Resident KiB of an idle FastMCP proxy and of an idle switchboard, each with one SDK echo
    /// server behind it (after one tools/call, so that the backend is up).
    private func idlePeers(python: String) async throws -> (fastmcp: Int, switchboard: Int) {
        let scripts = URL(fileURLWithPath: scripts).standardizedFileURL.path
        let server = [python, "\(scripts)/sdk_echo_server.py"]

        let proxy = try JSONRPCProcess.start([python, "\(scripts)/fastmcp_proxy.py"] + server, name: "FastMCP proxy")
        defer { proxy.stop() }
        let proxyChannel = try await proxy.connect()
        try await Handshake.initialize(proxyChannel)
        try await Handshake.waitForTool("echo", on: proxyChannel)
        _ = try await RoundTripDriver.run(on: proxyChannel, request: .echo, count: 10, window: 1)
        try await Task.sleep(for: .seconds(1))
        let fastmcp = proxy.residentKiB()
        try await proxyChannel.close()

        let configuration = try AgentConfiguration(command: server, maxConcurrency: 64)
        defer { configuration.remove() }
        let gateway = try JSONRPCProcess.startGateway(binary: binary, transport: "stdio", extraArguments: ["--config", configuration.path])
        defer { gateway.stop() }
        let channel = try await gateway.connect()
        try await Handshake.initialize(channel)
        try await Handshake.waitForTool("echo", on: channel)
        _ = try await RoundTripDriver.run(on: channel, request: .echo, count: 10, window: 1)
        try await Task.sleep(for: .seconds(1))
        let switchboard = gateway.residentKiB()
        try await channel.close()
        return (fastmcp, switchboard)
    }
}

/// A configuration file that lets one address open `connections` connections to the gateway.
struct ConnectionCapsConfiguration {
    let path: String

    init(connections: Int) throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-bench-caps-\(getpid())-\(UUID().uuidString).json")
        let limits: [String: Any] = ["limits": ["maxConnectionsPerPeer": connections, "maxConnectionsPerListener": connections]]
        try JSONSerialization.data(withJSONObject: limits).write(to: url)
        path = url.path
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
