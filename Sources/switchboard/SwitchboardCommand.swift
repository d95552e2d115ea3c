import ArgumentParser
import Console
import Gateway
import Logging
import NIOCore
import ServiceLifecycle
import Transport
import Workflows

#if canImport(Glibc)
import Glibc
#endif

@main
struct SwitchboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "An agent orchestration gateway speaking JSON-RPC 2.0 and MCP.",
        version: BuildInfo.version,
        subcommands: [Serve.self, StatusCommand.self, AgentsCommand.self, TasksCommand.self, WorkflowsCommand.self, FleetCommand.self, ReloadCommand.self, AuthCommand.self, AuditCommand.self, Config.self, Workflow.self, Version.self]
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway.",
        discussion: """
            Listeners: tcp://HOST:PORT (port 0 picks a free port), tcp://[::1]:PORT, unix:///PATH. \
            The bound address of each listener is logged as "listening on URL". \
            With --stdio, standard input and output carry the protocol (as an MCP host expects) and \
            the gateway stops when standard input ends. Logs go to standard error.
            """
    )

    @Flag(help: "Serve one session on standard input and output.")
    var stdio = false

    @Option(name: .customLong("listen"), help: "A listener URL; repeat for several.")
    var listen: [String] = []

    @Option(help: "A YAML or JSON configuration file.")
    var config: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Option(help: "text, or json: one JSON object per line with ts, level, label, message and the metadata.")
    var logFormat: LogFormat = .text

    @Flag(help: "One log line per request and per HTTP exchange (method, outcome, duration, trace), as logging.accessLog.")
    var accessLog = false

    @Option(help: "Largest message accepted, in bytes (default 8388608).")
    var maxMessageSize: Int?

    @Option(help: "Seconds that in-flight requests get to finish on shutdown (default 10).")
    var shutdownGrace: Double?

    @Option(help: "PEM certificate (chain allowed) for tls:// listeners.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(help: "PEM CA bundle that client certificates must chain to.")
    var tlsCa: String?

    @Option(help: "Client certificates: none, optional or require (needs --tls-ca).")
    var tlsClientAuth: String?

    @Option(help: "Event-loop threads (default: one per core; one on two cores or fewer, or when serving only --stdio).")
    var threads: Int?

    @Option(help: "Directory for state that survives a restart without Redis (workflow executions).")
    var stateDir: String?

    @Option(help: "A Redis URL (redis://[user:password@]host:port/db, rediss://… for TLS): replicas sharing it act as one gateway.")
    var redis: String?

    @Option(help: "This replica's name among those sharing --redis (default: host name and process id).")
    var replicaId: String?

    @Option(help: "PEM CA bundle for a rediss:// server (default: the system's trust store).")
    var redisCa: String?

    @Option(help: "Seconds a running task's lease lasts without renewal with --redis (default 10): how soon the tasks of a dead replica run elsewhere.")
    var taskLease: Double?

    func run() async throws {
        let settings: GatewaySettings
        do {
            settings = try resolveSettings()
        } catch {
            printError("switchboard: \(error)")
            throw ExitCode(2)
        }
        LoggingSystem.bootstrap(logFormat.makeHandler(level: settings.logLevel))
        let logger = Logger(label: "switchboard")
        // Before anything touches the shared event-loop group, which starts its threads then.
        if let threads = settings.eventLoopThreads ?? settings.defaultEventLoopThreads { NIOSingletons.groupLoopCountSuggestion = threads }
        let server = GatewayServer(settings: settings, logger: logger)
        // The span exporter comes first: a group stops its services last to first, so it flushes
        // the spans of the gateway's last requests after the gateway has stopped.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let exporter = server.tracingExporter { services.append(.init(service: exporter)) }
        services.append(.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(
            configuration: .init(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch let error as GatewayServer.StartupError {
            printError("switchboard: \(error)")
            throw ExitCode(2)
        }
    }

    private func resolveSettings() throws -> GatewaySettings {
        var settings = GatewaySettings()
        if let config {
            settings = try ConfigurationFile(path: config).load(into: settings)
            settings.configurationFile = config
        }
        if !listen.isEmpty {
            // Listeners on the command line replace those of the config file.
            settings.listen = try listen.map { try ListenAddress(parsing: $0) }
        }
        settings.stdio = settings.stdio || stdio
        if accessLog { settings.telemetry.accessLog = true }
        // For whoever works on the console itself: its files read from a folder on each
        // request, so that an edit shows on reload without a build.
        if settings.http.console != nil, let folder = getenv("SWITCHBOARD_CONSOLE_DIRECTORY").map({ String(cString: $0) }), !folder.isEmpty {
            settings.http.console = ConsoleAssets(directory: folder)
        }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else {
                throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            settings.logLevel = level
        }
        if let maxMessageSize {
            guard maxMessageSize >= 1024 else { throw ValidationError("--max-message-size must be at least 1024 bytes") }
            settings.limits.maximumMessageBytes = maxMessageSize
        }
        if let shutdownGrace {
            guard shutdownGrace >= 0, shutdownGrace.isFinite else { throw ValidationError("--shutdown-grace must be zero or more seconds") }
            settings.limits.shutdownGrace = .seconds(shutdownGrace)
        }
        if tlsCert != nil || tlsKey != nil {
            guard let tlsCert, let tlsKey else { throw ValidationError("--tls-cert and --tls-key go together") }
            var tls = settings.tls ?? TLSSettings(certificateChainPath: tlsCert, privateKeyPath: tlsKey)
            tls.certificateChainPath = tlsCert
            tls.privateKeyPath = tlsKey
            settings.tls = tls
        }
        if let tlsCa {
            guard settings.tls != nil else { throw ValidationError("--tls-ca needs --tls-cert and --tls-key") }
            settings.tls?.trustRootsPath = tlsCa
        }
        if let tlsClientAuth {
            guard let mode = TLSConfiguration.ClientAuthentication(rawValue: tlsClientAuth) else {
                throw ValidationError("--tls-client-auth must be none, optional or require")
            }
            guard settings.tls != nil else { throw ValidationError("--tls-client-auth needs --tls-cert and --tls-key") }
            settings.tls?.clientAuthentication = mode
        }
        if let tls = settings.tls, tls.clientAuthentication != .none, tls.trustRootsPath == nil {
            throw ValidationError("--tls-client-auth \(tls.clientAuthentication.rawValue) needs --tls-ca: the CA that client certificates must chain to")
        }
        if let threads {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            settings.eventLoopThreads = threads
        }
        if let stateDir { settings.workflows.stateDirectory = stateDir }
        if let redis {
            do {
                settings.redis = try RedisSettings(url: redis, replicaID: replicaId, caPath: redisCa)
            } catch {
                throw ValidationError("--redis \(redis): \(error)")
            }
        } else if replicaId != nil || redisCa != nil {
            throw ValidationError("--replica-id and --redis-ca need --redis")
        }
        if let taskLease {
            guard settings.redis != nil else { throw ValidationError("--task-lease needs --redis") }
            guard taskLease >= 1, taskLease <= 3600 else { throw ValidationError("--task-lease must be from 1 to 3600 seconds") }
            settings.redis?.taskLease = .milliseconds(Int64(taskLease * 1000))
        }
        let hasTLSListener = settings.listen.contains(where: \.usesTLS)
        if hasTLSListener && settings.tls == nil {
            throw ValidationError("a tls:// or https:// listener needs --tls-cert and --tls-key (or tls: in the config file)")
        }
        guard settings.stdio || !settings.listen.isEmpty else {
            throw ValidationError("nothing to serve: give --stdio and/or --listen tcp://HOST:PORT or unix:///PATH (or listen: in the config file)")
        }
        return settings
    }
}

struct Workflow: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work with workflow definitions.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a workflow definition (YAML or JSON): every problem with its file, line and column.")

        @Argument(help: "The YAML or JSON workflow file.")
        var file: String

        func run() throws {
            let report = WorkflowCheck.checkFile(atPath: file)
            print(report.output)
            if !report.isValid { throw ExitCode(1) }
        }
    }
}

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work with configuration files.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate a configuration file without starting anything.")

        @Argument(help: "The YAML or JSON file.")
        var file: String

        func run() throws {
            let settings: GatewaySettings
            do {
                settings = try ConfigurationFile(path: file).load(into: GatewaySettings())
            } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
            // The workflow files it names (workflows.definitions, relative to the file) are loaded at
            // start-up: a problem there is a problem of this configuration.
            let workflows = settings.workflows.definitionFiles.map(WorkflowCheck.checkFile(atPath:))
            let broken = workflows.filter { !$0.isValid }
            guard broken.isEmpty else {
                for report in broken { printError(report.output) }
                printError("\(file): \(broken.count) of \(workflows.count) workflow definition files have problems")
                throw ExitCode(1)
            }
            print("\(file): OK (\(settings.listen.count) listeners, \(settings.agentTemplates.count) agent templates, \(workflows.count) workflow definitions)")
            for report in workflows { print("  \(report.output)") }
            for warning in settings.configurationWarnings { print("warning: \(warning)") }
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version and the linked libraries.")

    func run() {
        print("switchboard \(BuildInfo.version)")
        print("OpenSSL: \(BuildInfo.openSSLVersion)")
        print("hiredis: \(BuildInfo.hiredisVersion)")
    }
}

func printError(_ message: String) {
    var line = message
    line.append("\n")
    _ = line.withCString { write(2, $0, strlen($0)) }
}
