import Synchronization

/// What the gateway may hand out: the machine's cores and memory (or less, as configured) and
/// the GPUs of the declared pool.
public struct MachineCapacity: Sendable, Equatable {
    public var cpu: Double
    public var memoryBytes: Int64
    /// The pool's device ids, as `CUDA_VISIBLE_DEVICES` names them.
    public var gpus: [String]

    public init(cpu: Double, memoryBytes: Int64, gpus: [String] = []) {
        self.cpu = cpu
        self.memoryBytes = memoryBytes
        self.gpus = gpus
    }
}

/// What an allocation costs: the configuration's `fleet.prices`.
public struct PriceTable: Sendable, Equatable {
    public var cpuHour: Double
    public var memoryGiBHour: Double
    public var gpuHour: Double

    public init(cpuHour: Double = 0, memoryGiBHour: Double = 0, gpuHour: Double = 0) {
        self.cpuHour = cpuHour
        self.memoryGiBHour = memoryGiBHour
        self.gpuHour = gpuHour
    }

    public func costPerHour(of request: ResourceRequest) -> Double {
        (request.cpu ?? 0) * cpuHour + Double(request.memoryBytes ?? 0) / 1_073_741_824 * memoryGiBHour + Double(request.gpus) * gpuHour
    }
}

/// Every grant of CPU, memory and GPUs to an instance, checked against the capacity so that
/// nothing is granted on paper: a start that does not fit is refused, naming what is short and
/// which lower-priority instances hold enough to make it fit. GPUs are given exclusively.
/// Also keeps the seed's `resource_allocations`: one row per resource of each grant, with its
/// utilization, cost per hour, and when it was released (the last `releasedRowLimit` kept).
public final class ResourceLedger: Sendable {
    public struct Grant: Sendable, Equatable {
        public var instance: String
        public var template: String
        public var request: ResourceRequest
        public var gpus: [String]
        public var priority: PriorityClass
        /// Seconds since 1970.
        public var allocatedAt: Double
        public var costPerHour: Double
    }

    public enum Refusal: Error, Equatable, CustomStringConvertible {
        /// More than the whole machine or pool has: it can never be granted.
        case exceedsCapacity(String)
        /// More than is free now; `preemptible` lower-priority instances hold enough to make it
        /// fit (empty: nothing would).
        case unavailable(String, preemptible: [String])

        public var description: String {
            switch self {
            case .exceedsCapacity(let message), .unavailable(let message, _): message
            }
        }
    }

    /// One row of `resource_allocations`.
    public struct Row: Sendable, Equatable {
        public var id: Int
        public var instance: String
        public var template: String
        public var resourceType: String
        public var amount: Double
        public var unit: String
        public var utilizationPercent: Double?
        public var allocatedAt: Double
        public var releasedAt: Double?
        public var costPerHour: Double
    }

    public struct Totals: Sendable, Equatable {
        public var cpu: Double = 0
        public var memoryBytes: Int64 = 0
        public var gpus: Int = 0
        public var costPerHour: Double = 0

        public init() {}
    }

    private struct State {
        var capacity: MachineCapacity
        var prices: PriceTable
        var grants: [String: Grant] = [:]
        var rows: [String: [Row]] = [:]
        var released: [Row] = []
        var nextRow = 1
    }

    private let state: Mutex<State>
    public let releasedRowLimit: Int

    public init(capacity: MachineCapacity, prices: PriceTable = PriceTable(), releasedRowLimit: Int = 1_000) {
        state = Mutex(State(capacity: capacity, prices: prices))
        self.releasedRowLimit = releasedRowLimit
    }

    public var capacity: MachineCapacity { state.withLock { $0.capacity } }
    public var prices: PriceTable { state.withLock { $0.prices } }

    /// Checks a request against the whole capacity only (what `agents/register` and the
    /// configuration are held to): `{"cpu": 9999}` is refused here.
    public func check(_ request: ResourceRequest) throws(Refusal) {
        let capacity = self.capacity
        if let message = Self.exceeding(request, capacity) { throw .exceedsCapacity(message) }
    }

    private static func exceeding(_ request: ResourceRequest, _ capacity: MachineCapacity) -> String? {
        if let cpu = request.cpu, cpu > capacity.cpu + 1e-9 {
            return "asks for \(format(cpu)) CPUs; the gateway may give \(format(capacity.cpu)) in all"
        }
        if let memory = request.memoryBytes, memory > capacity.memoryBytes {
            return "asks for \(ResourceRequest.formatBytes(memory)) of memory; the gateway may give \(ResourceRequest.formatBytes(capacity.memoryBytes)) in all"
        }
        if request.gpus > capacity.gpus.count {
            return capacity.gpus.isEmpty
                ? "asks for \(request.gpus) GPU\(request.gpus == 1 ? "" : "s"); the gateway has no GPU pool (fleet.gpus)"
                : "asks for \(request.gpus) GPUs; the pool (fleet.gpus) has \(capacity.gpus.count)"
        }
        return nil
    }

