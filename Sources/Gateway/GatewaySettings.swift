import Access
import Agents
import HTTPFace
import JSONRPC
import Logging
import NIOCore
import Transport

/// Everything a running gateway needs to know, from the command line and the config file.
public struct GatewaySettings: Sendable {
    public var listen: [ListenAddress] = []
    /// The HTTP face's own settings (`http:` in the config file).
    public var http = HTTPFaceSettings()
    /// Metrics, tracing, the access log, the history and alerts.
    public var telemetry = TelemetrySettings()
    public var stdio = false
    public var logLevel: Logger.Level = .info
    public var limits = Limits()
    public var keepalive = Keepalive()
    /// Agent templates from the config file, validated; the agents layer runs them.
    public var agentTemplates: [AgentTemplate] = []
    /// Remote servers (`url`) of an MCP host's file: kept, not served until the gateway has an
    /// HTTP client transport.
    public var remoteServers: [RemoteServerEntry] = []
    /// What the config file holds that the gateway ignores or cannot use (a host's own keys, a
    /// server skipped for an unset variable), each with its file and line: logged at start,
    /// printed by `config check`.
    public var configurationWarnings: [ConfigurationFile.Problem] = []
    /// Certificates for `tls://` listeners.
    public var tls: TLSSettings?
    /// The `auth` section: nil when there is none (everyone may do everything, for local use).
    public var access: AccessSettings?
    /// The `audit` section: nil when there is none.
    public var audit: AuditSettings?
    public var workflows = WorkflowSettings()
    /// The fleet: GPU pool, prices, limits on what the gateway hands out, the autoscaler's pace.
    public var fleet = FleetSettings()
    /// The configuration file the gateway started from: read again by `gateway/reload` and SIGHUP.
    public var configurationFile: String?
    /// A shared Redis: several replicas act as one gateway. Nil: the embedded backend.
    public var redis: RedisSettings?
    /// The longest a client's list, or a call naming a tool no one offers yet, waits for the
    /// agents still starting (each also gives up at its own start-up timeout).
    public var readinessWait: Duration = .seconds(30)
    /// Message size limits of particular listeners, where they differ from `limits`.
    public var listenerMessageLimits: [ListenAddress: Int] = [:]
    /// Where the gateway may connect on a client's behalf (task callbacks): `egress`.
    public var egress = EgressPolicy()
    /// How often every agent is pinged to judge its health.
    public var healthProbeInterval: Duration = .seconds(10)
    /// Event-loop threads serving connections; nil: `defaultEventLoopThreads`. One thread saves
    /// the hop between threads that a call makes when its client and its agent are served by
    /// different ones (lower latency one call at a time); one per core carries more calls at
    /// once (docs/benchmarks.md measures both).
    public var eventLoopThreads: Int?

    /// One thread when the only client is the stdio session (an MCP host's child): all its
    /// calls and its agents' pipes share that thread, and no call crosses between threads. One
    /// on a machine of two cores or fewer too: the gateway shares them with its agents and
    /// clients, one thread relays well over 100,000 calls a second there, and a call whose
    /// client and agent sit on different threads costs two hops between them (measured in
    /// docs/benchmarks.md). Otherwise nil: one per core.
    public var defaultEventLoopThreads: Int? {
        stdio && listen.isEmpty || System.coreCount <= 2 ? 1 : nil
    }

    public init() {}

    public struct Limits: Sendable, Equatable {
        /// 8 MiB: room for embedded images and resources in tool results, small enough that
        /// thousands of connections cannot exhaust memory with half-sent messages.
        public static let defaultMaximumMessageBytes = 8 * 1024 * 1024

        public var maximumMessageBytes = Self.defaultMaximumMessageBytes
        public var maximumNestingDepth = 512
        /// Requests one connection may have outstanding before the gateway stops reading from it.
        public var maximumInFlightPerConnection = 1024
        public var shutdownGrace: Duration = .seconds(10)
        /// Output queued for peers that do not read it.
        var output = OutputBudget.Limits()
        /// Entries a JSON-RPC batch may have; a longer batch is refused whole.
        public var maximumBatchSize = MessageDecoder.defaultMaximumBatchSize
        /// Idle, partial-line and first-message timeouts of socket connections (never stdio).
        public var connectionTimeouts = ConnectionTimeouts()
        /// Open connections one listener takes; more are refused with -32006.
        public var maximumConnectionsPerListener = 10_000
        /// Open connections one peer address may have on one listener (Unix sockets: no cap).
        public var maximumConnectionsPerPeer = 1_000
        /// Spawned agent instances in all, whatever `agents/scale` asks (`limits.maxSpawnedInstances`).
        public var maximumSpawnedInstances = 256

        public init() {}
    }

    public struct WorkflowSettings: Sendable, Equatable {
        /// Where the embedded backend keeps workflow state across restarts (a journal file);
        /// nil: in memory only. With Redis, the state is in Redis.
        public var stateDirectory: String?
        /// Workflow definitions (YAML or JSON) loaded at start-up.
        public var definitionFiles: [String] = []

        public init() {}
    }

    public struct Keepalive: Sendable, Equatable {
        /// Nil: no keepalive pings.
        public var interval: Duration?
        public var timeout: Duration = .seconds(10)

        public init() {}
    }
}


/// The server side of TLS: what `tls://` listeners present and whom they accept.
public struct TLSSettings: Sendable, Equatable {
    public var certificateChainPath: String
    public var privateKeyPath: String
    /// CA bundle that client certificates must chain to (mutual TLS).
    public var trustRootsPath: String?
    public var clientAuthentication: TLSConfiguration.ClientAuthentication = .none
    public var handshakeTimeout: Duration = .seconds(10)
    /// An attached agent must register under a name its client certificate carries (its
    /// subject's CN, or a DNS or URI SAN).
    public var requireAgentNameMatch = false

    public init(certificateChainPath: String, privateKeyPath: String) {
        self.certificateChainPath = certificateChainPath
        self.privateKeyPath = privateKeyPath
    }

    public var configuration: TLSConfiguration {
        .server(
            certificateChainPath: certificateChainPath, privateKeyPath: privateKeyPath, trustRootsPath: trustRootsPath,
            clientAuthentication: clientAuthentication)
    }
}
