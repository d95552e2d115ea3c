import FoundationEssentials
import JSONRPC
import NIOCore
import Synchronization

/// Every agent instance the gateway knows, what each offers, and who gets the next call.
///
/// One lock guards the whole table: selection needs a consistent view of load across instances.
/// A call costs a few lookups and a pass over its template's instances, never over the whole
/// table: instances are indexed by template, and the catalog of exposed names is kept up to
/// date incrementally, so that registering the ten-thousandth agent costs what the first did.
public final class AgentRegistry: Sendable {
    public struct InstanceID: Hashable, Sendable, CustomStringConvertible, Comparable {
        public var rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// What describes an instance when it joins.
    public struct Registration: Sendable {
        public var name: String
        public var template: String
        public var version: String
        public var kind: AgentKind
        public var agentType: String
        public var capabilities: [String]
        public var configuration: JSONValue?
        public var resourceRequirements: JSONValue?
        public var maximumConcurrency: Int
        public var callTimeout: Duration
        public var processID: Int32?
        public var identity: JSONValue?
        /// The gateway replica the agent runs on, when it is not this one: calls to it travel
        /// through that replica.
        public var replica: String?
        /// The tenants whose requests may use the agent: that of the principal that registered
        /// an attached one, with access control; those a spawned one's template lists. Nil:
        /// every tenant's.
        public var tenants: [String]?
        /// The GPUs of the gateway's pool given to it alone (a spawned instance).
        public var gpus: [String] = []
        /// How its limits and sandbox are enforced, one line per measure (a spawned instance).
        public var isolation: [String] = []
        /// Where it runs (a data centre, a rack): calls prefer instances of the caller's zone.
        public var zone: String?

        public init(
            name: String, template: String, version: String, kind: AgentKind, agentType: String = "mcp",
            capabilities: [String] = [], maximumConcurrency: Int, callTimeout: Duration = .seconds(300)
        ) {
            self.name = name
            self.template = template
            self.version = version
            self.kind = kind
            self.agentType = agentType
            self.capabilities = capabilities
            self.maximumConcurrency = maximumConcurrency
            self.callTimeout = callTimeout
        }
    }

    /// A reserved slot on an instance for one call. `finish` must be called exactly once.
    ///
    /// A class, not a struct: a call's closures each hold the lease, and a copy of a struct of
    /// four strings and three references costs seven reference-count operations where a class
    /// costs one.
    public final class Lease: Sendable {
        public let instance: InstanceID
        public let instanceName: String
        public let template: String
        public let endpoint: any AgentEndpoint
        /// The name the agent itself knows the tool (or prompt) by.
        public let originalName: String
        public let callTimeout: Duration
        /// The share of the required capabilities the chosen instance carries (1: all of them).
        public let matchConfidence: Double
        fileprivate let registry: AgentRegistry
        fileprivate let entry: Instance
        fileprivate let started: ContinuousClock.Instant

        fileprivate init(
            instance: InstanceID, instanceName: String, template: String, endpoint: any AgentEndpoint, originalName: String,
            callTimeout: Duration, matchConfidence: Double, registry: AgentRegistry, entry: Instance, started: ContinuousClock.Instant
        ) {
            self.instance = instance
            self.instanceName = instanceName
            self.template = template
            self.endpoint = endpoint
            self.originalName = originalName
            self.callTimeout = callTimeout
            self.matchConfidence = matchConfidence
            self.registry = registry
            self.entry = entry
            self.started = started
        }

        /// Releases the slot. `succeeded` feeds the router's learning and the circuit breaker:
        /// false when the agent failed (crashed, timed out, or answered that the call failed).
        public func finish(succeeded: Bool) {
            registry.finish(self, succeeded: succeeded)
        }

        /// `finish`, noting that the agent answered the call with an error (a tool error or a
        /// JSON-RPC error): the tool's business, not a failure of the agent, but what a rollout
        /// compares versions by.
        public func finish(succeeded: Bool, answeredWithError: Bool) {
            registry.finish(self, succeeded: succeeded, answeredWithError: answeredWithError)
        }

        /// Releases the slot without a verdict: the call never ran, or was cancelled.
        public func release() {
            registry.finish(self, succeeded: nil)
        }
    }

    public enum AcquireError: Error, Sendable, CustomStringConvertible {
        case unknownTool(String)
        /// Several templates offer the bare name; each is exposed under its own name.
        case ambiguous(String, candidates: [String])
        /// No one offered the name before the wait ended, and templates were still starting.
        case notYetOffered(tool: String, starting: [String], waited: Duration)
        case noAgentAvailable(tool: String, template: String, reason: String)
        case timedOut(tool: String, template: String, waited: Duration)

