#if canImport(Glibc)
import Glibc
#endif

/// How to start one instance so that its limits and sandbox hold from its first instruction:
/// a chain of small programs, each doing one thing and then running the next —
/// `sh` joins the control group, `prlimit` sets resource limits where there is no control
/// group, `bwrap` builds the namespaces and file-system view, `setpriv` drops the
/// user, capabilities and sets `no_new_privs` — and at the end the agent's own command.
public struct LaunchPlan: Sendable, Equatable {
    public var executable: String
    public var arguments: [String]
    /// The instance's control group, made before the launch; nil where limits are rlimits.
    public var cgroup: CgroupGroup?
    /// One line per measure taken, for the log and `agents/get`.
    public var enforcement: [String]

    /// The program the chain ends with.
    public var command: String
    public var commandArguments: [String]
}

public enum LaunchPlanner {
    /// The script `sh` runs: writes its own pid into each file before `--`, then becomes the
    /// rest of its arguments. A failed write stops the start (status 125) rather than running
    /// the agent unlimited.
    static let joinScript = #"while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@""#

    /// The chain for `command`, or why it cannot be built as asked: a limit or a sandbox this
    /// machine cannot give refuses the start, never a weaker one in silence. Creates the
    /// control group (release it with `CgroupGroup.remove` once the instance has exited).
    public static func plan(
        instance: String, command: String, arguments: [String], resources: ResourceRequest, sandbox: Sandbox?, gpus: [String] = [],
        host: IsolationHost
    ) throws(IsolationError) -> LaunchPlan {
        var chain: [String] = []
        var enforcement: [String] = []
        let limited = resources.cpu != nil || resources.memoryBytes != nil || resources.processes != nil

        // The sandbox first, so that nothing is created for a start that will be refused.
        var sandboxChain: [String] = []
        if let sandbox {
            (sandboxChain, enforcement) = try sandboxCommands(sandbox, gpus: gpus, host: host)
        }

        var cgroup: CgroupGroup?
        if limited {
            if let layout = host.cgroups {
                let group = try layout.makeGroup(named: instance, for: resources)
                cgroup = group
                chain += [host.shell, "-c", joinScript, "switchboard-join"] + group.joinFiles + ["--"]
                enforcement.insert("cgroups \(layout.version.rawValue): \(describe(resources))", at: 0)
            } else {
                if resources.cpu != nil {
                    throw IsolationError(
                        "resources.cpu needs control groups, which this gateway cannot create here (run it as root with a writable cgroup file system)")
                }
                guard let prlimit = host.prlimit else { throw IsolationError("resources need prlimit (util-linux) or control groups; neither is here") }
                var limits: [String] = []
                if let memory = resources.memoryBytes { limits.append("--as=\(memory)") }
                if let processes = resources.processes { limits.append("--nproc=\(processes)") }
                chain += [prlimit] + limits + ["--"]
                enforcement.insert("setrlimit: \(describe(resources)) (address space, not resident memory)", at: 0)
            }
        }
        chain += sandboxChain
        chain += [command] + arguments
        return LaunchPlan(
            executable: chain[0], arguments: Array(chain.dropFirst()), cgroup: cgroup, enforcement: enforcement, command: command,
            commandArguments: arguments)
    }

