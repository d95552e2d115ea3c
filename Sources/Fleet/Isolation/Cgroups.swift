#if canImport(Glibc)
import Glibc
#endif

/// Where the gateway may create control groups for its agents, and in which hierarchy: the
/// unified one (v2) when it has the memory, cpu and pids controllers, else the v1 controllers
/// (the hybrid layout many machines mount). Agents' groups live under the gateway's own group,
/// so the limits the gateway runs under still hold for them.
public struct CgroupLayout: Sendable, Equatable {
    public enum Version: String, Sendable { case v1, v2 }

    public var version: Version
    /// v2: the one directory under which agents' groups go. v1: one per controller.
    public var bases: [String: String]

    /// The controllers a limit needs, by the name of the limit's file.
    static let controllers = ["memory", "cpu", "pids"]

    /// Finds a hierarchy the gateway can create groups in; nil when there is none (not root, no
    /// cgroup file system, read-only mounts): limits then fall back to `setrlimit`.
    public static func probe(processID: Int32 = getpid()) -> CgroupLayout? {
        guard let mounts = SystemFiles.read("/proc/self/mountinfo"), let membership = SystemFiles.read("/proc/self/cgroup") else {
            return nil
        }
        let ownPaths = Self.ownPaths(membership)
        var v1: [String: String] = [:]
        var unified: String?
        for line in mounts.split(separator: "\n") {
            // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPEROPTIONS
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let fields = halves[0].split(separator: " ")
            let tail = halves[1].split(separator: " ")
            guard fields.count >= 5, let type = tail.first else { continue }
            let mountPoint = String(fields[4])
            let options = fields.count > 5 ? fields[5].split(separator: ",") : []
            guard !options.contains("ro") else { continue }
            if type == "cgroup2" {
                unified = mountPoint
            } else if type == "cgroup", tail.count >= 3 {
                for controller in tail[2].split(separator: ",") where controllers.contains(String(controller)) {
                    v1[String(controller)] = mountPoint
                }
            }
        }
        let suffix = "switchboard-\(processID)"
        if let unified, let available = SystemFiles.read("\(unified)\(ownPaths[""] ?? "/")/cgroup.controllers"),
            Set(available.split(whereSeparator: \.isWhitespace).map(String.init)).isSuperset(of: controllers)
        {
            let base = Self.join(unified, ownPaths[""] ?? "/", suffix)
            if let layout = v2(base: base, parent: Self.join(unified, ownPaths[""] ?? "/")) { return layout }
        }
        guard Set(v1.keys).isSuperset(of: controllers) else { return nil }
        var bases: [String: String] = [:]
        for controller in controllers {
            let base = Self.join(v1[controller]!, ownPaths[controller] ?? "/", suffix)
            guard SystemFiles.makeDirectories(base) else { return nil }
            bases[controller] = base
        }
        return CgroupLayout(version: .v1, bases: bases)
    }

    /// v2 forbids processes in a group that hands controllers to its children: the gateway
    /// moves itself into a leaf of its own group first (what systemd's `Delegate=` expects).
    private static func v2(base: String, parent: String) -> CgroupLayout? {
        let enable = "+memory +cpu +pids"
        if (try? SystemFiles.write(enable, to: "\(parent)/cgroup.subtree_control")) == nil {
            let leaf = "\(parent)/gateway"
            guard SystemFiles.makeDirectories(leaf), (try? SystemFiles.write(String(getpid()), to: "\(leaf)/cgroup.procs")) != nil,
                (try? SystemFiles.write(enable, to: "\(parent)/cgroup.subtree_control")) != nil
            else { return nil }
        }
        guard SystemFiles.makeDirectories(base), (try? SystemFiles.write(enable, to: "\(base)/cgroup.subtree_control")) != nil else { return nil }
        return CgroupLayout(version: .v2, bases: ["": base])
    }

