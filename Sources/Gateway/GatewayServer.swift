import Access
import Agents
import Backend
import HTTPFace
import JSONRPC
import Logging
import MCPProtocol
import NIOCore
import NIOPosix
import Router
import ServiceLifecycle
import Synchronization
import Telemetry
import Transport
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What every connection of one gateway shares. Immutable after start-up.
final class GatewayCore: Sendable {
    let settings: GatewaySettings
    let identity: ServerIdentity
    let methods: MethodTable
    let registry: ConnectionRegistry
    let status: GatewayStatusSource
    let decoder: MessageDecoder
    /// Output queued for peers that do not read, bounded.
    let outputBudget: OutputBudget
    let logger: Logger
    let group: any EventLoopGroup
    let agents: AgentRegistry
    let calls: AgentCallRouter
    let tasks: any TaskService
    let coordination: CoordinationMethods
    /// Each agent's status changes and messages, as events (`switchboard.agents.AGENT_ID`).
    let communications: AgentCommunications
    let events: any PubSub
    /// With `--redis`: what this replica shares with the others.
    let cluster: Cluster?
    let workflows: WorkflowHost
    /// Who may do what: nil without an `auth` section.
    let access: AccessGate?
    /// What principals and tenants hold against `auth.quotas`: nil when nothing is counted.
    let quotas: QuotaKeeper?
    /// The record of state-changing and refused requests: nil without an `audit` section.
    let audit: AuditTrail?
    /// Where the trail's entries also go, with replicas.
    let auditStream: AuditStream?
    /// A problem found while assembling the core that must stop the start (an unreadable
    /// state directory).
    let startupProblem: String?
    private let supervisorSlot: SupervisorSlot
    /// Resources, isolation and the autoscaler.
    let fleet: FleetController
    /// Metrics, tracing, the access log, the history and the message log.
    let observability: GatewayObservability
    /// Posts task callbacks and alert webhooks.
    let callbacks: CallbackPoster
    /// Every served method's request instruments, resolved once (empty without metrics).
    private let methodInstruments: [String: LazyRequestInstruments]
    private let unknownMethodInstruments: LazyRequestInstruments?

    var supervisor: AgentSupervisor { supervisorSlot.value }

