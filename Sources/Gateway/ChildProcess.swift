import Agents
import Fleet
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// An agent's process: started from a template with its stdin, stdout and stderr on pipes, and
/// stopped the way MCP asks: close its stdin, wait, SIGTERM, wait, SIGKILL.
final class ChildProcess: Sendable {
    let processID: Int32
    let template: String
    /// The gateway's ends: the child's stdout (read) and stdin (write), and its stderr (read).
    let stdoutRead: Int32
    let stdinWrite: Int32
    let stderrRead: Int32
    /// How it was started inside its limits and sandbox; nil: as its command, directly.
    let launchPlan: LaunchPlan?
    private let process: Process
    private let exit: ExitMonitor

    /// How the process ended, once it has, and who is waiting to know.
    private final class ExitMonitor: Sendable {
        enum State {
            case running([@Sendable (String) -> Void])
            case exited(String)
        }

        let state = Mutex(State.running([]))

        /// Records how the process ended and tells whoever waits; only the first report counts.
        func report(_ reason: String) {
            let waiters: [@Sendable (String) -> Void] = state.withLock { state in
                guard case .running(let waiters) = state else { return [] }
                state = .exited(reason)
                return waiters
            }
            waiters.forEach { $0(reason) }
        }
    }

    /// One launch at a time. Foundation reports a child's exit through a socket the child
    /// inherits, and closes the parent's other descriptors in the child by listing those open
    /// just before it spawns: a launch on another thread in between would hand its socket to this
    /// child, and its own exit would go unreported for as long as this one lives.
    private static let launching = Mutex(())

    struct LaunchError: Error, CustomStringConvertible {
        var description: String
    }

    private init(
        process: Process, template: String, stdoutRead: Int32, stdinWrite: Int32, stderrRead: Int32, exit: ExitMonitor, launchPlan: LaunchPlan?
    ) {
        self.process = process
        self.launchPlan = launchPlan
        self.processID = process.processIdentifier
        self.template = template
        self.stdoutRead = stdoutRead
        self.stdinWrite = stdinWrite
        self.stderrRead = stderrRead
        self.exit = exit
    }

    /// Starts the template's command with the environment `ChildEnvironment` gives it. Throws
    /// `ExecutablePin.Mismatch` when a pinned file's hash differs: then nothing is started.
    /// `isolate` wraps the resolved command in its limits and sandbox (`LaunchPlanner`);
    /// `extraEnvironment` adds what the fleet gave it (`CUDA_VISIBLE_DEVICES`).
    static func launch(
        _ template: AgentTemplate, extraEnvironment: [String: String] = [:],
        isolate: (_ executable: String) throws -> LaunchPlan? = { _ in nil }
    ) throws -> ChildProcess {
        var environment = ChildEnvironment.of(template, gateway: ProcessInfo.processInfo.environment)
        environment.merge(extraEnvironment) { _, given in given }
        guard let executable = resolve(template.command, path: environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin") else {
            throw LaunchError(description: "command \"\(template.command)\" not found on PATH")
        }
        try ExecutablePin.verify(template, executable: executable)
        let plan = try isolate(executable)
        do {
            return try launching.withLock { _ in try launch(template, executable: executable, environment: environment, plan: plan) }
        } catch {
            plan?.cgroup?.remove()
            throw error
        }
    }

