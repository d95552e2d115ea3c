import Agents
import Fleet
import Yams

/// The `fleet` section: the GPU pool, prices, what the gateway may hand out, and how often the
/// autoscaler looks.
public struct FleetSettings: Sendable {
    /// The GPUs spawned agents draw from, by the ids `CUDA_VISIBLE_DEVICES` takes.
    public var gpus: [String] = []
    public var prices = PriceTable()
    /// Less than the machine, to leave room for the rest of it; nil: all of it.
    public var cpu: Double?
    public var memoryBytes: Int64?
    /// Control groups for limits when the gateway may create them; false: rlimits only.
    public var cgroups = true
    public var autoscaleInterval: Duration = .seconds(1)
    /// Prefer the cheaper template that offers the same tool while its latency holds.
    public var costAware = false
    /// The mean latency a cheaper template must hold for cost-aware routing to prefer it.
    public var latencyObjectiveMilliseconds = 1_000.0
    /// The zone this gateway (replica) runs in: its agents carry it, and calls through it prefer it.
    public var zone: String?

    public init() {}

    /// What the ledger may grant on this machine.
    public func capacity() -> MachineCapacity {
        var capacity = MachineCapacity.probe(gpus: gpus)
        if let cpu { capacity.cpu = min(cpu, capacity.cpu) }
        if let memoryBytes { capacity.memoryBytes = min(memoryBytes, capacity.memoryBytes) }
        return capacity
    }
}

extension ConfigurationReader {
    mutating func readFleet(_ node: Node) {
        guard let fields = mapping(node, "fleet") else { return }
        for (keyNode, value) in fields {
            switch keyNode.string ?? "" {
            case "gpus":
                guard let items = sequence(value, "fleet.gpus") else { continue }
                var ids: [String] = []
                for item in items {
                    guard case .scalar(let scalar) = item, !scalar.string.isEmpty, !scalar.string.contains(",") else {
                        report(item, "each entry of fleet.gpus must be a device id (0, 1, or a UUID)")
                        continue
                    }
                    if ids.contains(scalar.string) { report(item, "fleet.gpus lists \(scalar.string) twice") } else { ids.append(scalar.string) }
                }
                settings.fleet.gpus = ids
            case "prices":
                guard let prices = mapping(value, "fleet.prices") else { continue }
                for (priceKey, price) in prices {
                    let name = priceKey.string ?? ""
                    guard let amount = number(price, "fleet.prices.\(name)", minimum: 0) else { continue }
                    switch name {
                    case "cpuHour": settings.fleet.prices.cpuHour = amount
                    case "memoryGiBHour": settings.fleet.prices.memoryGiBHour = amount
                    case "gpuHour": settings.fleet.prices.gpuHour = amount
                    default: report(priceKey, "unknown key \"\(name)\" in fleet.prices (cpuHour, memoryGiBHour, gpuHour)")
                    }
                }
            case "capacity":
                guard let request = resources(value, "fleet.capacity") else { continue }
                settings.fleet.cpu = request.cpu
                settings.fleet.memoryBytes = request.memoryBytes
            case "cgroups":
                guard case .scalar(let scalar) = value, let flag = Bool(scalar.string) else {
                    report(value, "fleet.cgroups must be true or false")
                    continue
                }
                settings.fleet.cgroups = flag
            case "autoscaleIntervalSeconds":
                if let seconds = number(value, "fleet.autoscaleIntervalSeconds", minimum: 0.05) { settings.fleet.autoscaleInterval = .seconds(seconds) }
            case "latencyObjectiveMs":
                if let milliseconds = number(value, "fleet.latencyObjectiveMs", minimum: 0.001) { settings.fleet.latencyObjectiveMilliseconds = milliseconds }
            case "zone":
                if let zone = string(value, "fleet.zone"), !zone.isEmpty { settings.fleet.zone = zone }
            case "costAware":
                guard case .scalar(let scalar) = value, let flag = Bool(scalar.string) else {
                    report(value, "fleet.costAware must be true or false")
                    continue
                }
                settings.fleet.costAware = flag
            default:
                report(keyNode, "unknown key \"\(keyNode.string ?? "")\" in fleet (gpus, prices, capacity, cgroups, autoscaleIntervalSeconds, costAware, latencyObjectiveMs, zone)")
            }
        }
    }