    init(settings: GatewaySettings, logger: Logger, group: any EventLoopGroup, extraMethods: (inout MethodTable) -> Void) {
        self.settings = settings
        self.logger = logger
        self.group = group
        self.registry = ConnectionRegistry()
        let access = settings.access.map { AccessGate(settings: $0, redis: settings.redis?.configuration, logger: logger, group: group) }
        self.access = access
        self.status = GatewayStatusSource(registry: registry, settings: settings)
        self.decoder = MessageDecoder(maximumDepth: settings.limits.maximumNestingDepth, maximumBatchSize: settings.limits.maximumBatchSize)
        self.outputBudget = OutputBudget(limits: settings.limits.output)
        self.identity = ServerIdentity(
            name: "switchboard",
            title: "Switchboard",
            version: BuildInfo.version,
            instructions: "Switchboard is a gateway to a fleet of agents: its tools are the tools of every connected agent.",
            // Only what is served. List changes are announced to handshake-era sessions.
            capabilities: ["tools": ["listChanged": true], "prompts": ["listChanged": true], "resources": [:]]
        )
        let agents = AgentRegistry()
        let status = self.status
        let cluster = settings.redis.map { Cluster(settings: $0, agents: agents, group: group, logger: logger, listeners: { status.listeners }) }
        let tasks: any TaskService = cluster?.tasks ?? TaskEngine(agents: agents, group: group, logger: logger)
        self.cluster = cluster
        let quotas = settings.access.flatMap { access in
            access.quotas.limitsAnyone
                ? QuotaKeeper(
                    settings: access.quotas, redis: cluster.map { ($0.client, $0.settings.replicaID, $0.settings.keyPrefix) }, logger: logger)
                : nil
        }
        self.quotas = quotas
        // With replicas the trail also goes to a Redis stream that all of them share.
        let auditStream = settings.audit == nil ? nil : cluster.map {
            AuditStream(client: $0.client, keyPrefix: $0.settings.keyPrefix, logger: logger)
        }
        self.auditStream = auditStream
        var auditProblem: String?
        var audit: AuditTrail?
        if let auditSettings = settings.audit {
            do {
                audit = try AuditTrail(settings: auditSettings, replica: settings.redis?.replicaID, logger: logger, sink: auditStream?.sink)
            } catch {
                auditProblem = "audit file \(auditSettings.file): \(error)"
            }
        }
        self.audit = audit
        let backend = cluster?.coordination ?? .embedded()
        var telemetryProblem: String?
        let observability: GatewayObservability
        do {
            observability = try GatewayObservability.make(
                settings: settings, backendStore: cluster == nil ? nil : backend.store, replica: settings.redis?.replicaID, agents: agents,
                logger: logger)
        } catch {
            telemetryProblem = "\(error)"
            observability = GatewayObservability(metrics: nil, tracing: nil, accessLog: false, history: nil, messages: MessageLog())
        }
        self.observability = observability
        let calls = AgentCallRouter(
            agents: agents, tasks: tasks, quotas: quotas, readinessWait: settings.readinessWait, observability: observability)
        let supervisorSlot = SupervisorSlot()
        let fleet = FleetController(settings: settings.fleet, agents: agents, supervisor: supervisorSlot, logger: logger)
        self.fleet = fleet
        agents.onDemandWhileDormant { fleet.wake($0) }
        agents.setLocalZone(settings.fleet.zone)
        fleet.routeByCost(settings.agentTemplates)
        self.agents = agents
        self.calls = calls
        self.tasks = tasks
        self.supervisorSlot = supervisorSlot
        var methods = MethodTable()
        CoreMethods.register(in: &methods, status: status)
        AccessMethods.register(in: &methods, gate: access, quotas: quotas, audit: audit)
        AgentMethods.register(
            in: &methods, agents: agents, supervisor: supervisorSlot, quotas: quotas, egress: settings.egress,
            requireAgentNameMatch: settings.tls?.requireAgentNameMatch ?? false,
            readinessWait: settings.readinessWait, activatesNewVersions: settings.access?.activatesNewVersions ?? true, capacity: fleet.ledger)
        calls.register(in: &methods)
        FleetMethods.register(in: &methods, fleet: fleet, agents: agents, supervisor: supervisorSlot, configurationFile: settings.configurationFile)
        TaskMethods.register(in: &methods, engine: tasks, egress: settings.egress, quotas: quotas, agents: agents)
        PatternMethods.register(in: &methods, agents: agents, readinessWait: settings.readinessWait)
        self.coordination = CoordinationMethods.register(
            in: &methods, agents: agents, logger: logger, backend: backend, quotas: quotas, messageLog: observability.messages)
        self.communications = AgentCommunications(agents: agents, coordination: coordination, logger: logger)
        self.events = backend.events
        var workflowStore: any KeyValueStore = backend.store
        var startupProblem: String?
        if cluster == nil {
            if let directory = settings.workflows.stateDirectory {
                if mkdir(directory, 0o700) != 0, errno != EEXIST {
                    startupProblem = "state directory \(directory): \(String(cString: strerror(errno)))"
                }
                do {
                    workflowStore = try JournaledKeyValueStore(path: "\(directory)/workflows.journal")
                } catch {
                    startupProblem = "state directory: \(error)"
                }
            } else {
                workflowStore = InMemoryKeyValueStore()
            }
        }
        self.startupProblem = startupProblem ?? auditProblem ?? telemetryProblem
        let workflows = WorkflowHost(
            store: workflowStore, events: backend.events, agents: agents, group: group, logger: logger,
            resumesOnStart: cluster == nil && settings.workflows.stateDirectory != nil, definitionFiles: settings.workflows.definitionFiles,
            isLeader: { cluster?.membership.isLeader() ?? true }, observability: observability)
        workflows.register(in: &methods)
        self.coordination.onPublished { topic, data in workflows.eventPublished(topic: topic, data: data) }
        self.workflows = workflows
        TelemetryMethods.register(in: &methods, observability: observability, agents: agents)
        extraMethods(&methods)
        if let metrics = observability.metrics {
            methods.instrument { LazyRequestInstruments(metrics: metrics, method: $0) }
            // The session's own methods are answered before the table: they count by name too.
            methodInstruments = Dictionary(uniqueKeysWithValues: ["initialize", "ping"].map { ($0, LazyRequestInstruments(metrics: metrics, method: $0)) })
            unknownMethodInstruments = LazyRequestInstruments(metrics: metrics, method: "unknown")
        } else {
            methodInstruments = [:]
            unknownMethodInstruments = nil
        }
        self.methods = methods

        let callbacks = CallbackPoster(group: group, logger: logger, egress: settings.egress)
        self.callbacks = callbacks
        supervisorSlot.set(AgentSupervisor(core: self))
        let coordination = self.coordination
        let sharesTasks = settings.redis != nil
        status.addSection("tasks") {
            let statistics = await tasks.statistics()
            var section: [String: JSONValue] = [
                "queued": .integer(Int64(statistics.queued)),
                "byState": .object(Dictionary(uniqueKeysWithValues: statistics.byState.map { ($0.key.rawValue, JSONValue.integer(Int64($0.value))) })),
            ]
            if let latency = statistics.assignmentLatencyMilliseconds {
                section["assignmentLatencyMs"] = ["p50": .double((latency.p50 * 1000).rounded() / 1000), "p99": .double((latency.p99 * 1000).rounded() / 1000)]
            }
            if sharesTasks {
                section["queues"] = .object(statistics.queues.mapValues { .integer(Int64($0)) })
            } else {
                // Every priority, 1 (highest) to 10, so that a drained one reads 0.
                section["queuedByPriority"] = .object(Dictionary(uniqueKeysWithValues: (1...10).map { (String($0), JSONValue.integer(Int64(statistics.queuedByPriority[$0] ?? 0))) }))
            }
            if let deadLettered = statistics.deadLettered { section["deadLettered"] = .integer(Int64(deadLettered)) }
            return .object(section)
        }
        let ledger = fleet.ledger
        status.addSection("fleet") {
            let allocated = ledger.allocated
            return [
                "costPerHour": .double((allocated.costPerHour * 10_000).rounded() / 10_000),
                "allocated": [
                    "cpu": .double((allocated.cpu * 1000).rounded() / 1000), "memoryBytes": .integer(allocated.memoryBytes),
                    "gpus": .integer(Int64(allocated.gpus)),
                ],
                "grants": .integer(Int64(ledger.grants.count)),
            ]
        }
        status.addSection("agents") {
            let all = agents.list()
            var byState: [String: Int64] = [:]
            for agent in all { byState[agent["currentState"]?.stringValue ?? "?", default: 0] += 1 }
            return ["count": .integer(Int64(all.count)), "byState": .object(byState.mapValues(JSONValue.integer))]
        }
        status.addSection("coordination") { coordination.statusSnapshot() }
        if let alerts = observability.alerts {
            status.addSection("alerts") { ["active": .array(alerts.active().map(\.json))] }
        }
        if let cluster {
            status.addSection("replicas") { cluster.membership.status() }
        }
        observability.installScrapeHooks(agents: agents, tasks: tasks, coordination: coordination, redis: cluster?.client, fleet: fleet.ledger)
        observability.observeTasks(tasks, agents: agents)

        tasks.onFinished { task in
            if task.submission.callback != nil { callbacks.deliver(task) }
            // Whichever replica sees a task end gives back what it held.
            if !task.submission.heldQuotas.isEmpty { quotas?.release(QuotaHold(keys: task.submission.heldQuotas)) }
        }
        if let quotas, let cluster {
            cluster.membership.onReplicaGone { replica in Task { await quotas.forget(replica: replica) } }
        }
        let registry = self.registry
        agents.onCatalogChange { change in
            for handle in registry.handles {
                if change.tools { handle.notifyIfSubscribed("notifications/tools/list_changed") }
                if change.prompts { handle.notifyIfSubscribed("notifications/prompts/list_changed") }
            }
        }
        agents.onDrained { [supervisorSlot] id in
            // A drained instance stops: a spawned one for good, an attached one is disconnected.
            if !supervisorSlot.value.drained(id) { agents.endpoint(id)?.close() }
        }
    }

