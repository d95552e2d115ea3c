/// What one agent instance asks of the machine: CPU in cores, memory in bytes, GPUs from the
/// gateway's pool, and how many processes it may run. A member left out is not limited (and
/// not reserved).
public struct ResourceRequest: Sendable, Equatable, Hashable {
    /// Cores, fractional (`0.5`, or `500m` as Kubernetes writes it).
    public var cpu: Double?
    public var memoryBytes: Int64?
    /// Whole GPUs, each given to this instance alone.
    public var gpus: Int
    /// The most processes and threads the instance may run (cgroups' `pids.max`).
    public var processes: Int?

    public init(cpu: Double? = nil, memoryBytes: Int64? = nil, gpus: Int = 0, processes: Int? = nil) {
        self.cpu = cpu
        self.memoryBytes = memoryBytes
        self.gpus = gpus
        self.processes = processes
    }

    public var isEmpty: Bool { cpu == nil && memoryBytes == nil && gpus == 0 && processes == nil }

    /// A value as a configuration or a request wrote it: YAML and JSON give numbers or strings.
    public enum Written: Sendable, Equatable {
        case number(Double)
        case string(String)
    }

    public struct Problem: Error, Equatable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Reads `{cpu, memory, gpu, processes}`; `where` names the member in messages
    /// ("agents.pricing.resources"). Unknown members are refused: a misspelt limit must not
    /// leave an agent unlimited in silence.
    public static func parse(_ members: [(key: String, value: Written)], where path: String) throws(Problem) -> ResourceRequest {
        var request = ResourceRequest()
        for (key, value) in members {
            switch key {
            case "cpu", "cpus":
                guard let cores = cores(value), cores > 0, cores.isFinite else {
                    throw Problem("\(path).cpu must be a number of cores above 0 (0.5, or \"500m\"), not \(show(value))")
                }
                request.cpu = cores
            case "memory":
                guard let bytes = bytes(value), bytes >= 4 * 1024 * 1024 else {
                    throw Problem("\(path).memory must be a size of at least 4Mi (bytes, or \"256Mi\", \"2Gi\", \"512M\"), not \(show(value))")
                }
                request.memoryBytes = bytes
            case "gpu", "gpus":
                guard case .number(let count) = value, count >= 0, count == count.rounded(), count <= 1024 else {
                    throw Problem("\(path).gpu must be a whole number of GPUs, not \(show(value))")
                }
                request.gpus = Int(count)
            case "processes", "pids":
                guard case .number(let count) = value, count >= 1, count == count.rounded(), count <= 1_000_000 else {
                    throw Problem("\(path).processes must be a whole number above 0, not \(show(value))")
                }
                request.processes = Int(count)
            default:
                throw Problem("\(path) has no member \"\(key)\" (cpu, memory, gpu, processes)")
            }
        }
        return request
    }

    private static func cores(_ value: Written) -> Double? {
        switch value {
        case .number(let number): return number
        case .string(let text):
            if text.hasSuffix("m"), let milli = Double(text.dropLast()) { return milli / 1000 }
            return Double(text)
        }
    }

    /// Bytes, with the suffixes Kubernetes reads: Ki Mi Gi Ti (powers of 1024) and k M G T
    /// (powers of 1000).
    static func bytes(_ value: Written) -> Int64? {
        switch value {
        case .number(let number):
            return number >= 0 && number == number.rounded() && number < 9.2e18 ? Int64(number) : nil
        case .string(let text):
            let units: [(String, Double)] = [
                ("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("Ti", 1_099_511_627_776),
                ("k", 1e3), ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12),
            ]
            for (suffix, factor) in units where text.hasSuffix(suffix) {
                guard let number = Double(text.dropLast(suffix.count)), number >= 0 else { return nil }
                let bytes = number * factor
                return bytes < 9.2e18 ? Int64(bytes) : nil
            }
            guard let number = Double(text), number >= 0, number == number.rounded(), number < 9.2e18 else { return nil }
            return Int64(number)
        }
    }

    private static func show(_ value: Written) -> String {
        switch value {
        case .number(let number): number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        case .string(let text): "\"\(text)\""
        }
    }

    /// Memory as people read it: 256Mi, 1.5Gi.
    public static func formatBytes(_ bytes: Int64) -> String {
        let units: [(String, Int64)] = [("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)]
        for (suffix, factor) in units where bytes >= factor {
            let value = Double(bytes) / Double(factor)
            return value == value.rounded() ? "\(Int64(value))\(suffix)" : "\((value * 100).rounded() / 100)\(suffix)"
        }
        return "\(bytes)"
    }
}

/// Who gets a scarce resource first. A start that does not fit may take the resources of
/// instances of a lower class (they are stopped for it); never of its own class or above.
public enum PriorityClass: String, Sendable, CaseIterable, Comparable {
    case low, normal, high, critical

    var rank: Int {
        switch self {
        case .low: 0
        case .normal: 1
        case .high: 2
        case .critical: 3
        }
    }

    public static func < (lhs: PriorityClass, rhs: PriorityClass) -> Bool { lhs.rank < rhs.rank }
}
