import Fleet

/// How to run an agent: a command (any MCP server speaking stdio) and how many instances of it.
public struct AgentTemplate: Sendable, Equatable {
    public var name: String
    public var command: String
    public var arguments: [String] = []
    /// The command and arguments as the configuration wrote them, before `${VAR}` expansion:
    /// what the gateway shows (`agents/get`), so that a secret passed in an argument is not.
    public var commandAsWritten: String?
    public var argumentsAsWritten: [String]?
    /// Variables the agent gets on top of a minimal base (PATH, HOME, locale, …): the gateway's
    /// own environment, which holds its secrets, is not passed on unless `inheritEnvironment`.
    public var environment: [String: String] = [:]
    /// The agent gets the gateway's whole environment under `environment`, as before
    /// `inheritEnvironment` existed.
    public var inheritEnvironment = false
    /// SHA-256 (lower-case hex) the resolved executable must have, or the agent is not started.
    public var executableSHA256: String?
    /// SHA-256 of the first argument that names a file (the script an interpreter runs).
    public var scriptSHA256: String?
    public var workingDirectory: String?
    public var instances = 1
    /// The most instances `agents/scale` may ask for.
    public var maximumInstances = 16
    /// With access control, the tenants whose requests may use its agents; nil: every tenant.
    public var tenants: [String]?
    /// Calls in flight per instance. MCP servers over stdio answer concurrently; 16 keeps one
    /// slow instance from hoarding work.
    public var maximumConcurrency = 16
    public var version: String?
    public var capabilities: [String] = []
    public var startupTimeout: Duration = .seconds(30)
    /// Longest a call to this agent may take before the gateway gives up on it.
    public var callTimeout: Duration = .seconds(300)
    /// Tools of the server that clients never see: not listed, not callable (Cline's and Roo
    /// Code's `disabledTools`).
    public var disabledTools: Set<String> = []

    public var restart = RestartPolicy()
    /// Put in front of every tool and prompt name the template offers (set up front, so that
    /// its names never depend on what other templates offer).
    public var toolPrefix: String?
    /// The largest message accepted from this agent; nil: the gateway's limit.
    public var maximumMessageBytes: Int?
    /// Set for an agent reached over MCP's Streamable HTTP rather than run as a command.
    public var remote: RemoteAddress?

    /// CPU, memory, GPUs and processes each instance is given, and held to (empty: none).
    public var resources = ResourceRequest()
    /// Who gets a scarce resource first.
    public var priorityClass = PriorityClass.normal
    /// How each instance is shut in; nil: it runs as the gateway's user, on its network.
    public var sandbox: Sandbox?
    /// Instances follow demand between its bounds; nil: `instances` stays as set.
    public var autoscale: AutoscalePolicy?
    /// The zones its instances are spread over, in turn; empty: the gateway's own zone.
    public var zones: [String] = []
    /// How a changed template replaces its running instances on a reload.
    public var rollout = RolloutPolicy()

    /// Where a remote agent is: its URL and the headers each request carries (both expanded:
    /// they may hold secrets), and the URL as written, for what the gateway shows.
    public struct RemoteAddress: Sendable, Equatable {
        public var url: String
        public var urlAsWritten: String
        public var headers: [String: String]

        public init(url: String, urlAsWritten: String, headers: [String: String]) {
            self.url = url
            self.urlAsWritten = urlAsWritten
            self.headers = headers
        }
    }

    /// What happens when an instance exits or fails: restarted after a back-off that doubles
    /// from `initialBackoff` up to `maximumBackoff` (reset once it has run for a minute), or
    /// left down.
    public struct RestartPolicy: Sendable, Equatable {
        public var enabled = true
        public var initialBackoff: Duration = .milliseconds(500)
        public var maximumBackoff: Duration = .seconds(30)
        public init() {}
    }

    public init(name: String, command: String) {
        self.name = name
        self.command = command
    }
}