    /// The instruments of a request for `method` that the table does not serve (nil without
    /// metrics): the session's own, or `unknown`, so that a peer cannot grow the exposition with
    /// made-up names.
    func requestInstruments(for method: String) -> RequestInstruments? {
        guard let unknownMethodInstruments else { return nil }
        return (methodInstruments[method] ?? unknownMethodInstruments).instruments
    }

    func connectionClosed(_ handle: ConnectionHandle, agent: AgentRegistry.InstanceID?, role: RPCConnectionHandler.Role) {
        coordination.connectionClosed(handle)
        guard let agent else { return }
        switch role {
        case .server:
            agents.down(agent, .offline("its connection closed"))
            logger.info("agent \(agent) is offline: its connection closed")
        case .client:
            // A spawned agent's pipes closed: out of rotation now; its supervisor restarts it.
            agents.down(agent, .failed("its pipes closed"))
        }
    }

    func notificationArrived(_ notification: JSONRPCNotification, from handle: ConnectionHandle, agent: AgentRegistry.InstanceID?) {
        guard let agent else { return }
        switch notification.method {
        case "notifications/progress":
            if let params = notification.params { calls.progress.relay(params) }
        case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
            rediscover(agent, through: handle)
        case "notifications/message":
            logger.info("agent \(agent): \(notification.params?.member("data")?.description ?? "")")
        default:
            break
        }
    }