    /// The gateway's own group in each hierarchy: "" for the unified one, else by controller.
    private static func ownPaths(_ membership: String) -> [String: String] {
        var paths: [String: String] = [:]
        for line in membership.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            if parts[1].isEmpty {
                paths[""] = String(parts[2])
            } else {
                for controller in parts[1].split(separator: ",") { paths[String(controller)] = String(parts[2]) }
            }
        }
        return paths
    }

    private static func join(_ parts: String...) -> String {
        "/" + parts.flatMap { $0.split(separator: "/") }.joined(separator: "/")
    }

    /// Creates the group of one instance with its limits, or says which limit could not be set.
    public func makeGroup(named name: String, for request: ResourceRequest) throws(IsolationError) -> CgroupGroup {
        // Readable, and told apart by a hash of the name as given: `a.b#1` and `a_b#1` differ.
        var hash: UInt32 = 2_166_136_261
        for byte in name.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }) + "-" + String(hash, radix: 16)
        let directories: [String: String] = bases.mapValues { "\($0)/\(safe)" }
        let group = CgroupGroup(layout: self, directories: directories)
        for directory in Set(directories.values) {
            guard SystemFiles.makeDirectories(directory) else {
                throw IsolationError("cannot create the control group \(directory): \(SystemFiles.errorText())")
            }
        }
        do {
            try group.apply(request)
        } catch {
            group.remove()
            throw error
        }
        return group
    }

    /// Removes the base directories (the gateway's, at exit); groups still in use stay.
    public func removeBases() {
        for base in Set(bases.values) { _ = SystemFiles.removeDirectory(base) }
    }
}

/// One instance's control group: its directories (one per v1 controller, or one), the files a
/// process joins by writing its id to, and what the kernel counts of it.
public struct CgroupGroup: Sendable, Equatable {
    public var layout: CgroupLayout
    public var directories: [String: String]

    /// The `cgroup.procs` files the instance's first process writes itself to before it runs the
    /// agent's command (so that everything it starts is inside from the start).
    public var joinFiles: [String] { Set(directories.values).sorted().map { "\($0)/cgroup.procs" } }

    private func path(_ controller: String, _ file: String) -> String {
        "\(directories[layout.version == .v2 ? "" : controller]!)/\(file)"
    }

    /// Sets (or changes, while it runs) the limits. A limit the request leaves out is lifted.
    public func apply(_ request: ResourceRequest) throws(IsolationError) {
        do {
            switch layout.version {
            case .v2:
                try SystemFiles.write(request.memoryBytes.map(String.init) ?? "max", to: path("memory", "memory.max"))
                // Swap would let it pass its memory limit slowly instead of being stopped.
                if request.memoryBytes != nil { try? SystemFiles.write("0", to: path("memory", "memory.swap.max")) }
                try SystemFiles.write(request.cpu.map { "\(Int(($0 * 100_000).rounded())) 100000" } ?? "max 100000", to: path("cpu", "cpu.max"))
                try SystemFiles.write(request.processes.map(String.init) ?? "max", to: path("pids", "pids.max"))
            case .v1:
                let memory = request.memoryBytes.map(String.init) ?? "-1"
                // memsw (memory + swap) must stay at or above memory: raise or lower them in order.
                let swap = path("memory", "memory.memsw.limit_in_bytes")
                if SystemFiles.exists(swap) {
                    try? SystemFiles.write("-1", to: swap)
                    try SystemFiles.write(memory, to: path("memory", "memory.limit_in_bytes"))
                    try? SystemFiles.write(memory, to: swap)
                } else {
                    try SystemFiles.write(memory, to: path("memory", "memory.limit_in_bytes"))
                }
                try SystemFiles.write("100000", to: path("cpu", "cpu.cfs_period_us"))
                try SystemFiles.write(request.cpu.map { String(Int(($0 * 100_000).rounded())) } ?? "-1", to: path("cpu", "cpu.cfs_quota_us"))
                try SystemFiles.write(request.processes.map(String.init) ?? "max", to: path("pids", "pids.max"))
            }
        } catch {
            throw IsolationError("cannot set a limit: \(error)")
        }
    }

    /// How many times the kernel's OOM killer killed a process of this group.
    public var memoryKills: Int {
        let text: String?
        switch layout.version {
        case .v2: text = SystemFiles.read(path("memory", "memory.events"))
        case .v1: text = SystemFiles.read(path("memory", "memory.oom_control"))
        }
        for line in (text ?? "").split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.dropFirst("oom_kill ".count)) ?? 0
        }
        return 0
    }

    /// Memory the group uses now (page cache included, as the limit counts it).
    public var memoryBytes: Int64? {
        let file = layout.version == .v2 ? "memory.current" : "memory.usage_in_bytes"
        return SystemFiles.read(path("memory", file)).flatMap { Int64($0.trimmingCharacters(in: " \n")) }
    }

    /// Kills what is left in the group and removes it.
    public func remove() {
        for directory in Set(directories.values) {
            let processes = SystemFiles.read("\(directory)/cgroup.procs") ?? ""
            for line in processes.split(separator: "\n") {
                if let pid = Int32(line) { kill(pid, SIGKILL) }
            }
        }
        for directory in Set(directories.values) {
            // A killed process leaves its group a moment after the signal.
            for _ in 0..<50 {
                if SystemFiles.removeDirectory(directory) { break }
                usleep(10_000)
            }
        }
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}

public struct IsolationError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