    /// Grants `request` to `instance` or says why not. An instance holds one grant: asking again
    /// replaces it (vertical scaling), checked as if its old grant were free.
    @discardableResult
    public func reserve(
        instance: String, template: String, request: ResourceRequest, priority: PriorityClass = .normal, now: Double
    ) throws(Refusal) -> Grant {
        let outcome: Result<Grant, Refusal> = state.withLock { state in
            if let message = Self.exceeding(request, state.capacity) { return .failure(.exceedsCapacity(message)) }
            let previous = state.grants[instance]
            var others = state.grants
            others[instance] = nil
            let used = Self.totals(others.values)
            let takenGPUs = Set(others.values.flatMap(\.gpus))
            if let short = Self.shortfall(request, used: used, takenGPUs: takenGPUs, capacity: state.capacity) {
                let preemptible = Self.preemptible(for: request, priority: priority, among: others, capacity: state.capacity)
                return .failure(.unavailable(short, preemptible: preemptible))
            }
            // Keep the GPUs it had when resized; take the lowest free ids otherwise.
            var gpus = Array((previous?.gpus ?? []).prefix(request.gpus))
            for id in state.capacity.gpus where gpus.count < request.gpus && !takenGPUs.contains(id) && !gpus.contains(id) {
                gpus.append(id)
            }
            let grant = Grant(
                instance: instance, template: template, request: request, gpus: gpus, priority: priority,
                allocatedAt: previous?.allocatedAt ?? now, costPerHour: state.prices.costPerHour(of: request))
            state.grants[instance] = grant
            if previous != nil { Self.closeRows(of: instance, at: now, in: &state, limit: releasedRowLimit) }
            state.rows[instance] = Self.rows(for: grant, at: now, next: &state.nextRow, prices: state.prices)
            return .success(grant)
        }
        return try outcome.get()
    }

    /// Frees the instance's grant, if it has one; its rows get their release time.
    public func release(instance: String, now: Double) {
        state.withLock { state in
            guard state.grants.removeValue(forKey: instance) != nil else { return }
            Self.closeRows(of: instance, at: now, in: &state, limit: releasedRowLimit)
        }
    }

    public func grant(of instance: String) -> Grant? { state.withLock { $0.grants[instance] } }

    /// A template's class changed: its grants are held at the new one from now on.
    public func setPriority(_ priority: PriorityClass, template: String) {
        state.withLock { state in
            for (instance, grant) in state.grants where grant.template == template { state.grants[instance]?.priority = priority }
        }
    }

    public var grants: [Grant] { state.withLock { Array($0.grants.values) }.sorted { $0.instance < $1.instance } }

    public var allocated: Totals { state.withLock { Self.totals($0.grants.values) } }

    /// Records what the instance uses now, as a share of what it was granted.
    public func recordUse(instance: String, cpuPercentOfOneCore: Double?, memoryBytes: Int64?) {
        state.withLock { state in
            guard var rows = state.rows[instance] else { return }
            for index in rows.indices {
                switch rows[index].resourceType {
                case "cpu":
                    if let percent = cpuPercentOfOneCore, rows[index].amount > 0 {
                        rows[index].utilizationPercent = Self.rounded(percent / rows[index].amount)
                    }
                case "memory":
                    if let bytes = memoryBytes, rows[index].amount > 0 {
                        rows[index].utilizationPercent = Self.rounded(Double(bytes) / (rows[index].amount * 1_048_576) * 100)
                    }
                default: break
                }
            }
            state.rows[instance] = rows
        }
    }

    /// The rows of `resource_allocations`, current ones first (by instance), then released
    /// ones newest first; `template` narrows them.
    public func rows(template: String? = nil, includeReleased: Bool = false, limit: Int = 500, where visible: (String) -> Bool = { _ in true }) -> [Row] {
        let (current, released) = state.withLock { state in (state.rows.keys.sorted().flatMap { state.rows[$0]! }, state.released) }
        var rows = current
        if includeReleased { rows += released.reversed() }
        rows = rows.filter { (template == nil || $0.template == template) && visible($0.template) }
        return Array(rows.prefix(limit))
    }

    // MARK: Arithmetic