    /// bubblewrap builds every sandbox, so that each has its own process namespace (the
    /// gateway's /proc, its environment among it, is out of sight) and its own view of /sys (the
    /// control groups that hold it are not its to rewrite); setpriv then drops the user and the
    /// capabilities and sets `no_new_privs`.
    private static func sandboxCommands(_ sandbox: Sandbox, gpus: [String], host: IsolationHost) throws(IsolationError) -> ([String], [String]) {
        var enforcement: [String] = []
        guard let setpriv = host.setpriv else { throw IsolationError("a sandbox needs setpriv (util-linux), which is not installed") }
        guard let bubblewrap = host.bubblewrap else {
            throw IsolationError("a sandbox needs bubblewrap (bwrap), which is not installed (Debian: apt install bubblewrap)")
        }
        var identity: (uid: UInt32, gid: UInt32)?
        if let user = sandbox.user {
            guard host.isRoot else { throw IsolationError("sandbox.user \(user) needs the gateway to run as root; it runs as uid \(geteuid())") }
            guard let found = account(named: user) else { throw IsolationError("sandbox.user: no user \"\(user)\" on this machine") }
            // Root keeps what a sandbox takes away: it could remount its view, or leave its group.
            guard found.uid != 0 else { throw IsolationError("sandbox.user \(user) is root (uid 0), which no sandbox holds; name another user") }
            identity = found
        }
        var chain = [bubblewrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        // Without root, only a user namespace lets bubblewrap build the others.
        if !host.isRoot { chain.append("--unshare-user") }
        if sandbox.network == .none { chain.append("--unshare-net") }
        let readOnly = sandbox.readOnlyPaths.map(normalized)
        chain += readOnly.contains("/") ? ["--ro-bind", "/", "/"] : ["--bind", "/", "/"]
        for path in readOnly where path != "/" {
            guard SystemFiles.exists(path) else { throw IsolationError("sandbox.readOnlyPaths: \(path) does not exist") }
            chain += ["--ro-bind", path, path]
        }
        chain += ["--ro-bind", "/sys", "/sys", "--dev", "/dev", "--proc", "/proc"]
        for id in gpus {
            for device in ["/dev/nvidia\(id)", "/dev/nvidiactl", "/dev/nvidia-uvm"] where SystemFiles.exists(device) {
                chain += ["--dev-bind", device, device]
            }
        }
        for path in sandbox.writablePaths.map(normalized) {
            guard SystemFiles.exists(path) else { throw IsolationError("sandbox.writablePaths: \(path) does not exist") }
            chain += ["--bind", path, path]
        }
        if sandbox.privateTmp { chain += ["--tmpfs", "/tmp"] }
        chain.append("--")
        var view: [String] = []
        if !readOnly.isEmpty { view.append("read-only \(readOnly.joined(separator: ", "))") }
        if !sandbox.writablePaths.isEmpty { view.append("writable \(sandbox.writablePaths.joined(separator: ", "))") }
        if sandbox.privateTmp { view.append("private /tmp") }
        view.append("read-only /sys, own process, IPC and host-name namespaces")
        if sandbox.network == .none { view.append("no network") }
        enforcement.append("bubblewrap: \(view.joined(separator: "; "))")

        chain += [setpriv, "--no-new-privs"]
        if let identity {
            chain += ["--reuid=\(identity.uid)", "--regid=\(identity.gid)", "--clear-groups"]
        }
        if host.isRoot {
            // No capability survives: none inherited, none to gain back at an exec.
            chain += ["--inh-caps=-all", "--bounding-set=-all"]
        }
        enforcement.append(
            identity.map { "setpriv: user \(sandbox.user!) (uid \($0.uid)), no capabilities, no_new_privs" }
                ?? (host.isRoot ? "setpriv: uid 0 without capabilities, no_new_privs" : "setpriv: no_new_privs"))
        chain.append("--")
        return (chain, enforcement)
    }

    /// The user's ids, read with the re-entrant call: several instances may start at once.
    private static func account(named user: String) -> (uid: UInt32, gid: UInt32)? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        let status = getpwnam_r(user, &entry, &buffer, buffer.count, &result)
        guard status == 0, result != nil else { return nil }
        return (entry.pw_uid, entry.pw_gid)
    }

    private static func normalized(_ path: String) -> String {
        let trimmed = "/" + path.split(separator: "/").joined(separator: "/")
        return trimmed
    }

    /// The limits as the isolation lines name them: "cpu 0.5, memory 256Mi".
    public static func describe(_ resources: ResourceRequest) -> String {
        var parts: [String] = []
        if let cpu = resources.cpu { parts.append("cpu \(ResourceLedger.format(cpu))") }
        if let memory = resources.memoryBytes { parts.append("memory \(ResourceRequest.formatBytes(memory))") }
        if let processes = resources.processes { parts.append("processes \(processes)") }
        return parts.joined(separator: ", ")
    }
}