    /// Lists again what an agent offers after it said its lists changed.
    private func rediscover(_ agent: AgentRegistry.InstanceID, through handle: ConnectionHandle) {
        let agents = self.agents
        let logger = self.logger
        handle.eventLoop.makeFutureWithTask {
            try await AgentDiscovery.discover(handle, capabilities: nil, timeout: .seconds(30))
        }.whenComplete { result in
            switch result {
            case .success(let offer): agents.updateOffer(agent, offer)
            case .failure(let error): logger.warning("agent \(agent) changed its lists but listing them failed: \(error)")
            }
        }
    }
}

/// Holds the supervisor, which needs the finished core to start agents' connections.
final class SupervisorSlot: Sendable {
    private let slot = Mutex<AgentSupervisor?>(nil)
    func set(_ supervisor: AgentSupervisor) { slot.withLock { $0 = supervisor } }
    var value: AgentSupervisor { slot.withLock { $0! } }
}

/// The gateway as a service: binds its listeners (and stdio), serves until SIGTERM/SIGINT or the
/// end of stdin, then drains: stops accepting, refuses new requests, lets in-flight requests
/// finish within the grace period, and closes every connection.
public final class GatewayServer: Service {
    public struct StartupError: Error, CustomStringConvertible {
        public var description: String
    }

    private let core: GatewayCore
    private let logger: Logger
    private let announcement = ListeningAnnouncement()
    /// The HTTP face of each http:// and https:// listener, and the settings they share.
    private let httpFaces = Mutex<[HTTPFace]>([])
    private let httpSettings = Mutex<HTTPFaceSettings?>(nil)

    /// - Parameter extraMethods: registers methods beyond the core ones (the layers above the
    ///   core add theirs here).
    public init(
        settings: GatewaySettings,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        extraMethods: (inout MethodTable) -> Void = { _ in }
    ) {
        self.core = GatewayCore(settings: settings, logger: logger, group: group, extraMethods: extraMethods)
        self.logger = logger
    }

    /// What exports the gateway's spans: run it in the same service group, before the gateway
    /// (a group stops its services in reverse order, so the spans of the last requests are
    /// exported after the gateway has stopped).
    public var tracingExporter: (any Service)? { core.observability.tracingExporter }

    /// The URLs of the bound listeners (with the real ports), once `run()` has bound them.
    public func listeningAddresses() async throws -> [String] {
        try await announcement.wait()
    }

    public func run() async throws {
        do {
            try await serve()
        } catch {
            announcement.fail(error)
            throw error
        }
    }

