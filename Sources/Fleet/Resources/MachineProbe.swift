#if canImport(Glibc)
import Glibc
#endif

extension MachineCapacity {
    /// The cores this process may run on and the memory it may use: the machine's, or less
    /// where the gateway's own control group limits it.
    public static func probe(gpus: [String] = []) -> MachineCapacity {
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        var memory = Int64(sysconf(Int32(_SC_PHYS_PAGES))) * Int64(sysconf(Int32(_SC_PAGESIZE)))
        for limit in [ownCgroupFile("memory", "memory.limit_in_bytes"), ownCgroupFile("", "memory.max")].compactMap({ $0 }) {
            if let text = SystemFiles.read(limit), let bytes = Int64(text.trimmingCharacters(in: " \n")), bytes > 0, bytes < memory {
                memory = bytes
            }
        }
        return MachineCapacity(cpu: Double(max(cores, 1)), memoryBytes: memory, gpus: gpus)
    }

    /// A file of the gateway's own group: in the v1 hierarchy of `controller`, or the unified one ("").
    private static func ownCgroupFile(_ controller: String, _ file: String) -> String? {
        guard let membership = SystemFiles.read("/proc/self/cgroup") else { return nil }
        for line in membership.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let controllers = parts[1].split(separator: ",").map(String.init)
            if controller.isEmpty ? parts[1].isEmpty : controllers.contains(controller) {
                let root = controller.isEmpty ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup/\(controller)"
                for base in controller.isEmpty ? [root, "/sys/fs/cgroup"] : [root] where SystemFiles.exists("\(base)\(parts[2])/\(file)") {
                    return "\(base)\(parts[2])/\(file)"
                }
            }
        }
        return nil
    }
}