    private static func launch(_ template: AgentTemplate, executable: String, environment: [String: String], plan: LaunchPlan?) throws -> ChildProcess {
        let stdin = try pipe()
        let stdout = try pipe()
        let stderr = try pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: plan?.executable ?? executable)
        process.arguments = plan?.arguments ?? template.arguments
        process.environment = environment
        if let directory = template.workingDirectory {
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
        }
        process.standardInput = FileHandle(fileDescriptor: stdin.read, closeOnDealloc: false)
        process.standardOutput = FileHandle(fileDescriptor: stdout.write, closeOnDealloc: false)
        process.standardError = FileHandle(fileDescriptor: stderr.write, closeOnDealloc: false)
        let exit = ExitMonitor()
        process.terminationHandler = { process in
            let reason: String =
                process.terminationReason == .uncaughtSignal
                ? "killed by signal \(process.terminationStatus)" : "exited with status \(process.terminationStatus)"
            exit.report(reason)
        }
        do {
            try process.run()
        } catch {
            [stdin.read, stdin.write, stdout.read, stdout.write, stderr.read, stderr.write].forEach { _ = Glibc.close($0) }
            throw LaunchError(description: "cannot start \(executable): \(error)")
        }
        // The child has its own copies now; ours would keep its stdin open forever.
        [stdin.read, stdout.write, stderr.write].forEach { _ = Glibc.close($0) }
        return ChildProcess(
            process: process, template: template.name, stdoutRead: stdout.read, stdinWrite: stdin.write,
            stderrRead: stderr.read, exit: exit, launchPlan: plan)
    }

    /// Calls `body` once the process has exited (at once if it has), with how it ended.
    func onExit(_ body: @escaping @Sendable (String) -> Void) {
        let reason: String? = exit.state.withLock { state in
            switch state {
            case .running(var waiters):
                waiters.append(body)
                state = .running(waiters)
                return nil
            case .exited(let reason):
                return reason
            }
        }
        if let reason { body(reason) }
    }

    /// Returns when the process has exited, with how it ended.
    func waitForExit() async -> String {
        await withCheckedContinuation { continuation in onExit { continuation.resume(returning: $0) } }
    }

    var hasExited: Bool {
        exit.state.withLock { if case .exited = $0 { true } else { false } }
    }

    /// SIGTERM after `grace` if it has not exited (its stdin is already closed by then), SIGKILL
    /// after another `grace`. Returns within three `grace`s whatever happens.
    func stop(grace: Duration = .seconds(2), on eventLoop: any EventLoop) async {
        for signal in [SIGTERM, SIGKILL] {
            if await exited(within: grace, on: eventLoop) { return }
            kill(processID, signal)
        }
        if await exited(within: grace, on: eventLoop) { return }
        reapUnreported()
    }

    /// A killed process whose exit was never reported (something held the report up): taken as
    /// ended, so that its instance does not wait for it forever. Not reaped here: Foundation
    /// still watches it and reaps it once its report comes, and reaping it twice could reap
    /// another child given the same pid.
    private func reapUnreported() {
        let state = (try? String(contentsOfFile: "/proc/\(processID)/stat", encoding: .utf8))
            .flatMap { $0.split(separator: ")").last?.split(separator: " ").first }
        switch state {
        case nil, "Z"?, "X"?: exit.report("killed (its exit was not reported)")
        default: exit.report("did not exit after SIGKILL (pid \(processID), state \(state ?? "?"), left behind)")
        }
    }

    private func exited(within duration: Duration, on eventLoop: any EventLoop) async -> Bool {
        await withCheckedContinuation { continuation in
            let resumed = Mutex(false)
            let resume: @Sendable (Bool) -> Void = { exited in
                let first = resumed.withLock { done in
                    defer { done = true }
                    return !done
                }
                if first { continuation.resume(returning: exited) }
            }
            let timer = eventLoop.scheduleTask(in: TimeAmount(duration)) { resume(false) }
            onExit { _ in
                timer.cancel()
                resume(true)
            }
        }
    }

    private static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard Glibc.pipe(&fds) == 0 else {
            throw LaunchError(description: "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        // Other children must not inherit these, or an agent would never see its stdin close.
        // (Made under the launch lock: no launch can start between the pipe and the flag. A
        // child's own ends are duplicated onto 0, 1 and 2, which clears the flag.)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    private static func resolve(_ command: String, path: String) -> String? {
        if command.contains("/") { return access(command, X_OK) == 0 ? command : nil }
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(command)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

/// Writes each line an agent prints on stderr to the gateway's log, under the agent's name.
final class AgentStderrLogger: ChannelInboundHandler, Sendable {
    typealias InboundIn = LineFrame
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .line(let line) = unwrapInboundIn(data), line.readableBytes > 0 {
            logger.info("\(String(decoding: line.readableBytesView, as: UTF8.self))")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