    private func serve() async throws {
        let settings = core.settings
        for warning in settings.configurationWarnings { logger.warning("configuration: \(warning)") }
        guard settings.stdio || !settings.listen.isEmpty else {
            throw StartupError(description: "nothing to serve: give --stdio and/or --listen tcp://HOST:PORT or unix:///PATH")
        }
        if settings.stdio {
            do { try StdioStreams.verify() } catch { throw StartupError(description: error.description) }
        }
        if let problem = core.startupProblem { throw StartupError(description: problem) }
        ResourceLimits.raiseOpenFileLimit(logger: logger)

        let tls = try makeTLSContext(for: { if case .tls = $0 { true } else { false } })
        // https:// listeners negotiate http/1.1 with ALPN; tls:// ones speak JSON-RPC lines.
        let httpsTLS = try makeTLSContext(for: { if case .https = $0 { true } else { false } }, selectingHTTP11: true)
        // Before the first client can connect, so that its first list waits for them.
        core.supervisor.prepare(templates: settings.agentTemplates)
        // The configuration's workflows, stored before a client can ask for them. (With Redis
        // the store is reached once the cluster runs: they are stored as the workflows start.)
        if core.cluster == nil { await core.workflows.prepare() }
        // What this replica held before a restart, given back before anything is counted anew.
        await core.quotas?.forgetOwnPastHoldings()
        // Trapped before anything is announced, so that a SIGHUP never finds the default action.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        if settings.listen.contains(where: \.isHTTP) {
            var http = settings.http
            http.accessControlled = settings.access != nil
            http.accessLog = settings.telemetry.accessLog
            http.maximumBatchSize = settings.limits.maximumBatchSize
            if let shared = await core.httpSessionKey() { http.sessionKey = shared }
            httpSettings.withLock { $0 = http }
        }
        var listeners: [(address: ListenAddress, channel: any Channel)] = []
        do {
            for address in settings.listen {
                let channel = try await bind(address, tls: address.isHTTP ? httpsTLS : tls)
                listeners.append((address, channel))
                let url = Self.boundURL(address, channel)
                core.status.listenerBound(url)
                logger.info("listening on \(url)")
                if settings.access == nil, !address.isLoopbackOnly {
                    logger.warning(
                        "no auth section: every peer that reaches \(url) may do everything (run agents, read memory, approve steps); add one (protocol-spec chapter 12)")
                }
            }
        } catch {
            for listener in listeners { try? await listener.channel.close() }
            throw error
        }

        announcement.announce(listeners.map { Self.boundURL($0.address, $0.channel) })

        let (stopRequests, stopContinuation) = AsyncStream<String>.makeStream()
        if settings.stdio {
            let stdio = try await serveStdio()
            logger.info("serving on stdio")
            stdio.closeFuture.whenComplete { _ in stopContinuation.yield("end of standard input") }
        }

