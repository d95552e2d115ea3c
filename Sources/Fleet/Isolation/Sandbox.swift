/// How an agent is shut in: another user, no network, a read-only view of some paths with a
/// few writable ones, its own /tmp. `no_new_privs` is always set for a sandboxed agent.
public struct Sandbox: Sendable, Equatable, Hashable {
    public enum Network: String, Sendable, Hashable {
        /// The gateway's network.
        case host
        /// A network namespace of its own with only loopback: no connection leaves it.
        case none
    }

    public var user: String?
    public var network: Network = .host
    public var readOnlyPaths: [String] = []
    public var writablePaths: [String] = []
    public var privateTmp = false

    public init(user: String? = nil, network: Network = .host, readOnlyPaths: [String] = [], writablePaths: [String] = [], privateTmp: Bool = false) {
        self.user = user
        self.network = network
        self.readOnlyPaths = readOnlyPaths
        self.writablePaths = writablePaths
        self.privateTmp = privateTmp
    }

}

/// What this machine offers to isolate agents, found once at start.
public struct IsolationHost: Sendable, Equatable {
    public var cgroups: CgroupLayout?
    public var bubblewrap: String?
    public var setpriv: String?
    public var prlimit: String?
    public var shell: String
    public var isRoot: Bool

    public init(
        cgroups: CgroupLayout?, bubblewrap: String?, setpriv: String?, prlimit: String?, shell: String = "/bin/sh",
        isRoot: Bool
    ) {
        self.cgroups = cgroups
        self.bubblewrap = bubblewrap
        self.setpriv = setpriv
        self.prlimit = prlimit
        self.shell = shell
        self.isRoot = isRoot
    }

    /// Looks at the machine. `makeCgroups: false` skips the control groups (the configuration
    /// turned them off, or tests that must not touch them).
    public static func probe(makeCgroups: Bool = true) -> IsolationHost {
        IsolationHost(
            cgroups: makeCgroups ? CgroupLayout.probe() : nil, bubblewrap: SystemFiles.tool("bwrap"), setpriv: SystemFiles.tool("setpriv"),
            prlimit: SystemFiles.tool("prlimit"), shell: SystemFiles.tool("sh") ?? "/bin/sh",
            isRoot: geteuid() == 0)
    }

    /// For status views: how limits and sandboxes are enforced here.
    public var summary: [String: String] {
        var summary: [String: String] = ["limits": cgroups.map { "cgroups \($0.version.rawValue)" } ?? (prlimit != nil ? "setrlimit" : "none")]
        summary["sandbox"] = bubblewrap.map { "bubblewrap (\($0))" } ?? "none: sandboxes are refused without bubblewrap"
        return summary
    }
}

#if canImport(Glibc)
import Glibc
#endif