    private static func totals(_ grants: some Sequence<Grant>) -> Totals {
        var totals = Totals()
        for grant in grants {
            totals.cpu += grant.request.cpu ?? 0
            totals.memoryBytes += grant.request.memoryBytes ?? 0
            totals.gpus += grant.gpus.count
            totals.costPerHour += grant.costPerHour
        }
        return totals
    }

    private static func shortfall(_ request: ResourceRequest, used: Totals, takenGPUs: Set<String>, capacity: MachineCapacity) -> String? {
        if let cpu = request.cpu, used.cpu + cpu > capacity.cpu + 1e-9 {
            return "asks for \(format(cpu)) CPUs; \(format(max(0, capacity.cpu - used.cpu))) of \(format(capacity.cpu)) are free"
        }
        if let memory = request.memoryBytes, used.memoryBytes + memory > capacity.memoryBytes {
            let free = max(0, capacity.memoryBytes - used.memoryBytes)
            return "asks for \(ResourceRequest.formatBytes(memory)) of memory; \(ResourceRequest.formatBytes(free)) of \(ResourceRequest.formatBytes(capacity.memoryBytes)) are free"
        }
        let freeGPUs = capacity.gpus.filter { !takenGPUs.contains($0) }.count
        if request.gpus > freeGPUs {
            return "asks for \(request.gpus) GPU\(request.gpus == 1 ? "" : "s"); \(freeGPUs) of the pool's \(capacity.gpus.count) are free"
        }
        return nil
    }

    /// The fewest lower-priority grants (lowest class first, then the newest) whose release
    /// would make `request` fit; empty when even all of them would not.
    private static func preemptible(
        for request: ResourceRequest, priority: PriorityClass, among grants: [String: Grant], capacity: MachineCapacity
    ) -> [String] {
        var remaining = grants
        var chosen: [String] = []
        // Only grants that hold some of what is short: stopping others would free nothing.
        let used = totals(grants.values)
        let cpuShort = (request.cpu ?? 0) > 0 && used.cpu + (request.cpu ?? 0) > capacity.cpu + 1e-9
        let memoryShort = (request.memoryBytes ?? 0) > 0 && used.memoryBytes + (request.memoryBytes ?? 0) > capacity.memoryBytes
        let gpuShort = request.gpus > capacity.gpus.count - used.gpus
        let candidates = grants.values.filter { grant in
            grant.priority < priority
                && ((cpuShort && (grant.request.cpu ?? 0) > 0) || (memoryShort && (grant.request.memoryBytes ?? 0) > 0) || (gpuShort && !grant.gpus.isEmpty))
        }.sorted {
            $0.priority != $1.priority ? $0.priority < $1.priority : $0.allocatedAt > $1.allocatedAt
        }
        for candidate in candidates {
            remaining[candidate.instance] = nil
            chosen.append(candidate.instance)
            if shortfall(request, used: totals(remaining.values), takenGPUs: Set(remaining.values.flatMap(\.gpus)), capacity: capacity) == nil {
                return chosen
            }
        }
        return []
    }

    private static func rows(for grant: Grant, at now: Double, next: inout Int, prices: PriceTable) -> [Row] {
        var rows: [Row] = []
        func add(_ type: String, _ amount: Double, _ unit: String, _ cost: Double) {
            rows.append(
                Row(
                    id: next, instance: grant.instance, template: grant.template, resourceType: type, amount: amount, unit: unit,
                    allocatedAt: now, costPerHour: cost))
            next += 1
        }
        if let cpu = grant.request.cpu { add("cpu", cpu, "cores", cpu * prices.cpuHour) }
        if let memory = grant.request.memoryBytes {
            add("memory", Double(memory) / 1_048_576, "MiB", Double(memory) / 1_073_741_824 * prices.memoryGiBHour)
        }
        if !grant.gpus.isEmpty { add("gpu", Double(grant.gpus.count), "devices", Double(grant.gpus.count) * prices.gpuHour) }
        return rows
    }

    private static func closeRows(of instance: String, at now: Double, in state: inout State, limit: Int) {
        guard let rows = state.rows.removeValue(forKey: instance) else { return }
        for var row in rows {
            row.releasedAt = now
            state.released.append(row)
        }
        if state.released.count > limit { state.released.removeFirst(state.released.count - limit) }
    }

    private static func rounded(_ value: Double) -> Double { (value * 10).rounded() / 10 }

    static func format(_ cores: Double) -> String {
        cores == cores.rounded() ? String(Int(cores)) : String((cores * 1000).rounded() / 1000)
    }
}