        // The agents run beside the listeners, until the very end.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.core.supervisor.run() }
            group.addTask {
                let cluster = self.core.cluster
                await self.core.fleet.run(
                    supervisor: self.core.supervisor, agents: self.core.agents, tasks: self.core.tasks,
                    isLeader: { cluster?.membership.isLeader() ?? true })
            }
            group.addTask { await self.core.coordination.run() }
            group.addTask { await self.core.communications.run(on: self.core.events) }
            if let cluster = self.core.cluster { group.addTask { await cluster.run() } }
            if let stream = self.core.auditStream { group.addTask { await stream.run() } }
            group.addTask { await self.core.workflows.run() }
            group.addTask {
                let cluster = self.core.cluster
                await self.core.observability.run(
                    agents: self.core.agents, tasks: self.core.tasks, events: self.core.events, poster: self.core.callbacks, logger: self.logger,
                    isLeader: { cluster?.membership.isLeader() ?? true })
            }
            group.addTask { await self.reloadOnHangup([tls, httpsTLS].compactMap { $0 }, signals: hangups) }
            for face in self.httpFaces.withLock({ $0 }) { group.addTask { await face.run() } }
            await serveUntilStopped(listeners: listeners, stopRequests: stopRequests, stopContinuation: stopContinuation)
            await core.supervisor.stopAll()
            core.fleet.finish()
            await core.access?.shutdown()
            if let audit = core.audit {
                // Everything recorded is in the file (and handed to the stream) before the end.
                await audit.log.flush()
                audit.log.close()
            }
            core.auditStream?.finish()
            group.cancelAll()
            // The minute still open goes to the history too: a restart loses none of it.
            await core.observability.flushHistory()
        }
        logger.info("stopped")
    }

    private func serveUntilStopped(
        listeners: [(address: ListenAddress, channel: any Channel)],
        stopRequests: AsyncStream<String>,
        stopContinuation: AsyncStream<String>.Continuation
    ) async {
        let settings = core.settings
        // Serve until a shutdown signal or the end of stdin.
        let reason = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                do {
                    try await gracefulShutdown()
                    return "shutdown signal"
                } catch {
                    return nil
                }
            }
            group.addTask {
                for await reason in stopRequests { return reason }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? "cancellation"
        }
        stopContinuation.finish()
        logger.info("stopping (\(reason)): draining connections")

        core.registry.beginDraining()
        for listener in listeners {
            try? await listener.channel.close()
            if case .unix(let path) = listener.address { UnixSocketPath.remove(path) }
        }
        await core.registry.waitForInFlight(grace: settings.limits.shutdownGrace)
        let unfinished = core.registry.counts.inFlight
        if unfinished > 0 {
            logger.warning("\(unfinished) requests still in flight after the grace period; closing anyway")
        }
        for face in httpFaces.withLock({ $0 }) { face.shutdown() }
        await core.registry.closeAll()
    }

    /// The HTTP face of a new http:// or https:// listener.
    private func httpFace(for address: ListenAddress) throws -> HTTPFace {
        guard let settings = httpSettings.withLock({ $0 }) else { throw StartupError(description: "\(address): the HTTP face is not set up") }
        let limit = core.settings.listenerMessageLimits[address] ?? core.settings.limits.maximumMessageBytes
        let face = HTTPFace(door: GatewayLinkDoor(core: core, listener: address), settings: settings, maximumMessageBytes: limit, logger: logger)
        httpFaces.withLock { $0.append(face) }
        return face
    }

    // MARK: TLS

    /// The server TLS context, when a listener needs one. Certificate problems stop the start
    /// with a sentence that names the file and what is wrong with it.
    private func makeTLSContext(for listeners: (ListenAddress) -> Bool, selectingHTTP11: Bool = false) throws -> TLSContext? {
        guard core.settings.listen.contains(where: listeners) else { return nil }
        guard let settings = core.settings.tls else {
            throw StartupError(description: "a tls:// or https:// listener needs --tls-cert and --tls-key (or tls: in the config file)")
        }
        do {
            var configuration = settings.configuration
            configuration.selectsHTTP11 = selectingHTTP11
            let context = try TLSContext(server: configuration)
            logger.info("TLS: certificate \(settings.certificateChainPath), client authentication \(settings.clientAuthentication.rawValue)")
            return context
        } catch {
            throw StartupError(description: "TLS: \(error.description)")
        }
    }

    /// SIGHUP reloads the certificate and key: new connections get them, live ones keep theirs.
    /// Without TLS there is nothing to reload, and SIGHUP is ignored rather than fatal.
    /// SIGHUP reads the configuration file's agents again (rolling changed templates out) and
    /// the TLS certificates.
    private func reloadOnHangup(_ contexts: [TLSContext], signals: UnixSignalsSequence) async {
        for await _ in signals {
            if let path = core.settings.configurationFile {
                do throws(FleetController.ReloadFailure) {
                    let report = try core.fleet.reload(from: path)
                    logger.notice(
                        "SIGHUP: \(path) read again: added \(report.added), removed \(report.removed), rolling out \(report.rolling), changed in place \(report.resized)")
                } catch {
                    logger.error("SIGHUP: \(error.description)")
                }
            }
            guard !contexts.isEmpty else { continue }
            do {
                for context in contexts { try context.reload() }
                logger.notice("TLS: certificates reloaded on SIGHUP")
            } catch {
                logger.error("TLS: reload on SIGHUP failed, keeping the previous certificates: \(error.description)")
            }
        }
    }

    // MARK: Channels

    private func bind(_ address: ListenAddress, tls: TLSContext?) async throws -> any Channel {
        let core = self.core
        let limits = core.settings.limits
        let admission = ConnectionAdmission(
            listener: address.description, maximumPerListener: limits.maximumConnectionsPerListener,
            maximumPerPeer: limits.maximumConnectionsPerPeer, logger: core.logger)
        let bootstrap = ServerBootstrap(group: core.group)
            .serverChannelOption(ChannelOptions.backlog, value: 4096)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            // Without it, running out of descriptors makes the listener spin on accept.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DescriptorExhaustionBackoff(listener: address.description, logger: core.logger))
                }
            }
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            // Reads per turn of the event loop for one connection: a peer that floods requests
            // gets at most this many buffers of work before the others sharing its loop are served.
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 4)
        do {
            switch address {
            case .tcp(let host, let port):
                return try await bootstrap
                    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in Self.accepted(channel, core: core, address: address, admission: admission) }
                    .bind(host: host, port: port)
                    .get()
            case .tls(let host, let port):
                guard let tls else { throw StartupError(description: "\(address) needs --tls-cert and --tls-key (or tls: in the config file)") }
                let handshakeTimeout = TimeAmount(core.settings.tls?.handshakeTimeout ?? .seconds(10))
                return try await bootstrap
                    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in
                        Self.accepted(channel, core: core, address: address, admission: admission) {
                            try TLSHandler(context: tls, handshakeTimeout: handshakeTimeout, logger: core.logger)
                        }
                    }
                    .bind(host: host, port: port)
                    .get()
            case .http(let host, let port), .https(let host, let port):
                let face = try httpFace(for: address)
                let secure = address.usesTLS
                let makeTLS: (@Sendable () throws -> TLSHandler)?
                if secure {
                    guard let tls else { throw StartupError(description: "\(address) needs --tls-cert and --tls-key (or tls: in the config file)") }
                    let handshakeTimeout = TimeAmount(core.settings.tls?.handshakeTimeout ?? .seconds(10))
                    makeTLS = { try TLSHandler(context: tls, handshakeTimeout: handshakeTimeout, logger: core.logger) }
                } else {
                    makeTLS = nil
                }
                return try await bootstrap
                    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: false)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            let refusal = admission.admit(channel)
                            if let makeTLS { try channel.pipeline.syncOperations.addHandler(try makeTLS()) }
                            if let refusal {
                                try channel.pipeline.syncOperations.addHandler(HTTPRefusalHandler(refusal))
                            } else {
                                try face.configure(channel, secure: secure)
                            }
                        }
                    }
                    .bind(host: host, port: port)
                    .get()
            case .unix(let path):
                try UnixSocketPath.prepare(path)
                return try await bootstrap
                    .childChannelInitializer { channel in Self.accepted(channel, core: core, address: address, admission: admission) }
                    .bind(unixDomainSocketPath: path)
                    .get()
            }
        } catch let error as UnixSocketPath.InUse {
            throw StartupError(description: error.description)
        } catch let error as StartupError {
            throw error
        } catch let error as IOError {
            throw StartupError(description: "cannot listen on \(address): \(ListenerProblem(error))")
        } catch {
            throw StartupError(description: "cannot listen on \(address): \(error)")
        }
    }

    private func serveStdio() async throws -> any Channel {
        let core = self.core
        return try await NIOPipeBootstrap(group: core.group)
            // Without half-closure, EOF on stdin would close the channel before the replies to
            // the last requests are written.
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in Self.configure(channel, core: core, address: nil) }
            .takingOwnershipOfDescriptors(input: 0, output: 1)
            .get()
    }

    /// A connection a listener accepted: served, or refused when it is over a connection cap.
    /// `tls`: the TLS handler in front (a refusal is written through it too).
    private static func accepted(
        _ channel: any Channel, core: GatewayCore, address: ListenAddress, admission: ConnectionAdmission,
        tls: (() throws -> TLSHandler)? = nil
    ) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let refusal = admission.admit(channel)
            if let tls { try channel.pipeline.syncOperations.addHandler(try tls()) }
            if let refusal {
                try channel.pipeline.syncOperations.addHandler(ConnectionRefusalHandler(refusal))
            } else {
                try addConnectionHandlers(channel, core: core, address: address, isStdio: false)
            }
        }
    }

    private static func configure(_ channel: any Channel, core: GatewayCore, address: ListenAddress?) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture { try addConnectionHandlers(channel, core: core, address: address, isStdio: address == nil) }
    }

    /// `address`: the listener the connection came through (nil: stdio), for its own limits.
    /// Socket connections get the timeouts; stdio, whose host owns its life, does not, nor does
    /// the HTTP face's link, whose life its HTTP session owns.
    static func addConnectionHandlers(
        _ channel: any Channel, core: GatewayCore, address: ListenAddress?, isStdio: Bool, timeouts: Bool = true
    ) throws {
        let limits = core.settings.limits
        let maximumMessageBytes = address.flatMap { core.settings.listenerMessageLimits[$0] } ?? limits.maximumMessageBytes
        let connection = RPCConnectionHandler(gateway: core, isStdio: isStdio, transport: address?.transportName ?? "stdio")
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(BackPressureHandler())
        if let address, timeouts, !limits.connectionTimeouts.isEmpty {
            let isTLS = address.usesTLS
            try pipeline.addHandler(
                ConnectionTimeoutHandler(
                    timeouts: limits.connectionTimeouts, startsAfterTLSHandshake: isTLS, logger: core.logger,
                    keepsOpen: { connection.holdsConnectionOpen }))
        }
        try pipeline.addHandlers(
            ByteToMessageHandler(LineFrameDecoder(maximumLineLength: maximumMessageBytes)),
            connection,
            core.coordination.flowControlHandler()
        )
    }

    private static func boundURL(_ address: ListenAddress, _ channel: any Channel) -> String {
        guard let port = channel.localAddress?.port, address.hostAndPort != nil else { return address.description }
        return address.withPort(port).description
    }
}

