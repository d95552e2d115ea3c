import Agents

/// The environment a spawned agent starts with. The gateway's own holds its secrets (API keys,
/// tokens, the Redis password): an agent is a program someone else wrote, so it gets only what
/// a program needs to run at all, plus what its template lists.
enum ChildEnvironment {
    /// What a process needs to find programs (`PATH`), its home and temporary files, its user
    /// name, and to read and print text and times as the operator does. The MCP SDKs give a
    /// stdio server much the same list.
    static let base = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR"]

    /// The base taken from `gateway`, or all of it when the template says `inheritEnvironment`,
    /// then the template's own variables over it.
    static func of(_ template: AgentTemplate, gateway: [String: String]) -> [String: String] {
        var environment = template.inheritEnvironment ? gateway : gateway.filter { base.contains($0.key) }
        environment.merge(template.environment) { _, listed in listed }
        return environment
    }
}
