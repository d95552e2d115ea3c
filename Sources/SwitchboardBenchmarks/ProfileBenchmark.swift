import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// Instructions per relayed `tools/call`, by function: the gateway under callgrind with the
/// minimal agent (docs/benchmarks.md, "Profile").
struct ProfileBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Instructions per relayed tools/call by function: switchboard under valgrind's callgrind, with the minimal agent.",
        discussion: """
            Starts the gateway under `valgrind --tool=callgrind` (which counts instructions: the counts \
            repeat from run to run, unlike times) with the minimal C echo agent attached over TCP \
            (agents/register; under valgrind the gateway cannot spawn processes), and calls its tool over \
            TCP: after --warmup calls, the counters are zeroed (callgrind_control -z), \
            --calls calls are made, and the counts dumped (callgrind_control -d); sequentially, then with \
            --in-flight outstanding. Each dump is summarised with callgrind_annotate (self cost per \
            function, names demangled with `swift demangle`) as instructions per call. The agent is not \
            under valgrind; only the gateway's instructions are counted.

            valgrind 3.19 (Debian 12) cannot read the DWARF of a Swift 6 release binary and writes into the \
            read-only signal mask libdispatch passes to sigsuspend: give it a copy of the binary without \
            debug information (--binary; symbols stay) and --preload a library whose sigsuspend copies the \
            mask first (scripts/bench/sigsuspend_shim.c). scripts/bench.sh profile does both.
            """
    )

    @Option(help: "The switchboard binary to profile (a release build; without debug information for valgrind 3.19).")
    var binary: String = ".build/release/switchboard"

    @Option(help: "The compiled minimal echo agent (scripts/bench/echo_agent.c).")
    var agent: String

    @Option(help: "A library to preload into the gateway (the sigsuspend shim).")
    var preload: String?

    @Option(help: "Profile with an auth section whose anonymous role (the client's) has this many rules naming targets; the agent authenticates with an API key (0: no auth section).")
    var accessRules = 0

    @Flag(help: "With --access-rules: every tenant has a rate limit (too high to refuse anything), so that every call passes the limiter.")
    var rateLimit = false

    @Option(help: "A configuration file for the gateway (to profile with metrics off, say); not with --access-rules.")
    var config: String?

    @Option(help: "Where the callgrind files go.")
    var output: String = ".build/bench/profile"

    @Option(help: "Calls per profiled measurement.")
    var calls: Int = 5_000

    @Option(help: "Calls before the counters are zeroed.")
    var warmup: Int = 500

    @Option(help: "Calls in flight in the second measurement.")
    var inFlight: Int = 64

    @Option(help: "Functions to list per measurement.")
    var top: Int = 25

    @Option(help: "Only summarise this callgrind dump of --calls calls (repeatable); runs nothing.")
    var annotate: [String] = []

    @OptionGroup var summary: SummaryOptions

    func run() async throws {
        if !annotate.isEmpty {
            for file in annotate { try report(mode: (file as NSString).lastPathComponent, file: file) }
            return
        }
        let agent = URL(fileURLWithPath: agent).standardizedFileURL.path
        let output = URL(fileURLWithPath: output).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: output) where file.hasPrefix("callgrind.out") {
            try FileManager.default.removeItem(atPath: "\(output)/\(file)")
        }
        let base = "\(output)/callgrind.out"
        let access = accessRules > 0 ? try AccessConfiguration(rules: accessRules, rateLimited: rateLimit) : nil
        defer { access?.remove() }
        let gateway = try JSONRPCProcess.startGateway(
            binary: binary, transport: "tcp", extraArguments: access.map { ["--config", $0.path] } ?? config.map { ["--config", $0] } ?? [],
            wrapper: ["valgrind", "--tool=callgrind", "--callgrind-out-file=\(base)", "--dump-instr=no"],
            environment: preload.map { ["LD_PRELOAD": URL(fileURLWithPath: $0).standardizedFileURL.path] } ?? [:])
        defer { gateway.stop() }
        // The agent attaches over TCP: under valgrind the gateway cannot spawn one (Foundation's
        // Process closes every open descriptor in the child, valgrind's own included, and fails).
        let attached = try JSONRPCProcess.startDetached(
            [agent, "--attach", "127.0.0.1:\(gateway.port)", "--max-concurrency", String(max(inFlight, 64))]
                + (access.map { ["--token", $0.agentKey] } ?? []), name: "agent")
        defer { attached.stop() }
        let channel = try await gateway.connect()
        try await Handshake.waitForTool("echo", on: channel, attempts: 3_000)
        _ = try await RoundTripDriver.run(on: channel, request: .echo, count: warmup, window: 1)

        var dumps: [(mode: String, file: String, seconds: Double)] = []
        for (mode, window) in [("sequential", 1), ("\(inFlight) in flight", inFlight)] {
            _ = try await RoundTripDriver.run(on: channel, request: .echo, count: min(warmup, 200), window: window)
            try Self.run(["callgrind_control", "--zero", String(gateway.processID)])
            let result = try await RoundTripDriver.run(on: channel, request: .echo, count: calls, window: window)
            let before = Set(try FileManager.default.contentsOfDirectory(atPath: output))
            try Self.run(["callgrind_control", "--dump=\(mode.replacingOccurrences(of: " ", with: "-"))", String(gateway.processID)])
            let after = Set(try FileManager.default.contentsOfDirectory(atPath: output)).subtracting(before)
            guard let file = after.sorted().last else { throw ValidationError("callgrind wrote no dump for \(mode)") }
            dumps.append((mode, "\(output)/\(file)", result.seconds))
        }
        try await channel.close()
        gateway.stop()

        for dump in dumps { try report(mode: dump.mode, file: dump.file) }
    }

    private func report(mode: String, file: String) throws {
        do {
            let dump = (mode: mode, file: file)
            let profile = try CallgrindProfile(file: dump.file)
            let perCall = Double(profile.total) / Double(calls)
            print()
            print("\(dump.mode): \(grouped(perCall)) instructions per relayed tools/call in the gateway (\(grouped(Double(profile.total))) for \(grouped(Double(calls))) calls; \(dump.file))")
            print()
            print("| function (self cost) | instructions per call | share |")
            print("| --- | ---: | ---: |")
            for entry in profile.functions.prefix(top) {
                print("| \(entry.name.replacingOccurrences(of: "|", with: "\\|")) | \(grouped(Double(entry.cost) / Double(calls))) | \(String(format: "%.1f %%", Double(entry.cost) * 100 / Double(profile.total))) |")
            }
            print()
            print("| where | instructions per call | share |")
            print("| --- | ---: | ---: |")
            for (group, cost) in profile.groups {
                print("| \(group) | \(grouped(Double(cost) / Double(calls))) | \(String(format: "%.1f %%", Double(cost) * 100 / Double(profile.total))) |")
            }
            let leaders = profile.functions.prefix(3).map { "\(Self.short($0.name)) \(String(format: "%.0f%%", Double($0.cost) * 100 / Double(profile.total)))" }
            summary.record("profile", "instructions per relayed tools/call, \(dump.mode)", grouped(perCall), "top: " + leaders.joined(separator: ", "))
        }
    }

    private static func short(_ name: String) -> String {
        let base = name.split(separator: "(").first.map(String.init) ?? name
        return base.count > 60 ? String(base.prefix(60)) + "…" : base
    }

    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ValidationError("\(arguments[0]) failed (\(process.terminationStatus))") }
        return String(decoding: data, as: UTF8.self)
    }

    static func run(_ arguments: [String], input: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        let stdin = Pipe()
        process.standardOutput = output
        process.standardInput = stdin
        process.standardError = FileHandle.standardError
        try process.run()
        DispatchQueue.global().async {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

/// A callgrind dump summarised by callgrind_annotate: self cost per function, demangled, and
/// grouped by where the code lives.
struct CallgrindProfile {
    struct Function {
        var name: String
        var object: String
        var cost: Int
    }

    var total = 0
    var functions: [Function] = []
    var groups: [(String, Int)] = []

    init(file: String) throws {
        let text = try ProfileBenchmark.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", file])
        var mangled: [Function] = []
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard let first = trimmed.first, first.isNumber else { continue }
            let parts = trimmed.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let cost = Int(parts[0].replacingOccurrences(of: ",", with: "")) else { continue }
            var rest = String(parts[1]).trimmingCharacters(in: .whitespaces)
            if rest.hasPrefix("("), let close = rest.firstIndex(of: ")") { rest = String(rest[rest.index(after: close)...]).trimmingCharacters(in: .whitespaces) }
            if rest.hasPrefix("PROGRAM TOTALS") {
                total = cost
                continue
            }
            var object = ""
            if rest.hasSuffix("]"), let open = rest.lastIndex(of: "[") {
                object = String(rest[rest.index(after: open)..<rest.index(before: rest.endIndex)])
                rest = String(rest[..<open]).trimmingCharacters(in: .whitespaces)
            }
            if let colon = rest.firstIndex(of: ":") { rest = String(rest[rest.index(after: colon)...]) }
            mangled.append(Function(name: rest, object: (object as NSString).lastPathComponent, cost: cost))
        }
        if total == 0 { total = mangled.map(\.cost).reduce(0, +) }
        // Zeroing the counters while the event-loop threads are inside their run loops leaves the
        // frames then on the stack (clone, start_thread, the NIO thread closures) with the whole
        // cost as their "self" cost: drop the largest entries while the self costs add up to more
        // than the total.
        mangled.sort { $0.cost > $1.cost }
        var sum = mangled.map(\.cost).reduce(0, +)
        while sum > total + total / 50, let first = mangled.first, first.cost > total / 4 {
            sum -= first.cost
            mangled.removeFirst()
        }
        let names = mangled.map(\.name).joined(separator: "\n") + "\n"
        let simplified = try ProfileBenchmark.run(["swift", "demangle", "--simplified", "--compact"], input: names)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let full = try ProfileBenchmark.run(["swift", "demangle", "--compact"], input: names)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var byGroup: [String: Int] = [:]
        for (index, function) in mangled.enumerated() {
            var function = function
            if index < full.count, !full[index].isEmpty { function.name = full[index] }
            byGroup[Self.group(of: function), default: 0] += function.cost
            if index < simplified.count, !simplified[index].isEmpty { function.name = simplified[index] }
            functions.append(function)
        }
        groups = byGroup.sorted { $0.value > $1.value }
    }

    private static let modules = [
        "JSONRPC", "Transport", "Gateway", "Agents", "Router", "Backend", "MCPProtocol", "NIOCore", "NIOPosix", "NIOConcurrencyHelpers",
        "Logging", "Workflows", "Redis", "ServiceLifecycle",
    ]

    static func group(of function: Function) -> String {
        let object = function.object
        if object.hasPrefix("libswiftCore") { return "Swift runtime and standard library (libswiftCore)" }
        if object.hasPrefix("libswift_Concurrency") { return "Swift concurrency runtime" }
        if object.hasPrefix("libc.") || object.hasPrefix("libc-") || object.hasPrefix("ld-linux") || object.hasPrefix("libm.") { return "libc (malloc, memcpy, syscalls)" }
        if object.hasPrefix("libFoundation") { return "Foundation" }
        if object.hasPrefix("libdispatch") { return "libdispatch" }
        if object.hasPrefix("vgpreload") || object.hasPrefix("valgrind") { return "valgrind" }
        if !object.isEmpty, !object.hasPrefix("switchboard") { return object }
        // In the binary: the first of our modules (or SwiftNIO's) the demangled name mentions.
        var best: (String, String.Index)?
        for module in modules {
            if let range = function.name.range(of: module + "."), best == nil || range.lowerBound < best!.1 { best = (module, range.lowerBound) }
        }
        return best.map { "\($0.0) (switchboard binary)" } ?? "standard library specialised into the binary, other"
    }
}