        public var description: String {
            switch self {
            case .unknownTool(let tool): "unknown tool \"\(tool)\""
            case .ambiguous(let name, let candidates):
                "\"\(name)\" is ambiguous: several agents offer it, as \(candidates.map { "\"\($0)\"" }.joined(separator: ", "))"
            case .notYetOffered(let tool, let starting, let waited):
                "no agent offered \"\(tool)\" within \(waited) (still starting: \(starting.isEmpty ? "none" : starting.joined(separator: ", ")))"
            case .noAgentAvailable(let tool, let template, let reason): "no agent can run \"\(tool)\" (template \(template)): \(reason)"
            case .timedOut(let tool, let template, let waited): "no instance of \(template) was free for \"\(tool)\" within \(waited)"
            }
        }
    }

    // MARK: State

    /// One instance's entry. A class, so that selection reads candidates where they are instead
    /// of copying them, and a lease finds its instance again without a lookup. Every field is
    /// read and written under the registry's lock only (hence `@unchecked Sendable`).
    fileprivate final class Instance: @unchecked Sendable {
        let id: InstanceID
        var registration: Registration
        var lifecycle: AgentLifecycle = .starting {
            didSet { if lifecycle != oldValue { changes.ids.append(id) } }
        }
        var health: AgentHealth = .healthy {
            didSet { if health != oldValue { changes.ids.append(id) } }
        }
        /// Where a change of lifecycle or health is noted, for the registry to tell its observers.
        private let changes: StatusChanges
        var offer = AgentOffer() {
            didSet {
                toolNames = Set(offer.tools.map(\.name))
                promptNames = Set(offer.prompts.map(\.name))
            }
        }
        private(set) var toolNames: Set<String> = []
        private(set) var promptNames: Set<String> = []
        /// Tools its template disables: kept out of `offer`.
        var hiddenTools: Set<String> = []
        var endpoint: (any AgentEndpoint)?
        var inFlight = 0
        var completed = 0
        var failed = 0
        /// Calls it answered with an error (counted in `completed` too).
        var answeredWithError = 0
        var totalLatency: Duration = .zero
        var lastAssigned: UInt64 = 0
        var registeredAt = Date()
        var lastHeartbeat: Date?
        var reportedUsage: JSONValue?
        var consecutiveFailures = 0
        /// Per tool (or prompt, or resource template) name.
        var performance: [String: ToolPerformance] = [:]
        var circuit = CircuitBreaker()
        /// False once removed (a lease may outlive its instance).
        var isRegistered = true
        /// A spawned instance in its start-up window: it has neither finished nor failed its first
        /// handshake. While a template has such an instance and none in the catalog, what it will
        /// offer is unknown, and lists and calls wait for it.
        var awaitingFirstHandshake = false
        /// It has been ready at least once: its offer is known.
        var hasOffered = false
        /// Scaled to zero: no process runs, but its template's names stay offered and calls wait
        /// for it to start again.
        var dormant = false
        /// The last failure and when, kept after it is running again.
        var lastFailure: (reason: String, at: Date)?
        /// Down and not to be started again by its supervisor (its start is refused): no capacity
        /// to come.
        var staysDown = false
        /// The names this instance adds to its template's catalog counts; nil while it is not
        /// part of the catalog (absent, or not of the active version).
        var counted: (tools: Set<String>, prompts: Set<String>)?

        init(id: InstanceID, registration: Registration, changes: StatusChanges) {
            self.id = id
            self.registration = registration
            self.changes = changes
            changes.ids.append(id)
        }


        var isInCatalog: Bool { counted != nil }

        /// Notes a change the lifecycle does not show: the instance came or went.
        func noteStatusChanged() { changes.ids.append(id) }

        /// Whether `tenant`'s requests may use it (nil: no tenancy, everything).
        func isVisible(to tenant: String?) -> Bool {
            guard let tenant, let tenants = registration.tenants else { return true }
            return tenants.contains(tenant)
        }

        /// The probes' verdict, except that an instance down is never healthy, and one still
        /// starting has not shown that it is.
        var reportedHealth: AgentHealth {
            switch lifecycle {
            case .failed, .offline: return .unhealthy
            case .starting where !hasOffered: return .degraded
            default: return health
            }
        }

        var state: AgentState {
            switch lifecycle {
            case .offline: return .offline
            case .failed: return .error
            case .maintenance: return .maintenance
            case .starting where !hasOffered: return .starting
            case .starting, .ready, .draining:
                if inFlight == 0 { return .idle }
                return inFlight >= registration.maximumConcurrency ? .overloaded : .busy
            }
        }

        /// Counts toward the catalog: its tools are offered, and calls may wait for it.
        var isPresent: Bool {
            if case .offline = lifecycle { return dormant }
            return true
        }
    }

    private struct Waiter {
        var sequence: UInt64
        var kind: OfferKind
        var exposedName: String
        /// Nil while the name is not offered yet and a template that may offer it is starting.
        var origin: ToolNaming.Origin?
        var constraints: Constraints
        var promise: EventLoopPromise<Lease>
        var timeout: Scheduled<Void>?
    }

    public enum OfferKind: Sendable, Equatable {
        case tool, prompt
        /// Any instance of the template (resources are served by whoever lists them).
        case resource(template: String)
    }

    /// The instances of one template, and how many of those in the catalog offer each name.
    private struct TemplateEntry {
        /// In id order.
        var instances: [Instance] = []
        var toolCounts: [String: Int] = [:]
        var promptCounts: [String: Int] = [:]

        mutating func insert(_ instance: Instance) {
            var low = 0
            var high = instances.count
            while low < high {
                let middle = (low + high) / 2
                if instances[middle].id < instance.id { low = middle + 1 } else { high = middle }
            }
            instances.insert(instance, at: low)
        }
    }

    private struct State {
        var instances: [InstanceID: Instance] = [:]
        var templates: [String: TemplateEntry] = [:]
        /// Instances kept to some tenants (`Registration.tenants`).
        var restrictedInstances = 0
        /// Set when a template's offered names changed: the exposed names are worked out again.
        var catalogNamesChanged = false
        var activeVersion: [String: String] = [:]
        /// Versions registered but not activated yet (agent admission), per template.
        var pendingVersions: [String: Set<String>] = [:]
        var versionHistory: [String: [String]] = [:]
        /// Versions rolled back from, per template: they do not become active again by
        /// re-registering.
        var rolledBack: [String: Set<String>] = [:]
        /// A version taking a share of a template's calls beside the active one (a rollout).
        var canary: [String: (version: String, share: Double)] = [:]
        var canaryDraws: UInt64 = 0
        /// The zone of this replica: what calls prefer when they name none.
        var localZone: String?
        /// Cost-aware routing: what an instance of each template costs per hour, and the mean
        /// latency a template must hold to be chosen for being cheaper.
        var costRouting: (latencyObjectiveMilliseconds: Double, costs: [String: Double])?
        /// A bare tool name several templates offer, when routing is cost-aware: its templates,
        /// cheapest first. The name is exposed (as the cheapest's tool) and calls pick among them.
        var equivalents: [String: [ToolNaming.Origin]] = [:]
        var costProbes: UInt64 = 0
        var tools: [ToolNaming.ExposedName: ToolNaming.Origin] = [:]
        var prompts: [ToolNaming.ExposedName: ToolNaming.Origin] = [:]
        /// Bare names that several templates offer and none keeps, with their candidates.
        var ambiguousTools: [String: [String]] = [:]
        var ambiguousPrompts: [String: [String]] = [:]
        /// Names that keep naming the same tool (or prompt) for the registry's life.
        var pinnedTools: [ToolNaming.ExposedName: ToolNaming.Origin] = [:]
        var pinnedPrompts: [ToolNaming.ExposedName: ToolNaming.Origin] = [:]
        /// Some exposed name is not pinned yet (a cheap test on the call path).
        var hasUnpinnedNames = false
        var pinnedToolsAfterPruning = 0
        var pinnedPromptsAfterPruning = 0
        /// Per-template prefixes set up front.
        var prefixes: [String: String] = [:]
        /// Instances in their start-up window, per template.
        var awaiting: [String: Int] = [:]
        /// Templates whose offer is still unknown: lists and calls wait for them.
        var starting: Set<String> = []
        /// Something `starting` depends on changed (an instance entered or left its start-up
        /// window, offered for the first time, or left): it is worked out again.
        var startingMayHaveChanged = false
        var waiters: [Waiter] = []
        var settleWaiters: [SettleWaiter] = []
        var sequence: UInt64 = 0
    }

    /// A list waiting for the templates still starting.
    private struct SettleWaiter {
        var sequence: UInt64
        var eventLoop: any EventLoop
        var body: @Sendable () -> Void
        var timeout: Scheduled<Void>?
    }

    private let state = Mutex(State())
    /// `State.restrictedInstances`, read without the lock: while no instance is kept to some
    /// tenants (the usual case), every agent is every tenant's and calls skip the check.
    private let restrictedInstances = Atomic<Int>(0)
    /// Some zone is known (this replica's, or an instance's): until then a call's `_meta` is not
    /// searched for one.
    private let zoned = Atomic<Bool>(false)
    public var zonesInUse: Bool { zoned.load(ordering: .relaxed) }
    private let circuitOpenings = Atomic<Int>(0)
    /// How many times a circuit breaker of any instance opened since start (for the metrics).
    public var circuitsOpened: Int { circuitOpenings.load(ordering: .relaxed) }
    /// `!state.starting.isEmpty`, readable without the lock (every list and resource read asks).
    private let startingNow = Atomic(false)
    private let observers = Mutex(Observers())
    private let localReplica = Mutex<String?>(nil)

    /// Names this process's replica in agent statuses (with a shared backend).
    public func setLocalReplica(_ replica: String) {
        localReplica.withLock { $0 = replica }
    }

    /// Which parts of the catalog changed.
    public struct CatalogChange: Sendable, Equatable {
        public var tools: Bool
        public var prompts: Bool
    }

    /// Instances whose lifecycle or health changed (or that came or went), gathered under the
    /// lock as the changes are made, and handed to the observers after it.
    fileprivate final class StatusChanges: @unchecked Sendable {
        var ids: [InstanceID] = []
    }

    private let statusChanges = StatusChanges()

    private struct Observers {
        var statusChanged: [@Sendable ([InstanceID]) -> Void] = []
        var catalogChanged: [@Sendable (CatalogChange) -> Void] = []
        var drained: [@Sendable (InstanceID) -> Void] = []
        var capacityFreed: [@Sendable () -> Void] = []
        var demandWhileDormant: [@Sendable (String) -> Void] = []
    }

    public init() {}

    /// Called (outside the lock) whenever the set of exposed tools, prompts or resources changes.
    public func onCatalogChange(_ observer: @escaping @Sendable (CatalogChange) -> Void) {
        observers.withLock { $0.catalogChanged.append(observer) }
    }

    /// Called (outside the lock) with the instances whose lifecycle or health changed, or that
    /// were added or removed: what an agent's status stream reports.
    public func onStatusChange(_ observer: @escaping @Sendable ([InstanceID]) -> Void) {
        observers.withLock { $0.statusChanged.append(observer) }
    }

    /// Called when a draining instance has finished its last call.
    public func onDrained(_ observer: @escaping @Sendable (InstanceID) -> Void) {
        observers.withLock { $0.drained.append(observer) }
    }

    // MARK: Membership

    /// Adds an instance (starting). A new version of a template becomes the active one.
    ///
    /// `startingUp`: the instance is about to make its first handshake (a spawned agent). Until
    /// it has finished or failed it, or `endStartupWindow` is called, a template with no instance
    /// in the catalog counts as starting: lists wait for it, and calls naming a tool no one offers
    /// yet wait too, since it may offer that tool.
    @discardableResult
    /// `activatesNewVersion`: a version of a known template not seen before becomes the active
    /// one at once; when false it waits, taking no traffic, for `activate(template:version:)`.
    public func add(
        _ id: InstanceID, _ registration: Registration, endpoint: (any AgentEndpoint)? = nil, startingUp: Bool = false,
        activatesNewVersion: Bool = true
    ) -> InstanceID {
        mutate { state in
            if state.instances[id] != nil { Self.removeInstance(id, from: &state) }
            let instance = Instance(id: id, registration: registration, changes: statusChanges)
            if registration.zone != nil { zoned.store(true, ordering: .relaxed) }
            instance.endpoint = endpoint
            if startingUp { Self.setAwaiting(instance, true, in: &state) }
            state.instances[id] = instance
            if registration.tenants != nil { state.restrictedInstances += 1 }
            restrictedInstances.store(state.restrictedInstances, ordering: .relaxed)
            let template = registration.template
            let version = registration.version
            state.templates[template, default: TemplateEntry()].insert(instance)
            let known = state.versionHistory[template]?.contains(version) ?? false
            if state.activeVersion[template] == nil {
                // The only version around is the active one.
                state.activeVersion[template] = version
                if !known { state.versionHistory[template, default: []].append(version) }
            } else if state.activeVersion[template] != version, !known, !activatesNewVersion {
                // A new version waits for an operator: it is known, and takes no traffic.
                state.pendingVersions[template, default: []].insert(version)
            } else if state.activeVersion[template] != version, !known, !(state.rolledBack[template]?.contains(version) ?? false) {
                // A new version takes over; the one before stays for a rollback.
                state.versionHistory[template, default: []].append(version)
                state.activeVersion[template] = version
                Self.recount(template: template, in: &state)
                return
            }
            Self.recount(instance, in: &state)
        }
        return id
    }

    public func remove(_ id: InstanceID) {
        mutate { state in
            Self.removeInstance(id, from: &state)
            restrictedInstances.store(state.restrictedInstances, ordering: .relaxed)
        }
    }

    private static func removeInstance(_ id: InstanceID, from state: inout State) {
        guard let instance = state.instances.removeValue(forKey: id) else { return }
        if instance.registration.tenants != nil { state.restrictedInstances -= 1 }
        setAwaiting(instance, false, in: &state)
        if instance.hasOffered, state.awaiting[instance.registration.template] != nil { state.startingMayHaveChanged = true }
        instance.isRegistered = false
        instance.noteStatusChanged()
        recount(instance, in: &state)
        let template = instance.registration.template
        state.templates[template]?.instances.removeAll { $0 === instance }
        if state.templates[template]?.instances.isEmpty ?? true {
            state.templates[template] = nil
            state.activeVersion[template] = nil
            state.versionHistory[template] = nil
            state.rolledBack[template] = nil
        }
    }

    /// Records a (re)started instance's connection and what it offers, and puts it in rotation.
    /// `hidingTools` stay out of its offer, now and when it lists its tools again.
    public func ready(
        _ id: InstanceID, endpoint: any AgentEndpoint, offer: AgentOffer, hidingTools: Set<String> = [], processID: Int32? = nil
    ) {
        mutate { state in
            guard let instance = state.instances[id] else { return }
            instance.endpoint = endpoint
            instance.hiddenTools = hidingTools
            let offer = offer.hiding(tools: hidingTools)
            if instance.offer != offer { instance.offer = offer }
            Self.setAwaiting(instance, false, in: &state)
            if !instance.hasOffered, state.awaiting[instance.registration.template] != nil { state.startingMayHaveChanged = true }
            instance.hasOffered = true
            instance.dormant = false
            instance.lifecycle = .ready
            instance.health = .healthy
            instance.consecutiveFailures = 0
            instance.lastHeartbeat = Date()
            if let processID { instance.registration.processID = processID }
            Self.recount(instance, in: &state)
        }
    }

    /// Like `updateOffer`, without touching the catalog when nothing changed.
    public func updateOfferIfChanged(_ id: InstanceID, _ offer: AgentOffer) {
        mutate { state in
            guard let instance = state.instances[id] else { return }
            let offer = offer.hiding(tools: instance.hiddenTools)
            guard instance.offer != offer else { return }
            instance.offer = offer
            Self.recount(instance, in: &state)
        }
    }

    public func updateOffer(_ id: InstanceID, _ offer: AgentOffer) {
        mutate { state in
            guard let instance = state.instances[id] else { return }
            instance.offer = offer.hiding(tools: instance.hiddenTools)
            Self.recount(instance, in: &state)
        }
    }

    /// Marks an instance down. Its in-flight calls fail through their endpoint, not here.
    public func down(_ id: InstanceID, _ lifecycle: AgentLifecycle, staysDown: Bool = false) {
        mutate { state in
            // A dormant instance has no connection left to lose: its pipes closing after it was
            // scaled to zero change nothing.
            guard let instance = state.instances[id], !instance.dormant else { return }
            instance.lifecycle = lifecycle
            instance.staysDown = staysDown
            if case .failed(let reason) = lifecycle { instance.lastFailure = (reason, Date()) }
            instance.endpoint = nil
            instance.inFlight = 0
            Self.setAwaiting(instance, false, in: &state)
            Self.recount(instance, in: &state)
        }
    }

    /// Scales an instance to zero: its process is gone, but what it offered stays in the catalog
    /// and calls for it wait (and tell `onDemandWhileDormant`) until it is ready again.
    public func park(_ id: InstanceID) {
        mutate { state in
            guard let instance = state.instances[id] else { return }
            instance.lifecycle = .offline("scaled to zero: starts again on the next call or task")
            instance.dormant = true
            instance.registration.processID = nil
            instance.endpoint = nil
            instance.inFlight = 0
            Self.setAwaiting(instance, false, in: &state)
            Self.recount(instance, in: &state)
        }
    }

    /// Makes a tool that several templates offer callable by its bare name: each call goes to
    /// the cheapest template (per instance and hour) whose mean latency for it holds the
    /// objective, a dearer one when none does or the cheaper ones are busy. Nil turns it off.
    public func setCostRouting(latencyObjectiveMilliseconds: Double?, costs: [String: Double]) {
        mutate { state in
            state.costRouting = latencyObjectiveMilliseconds.map { ($0, costs) }
            state.catalogNamesChanged = true
        }
    }

    /// The zone calls prefer when they name none: this replica's.
    public func setLocalZone(_ zone: String?) {
        if zone != nil { zoned.store(true, ordering: .relaxed) }
        state.withLock { $0.localZone = zone }
    }

    /// Sends `share` (0 to 1) of the template's calls to `version`'s instances, the rest to the
    /// active version's; nil ends it.
    public func setCanary(template: String, version: String?, share: Double = 0) {
        state.withLock { state in
            if let version { state.canary[template] = (version, min(max(share, 0), 1)) } else { state.canary[template] = nil }
        }
    }

    public func canary(of template: String) -> (version: String, share: Double)? {
        state.withLock { $0.canary[template] }
    }

    /// What each instance of the template has answered since it was added, with its version:
    /// a rollout compares versions by the change between two readings.
    public func figures(template: String, localOnly: Bool = false) -> [(id: InstanceID, version: String, calls: Int, failures: Int, latencySeconds: Double)] {
        state.withLock { state in
            (state.templates[template]?.instances ?? []).filter { !localOnly || $0.registration.replica == nil }.map { instance in
                let latency = instance.totalLatency.components
                return (
                    instance.id, instance.registration.version, instance.completed + instance.failed, instance.failed + instance.answeredWithError,
                    Double(latency.seconds) + Double(latency.attoseconds) / 1e18
                )
            }
        }
    }

    /// Ready instances of the template by version.
    public func readyInstances(template: String) -> [(id: InstanceID, version: String)] {
        state.withLock { state in
            (state.templates[template]?.instances ?? []).filter { $0.lifecycle == .ready }.map { ($0.id, $0.registration.version) }
        }
    }

    /// A dormant instance is starting again: calls keep waiting for it, now as for one starting.
    public func wake(_ id: InstanceID) {
        mutate { state in
            guard let instance = state.instances[id], instance.dormant else { return }
            instance.dormant = false
            instance.lifecycle = .starting
            Self.recount(instance, in: &state)
        }
    }

    /// Records what an instance was given and how it is held to it.
    public func annotate(_ id: InstanceID, gpus: [String], isolation: [String]) {
        state.withLock { state in
            guard let instance = state.instances[id] else { return }
            instance.registration.gpus = gpus
            instance.registration.isolation = isolation
        }
    }

    /// Vertical scaling: every instance of the template takes `maximum` calls at once from now
    /// on; calls waiting for capacity are served at once if it grew.
    public func setMaximumConcurrency(template: String, _ maximum: Int) {
        mutate { state in
            for instance in state.templates[template]?.instances ?? [] { instance.registration.maximumConcurrency = maximum }
        }
        if maximum > 0 { observers.withLock { $0.capacityFreed }.forEach { $0() } }
    }

    /// What each template's work asks for now, for the autoscaler.
    public struct TemplateDemand: Sendable, Equatable {
        public var ready = 0
        public var starting = 0
        public var dormant = 0
        public var inFlight = 0
        /// Calls waiting for one of its instances.
        public var waitingCalls = 0
        /// The largest `maxConcurrency` among its instances.
        public var slotsPerInstance = 1

        public init() {}
    }

    /// Local instances only: another replica's agents are its own autoscaler's.
    public func demand() -> [String: TemplateDemand] {
        state.withLock { state in
            var demand: [String: TemplateDemand] = [:]
            for instance in state.instances.values where instance.registration.replica == nil {
                var entry = demand[instance.registration.template, default: TemplateDemand()]
                switch instance.lifecycle {
                case .ready, .draining: entry.ready += instance.lifecycle == .ready ? 1 : 0
                case .starting: entry.starting += 1
                // Restarting after its back-off; one that never came up is no capacity at all.
                case .failed: if instance.hasOffered && !instance.staysDown { entry.starting += 1 }
                case .offline: if instance.dormant { entry.dormant += 1 }
                case .maintenance: break
                }
                entry.inFlight += instance.inFlight
                entry.slotsPerInstance = max(entry.slotsPerInstance, instance.registration.maximumConcurrency)
                demand[instance.registration.template] = entry
            }
            for waiter in state.waiters {
                guard let template = waiter.origin?.template else { continue }
                demand[template, default: TemplateDemand()].waitingCalls += 1
            }
            return demand
        }
    }

    /// The template whose tool the exposed name is now, if any.
    public func template(offering tool: String) -> String? {
        state.withLock { $0.tools[tool]?.template }
    }

    /// Called (outside the lock) when a call starts waiting for a template none of whose
    /// instances is ready (scaled to zero, or all starting): the autoscaler starts one at once.
    public func onDemandWhileDormant(_ observer: @escaping @Sendable (String) -> Void) {
        observers.withLock { $0.demandWhileDormant.append(observer) }
    }

    /// Ends an instance's start-up window without a handshake (it is taking too long): what its
    /// template offers is no longer waited for.
    public func endStartupWindow(_ id: InstanceID) {
        // Usually long over (the instance is up): then there is nothing to change or announce.
        guard state.withLock({ $0.instances[id]?.awaitingFirstHandshake ?? false }) else { return }
        mutate { state in
            guard let instance = state.instances[id], instance.awaitingFirstHandshake else { return }
            Self.setAwaiting(instance, false, in: &state)
        }
    }

    /// Exposes every name of `template`'s tools and prompts with `prefix` in front (set before
    /// its first instance comes up, so that no other name is ever shown for them).
    public func setPrefix(_ prefix: String?, forTemplate template: String) {
        mutate { state in
            state.prefixes[template] = prefix
            state.catalogNamesChanged = true
        }
    }

    // MARK: Start-up

    /// Whether any template's offer is still unknown.
    public var isStarting: Bool {
        startingNow.load(ordering: .relaxed)
    }

    /// Whether some instance has not finished its first handshake yet, whether or not lists
    /// still wait for it: what it offers may still come.
    public var hasStartingInstances: Bool {
        state.withLock { state in state.instances.values.contains { $0.state == .starting } }
    }

    /// The templates whose offer is still unknown: an instance is in its start-up window and none
    /// is in the catalog yet.
    public var startingTemplates: [String] {
        state.withLock { $0.starting.sorted() }
    }

    /// Runs `body` once no template is starting, or after `limit`, whichever comes first: at
    /// once, before this returns, when none is.
    public func afterStartup(on eventLoop: any EventLoop, within limit: Duration, _ body: @escaping @Sendable () -> Void) {
        let waiting: Bool = state.withLock { state in
            guard !state.starting.isEmpty else { return false }
            state.sequence += 1
            let sequence = state.sequence
            let timer = eventLoop.scheduleTask(in: TimeAmount(limit)) { [self] in
                let expired: SettleWaiter? = self.state.withLock { state in
                    guard let index = state.settleWaiters.firstIndex(where: { $0.sequence == sequence }) else { return nil }
                    return state.settleWaiters.remove(at: index)
                }
                expired?.body()
            }
            state.settleWaiters.append(SettleWaiter(sequence: sequence, eventLoop: eventLoop, body: body, timeout: timer))
            return true
        }
        if !waiting { body() }
    }

    private static func setAwaiting(_ instance: Instance, _ awaiting: Bool, in state: inout State) {
        guard instance.awaitingFirstHandshake != awaiting else { return }
        state.startingMayHaveChanged = true
        instance.awaitingFirstHandshake = awaiting
        let template = instance.registration.template
        let count = state.awaiting[template, default: 0] + (awaiting ? 1 : -1)
        state.awaiting[template] = count > 0 ? count : nil
    }

    /// Works out again which templates are starting; cheap when none is.
    private static func updateStarting(_ state: inout State) {
        guard state.startingMayHaveChanged else { return }
        state.startingMayHaveChanged = false
        var starting = Set<String>()
        for template in state.awaiting.keys where !(state.templates[template]?.instances.contains(where: \.hasOffered) ?? false) {
            starting.insert(template)
        }
        state.starting = starting
    }

    /// Pins every exposed name: from now on it names the same tool. Pinned names whose templates
    /// are gone are forgotten past a bound, so that agents coming and going under new names
    /// cannot grow the table without end.
    private static func pinAll(_ state: inout State) {
        guard state.hasUnpinnedNames else { return }
        // A name several templates share under cost-aware routing is not pinned: it names a group.
        state.pinnedTools.merge(state.equivalents.isEmpty ? state.tools : state.tools.filter { state.equivalents[$0.key] == nil }) { old, _ in old }
        state.pinnedPrompts.merge(state.prompts) { old, _ in old }
        state.hasUnpinnedNames = false
        // Past the bound, and again each time the table has doubled since, the pins of tools that
        // no one offers now are let go: memory follows what is offered, at an amortised cost.
        if state.pinnedTools.count > max(100_000, 2 * state.pinnedToolsAfterPruning) {
            let offered = Set(state.tools.values)
            state.pinnedTools = state.pinnedTools.filter { offered.contains($0.value) }
            state.pinnedToolsAfterPruning = state.pinnedTools.count
        }
        if state.pinnedPrompts.count > max(100_000, 2 * state.pinnedPromptsAfterPruning) {
            let offered = Set(state.prompts.values)
            state.pinnedPrompts = state.pinnedPrompts.filter { offered.contains($0.value) }
            state.pinnedPromptsAfterPruning = state.pinnedPrompts.count
        }
    }

    public enum StateChangeError: Error, Sendable, CustomStringConvertible {
        case unknownAgent(String)
        case notAllowed(String)
        public var description: String {
            switch self {
            case .unknownAgent(let id): "no agent \"\(id)\""
            case .notAllowed(let reason): reason
            }
        }
    }

    /// MAINTENANCE (out of rotation) or back to normal service.
    public func setMaintenance(_ id: InstanceID, _ on: Bool) throws(StateChangeError) {
        let outcome: Result<Void, StateChangeError> = mutateResult { state in
            guard let instance = state.instances[id] else { return .failure(.unknownAgent(id.rawValue)) }
            switch (instance.lifecycle, on) {
            case (.ready, true):
                instance.lifecycle = .maintenance
            case (.maintenance, false):
                instance.lifecycle = instance.endpoint == nil ? .starting : .ready
            case (.maintenance, true), (.ready, false):
                break
            default:
                return .failure(.notAllowed("agent \(id) is \(instance.state.rawValue) and cannot go \(on ? "into" : "out of") maintenance"))
            }
            return .success(())
        }
        try outcome.get()
    }

    /// No new work; `onDrained` fires once in-flight calls have finished.
    public func drain(_ id: InstanceID) throws(StateChangeError) {
        var drainedNow = false
        let outcome: Result<Void, StateChangeError> = mutateResult { state in
            guard let instance = state.instances[id] else { return .failure(.unknownAgent(id.rawValue)) }
            if case .offline = instance.lifecycle { return .failure(.notAllowed("agent \(id) is already offline")) }
            instance.lifecycle = .draining
            drainedNow = instance.inFlight == 0
            return .success(())
        }
        try outcome.get()
        if drainedNow { notifyDrained(id) }
    }

    /// Makes a version waiting for activation the active one; the version before stays for a
    /// rollback. Returns the version that was active.
    public func activate(template: String, version: String) throws(StateChangeError) -> String? {
        let outcome: Result<String?, StateChangeError> = mutateResult { state in
            guard state.templates[template] != nil || state.activeVersion[template] != nil else { return .failure(.unknownAgent(template)) }
            if state.activeVersion[template] == version { return .success(version) }
            guard state.pendingVersions[template]?.contains(version) ?? false
                || state.rolledBack[template]?.contains(version) ?? false
            else {
                let waiting = state.pendingVersions[template].map { $0.sorted().joined(separator: ", ") } ?? ""
                return .failure(.notAllowed(
                    "template \(template) has no version \(version) waiting for activation\(waiting.isEmpty ? "" : " (waiting: \(waiting))")"))
            }
            let before = state.activeVersion[template]
            state.pendingVersions[template]?.remove(version)
            state.rolledBack[template]?.remove(version)
            state.versionHistory[template, default: []].append(version)
            state.activeVersion[template] = version
            Self.recount(template: template, in: &state)
            return .success(before)
        }
        return try outcome.get()
    }

    /// Makes `version` the active one, whatever it was before: the end of a rollout the
    /// gateway ran itself (its instances took calls as a canary until now).
    public func promote(template: String, version: String) {
        mutate { state in
            guard state.activeVersion[template] != version else { return }
            state.pendingVersions[template]?.remove(version)
            state.rolledBack[template]?.remove(version)
            state.versionHistory[template, default: []].removeAll { $0 == version }
            state.versionHistory[template, default: []].append(version)
            state.activeVersion[template] = version
            Self.recount(template: template, in: &state)
        }
    }

    /// Makes the version before the active one active again and returns the newer one's
    /// instances, which the caller drains.
    public func rollback(template: String) throws(StateChangeError) -> (from: String, to: String, instances: [InstanceID]) {
        let outcome: Result<(String, String, [InstanceID]), StateChangeError> = mutateResult { state in
            guard let history = state.versionHistory[template], let active = state.activeVersion[template] else {
                return .failure(.unknownAgent(template))
            }
            guard let index = history.firstIndex(of: active), index > 0 else {
                return .failure(.notAllowed("template \(template) has no version before \(active) to roll back to"))
            }
            let previous = history[index - 1]
            let instances = state.templates[template]?.instances ?? []
            guard instances.contains(where: { $0.registration.version == previous && $0.isPresent }) else {
                return .failure(.notAllowed("no instance of \(template) version \(previous) is running"))
            }
            state.activeVersion[template] = previous
            state.versionHistory[template] = Array(history.prefix(index))
            state.rolledBack[template, default: []].insert(active)
            Self.recount(template: template, in: &state)
            let newer = instances.filter { $0.registration.version == active }.map(\.id)
            return .success((active, previous, newer))
        }
        let (from, to, instances) = try outcome.get()
        return (from, to, instances)
    }

    public func heartbeat(_ id: InstanceID, usage: JSONValue?) -> Bool {
        state.withLock { state in
            guard let instance = state.instances[id] else { return false }
            instance.lastHeartbeat = Date()
            if let usage { instance.reportedUsage = usage }
            return true
        }
    }

    /// Health from a probe: consecutive failures degrade, then mark unhealthy (out of rotation).
    public func recordProbe(_ id: InstanceID, succeeded: Bool) {
        mutate { state in
            guard let instance = state.instances[id] else { return }
            if succeeded {
                instance.consecutiveFailures = 0
                instance.health = .healthy
                instance.lastHeartbeat = Date()
            } else {
                instance.consecutiveFailures += 1
                instance.health = instance.consecutiveFailures >= 3 ? .unhealthy : .degraded
            }
        }
    }

    // MARK: Catalog

    /// Exposed tool definitions (with exposed names), in name order.
    /// Listing pins the names: a client may cache them.
    /// The tools offered; with a `tenant`, those of agents its requests may use.
    public func toolDefinitions(visibleTo tenant: String? = nil) -> [(name: String, definition: RawJSON)] {
        state.withLock { state in
            Self.pinAll(&state)
            return state.tools.keys.sorted().compactMap { exposed in
                let origin = state.tools[exposed]!
                guard Self.isVisible(template: origin.template, to: tenant, in: state) else { return nil }
                guard let definition = Self.definition(of: origin, kind: .tool, in: state) else { return nil }
                return (exposed, definition)
            }
        }
    }

    /// The prompts offered; with a `tenant`, those of agents its requests may use.
    public func promptDefinitions(visibleTo tenant: String? = nil) -> [(name: String, definition: RawJSON)] {
        state.withLock { state in
            Self.pinAll(&state)
            return state.prompts.keys.sorted().compactMap { exposed in
                let origin = state.prompts[exposed]!
                guard Self.isVisible(template: origin.template, to: tenant, in: state) else { return nil }
                guard let definition = Self.definition(of: origin, kind: .prompt, in: state) else { return nil }
                return (exposed, definition)
            }
        }
    }

    /// Resources of every template's active instances, deduplicated by URI, with the template
    /// that serves each.
    public func resources(visibleTo tenant: String? = nil) -> (resources: [RawJSON], templates: [RawJSON]) {
        state.withLock { state in
            var seen = Set<String>()
            var resources: [RawJSON] = []
            var templates: [RawJSON] = []
            var seenTemplates = Set<String>()
            for instance in Self.catalogInstances(state) where instance.isVisible(to: tenant) {
                for resource in instance.offer.resources {
                    let uri = resource.member("uri")?.stringValue ?? ""
                    if seen.insert(uri).inserted { resources.append(resource) }
                }
                for template in instance.offer.resourceTemplates {
                    let uri = template.member("uriTemplate")?.stringValue ?? ""
                    if seenTemplates.insert(uri).inserted { templates.append(template) }
                }
            }
            return (resources, templates)
        }
    }

    /// The template serving resource `uri`: one that lists it, else one whose template prefix
    /// matches.
    public func templateServing(resource uri: String) -> String? {
        state.withLock { state in
            let instances = Self.catalogInstances(state)
            if let exact = instances.first(where: { $0.offer.resources.contains { $0.member("uri")?.stringValue == uri } }) {
                return exact.registration.template
            }
            return instances.first { instance in
                instance.offer.resourceTemplates.contains { template in
                    guard let pattern = template.member("uriTemplate")?.stringValue else { return false }
                    let prefix = pattern.prefix { $0 != "{" }
                    return !prefix.isEmpty && uri.hasPrefix(prefix)
                }
            }?.registration.template
        }
    }

    // MARK: Selection

    /// Reserves a slot on the best instance for `exposedName`: a ready, healthy instance of the
    /// active version with free capacity, least loaded first. When every instance is busy (or
    /// restarting) the call waits, first come first served, up to `timeout`.
    ///
    /// A nested call (made by an agent while serving a call) waits ahead of top-level calls, so
    /// that the agents it waits on cannot be starved of capacity by new work.
    public func acquire(
        _ kind: OfferKind, _ exposedName: String, on eventLoop: any EventLoop, timeout: Duration,
        constraints: Constraints = Constraints(), nested: Bool = false
    ) -> EventLoopFuture<Lease> {
        switch acquisition(kind, exposedName, on: eventLoop, timeout: timeout, constraints: constraints, nested: nested) {
        case .leased(let lease): return eventLoop.makeSucceededFuture(lease)
        case .refused(let error): return eventLoop.makeFailedFuture(error)
        case .waiting(let future): return future
        }
    }

    /// How `acquire` went, without a future when it is decided at once (the common case on
    /// the per-call path).
    public enum Acquisition: Sendable {
        case leased(Lease)
        case refused(AcquireError)
        /// Every instance is busy: the lease comes when one frees up, or the wait times out.
        case waiting(EventLoopFuture<Lease>)
    }

    /// `acquire`, answering at once when it can.
    public func acquisition(
        _ kind: OfferKind, _ exposedName: String, on eventLoop: any EventLoop, timeout: Duration,
        constraints: Constraints = Constraints(), nested: Bool = false
    ) -> Acquisition {
        var wakes: String?
        let acquisition: Acquisition = state.withLock { state in
            guard let origin = Self.lookUp(kind, exposedName, in: &state) else {
                guard !state.starting.isEmpty else { return .refused(Self.unknownName(kind, exposedName, in: state)) }
                // A template that may offer it is starting: wait for its offer like for capacity.
                return .waiting(Self.enqueueWaiter(
                    kind, exposedName, origin: nil, constraints: constraints, nested: nested, on: eventLoop, timeout: timeout, in: &state, registry: self))
            }
            if !state.equivalents.isEmpty, kind == .tool, let lease = Self.reserveCheapest(exposedName, in: &state, registry: self, constraints: constraints) {
                return .leased(lease)
            }
            if let lease = Self.reserve(origin, kind: kind, in: &state, registry: self, constraints: constraints) { return .leased(lease) }
            let instances = state.templates[origin.template]?.instances ?? []
            let present = instances.filter { $0.isPresent && $0.isVisible(to: constraints.tenant) }
            guard !present.isEmpty else {
                // Another tenant's agents: for this tenant the name is nobody's.
                if constraints.tenant != nil, !instances.contains(where: { $0.isVisible(to: constraints.tenant) }) {
                    return .refused(Self.unknownName(kind, exposedName, in: state))
                }
                return .refused(.noAgentAvailable(tool: exposedName, template: origin.template, reason: "every instance is offline"))
            }
            guard present.contains(where: { !constraints.excluding.contains($0.id) }) else {
                return .refused(.noAgentAvailable(
                    tool: exposedName, template: origin.template,
                    reason: "every instance is already in this call's chain, so the call would wait on itself"))
            }
            if present.allSatisfy(\.dormant) { wakes = origin.template }
            return .waiting(Self.enqueueWaiter(
                kind, exposedName, origin: origin, constraints: constraints, nested: nested, on: eventLoop, timeout: timeout, in: &state, registry: self))
        }
        if let wakes { observers.withLock { $0.demandWhileDormant }.forEach { $0(wakes) } }
        return acquisition
    }

    private static func enqueueWaiter(
        _ kind: OfferKind, _ exposedName: String, origin: ToolNaming.Origin?, constraints: Constraints, nested: Bool,
        on eventLoop: any EventLoop, timeout: Duration, in state: inout State, registry: AgentRegistry
    ) -> EventLoopFuture<Lease> {
        state.sequence += 1
        let sequence = state.sequence
        let promise = eventLoop.makePromise(of: Lease.self)
        let timer = eventLoop.scheduleTask(in: TimeAmount(timeout)) { [registry] in
            let expired: Waiter? = registry.state.withLock { state in
                guard let index = state.waiters.firstIndex(where: { $0.sequence == sequence }) else { return nil }
                return state.waiters.remove(at: index)
            }
            guard let expired else { return }
            if let origin = expired.origin {
                expired.promise.fail(AcquireError.timedOut(tool: exposedName, template: origin.template, waited: timeout))
            } else {
                expired.promise.fail(AcquireError.notYetOffered(tool: exposedName, starting: registry.startingTemplates, waited: timeout))
            }
        }
        let waiter = Waiter(
            sequence: sequence, kind: kind, exposedName: exposedName, origin: origin, constraints: constraints, promise: promise, timeout: timer)
        if nested, let firstTopLevel = state.waiters.firstIndex(where: { $0.constraints.excluding.isEmpty }) {
            state.waiters.insert(waiter, at: firstTopLevel)
        } else {
            state.waiters.append(waiter)
        }
        return promise.futureResult
    }

    /// The origin `name` names now, or nil. A name that resolves is pinned: it keeps naming
    /// that tool. (Why a name does not resolve is worked out apart, off the common path.)
    @inline(__always)
    private static func lookUp(_ kind: OfferKind, _ name: String, in state: inout State) -> ToolNaming.Origin? {
        switch kind {
        case .resource(let template):
            return ToolNaming.Origin(template: template, name: name)
        case .tool, .prompt:
            guard let found = (kind == .tool ? state.tools : state.prompts)[name] else { return nil }
            if state.hasUnpinnedNames, state.equivalents.isEmpty || state.equivalents[name] == nil { pin(kind, name, found, in: &state) }
            return found
        }
    }

    private static func pin(_ kind: OfferKind, _ name: String, _ origin: ToolNaming.Origin, in state: inout State) {
        if kind == .tool, state.pinnedTools[name] == nil { state.pinnedTools[name] = origin }
        if kind == .prompt, state.pinnedPrompts[name] == nil { state.pinnedPrompts[name] = origin }
    }

    /// Unknown, or offered by several templates under other names.
    private static func unknownName(_ kind: OfferKind, _ name: String, in state: State) -> AcquireError {
        if let candidates = (kind == .prompt ? state.ambiguousPrompts : state.ambiguousTools)[name] {
            return .ambiguous(name, candidates: candidates)
        }
        return .unknownTool(name)
    }

    fileprivate func finish(_ lease: Lease, succeeded: Bool?, answeredWithError: Bool = false) {
        var drained = false
        mutate { state in
            let instance = lease.entry
            guard instance.isRegistered else { return }
            let now = ContinuousClock.now
            if instance.inFlight > 0 { instance.inFlight -= 1 }
            if answeredWithError { instance.answeredWithError += 1 }
            if let succeeded {
                if succeeded { instance.completed += 1 } else { instance.failed += 1 }
                instance.totalLatency += now - lease.started
                instance.performance[lease.originalName, default: ToolPerformance()].record(latency: now - lease.started, succeeded: succeeded)
                let wasOpen = instance.circuit.state == .open
                instance.circuit.record(succeeded: succeeded, now: now)
                if !wasOpen, instance.circuit.state == .open { circuitOpenings.add(1, ordering: .relaxed) }
            } else {
                instance.circuit.release()
            }
            drained = instance.lifecycle == .draining && instance.inFlight == 0
        }
        if drained { notifyDrained(lease.instance) }
    }

    /// Which instances may take a call beyond offering it.
    public struct Constraints: Sendable {
        /// Capability tags (or tool names) every candidate must carry.
        public var requiredCapabilities: [String] = []
        /// Instances not to use while another candidate exists (earlier attempts of a task).
        public var avoiding: Set<InstanceID> = []
        /// An instance to use if it can take the call (a sticky routing key's agent).
        public var preferred: InstanceID?
        /// Instances never to use (those already in a nested call's chain).
        public var excluding: Set<InstanceID> = []
        /// The least share of `requiredCapabilities` a candidate must carry (1: all). Below 1,
        /// the best-matching candidates are chosen and the lease says how well they match.
        public var minimumMatch = 1.0
        /// Only instances of this replica (a task dispatcher claims work for its own agents).
        public var localOnly = false
        /// Only instances this tenant's requests may use (nil: any).
        public var tenant: String?
        /// Instances of this zone first, others when none of it can take the call (nil: the
        /// registry's own zone, that of the replica it serves).
        public var preferredZone: String?
        public init(
            requiredCapabilities: [String] = [], avoiding: Set<InstanceID> = [], preferred: InstanceID? = nil, excluding: Set<InstanceID> = []
        ) {
            self.requiredCapabilities = requiredCapabilities
            self.avoiding = avoiding
            self.preferred = preferred
            self.excluding = excluding
        }
    }

    public enum Attempt: Sendable {
        case leased(Lease)
        /// Candidates exist but none can take the call now (all busy, or circuits open).
        case busy
        case refused(AcquireError)
    }

    /// Reserves a slot now or says why not; never waits. The task dispatcher uses it and retries
    /// when capacity frees up (`onCapacityFreed`).
    public func tryAcquire(_ kind: OfferKind, _ name: String, constraints: Constraints) -> Attempt {
        var wakes: String?
        let attempt: Attempt = state.withLock { state in
            guard let origin = Self.lookUp(kind, name, in: &state) else {
                // A starting template may offer it: the task waits.
                return state.starting.isEmpty ? .refused(Self.unknownName(kind, name, in: state)) : .busy
            }
            if !state.equivalents.isEmpty, kind == .tool, let lease = Self.reserveCheapest(name, in: &state, registry: self, constraints: constraints) {
                return .leased(lease)
            }
            if let lease = Self.reserve(origin, kind: kind, in: &state, registry: self, constraints: constraints) { return .leased(lease) }
            let eligible = (state.templates[origin.template]?.instances ?? []).contains { instance in
                instance.isPresent && Self.carries(instance, constraints.requiredCapabilities, minimum: constraints.minimumMatch)
            }
            guard eligible else {
                let reason = constraints.requiredCapabilities.isEmpty
                    ? "every instance is offline" : "no instance carries \(constraints.requiredCapabilities.joined(separator: ", "))"
                return .refused(.noAgentAvailable(tool: name, template: origin.template, reason: reason))
            }
            if (state.templates[origin.template]?.instances ?? []).allSatisfy({ $0.dormant || !$0.isPresent }) { wakes = origin.template }
            return .busy
        }
        if let wakes { observers.withLock { $0.demandWhileDormant }.forEach { $0(wakes) } }
        return attempt
    }

    /// Called (outside the lock) after every change that may free capacity (a call finished, an
    /// instance became ready or left maintenance), so that waiting work can be dispatched.
    public func onCapacityFreed(_ observer: @escaping @Sendable () -> Void) {
        observers.withLock { $0.capacityFreed.append(observer) }
    }

    /// The share of `required` capability tags (or tool names) the instance carries, 1 when
    /// nothing is required: the confidence that it is the agent the work asks for.
    private static func matchConfidence(_ instance: Instance, _ required: [String]) -> Double {
        guard !required.isEmpty else { return 1 }
        let carried = required.filter { tag in
            instance.registration.capabilities.contains(tag) || instance.offer.tools.contains { $0.name == tag }
        }
        return Double(carried.count) / Double(required.count)
    }

    private static func carries(_ instance: Instance, _ required: [String], minimum: Double = 1) -> Bool {
        matchConfidence(instance, required) >= minimum - 1e-9
    }

    /// The best instance for the call, reserved; nil when none can take it now. One pass over
    /// the template's instances, reading them in place: the best is the one that matches the
    /// required capabilities best, then one not avoided (an earlier attempt's), then the
    /// preferred (sticky) one, then the cheapest.
    private static func reserve(
        _ origin: ToolNaming.Origin, kind: OfferKind, in state: inout State, registry: AgentRegistry,
        constraints: Constraints = Constraints()
    ) -> Lease? {
        guard let entry = state.templates[origin.template] else { return nil }
        var active = state.activeVersion[origin.template]
        // A rollout shares the template's calls: each call draws its version by the canary's
        // share (the golden ratio's multiples spread the draws evenly, no run of calls to one
        // version); if none of that version can take it, the other version does.
        var otherVersion: String??
        if !state.canary.isEmpty, let canary = state.canary[origin.template] {
            state.canaryDraws &+= 1
            let draw = (Double(state.canaryDraws % 1_000_000) * 0.618_033_988_749_895).truncatingRemainder(dividingBy: 1)
            otherVersion = draw < canary.share ? active : canary.version
            if draw < canary.share { active = canary.version }
        }
        let now = ContinuousClock.now
        let required = constraints.requiredCapabilities
        let zone = state.localZone == nil && constraints.preferredZone == nil ? nil : constraints.preferredZone ?? state.localZone
        var best: Candidate?
        while true {
            for instance in entry.instances {
                guard instance.lifecycle == .ready, instance.health != .unhealthy, instance.endpoint != nil,
                    instance.inFlight < instance.registration.maximumConcurrency,
                    instance.registration.version == active, instance.circuit.wouldAdmit(now: now),
                    !(constraints.localOnly && instance.registration.replica != nil),
                    constraints.excluding.isEmpty || !constraints.excluding.contains(instance.id),
                    instance.isVisible(to: constraints.tenant)
                else { continue }
                switch kind {
                case .tool: guard instance.toolNames.contains(origin.name) else { continue }
                case .prompt: guard instance.promptNames.contains(origin.name) else { continue }
                case .resource: break
                }
                let match = required.isEmpty ? 1 : matchConfidence(instance, required)
                guard match >= constraints.minimumMatch - 1e-9 else { continue }
                let candidate = Candidate(
                    instance: instance, match: match,
                    fresh: constraints.avoiding.isEmpty || !constraints.avoiding.contains(instance.id),
                    preferred: constraints.preferred == instance.id, inZone: zone == nil || instance.registration.zone == zone,
                    cost: cost(instance, origin.name))
                if let current = best, !candidate.isBetter(than: current) { continue }
                best = candidate
            }
            guard best == nil, case .some(let other) = otherVersion else { break }
            active = other
            otherVersion = nil
        }
        guard let chosen = best?.instance, let endpoint = chosen.endpoint else { return nil }
        state.sequence += 1
        _ = chosen.circuit.admit(now: now)
        chosen.inFlight += 1
        chosen.lastAssigned = state.sequence
        return Lease(
            instance: chosen.id, instanceName: chosen.registration.name, template: origin.template, endpoint: endpoint,
            originalName: origin.name, callTimeout: chosen.registration.callTimeout,
            matchConfidence: best!.match, registry: registry, entry: chosen, started: now
        )
    }

    /// For a name several templates offer: the cheapest template that holds the latency
    /// objective and can take the call now, then the dearer ones; nil when none can.
    private static func reserveCheapest(
        _ name: String, in state: inout State, registry: AgentRegistry, constraints: Constraints
    ) -> Lease? {
        guard let group = state.equivalents[name], let routing = state.costRouting else { return nil }
        let holding = group.filter { origin in
            let latencies = (state.templates[origin.template]?.instances ?? []).compactMap { instance -> Double? in
                guard let performance = instance.performance[origin.name], performance.calls >= ToolPerformance.warmUpCalls else { return nil }
                return performance.averageLatencyMilliseconds
            }
            // Not yet measured: given its chance.
            return latencies.isEmpty || latencies.reduce(0, +) / Double(latencies.count) <= routing.latencyObjectiveMilliseconds
        }
        // One call in 32 goes by cost alone: a cheaper template that was slow gets measured
        // again, and is chosen again once it holds the objective.
        state.costProbes &+= 1
        let order = state.costProbes % 32 == 0 ? group : holding + group.filter { !holding.contains($0) }
        for origin in order {
            if let lease = reserve(origin, kind: .tool, in: &state, registry: registry, constraints: constraints) { return lease }
        }
        return nil
    }

    private struct Candidate {
        var instance: Instance
        var match: Double
        var fresh: Bool
        var preferred: Bool
        var inZone: Bool
        var cost: (Double, UInt64)

        func isBetter(than other: Candidate) -> Bool {
            if abs(match - other.match) > 1e-9 { return match > other.match }
            if fresh != other.fresh { return fresh }
            if preferred != other.preferred { return preferred }
            // The caller's zone first; another zone only when none of it can take the call.
            if inZone != other.inZone { return inZone }
            return cost < other.cost
        }
    }

    /// The expected cost of giving `instance` one more call: learned latency, stretched by its
    /// load and divided by its learned success rate. Instances not yet warmed up cost nothing
    /// (optimism, so they get tried); ties go to the one assigned least recently.
    private static func cost(_ instance: Instance, _ tool: String) -> (Double, UInt64) {
        let performance = instance.performance[tool] ?? ToolPerformance()
        // Not yet warmed up: cost nothing, so that a new instance is tried before the averages
        // decide (at most `warmUpCalls` calls).
        let latency = performance.calls < ToolPerformance.warmUpCalls ? 0.0 : max(performance.averageLatencyMilliseconds, 0.01)
        let success = performance.calls < ToolPerformance.warmUpCalls ? 1.0 : max(performance.successRate, 0.02)
        let load = Double(instance.inFlight + 1) / Double(max(instance.registration.maximumConcurrency, 1))
        guard instance.registration.replica != nil else { return (latency * (1 + load) / success, instance.lastAssigned) }
        // Another replica's agent costs a hop through Redis: before anything is learned it
        // counts as a millisecond, so that a free local instance goes first.
        let remoteLatency = performance.calls < ToolPerformance.warmUpCalls ? 1.0 : latency
        return (remoteLatency * (1 + load) / success, instance.lastAssigned)
    }

    // MARK: Views

    public struct Filter: Sendable {
        public var state: AgentState?
        public var capability: String?
        public var agentType: String?
        public var template: String?
        /// Only agents this tenant's requests may use.
        public var tenant: String?
        public init(state: AgentState? = nil, capability: String? = nil, agentType: String? = nil, template: String? = nil, tenant: String? = nil) {
            self.state = state
            self.capability = capability
            self.agentType = agentType
            self.template = template
            self.tenant = tenant
        }
    }

    public func list(_ filter: Filter = Filter()) -> [JSONValue] {
        let replica = localReplica.withLock { $0 }
        return state.withLock { state in
            state.instances.values.sorted { $0.id < $1.id }.filter { instance in
                if let wanted = filter.state, instance.state != wanted { return false }
                if let wanted = filter.agentType, instance.registration.agentType != wanted { return false }
                if let wanted = filter.template, instance.registration.template != wanted { return false }
                if !instance.isVisible(to: filter.tenant) { return false }
                if let wanted = filter.capability {
                    let tags = instance.registration.capabilities + instance.offer.tools.map(\.name)
                    if !tags.contains(wanted) { return false }
                }
                return true
            }.map { Self.status(of: $0, in: state, localReplica: replica) }
        }
    }

    public func status(_ id: InstanceID) -> JSONValue? {
        let replica = localReplica.withLock { $0 }
        return state.withLock { state in state.instances[id].map { Self.status(of: $0, in: state, localReplica: replica) } }
    }

    public func instances(ofTemplate template: String) -> [InstanceID] {
        state.withLock { state in state.instances.values.filter { $0.registration.template == template }.map(\.id).sorted() }
    }

    public func instance(named nameOrID: String) -> InstanceID? {
        state.withLock { state in
            if state.instances[InstanceID(nameOrID)] != nil { return InstanceID(nameOrID) }
            return state.instances.values.first { $0.registration.name == nameOrID }?.id
        }
    }

    /// The name a client calls an instance's tool (or prompt) by, given the name its agent
    /// knows it by; nil when the instance does not offer it.
    public func exposedName(_ kind: OfferKind, of originalName: String, offeredBy id: InstanceID) -> String? {
        state.withLock { state in
            guard let template = state.instances[id]?.registration.template else { return nil }
            let catalog = kind == .prompt ? state.prompts : state.tools
            return catalog.first { $0.value.template == template && $0.value.name == originalName }?.key
        }
    }

    public func templateOf(_ id: InstanceID) -> String? {
        state.withLock { $0.instances[id]?.registration.template }
    }

    /// Why no instance, here or on another replica, could ever take the call (nil when one
    /// could, now or once it is free). Reserves nothing.
    public func refusal(_ kind: OfferKind, _ name: String, constraints: Constraints) -> AcquireError? {
        state.withLock { state in
            guard let origin = Self.lookUp(kind, name, in: &state) else {
                return state.starting.isEmpty ? Self.unknownName(kind, name, in: state) : nil
            }
            let eligible = (state.templates[origin.template]?.instances ?? []).contains { instance in
                instance.isPresent
                    && !(constraints.localOnly && instance.registration.replica != nil)
                    && instance.isVisible(to: constraints.tenant)
                    && Self.carries(instance, constraints.requiredCapabilities, minimum: constraints.minimumMatch)
            }
            guard !eligible else { return nil }
            let reason = constraints.requiredCapabilities.isEmpty
                ? (constraints.tenant == nil ? "every instance is offline" : "no instance this tenant may use is online")
                : "no instance carries \(constraints.requiredCapabilities.joined(separator: ", "))"
            return .noAgentAvailable(tool: name, template: origin.template, reason: reason)
        }
    }

    /// Whether any present instance, here or on another replica, offers the tool.
    public func offersTool(_ exposedName: String) -> Bool {
        state.withLock { $0.tools[exposedName] != nil }
    }

    /// One instance as other replicas need to know it.
    public struct InstanceSnapshot: Sendable {
        public var id: InstanceID
        public var registration: Registration
        public var offer: AgentOffer
        public var state: AgentState
        public var health: AgentHealth
        public var inFlight: Int
    }

    /// This replica's own present instances, for the replica directory.
    public func localSnapshots() -> [InstanceSnapshot] {
        state.withLock { state in
            // An instance still starting has nothing to offer yet: other replicas hear of it once it
            // has, so that it never ends their start-up window nor takes their calls early.
            state.instances.values.filter { $0.registration.replica == nil && $0.isPresent && $0.hasOffered }.sorted { $0.id < $1.id }.map {
                InstanceSnapshot(id: $0.id, registration: $0.registration, offer: $0.offer, state: $0.state, health: $0.reportedHealth, inFlight: $0.inFlight)
            }
        }
    }

    /// The instances this replica runs itself (not those of other replicas).
    /// Whether the instance runs at this replica (not one another replica reported).
    public func isLocal(_ id: InstanceID) -> Bool {
        state.withLock { $0.instances[id].map { $0.registration.replica == nil } ?? true }
    }

    /// Whether `id` is an instance this process runs or holds the connection of (false for an
    /// unknown id, unlike `isLocal`).
    public func isKnownLocal(_ id: InstanceID) -> Bool {
        state.withLock { $0.instances[id].map { $0.registration.replica == nil } ?? false }
    }

    public func localInstances() -> [InstanceID] {
        state.withLock { state in state.instances.values.filter { $0.registration.replica == nil }.map(\.id).sorted() }
    }

    /// The instances that run on `replica`.
    public func instances(onReplica replica: String) -> [InstanceID] {
        state.withLock { state in state.instances.values.filter { $0.registration.replica == replica }.map(\.id).sorted() }
    }

    /// Another replica's view of its instance: its health and whether it takes work.
    public func setReported(_ id: InstanceID, health: AgentHealth, takesWork: Bool) {
        mutate { state in
            guard let instance = state.instances[id], instance.registration.replica != nil else { return }
            instance.lastHeartbeat = Date()
            instance.health = health
            instance.lifecycle = takesWork ? .ready : .maintenance
        }
    }

    public func endpoint(_ id: InstanceID) -> (any AgentEndpoint)? {
        state.withLock { $0.instances[id]?.endpoint }
    }

    public func processID(_ id: InstanceID) -> Int32? {
        state.withLock { $0.instances[id]?.registration.processID }
    }

    /// Ready instances of this replica and their endpoints, for health probes (another
    /// replica's instances are probed by their own replica, which reports their health).
    public func probeTargets() -> [(InstanceID, any AgentEndpoint)] {
        state.withLock { state in
            state.instances.values.compactMap { instance in
                guard let endpoint = instance.endpoint, instance.isPresent, instance.registration.replica == nil else { return nil }
                return (instance.id, endpoint)
            }
        }
    }

    private static func status(of instance: Instance, in state: State, localReplica: String?) -> JSONValue {
        let registration = instance.registration
        let calls = instance.completed + instance.failed
        let averageMilliseconds = calls == 0 ? 0 : Double(instance.totalLatency.components.seconds * 1000)
            / Double(calls) + Double(instance.totalLatency.components.attoseconds) / 1e15 / Double(calls)
        var status: [String: JSONValue] = [
            "agentId": .string(instance.id.rawValue),
            "agentName": .string(registration.name),
            "template": .string(registration.template),
            "agentType": .string(registration.agentType),
            "kind": .string(registration.kind.rawValue),
            "version": .string(registration.version),
            "activeVersion": .bool(state.activeVersion[registration.template] == registration.version),
            "capabilities": .array(registration.capabilities.map(JSONValue.string)),
            "tools": .array(instance.offer.tools.map { .string($0.name) }),
            "currentState": .string(instance.state.rawValue),
            "healthStatus": .string(instance.reportedHealth.rawValue),
            "maxConcurrency": .integer(Int64(registration.maximumConcurrency)),
            "inFlight": .integer(Int64(instance.inFlight)),
            "performanceMetrics": [
                "tasksCompleted": .integer(Int64(instance.completed)),
                "tasksFailed": .integer(Int64(instance.failed)),
                "averageResponseTime": .double((averageMilliseconds * 1000).rounded() / 1000),
                "successRate": .double(calls == 0 ? 1 : Double(instance.completed) / Double(calls)),
                "currentLoad": .double(Double(instance.inFlight) / Double(max(registration.maximumConcurrency, 1))),
            ],
            "resourceUsage": ResourceUsage.of(processID: registration.processID) ?? instance.reportedUsage ?? ["cpu": 0, "memory": 0],
            "registeredAt": .string(registeredAtString(instance.registeredAt)),
        ]
        if state.pendingVersions[registration.template]?.contains(registration.version) ?? false {
            // Registered by its owner, waiting for `agents/activate`: it takes no traffic.
            status["awaitingActivation"] = true
        }
        if let heartbeat = instance.lastHeartbeat { status["lastHeartbeat"] = .string(registeredAtString(heartbeat)) }
        switch instance.lifecycle {
        case .failed(let reason), .offline(let reason): status["error"] = .string(reason)
        default: break
        }
        if instance.dormant { status["dormant"] = true }
        if let failure = instance.lastFailure {
            status["lastError"] = .string(failure.reason)
            status["lastErrorAt"] = .string(registeredAtString(failure.at))
        }
        if !registration.gpus.isEmpty { status["gpus"] = .array(registration.gpus.map(JSONValue.string)) }
        if !registration.isolation.isEmpty { status["isolation"] = .array(registration.isolation.map(JSONValue.string)) }
        if let zone = registration.zone { status["zone"] = .string(zone) }
        if instance.lifecycle == .draining { status["draining"] = true }
        let circuit = instance.circuit.jsonState
        var circuitObject: [String: JSONValue] = ["state": .string(circuit.state), "consecutiveFailures": .integer(Int64(circuit.failures))]
        if let retry = circuit.retryInSeconds { circuitObject["retryInSeconds"] = .double((retry * 10).rounded() / 10) }
        status["circuit"] = .object(circuitObject)
        status["learned"] = .object(instance.performance.mapValues { performance in
            [
                "calls": .integer(Int64(performance.calls)),
                "averageLatencyMs": .double((performance.averageLatencyMilliseconds * 1000).rounded() / 1000),
                "successRate": .double((performance.successRate * 1000).rounded() / 1000),
            ]
        })
        if let processID = registration.processID { status["processId"] = .integer(Int64(processID)) }
        if let configuration = registration.configuration { status["configuration"] = configuration }
        if let requirements = registration.resourceRequirements { status["resourceRequirements"] = requirements }
        if let identity = registration.identity { status["identity"] = identity }
        if let replica = registration.replica ?? localReplica { status["replica"] = .string(replica) }
        if let tenants = registration.tenants { status["tenants"] = .array(tenants.map(JSONValue.string)) }
        if let serverInfo = instance.offer.serverInfo { status["serverInfo"] = serverInfo }
        return .object(status)
    }

    private static func registeredAtString(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    // MARK: Internals

    /// Instances whose offers make up the catalog (present, of their template's active
    /// version): template by template in name order, each template's in id order.
    /// Whether `tenant`'s requests may use `template`'s agents: some instance is every tenant's
    /// or lists it. Nil: no tenancy.
    private static func isVisible(template: String, to tenant: String?, in state: State) -> Bool {
        guard let tenant, let instances = state.templates[template]?.instances, !instances.isEmpty else { return true }
        return instances.contains { $0.isVisible(to: tenant) }
    }

    /// Whether `tenant`'s requests may use what `exposedName` names (a tool or a prompt), or
    /// `template`'s resources. A name nobody offers is left to the call to refuse.
    public func serves(_ kind: OfferKind, _ exposedName: String, tenant: String?) -> Bool {
        guard let tenant, restrictedInstances.load(ordering: .relaxed) > 0 else { return true }
        return state.withLock { state in
            switch kind {
            case .tool: state.tools[exposedName].map { Self.isVisible(template: $0.template, to: tenant, in: state) } ?? true
            case .prompt: state.prompts[exposedName].map { Self.isVisible(template: $0.template, to: tenant, in: state) } ?? true
            case .resource(let template): Self.isVisible(template: template, to: tenant, in: state)
            }
        }
    }

    private static func catalogInstances(_ state: State) -> [Instance] {
        state.templates.keys.sorted().flatMap { state.templates[$0]!.instances.filter(\.isInCatalog) }
    }

    private static func definition(of origin: ToolNaming.Origin, kind: OfferKind, in state: State) -> RawJSON? {
        for instance in state.templates[origin.template]?.instances ?? [] where instance.isInCatalog {
            let offers = kind == .tool ? instance.offer.tools : instance.offer.prompts
            if let offer = offers.first(where: { $0.name == origin.name }) { return offer.definition }
        }
        return nil
    }

    /// Brings the catalog counts of `instance`'s template in line with what the instance offers
    /// now, and notes when the template's set of names changed.
    private static func recount(_ instance: Instance, in state: inout State) {
        let template = instance.registration.template
        let belongs = instance.isRegistered && instance.isPresent && state.activeVersion[template] == instance.registration.version
        let wanted = belongs ? (tools: instance.toolNames, prompts: instance.promptNames) : nil
        let before = instance.counted
        guard wanted?.tools != before?.tools || wanted?.prompts != before?.prompts else { return }
        instance.counted = wanted
        guard state.templates[template] != nil else { return }
        let toolsChanged = adjust(&state.templates[template]!.toolCounts, removing: before?.tools ?? [], adding: wanted?.tools ?? [])
        let promptsChanged = adjust(&state.templates[template]!.promptCounts, removing: before?.prompts ?? [], adding: wanted?.prompts ?? [])
        if toolsChanged || promptsChanged { state.catalogNamesChanged = true }
    }

    /// Recounts every instance of a template (its active version changed).
    private static func recount(template: String, in state: inout State) {
        for instance in state.templates[template]?.instances ?? [] { recount(instance, in: &state) }
    }

    /// Whether a name appeared or disappeared.
    private static func adjust(_ counts: inout [String: Int], removing old: Set<String>, adding new: Set<String>) -> Bool {
        var changed = false
        for name in old.subtracting(new) {
            counts[name, default: 0] -= 1
            if counts[name] == 0 {
                counts[name] = nil
                changed = true
            }
        }
        for name in new.subtracting(old) {
            counts[name, default: 0] += 1
            if counts[name] == 1 { changed = true }
        }
        return changed
    }

    /// Works the exposed names out again from every template's names; only when some
    /// template's names changed.
    private static func rebuildCatalog(_ state: inout State) -> CatalogChange {
        var toolsByTemplate: [String: [String]] = [:]
        var promptsByTemplate: [String: [String]] = [:]
        for (template, entry) in state.templates {
            if !entry.toolCounts.isEmpty { toolsByTemplate[template] = Array(entry.toolCounts.keys) }
            if !entry.promptCounts.isEmpty { promptsByTemplate[template] = Array(entry.promptCounts.keys) }
        }
        let tools = ToolNaming.catalog(offeredBy: toolsByTemplate, prefixes: state.prefixes, pinned: state.pinnedTools)
        let prompts = ToolNaming.catalog(offeredBy: promptsByTemplate, prefixes: state.prefixes, pinned: state.pinnedPrompts)
        var names = tools.names
        state.equivalents = [:]
        if let routing = state.costRouting {
            // Each bare name that several templates without a prefix offer: a group, cheapest
            // first, found from what is offered (not from what ToolNaming left ambiguous, which a
            // pin of the bare name would hide).
            var offeredBy: [String: [ToolNaming.Origin]] = [:]
            for (_, origin) in tools.names where state.prefixes[origin.template] == nil {
                offeredBy[origin.name, default: []].append(origin)
            }
            for (bare, origins) in offeredBy where origins.count > 1 {
                let ordered = origins.sorted {
                    (routing.costs[$0.template] ?? .infinity, $0.template) < (routing.costs[$1.template] ?? .infinity, $1.template)
                }
                names[bare] = ordered[0]
                state.equivalents[bare] = ordered
            }
        }
        let change = CatalogChange(tools: names != state.tools, prompts: prompts.names != state.prompts)
        state.tools = names
        state.prompts = prompts.names
        state.ambiguousTools = state.costRouting == nil ? tools.ambiguous : tools.ambiguous.filter { state.equivalents[$0.key] == nil }
        state.ambiguousPrompts = prompts.ambiguous
        state.hasUnpinnedNames = state.tools.keys.contains { state.pinnedTools[$0] == nil && state.equivalents[$0] == nil }
            || state.prompts.keys.contains { state.pinnedPrompts[$0] == nil }
        return change
    }

    /// Applies `change` (which recounts what it touched), works out the exposed names again if
    /// a template's names changed, hands freed capacity to waiters, and tells the observers,
    /// outside the lock, when the catalog changed.
    private func mutate(_ change: (inout State) -> Void) {
        let (catalogChange, granted, settled, statusChanged) = state.withLock {
            state -> (CatalogChange, [(EventLoopPromise<Lease>, Result<Lease, AcquireError>)], [SettleWaiter], [InstanceID]) in
            change(&state)
            var statusChanged: [InstanceID] = []
            if !statusChanges.ids.isEmpty {
                swap(&statusChanged, &statusChanges.ids)
            }
            let wasStarting = !state.starting.isEmpty
            if state.startingMayHaveChanged {
                Self.updateStarting(&state)
                if wasStarting != !state.starting.isEmpty { startingNow.store(!state.starting.isEmpty, ordering: .relaxed) }
            }
            var changed = CatalogChange(tools: false, prompts: false)
            if state.catalogNamesChanged {
                state.catalogNamesChanged = false
                changed = Self.rebuildCatalog(&state)
            }
            var settled: [SettleWaiter] = []
            if state.starting.isEmpty {
                // Start-up is over: the names are settled, whether a client has seen them or not.
                if state.hasUnpinnedNames { Self.pinAll(&state) }
                if wasStarting {
                    settled = state.settleWaiters
                    state.settleWaiters = []
                }
            }
            return (changed, state.waiters.isEmpty ? [] : Self.serveWaiters(&state, registry: self), settled, statusChanged)
        }
        if !statusChanged.isEmpty {
            for observer in observers.withLock({ $0.statusChanged }) { observer(statusChanged) }
        }
        for (promise, outcome) in granted { promise.completeWith(outcome.mapError { $0 as any Error }) }
        for waiter in settled {
            waiter.timeout?.cancel()
            // On the waiter's own loop: whatever ended start-up need not build every list.
            waiter.eventLoop.execute(waiter.body)
        }
        let (catalogObservers, capacityObservers) = observers.withLock { ($0.catalogChanged, $0.capacityFreed) }
        if catalogChange.tools || catalogChange.prompts {
            catalogObservers.forEach { $0(catalogChange) }
        }
        // Any change (a call finished, an instance came back or out of maintenance) may let
        // waiting work run; the task engine coalesces these into one dispatch pass.
        capacityObservers.forEach { $0() }
    }

    private func mutateResult<T>(_ change: (inout State) -> Result<T, StateChangeError>) -> Result<T, StateChangeError> {
        var result: Result<T, StateChangeError>!
        mutate { state in result = change(&state) }
        return result
    }

    /// Gives freed capacity to waiting calls, first come first served; a call whose template has
    /// no instance left at all is failed at once rather than at its timeout.
    private static func serveWaiters(_ state: inout State, registry: AgentRegistry) -> [(EventLoopPromise<Lease>, Result<Lease, AcquireError>)] {
        var outcomes: [(EventLoopPromise<Lease>, Result<Lease, AcquireError>)] = []
        var remaining: [Waiter] = []
        for var waiter in state.waiters {
            if waiter.origin == nil {
                if let origin = lookUp(waiter.kind, waiter.exposedName, in: &state) {
                    waiter.origin = origin
                } else if !state.starting.isEmpty {
                    remaining.append(waiter)
                    continue
                } else {
                    waiter.timeout?.cancel()
                    outcomes.append((waiter.promise, .failure(unknownName(waiter.kind, waiter.exposedName, in: state))))
                    continue
                }
            }
            guard let origin = waiter.origin else { continue }
            if let lease = reserve(origin, kind: waiter.kind, in: &state, registry: registry, constraints: waiter.constraints) {
                waiter.timeout?.cancel()
                outcomes.append((waiter.promise, .success(lease)))
            } else if !(state.templates[origin.template]?.instances.contains(where: \.isPresent) ?? false) {
                waiter.timeout?.cancel()
                let reason = "every instance of \(origin.template) is gone"
                outcomes.append((waiter.promise, .failure(.noAgentAvailable(tool: waiter.exposedName, template: origin.template, reason: reason))))
            } else {
                remaining.append(waiter)
            }
        }
        state.waiters = remaining
        return outcomes
    }

    private func notifyDrained(_ id: InstanceID) {
        let callbacks = observers.withLock { $0.drained }
        callbacks.forEach { $0(id) }
    }
}
