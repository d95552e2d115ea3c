import FoundationEssentials
import JSONRPC
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// CPU and memory of a local process, read from /proc: CPU as a percentage of one core since the
/// previous reading, memory as resident bytes.
enum ResourceUsage {
    private struct Sample {
        var cpuSeconds: Double
        var at: ContinuousClock.Instant
    }

    private static let previous = Mutex<[Int32: Sample]>([:])

    static func of(processID: Int32?) -> JSONValue? {
        #if os(Linux)
        guard let processID,
            let stat = try? String(contentsOfFile: "/proc/\(processID)/stat", encoding: .utf8),
            let statm = try? String(contentsOfFile: "/proc/\(processID)/statm", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]),
            let residentPages = Double(statm.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        let cpuSeconds = (user + system) / ticks
        let now = ContinuousClock.now
        let percent: Double = previous.withLock { samples in
            defer { samples[processID] = Sample(cpuSeconds: cpuSeconds, at: now) }
            guard let last = samples[processID] else { return 0 }
            let elapsed = now - last.at
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            return seconds > 0 ? max(0, (cpuSeconds - last.cpuSeconds) / seconds * 100) : 0
        }
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        return [
            "cpu": .double((percent * 10).rounded() / 10),
            "memory": .integer(Int64(residentPages * pageSize)),
            "cpuSeconds": .double((cpuSeconds * 100).rounded() / 100),
        ]
        #else
        return nil
        #endif
    }
}