    /// A template's fleet keys: `autoscale`, `resources`, `priorityClass`, `sandbox`.
    mutating func readFleetKey(_ key: String, _ value: Node, path: String, into template: inout AgentTemplate) {
        switch key {
        case "resources":
            if let request = resources(value, "\(path).resources") { template.resources = request }
        case "priorityClass":
            guard let word = string(value, "\(path).priorityClass") else { return }
            guard let priority = PriorityClass(rawValue: word) else {
                return report(value, "\(path).priorityClass must be one of \(PriorityClass.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            template.priorityClass = priority
        case "sandbox":
            template.sandbox = sandbox(value, "\(path).sandbox")
        case "autoscale":
            template.autoscale = autoscale(value, "\(path).autoscale", maximumInstances: template.maximumInstances)
        case "rollout":
            if let policy = rollout(value, "\(path).rollout") { template.rollout = policy }
        case "zones":
            if let zones = strings(value, "\(path).zones") { template.zones = zones }
        default:
            break
        }
    }

    /// Settles and checks what depends on several keys, once the template is read whole: an
    /// autoscale bound without `max` is `maxInstances`, and one with it raises `maxInstances`.
    mutating func checkFleetKeys(of template: inout AgentTemplate, path: String, at node: Node) {
        if var policy = template.autoscale {
            if !explicitAutoscaleMaximum.contains("\(path).autoscale") { policy.maximum = max(template.maximumInstances, policy.minimum, 1) }
            template.maximumInstances = max(template.maximumInstances, policy.maximum)
            template.autoscale = policy
        }
        if template.sandbox != nil, template.inheritEnvironment {
            report(node, "\(path): a sandboxed agent cannot inherit the gateway's environment (inheritEnvironment: true)")
        }
        if let policy = template.autoscale {
            for problem in policy.problems { report(node, "\(path).\(problem)") }
        }
        for problem in template.rollout.problems { report(node, "\(path).\(problem)") }
    }

    /// Each template's resources against what this machine and pool can give: one that could
    /// never start is refused with the file, not found out at its first start.
    mutating func checkFleetCapacity() {
        let templates = settings.agentTemplates.filter { !$0.resources.isEmpty }
        guard !templates.isEmpty else { return }
        let ledger = ResourceLedger(capacity: settings.fleet.capacity())
        for template in templates {
            do {
                try ledger.check(template.resources)
            } catch {
                report(nil, "agents.\(template.name).resources \(error.description)")
            }
        }
    }

    func resourceMembers(_ node: Node) -> [(key: String, value: ResourceRequest.Written)]? {
        guard case .mapping(let mapping) = node else { return nil }
        return mapping.map { key, value in
            let text = value.scalar?.string ?? ""
            let written: ResourceRequest.Written =
                if let number = Double(text), value.scalar?.style == .plain { .number(number) } else { .string(text) }
            return (key.string ?? "", written)
        }
    }

    mutating func resources(_ node: Node, _ what: String) -> ResourceRequest? {
        guard let members = resourceMembers(node) else {
            report(node, "\(what) must be a mapping ({cpu, memory, gpu, processes})")
            return nil
        }
        do {
            return try ResourceRequest.parse(members, where: what)
        } catch {
            report(node, error.description)
            return nil
        }
    }

    private mutating func sandbox(_ node: Node, _ what: String) -> Sandbox? {
        guard let fields = mapping(node, what) else { return nil }
        var sandbox = Sandbox()
        for (keyNode, value) in fields {
            let key = keyNode.string ?? ""
            switch key {
            case "user": sandbox.user = string(value, "\(what).user")
            case "network":
                guard let word = string(value, "\(what).network") else { continue }
                guard let network = Sandbox.Network(rawValue: word) else {
                    report(value, "\(what).network must be none or host")
                    continue
                }
                sandbox.network = network
            case "readOnlyPaths", "writablePaths":
                guard let paths = strings(value, "\(what).\(key)") else { continue }
                if let relative = paths.first(where: { !$0.hasPrefix("/") }) {
                    report(value, "\(what).\(key): \(relative) is not an absolute path")
                    continue
                }
                if key == "readOnlyPaths" { sandbox.readOnlyPaths = paths } else { sandbox.writablePaths = paths }
            case "privateTmp":
                guard case .scalar(let scalar) = value, let flag = Bool(scalar.string) else {
                    report(value, "\(what).privateTmp must be true or false")
                    continue
                }
                sandbox.privateTmp = flag
            default:
                report(keyNode, "unknown key \"\(key)\" in \(what) (user, network, readOnlyPaths, writablePaths, privateTmp)")
            }
        }
        return sandbox
    }

    private mutating func rollout(_ node: Node, _ what: String) -> RolloutPolicy? {
        guard let fields = mapping(node, what) else { return nil }
        var policy = RolloutPolicy()
        for (keyNode, value) in fields {
            let key = keyNode.string ?? ""
            let member = "\(what).\(key)"
            switch key {
            case "maxSurge": if let n = integer(value, member, minimum: 0) { policy.maxSurge = n }
            case "maxUnavailable": if let n = integer(value, member, minimum: 0) { policy.maxUnavailable = n }
            case "canaryShare": if let share = number(value, member, minimum: 0) { policy.canaryShare = share }
            case "canarySeconds": if let seconds = number(value, member, minimum: 0) { policy.canarySeconds = seconds }
            case "stepSeconds": if let seconds = number(value, member, minimum: 0) { policy.stepSeconds = seconds }
            case "minimumCalls": if let n = integer(value, member, minimum: 1) { policy.minimumCalls = n }
            case "maxErrorRateIncrease": if let share = number(value, member, minimum: 0) { policy.maxErrorRateIncrease = share }
            case "maxLatencyRatio": if let ratio = number(value, member, minimum: 1) { policy.maxLatencyRatio = ratio }
            case "readyTimeoutSeconds": if let seconds = number(value, member, minimum: 0.1) { policy.readyTimeout = seconds }
            case "automaticRollback":
                guard case .scalar(let scalar) = value, let flag = Bool(scalar.string) else {
                    report(value, "\(member) must be true or false")
                    continue
                }
                policy.automaticRollback = flag
            default:
                report(
                    keyNode,
                    "unknown key \"\(key)\" in \(what) (maxSurge, maxUnavailable, canaryShare, canarySeconds, stepSeconds, minimumCalls, maxErrorRateIncrease, maxLatencyRatio, readyTimeoutSeconds, automaticRollback)"
                )
            }
        }
        return policy
    }

    private mutating func autoscale(_ node: Node, _ what: String, maximumInstances: Int) -> AutoscalePolicy? {
        guard let fields = mapping(node, what) else { return nil }
        var policy = AutoscalePolicy(minimum: 1, maximum: maximumInstances)
        for (keyNode, value) in fields {
            let key = keyNode.string ?? ""
            let member = "\(what).\(key)"
            switch key {
            case "min": if let n = integer(value, member, minimum: 0) { policy.minimum = n }
            case "max":
                if let n = integer(value, member, minimum: 1) {
                    policy.maximum = n
                    explicitAutoscaleMaximum.insert(what)
                }
            case "targetUtilization":
                if let share = number(value, member, minimum: 0.01) {
                    if share > 1 { report(value, "\(member) must be at most 1 (a share of each instance's maxConcurrency)") } else { policy.targetUtilization = share }
                }
            case "scaleUpAfterSeconds": if let seconds = number(value, member, minimum: 0) { policy.scaleUpAfter = seconds }
            case "scaleDownAfterSeconds": if let seconds = number(value, member, minimum: 0) { policy.scaleDownAfter = seconds }
            case "cooldownSeconds": if let seconds = number(value, member, minimum: 0) { policy.cooldown = seconds }
            case "seasonSeconds": if let seconds = number(value, member, minimum: 1) { policy.seasonLength = seconds }
            case "seasonBuckets": if let n = integer(value, member, minimum: 2) { policy.seasonBuckets = n }
            case "predictive":
                guard case .scalar(let scalar) = value, let flag = Bool(scalar.string) else {
                    report(value, "\(member) must be true or false")
                    continue
                }
                policy.predictive = flag
            default:
                report(
                    keyNode,
                    "unknown key \"\(key)\" in \(what) (min, max, targetUtilization, scaleUpAfterSeconds, scaleDownAfterSeconds, cooldownSeconds, predictive, seasonSeconds, seasonBuckets)"
                )
            }
        }
        return policy
    }
}