/// Hands the bound listener URLs to whoever waits for them.
private final class ListeningAnnouncement: Sendable {
    private enum State {
        case waiting([CheckedContinuation<[String], any Error>])
        case done(Result<[String], any Error>)
    }

    private let state = Mutex(State.waiting([]))

    func announce(_ urls: [String]) { complete(.success(urls)) }
    func fail(_ error: any Error) { complete(.failure(error)) }

    private func complete(_ result: Result<[String], any Error>) {
        let waiters: [CheckedContinuation<[String], any Error>] = state.withLock { state in
            guard case .waiting(let waiters) = state else { return [] }
            state = .done(result)
            return waiters
        }
        waiters.forEach { $0.resume(with: result) }
    }

    func wait() async throws -> [String] {
        try await withCheckedThrowingContinuation { continuation in
            let result: Result<[String], any Error>? = state.withLock { state in
                switch state {
                case .waiting(var waiters):
                    waiters.append(continuation)
                    state = .waiting(waiters)
                    return nil
                case .done(let result):
                    return result
                }
            }
            if let result { continuation.resume(with: result) }
        }
    }
}

/// Why a listener could not be bound, in plain words.
struct ListenerProblem: CustomStringConvertible {
    var error: IOError
    init(_ error: IOError) { self.error = error }

    var description: String {
        switch error.errnoCode {
        case EADDRINUSE: "the address is already in use (another process is listening there; stop it or choose another port)"
        case EACCES: "permission denied (ports below 1024 need privileges; choose a port from 1024 up)"
        case EADDRNOTAVAIL: "the address is not available on this machine (check the host name or IP address)"
        case ENOENT: "the directory does not exist"
        default: String(cString: strerror(error.errnoCode))
        }
    }
}

enum ResourceLimits {
    /// Thousands of connections need thousands of descriptors; the soft limit is often 1024.
    static func raiseOpenFileLimit(logger: Logger) {
        #if os(Linux)
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let before = limit.rlim_cur
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 { limit.rlim_cur = before }
        }
        // Connections are bounded by it: say what it is, so that running out is no surprise.
        let shown = limit.rlim_cur == rlim_t.max ? "unlimited" : String(limit.rlim_cur)
        logger.info("open files limit: \(shown)\(limit.rlim_cur > before ? " (raised from \(before))" : "")")
        #endif
    }
}
