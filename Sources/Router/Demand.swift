import Agents

/// What a task asks of an agent: the tool, and the constraints that decide which agents may take
/// it. Tasks of one demand wait for the same agents: the embedded engine groups its queue by it
/// (when one finds no free agent, none of the others will in that pass), and with replicas it
/// names the shared queue a replica claims from only for agents that meet it.
struct Demand {
    private static let separator: Character = "\u{1F}"
    var tool: String
    var capabilities: [String] = []
    var tenant: String?
    var minimumMatch = 1.0
    /// With access control, the tenant that owns the task: only agents it may use take it.
    var owner: String?

    init(_ submission: TaskSubmission) {
        tool = submission.taskType
        capabilities = submission.requiredCapabilities.sorted()
        tenant = submission.routing.tenant
        minimumMatch = submission.minimumMatch
        owner = submission.ownerTenant
    }

    init(queue: String) {
        let parts = queue.split(separator: Self.separator, omittingEmptySubsequences: false).map(String.init)
        tool = parts[0]
        if parts.count >= 4 {
            capabilities = parts[1].isEmpty ? [] : parts[1].split(separator: ",").map(String.init)
            tenant = parts[2].isEmpty ? nil : parts[2]
            minimumMatch = Double(parts[3]) ?? 1
        }
        if parts.count >= 5, !parts[4].isEmpty { owner = parts[4] }
    }

    /// Just the tool when nothing else is asked, so that queues read plainly in the status.
    var queue: String {
        guard !capabilities.isEmpty || tenant != nil || minimumMatch != 1 || owner != nil else { return tool }
        var parts = [tool, capabilities.joined(separator: ","), tenant ?? "", String(minimumMatch)]
        if let owner { parts.append(owner) }
        return parts.joined(separator: String(Self.separator))
    }

    var constraints: AgentRegistry.Constraints {
        var constraints = AgentRegistry.Constraints(requiredCapabilities: capabilities)
        if let tenant { constraints.requiredCapabilities.append("tenant:\(tenant)") }
        constraints.minimumMatch = minimumMatch
        constraints.tenant = owner
        // A replica claims only for its own agents; without replicas every agent is its own.
        constraints.localOnly = true
        return constraints
    }
}
