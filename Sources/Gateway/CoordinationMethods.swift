import Access
import Agents
import Backend
import FoundationEssentials
import JSONRPC
import Logging
import NIOCore
import Synchronization
import Transport

/// What the coordination methods keep their state in: shared memory and pub-sub, embedded now,
/// Redis later (same protocols, same methods).
struct CoordinationBackend: Sendable {
    var store: any KeyValueStore
    var events: any PubSub
    var clock: any BackendClock
    /// Runs until cancelled: the upkeep the backend needs (expiry sweeps for the embedded one).
    var maintenance: @Sendable () async -> Void

    /// The in-process backend. Expired keys nobody reads are swept every `sweepInterval`.
    static func embedded(clock: any BackendClock = SystemClock(), sweepInterval: Duration = .seconds(1)) -> CoordinationBackend {
        let store = InMemoryKeyValueStore(clock: clock)
        return CoordinationBackend(
            store: store, events: InMemoryPubSub(), clock: clock,
            maintenance: { await store.runExpirySweeper(every: sweepInterval) })
    }
}

/// Which memory namespaces a peer may use.
///
/// Today every peer may use every namespace. This is where a TLS client identity (chapter 12)
/// will restrict a tenant to its own: the check runs on every `memory/*` request, and a refusal
/// is `-32005` with `data: {reason, namespace}`.
struct NamespacePolicy: Sendable {
    var allows: @Sendable (_ namespace: String, _ identity: TLSPeerIdentity?, _ agent: AgentRegistry.InstanceID?) -> Bool

    static let unrestricted = NamespacePolicy { _, _, _ in true }

    /// A peer that proved who it is with a TLS client certificate is a tenant: it may use only
    /// `tenant:NAME` (and `tenant:NAME/…`) and `agent:NAME` for the names its certificate carries.
    /// Peers without a certificate (local stdio, Unix sockets, plain TCP behind a trusted network)
    /// are the operator's and may use any namespace.
    static let certificateTenants = NamespacePolicy { namespace, identity, _ in
        guard let identity else { return true }
        return identity.names.contains { name in
            namespace == "tenant:\(name)" || namespace.hasPrefix("tenant:\(name)/") || namespace == "agent:\(name)"
        }
    }
}

/// Agent communication (issue: shared memory, messaging, publish-subscribe):
/// `memory/get|set|delete|cas|list`, `events/subscribe|unsubscribe|publish` with the
/// notification `notifications/events/message`, and `messages/send` to agents by id or by
/// capability.
///
/// Backend calls of one connection run one after another, in the order the requests arrived:
/// pipelined writes to one key apply in order, and one connection's events are published in
/// order. Events reach each subscribed connection through a bounded queue per subscription,
/// drained only while the connection's socket takes more bytes; when a queue is full its oldest
/// event is dropped and counted (`dropped` in the next notification), so a slow subscriber slows
/// neither publishers nor other subscribers.
final class CoordinationMethods: Sendable {
    /// Keys and prefixes: at most this many UTF-8 bytes.
    static let maximumKeyBytes = 1_024
    static let maximumNamespaceBytes = 128
    static let maximumTopicBytes = 256
    static let maximumListLimit = 1_000
    static let defaultListLimit = 100
    /// Ten years: longer is a mistake, not a TTL.
    static let maximumTTLSeconds = 315_360_000.0
    static let maximumSubscriptionsPerConnection = 1_000
    static let defaultQueueLimit = SubscriptionLimits(messages: 1_000, bytes: 16 << 20)
    static let defaultMessageTTLSeconds = 300.0
    static let maximumMessageTTLSeconds = 86_400.0

    private let agents: AgentRegistry
    private let backend: CoordinationBackend
    private let namespaces: NamespacePolicy
    private let logger: Logger
    /// Counts each subscription against its principal's `subscriptions` quota.
    private let quotas: QuotaKeeper?
    private let connections = Mutex<[UInt64: CoordinatedConnection]>([:])
    private let counters = CoordinationCounters()
    private let publishedObservers = Mutex<[@Sendable (String, RawJSON) -> Void]>([])
    private let sentObservers = Mutex<[@Sendable (SentMessage) -> Void]>([])

    /// A message `messages/send` handed to agents: who sent it, who got it, and what it was.
    struct SentMessage: Sendable {
        var sender: AgentRegistry.InstanceID?
        var recipients: [AgentRegistry.InstanceID]
        var delivery: JSONValue
    }

    /// Called with every message sent to agents at this gateway, as it is handed to them.
    func onMessageSent(_ observer: @escaping @Sendable (SentMessage) -> Void) {
        sentObservers.withLock { $0.append(observer) }
    }

    /// Called with every event published through `events/publish` at this gateway (topic and
    /// data), after it was published: workflow event triggers. An event is published at one
    /// replica, so an observer sees it once among the replicas.
    func onPublished(_ observer: @escaping @Sendable (String, RawJSON) -> Void) {
        publishedObservers.withLock { $0.append(observer) }
    }

    /// Where each message's sent, delivered and acknowledged times are kept.
    private let messageLog: MessageLog?

    private init(
        agents: AgentRegistry, backend: CoordinationBackend, namespaces: NamespacePolicy, logger: Logger, quotas: QuotaKeeper?,
        messageLog: MessageLog?
    ) {
        self.messageLog = messageLog
        self.quotas = quotas
        self.agents = agents
        self.backend = backend
        self.namespaces = namespaces
        self.logger = logger
    }

    /// Registers the methods and returns the object that owns their per-connection state: the
    /// gateway calls its `connectionClosed(_:)` for every connection that closes, and runs its
    /// `run()` beside the listeners.
    static func register(
        in table: inout MethodTable, agents: AgentRegistry, logger: Logger,
        backend: CoordinationBackend = .embedded(), namespaces: NamespacePolicy = .certificateTenants, quotas: QuotaKeeper? = nil,
        messageLog: MessageLog? = nil
    ) -> CoordinationMethods {
        let methods = CoordinationMethods(
            agents: agents, backend: backend, namespaces: namespaces, logger: logger, quotas: quotas, messageLog: messageLog)
        table.register("memory/get") { [methods] request, context in methods.memoryGet(request, context) }
        table.register("memory/set") { [methods] request, context in methods.memorySet(request, context) }
        table.register("memory/delete") { [methods] request, context in methods.memoryDelete(request, context) }
        table.register("memory/cas") { [methods] request, context in methods.memoryCompareAndSet(request, context) }
        table.register("memory/list") { [methods] request, context in methods.memoryList(request, context) }
        table.register("events/subscribe") { [methods] request, context in methods.subscribe(request, context) }
        table.register("events/unsubscribe") { [methods] request, context in methods.unsubscribe(request, context) }
        table.register("events/publish") { [methods] request, context in methods.publish(request, context) }
        table.register("messages/send") { [methods] request, context in methods.send(request, context) }
        return methods
    }

    /// The backend's upkeep; returns when cancelled.
    func run() async {
        await backend.maintenance()
    }

    /// Ends the connection's subscriptions. Call it for every connection that closes.
    func connectionClosed(_ handle: ConnectionHandle) {
        guard let connection = connections.withLock({ $0.removeValue(forKey: handle.id) }) else { return }
        for pump in connection.close() {
            pump.stop()
            quotas?.release(pump.hold)
        }
    }

    /// Whether the connection has a subscription open (it is then never idle).
    func hasSubscriptions(_ connectionID: UInt64) -> Bool {
        connections.withLock { $0[connectionID]?.subscriptionCount ?? 0 } > 0
    }

    /// Counters for `gateway/status`.
    /// Keys in shared memory, when the backend is this process's (Redis counts its own).
    func memoryKeyCount() async -> Int? {
        (backend.store as? InMemoryKeyValueStore)?.storedKeyCount
    }

    /// Running totals since start, for the metrics.
    var totals: (published: UInt64, delivered: UInt64, dropped: UInt64, messages: UInt64) {
        (
            counters.published.load(ordering: .relaxed), counters.delivered.load(ordering: .relaxed), counters.dropped.load(ordering: .relaxed),
            counters.messages.load(ordering: .relaxed)
        )
    }

    func statusSnapshot() -> JSONValue {
        let open = connections.withLock { $0.values.reduce(0) { $0 + $1.subscriptionCount } }
        return [
            "subscriptions": .integer(Int64(open)),
            "eventsPublished": .integer(Int64(counters.published.load(ordering: .relaxed))),
            "eventsDropped": .integer(Int64(counters.dropped.load(ordering: .relaxed))),
            "messagesSent": .integer(Int64(counters.messages.load(ordering: .relaxed))),
        ]
    }

    /// The pipeline handler that tells this connection's event deliveries when its socket takes
    /// more bytes. Add it after `RPCConnectionHandler`.
    func flowControlHandler() -> EventFlowHandler {
        EventFlowHandler(coordination: self)
    }

    fileprivate func attach(_ handle: ConnectionHandle, gate: FlowGate) {
        connections.withLock { connections in
            if connections[handle.id] == nil { connections[handle.id] = CoordinatedConnection(handle: handle, gate: gate) }
        }
    }

    private func connection(_ context: MethodContext) -> CoordinatedConnection {
        connections.withLock { connections in
            if let existing = connections[context.connectionID] { return existing }
            // A connection without the flow-control handler (an agent's pipes): no gate.
            let created = CoordinatedConnection(handle: context.connection, gate: nil)
            connections[context.connectionID] = created
            return created
        }
    }

    // MARK: Memory

    private func memoryGet(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        let store = backend.store
        let immediate = store as? any ImmediateKeyValueStore
        return performOnBackend(request, context) { params in
            let key = try Self.key(params, "key")
            let namespace = try self.namespace(params, context)
            @Sendable func found(_ entry: KeyValueEntry?) -> JSONValue {
                guard let entry else { return ["key": .string(key), "found": false] }
                var result: [String: JSONValue] = [
                    "key": .string(key), "found": true, "version": .integer(entry.version),
                    // Stored as the JSON bytes that arrived; only gateways write them.
                    "value": .raw(RawJSON(unchecked: entry.value)),
                ]
                if let expiresAt = entry.expiresAt { result["expiresAt"] = .string(expiresAt.iso8601) }
                return .object(result)
            }
            return BackendCall(
                now: immediate.map { store in { found(store.getNow(key, namespace: namespace)) } },
                later: { found(try await store.get(key, namespace: namespace)) })
        }
    }

    private func memorySet(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        let store = backend.store
        let immediate = store as? any ImmediateKeyValueStore
        return performOnBackend(request, context) { params in
            let key = try Self.key(params, "key")
            let value = try Self.value(params, "value")
            let ttl = try Self.ttl(params)
            let namespace = try self.namespace(params, context)
            if let (account, accounted) = self.account(context, store) {
                let principal = context.principal.name
                return BackendCall(
                    now: (store as? InMemoryKeyValueStore).map { store in
                        {
                            do throws(MemoryQuotaExceeded) {
                                return .object(Self.written(key, try store.setNow(key, to: value.buffer, ttl: ttl, namespace: namespace, account: account)))
                            } catch { throw Self.limited(error, principal) }
                        }
                    },
                    later: {
                        do {
                            return .object(Self.written(key, try await accounted.set(key, to: value.buffer, ttl: ttl, namespace: namespace, account: account)))
                        } catch let error as MemoryQuotaExceeded { throw Self.limited(error, principal) }
                    })
            }
            return BackendCall(
                now: immediate.map { store in { .object(Self.written(key, store.setNow(key, to: value.buffer, ttl: ttl, namespace: namespace))) } },
                later: { .object(Self.written(key, try await store.set(key, to: value.buffer, ttl: ttl, namespace: namespace))) })
        }
    }

    /// A tenant's write counts towards its memory (and meets its memory quotas) when the store
    /// keeps usage; nil without tenancy.
    private func account(_ context: MethodContext, _ store: any KeyValueStore) -> (MemoryAccount, any AccountedKeyValueStore)? {
        guard let tenant = context.tenant, let accounted = store as? any AccountedKeyValueStore else { return nil }
        let settings = quotas?.settings
        let account = MemoryAccount(
            owner: tenant, maximumKeys: settings?.tenantLimit(.memoryKeys, of: tenant), maximumBytes: settings?.tenantLimit(.memoryBytes, of: tenant))
        return (account, accounted)
    }

    private static func limited(_ error: MemoryQuotaExceeded, _ principal: String) -> JSONRPCError {
        QuotaCheck(resource: error.resource == .keys ? .memoryKeys : .memoryBytes, scope: .tenant, name: error.owner, limit: error.limit)
            .refusal(principal: principal, held: error.held).jsonRPCError
    }

    private func memoryDelete(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        let store = backend.store
        let immediate = store as? any ImmediateKeyValueStore
        return performOnBackend(request, context) { params in
            let key = try Self.key(params, "key")
            let namespace = try self.namespace(params, context)
            @Sendable func deleted(_ deleted: Bool) -> JSONValue { ["key": .string(key), "deleted": .bool(deleted)] }
            if let (account, accounted) = self.account(context, store) {
                return BackendCall(
                    now: immediate.map { store in { deleted(store.deleteNow(key, namespace: namespace)) } },
                    later: { deleted(try await accounted.delete(key, namespace: namespace, account: account)) })
            }
            return BackendCall(
                now: immediate.map { store in { deleted(store.deleteNow(key, namespace: namespace)) } },
                later: { deleted(try await store.delete(key, namespace: namespace)) })
        }
    }

    private func memoryCompareAndSet(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        let store = backend.store
        let immediate = store as? any ImmediateKeyValueStore
        return performOnBackend(request, context) { params in
            let key = try Self.key(params, "key")
            guard let expected = params.member("expectedVersion"), let version = Self.integer(expected), version >= 0 else {
                throw JSONRPCError.invalidParams("\"expectedVersion\" must be an integer: the key's current version, or 0 for a key that must not exist yet")
            }
            let value = try Self.value(params, "value")
            let ttl = try Self.ttl(params)
            let namespace = try self.namespace(params, context)
            @Sendable func outcome(_ outcome: CompareAndSetOutcome) -> JSONValue {
                switch outcome {
                case .stored(let write):
                    var result = Self.written(key, write)
                    result["ok"] = true
                    return .object(result)
                case .conflict(let current):
                    return ["key": .string(key), "ok": false, "currentVersion": .integer(current)]
                }
            }
            if let (account, accounted) = self.account(context, store) {
                let principal = context.principal.name
                return BackendCall(
                    now: (store as? InMemoryKeyValueStore).map { store in
                        {
                            do throws(MemoryQuotaExceeded) {
                                return outcome(
                                    try store.compareAndSetNow(key, expectedVersion: version, to: value.buffer, ttl: ttl, namespace: namespace, account: account))
                            } catch { throw Self.limited(error, principal) }
                        }
                    },
                    later: {
                        do {
                            return outcome(
                                try await accounted.compareAndSet(key, expectedVersion: version, to: value.buffer, ttl: ttl, namespace: namespace, account: account))
                        } catch let error as MemoryQuotaExceeded { throw Self.limited(error, principal) }
                    })
            }
            return BackendCall(
                now: immediate.map { store in
                    { outcome(store.compareAndSetNow(key, expectedVersion: version, to: value.buffer, ttl: ttl, namespace: namespace)) }
                },
                later: { outcome(try await store.compareAndSet(key, expectedVersion: version, to: value.buffer, ttl: ttl, namespace: namespace)) })
        }
    }

    private func memoryList(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        let store = backend.store
        let immediate = store as? any ImmediateKeyValueStore
        return performOnBackend(request, context, paramsOptional: true) { params in
            var prefix = ""
            if let value = params.member("prefix"), value.kind != .null {
                guard let text = value.stringValue, text.utf8.count <= Self.maximumKeyBytes else {
                    throw JSONRPCError.invalidParams("\"prefix\" must be a string of at most \(Self.maximumKeyBytes) bytes")
                }
                prefix = text
            }
            var cursor: String?
            if let value = params.member("cursor"), value.kind != .null {
                guard let text = value.stringValue, !text.isEmpty else {
                    throw JSONRPCError.invalidParams("\"cursor\" must be the nextCursor of an earlier page", extra: ["cursor": .raw(value)])
                }
                cursor = text
            }
            var limit = Self.defaultListLimit
            if let value = params.member("limit"), value.kind != .null {
                guard let number = Self.integer(value), number >= 1, number <= Self.maximumListLimit else {
                    throw JSONRPCError.invalidParams("\"limit\" must be an integer from 1 to \(Self.maximumListLimit)")
                }
                limit = Int(number)
            }
            let namespace = try self.namespace(params, context)
            @Sendable func listed(_ page: KeyValuePage) -> JSONValue {
                var result: [String: JSONValue] = [
                    "keys": .array(page.entries.map { entry in
                        var item: [String: JSONValue] = ["key": .string(entry.key), "version": .integer(entry.version)]
                        if let expiresAt = entry.expiresAt { item["expiresAt"] = .string(expiresAt.iso8601) }
                        return .object(item)
                    })
                ]
                if let next = page.nextCursor { result["nextCursor"] = .string(next) }
                return .object(result)
            }
            return BackendCall(
                now: immediate.map { store in { [prefix, cursor, limit] in listed(store.listNow(namespace: namespace, prefix: prefix, after: cursor, limit: limit)) } },
                later: { [prefix, cursor, limit] in listed(try await store.list(namespace: namespace, prefix: prefix, after: cursor, limit: limit)) })
        }
    }

    private static func written(_ key: String, _ write: KeyValueWrite) -> [String: JSONValue] {
        var result: [String: JSONValue] = ["key": .string(key), "version": .integer(write.version)]
        if let expiresAt = write.expiresAt { result["expiresAt"] = .string(expiresAt.iso8601) }
        return result
    }

    /// The request's namespace: `namespace` if given, else the caller's own (an agent's is
    /// `agent:NAME`, everyone else's `default`), if the policy lets the caller use it.
    private func namespace(_ params: RawJSON, _ context: MethodContext) throws -> String {
        let namespace: String
        if let value = params.member("namespace"), value.kind != .null {
            guard let text = value.stringValue, Self.isValidNamespace(text) else {
                throw JSONRPCError.invalidParams(
                    "\"namespace\" must be 1 to \(Self.maximumNamespaceBytes) letters, digits or _ - . : @ # /",
                    extra: ["namespace": .raw(value)])
            }
            namespace = text
        } else if let agent = context.agentInstance {
            let name = agents.status(agent)?["template"]?.stringValue ?? agent.rawValue
            namespace = "agent:\(name)"
        } else if let tenant = context.peerIdentity?.names.first {
            namespace = "tenant:\(tenant)"
        } else {
            namespace = "default"
        }
        if let tenant = context.tenant {
            // With access control a tenant's namespaces are its own by construction: the stored
            // name carries the tenant, so another tenant's data is not found rather than refused.
            return TenantScope.namespace(namespace, of: tenant)
        }
        guard namespaces.allows(namespace, context.peerIdentity, context.agentInstance) else {
            throw JSONRPCError(
                code: JSONRPCError.Code.forbidden, message: "This connection may not use namespace \"\(namespace)\"",
                data: ["reason": "the namespace belongs to another tenant", "namespace": .string(namespace)])
        }
        return namespace
    }

    private static func isValidNamespace(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= maximumNamespaceBytes
            && text.unicodeScalars.allSatisfy { scalar in
                scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "_-.:@#/".unicodeScalars.contains(scalar))
            }
    }

    private static func key(_ params: RawJSON, _ name: String) throws -> String {
        guard let key = params.member(name)?.stringValue, !key.isEmpty, key.utf8.count <= maximumKeyBytes else {
            throw JSONRPCError.invalidParams("\"\(name)\" must be a non-empty string of at most \(maximumKeyBytes) bytes")
        }
        return key
    }

    private static func value(_ params: RawJSON, _ name: String) throws -> RawJSON {
        guard let value = params.member(name) else {
            throw JSONRPCError.invalidParams("\"\(name)\" is required (any JSON value, null included)")
        }
        return value
    }

    private static func ttl(_ params: RawJSON) throws -> Duration? {
        guard let value = params.member("ttlSeconds"), value.kind != .null else { return nil }
        guard let seconds = number(value), seconds >= 0.001, seconds <= maximumTTLSeconds else {
            throw JSONRPCError.invalidParams("\"ttlSeconds\" must be a number of seconds from 0.001 to \(Int(maximumTTLSeconds))")
        }
        return .nanoseconds(Int64((seconds * 1e9).rounded(.up)))
    }

    // MARK: Events

    private func subscribe(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        let events = backend.events
        let connection = connection(context)
        let counters = self.counters
        let quotas = self.quotas
        return perform(request, context) { params in
            let topic = params.member("topic")
            let pattern = params.member("pattern")
            let tenant = context.tenant
            let filter: TopicFilter
            switch (topic, pattern) {
            case (let topic?, nil):
                guard let text = topic.stringValue, Self.isValidTopic(text) else {
                    throw JSONRPCError.invalidParams(Self.topicRule, extra: ["topic": .raw(topic)])
                }
                filter = .topic(TenantScope.topic(text, of: tenant))
            case (nil, let pattern?):
                guard let text = pattern.stringValue, !text.isEmpty, text.utf8.count <= Self.maximumTopicBytes,
                    text.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
                else {
                    throw JSONRPCError.invalidParams(
                        "\"pattern\" must be 1 to \(Self.maximumTopicBytes) printable ASCII characters, no spaces", extra: ["pattern": .raw(pattern)])
                }
                do throws(TopicPattern.SyntaxError) {
                    filter = .pattern(try TopicPattern(TenantScope.pattern(text, of: tenant)))
                } catch {
                    throw JSONRPCError.invalidParams(error.reason, extra: ["pattern": .string(text)])
                }
            default:
                throw JSONRPCError.invalidParams("events/subscribe takes exactly one of \"topic\" (a topic name) and \"pattern\" (a glob such as market.*)")
            }
            var limits = Self.defaultQueueLimit
            if let value = params.member("queueLimit"), value.kind != .null {
                guard let count = Self.integer(value), count >= 1, count <= Int64(Self.defaultQueueLimit.messages) else {
                    throw JSONRPCError.invalidParams("\"queueLimit\" must be an integer from 1 to \(Self.defaultQueueLimit.messages)")
                }
                limits.messages = Int(count)
            }
            return { [limits] () async throws -> JSONValue in
                guard connection.subscriptionCount < Self.maximumSubscriptionsPerConnection else {
                    throw JSONRPCError.invalidParams(
                        "this connection already has \(Self.maximumSubscriptionsPerConnection) subscriptions; unsubscribe from some first")
                }
                let hold = try await quotas?.acquire(.subscriptions, for: context.principal) ?? QuotaHold()
                let subscription: Subscription
                do {
                    subscription = try await events.subscribe(filter, limits: limits)
                } catch {
                    quotas?.release(hold)
                    throw error
                }
                let pump = EventPump(subscription: subscription, connection: connection, counters: counters, hold: hold)
                guard connection.add(pump) else {
                    // The connection closed while the subscription was being made.
                    pump.stop()
                    quotas?.release(hold)
                    throw JSONRPCError.internalError("the connection closed while subscribing")
                }
                pump.start()
                return ["subscriptionId": .string(subscription.id)]
            }
        }
    }

    private func unsubscribe(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        let events = backend.events
        let connection = connection(context)
        let quotas = self.quotas
        return perform(request, context) { params in
            guard let id = params.member("subscriptionId")?.stringValue else {
                throw JSONRPCError.invalidParams("\"subscriptionId\" must be the id events/subscribe returned")
            }
            return { () async throws -> JSONValue in
                // Only the connection that subscribed can end a subscription.
                guard let pump = connection.remove(id) else { return ["unsubscribed": false] }
                await events.unsubscribe(id)
                pump.stop()
                quotas?.release(pump.hold)
                let statistics = pump.subscription.statistics
                return ["unsubscribed": true, "delivered": .integer(Int64(statistics.delivered)), "dropped": .integer(Int64(statistics.dropped))]
            }
        }
    }

    private func publish(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        let events = backend.events
        let immediate = events as? any ImmediatePubSub
        let clock = backend.clock
        let counters = self.counters
        let observers = publishedObservers.withLock { $0 }
        return performOnBackend(request, context) { params in
            let (topic, data) = try Self.event(params)
            let publisher = context.agentInstance?.rawValue
            let stored = TenantScope.topic(topic, of: context.tenant)
            @Sendable func message() -> PubSubMessage {
                PubSubMessage(topic: stored, payload: data.buffer, publishedAt: clock.now(), publisher: publisher)
            }
            @Sendable func published(_ delivered: Int) -> JSONValue {
                counters.published.add(1, ordering: .relaxed)
                // Workflow triggers listen to the shared space only.
                if stored == topic { for observer in observers { observer(topic, data) } }
                return ["topic": .string(topic), "delivered": .integer(Int64(delivered))]
            }
            return BackendCall(
                now: immediate.map { events in { published(events.publishNow(message())) } },
                later: { published(try await events.publish(message())) })
        }
    }

    /// The topic and data of an `events/publish`, checked.
    private static func event(_ params: RawJSON) throws(JSONRPCError) -> (topic: String, data: RawJSON) {
        guard let topic = params.member("topic")?.stringValue, isValidTopic(topic) else {
            throw JSONRPCError.invalidParams(topicRule, extra: params.member("topic").map { ["topic": .raw($0)] } ?? [:])
        }
        return (topic, params.member("data") ?? RawJSON.null)
    }

    private static let topicRule =
        "\"topic\" must be 1 to 256 printable ASCII characters without spaces or the pattern characters * ? [ ] \\"

    private static func isValidTopic(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= maximumTopicBytes
            && text.utf8.allSatisfy { byte in
                (0x21...0x7E).contains(byte) && !"*?[]\\".utf8.contains(byte)
            }
    }

    // MARK: Messages

    private enum Recipients {
        case agent(String)
        case capability(String)
        case everyone
    }

    /// A `messages/send` request, checked.
    private struct OutgoingMessage {
        var recipients: Recipients
        var messageType: String
        var data: RawJSON
        var expectResponse: Bool
        var ttl: Duration
        var priority: Int64?

        var isBroadcast: Bool { messageType == "broadcast" }

        init(_ params: RawJSON) throws {
            messageType = "request"
            if let value = params.member("messageType"), value.kind != .null {
                guard let text = value.stringValue, ["request", "notification", "broadcast"].contains(text) else {
                    throw JSONRPCError.invalidParams(
                        "\"messageType\" must be request, notification or broadcast (a response travels as the reply to messages/deliver)")
                }
                messageType = text
            }
            let target = params.member("targetAgentId").flatMap { $0.kind == .null ? nil : $0 }
            let capability = params.member("capability").flatMap { $0.kind == .null ? nil : $0 }
            switch (target, capability) {
            case (let target?, nil):
                guard let name = target.stringValue, !name.isEmpty else {
                    throw JSONRPCError.invalidParams("\"targetAgentId\" must be an agentId or an agent name")
                }
                recipients = .agent(name)
            case (nil, let capability?):
                guard let tag = capability.stringValue, !tag.isEmpty else {
                    throw JSONRPCError.invalidParams("\"capability\" must be a capability tag")
                }
                recipients = .capability(tag)
            case (nil, nil):
                guard messageType == "broadcast" else {
                    throw JSONRPCError.invalidParams(
                        "messages/send needs \"targetAgentId\" or \"capability\" (only a broadcast may omit both: it goes to every agent)")
                }
                recipients = .everyone
            case (_?, _?):
                throw JSONRPCError.invalidParams("give \"targetAgentId\" or \"capability\", not both")
            }
            guard let data = params.member("messageData") else {
                throw JSONRPCError.invalidParams("\"messageData\" is required (any JSON value)")
            }
            self.data = data
            expectResponse = messageType == "request"
            if let value = params.member("expectResponse"), value.kind != .null {
                guard case .bool(let flag) = value.decoded() else { throw JSONRPCError.invalidParams("\"expectResponse\" must be true or false") }
                expectResponse = flag
            }
            if expectResponse && messageType != "request" {
                throw JSONRPCError.invalidParams(
                    "only a request can expect a response (a \(messageType) is delivered as a notification; tasks/scatter gathers answers from several agents)")
            }
            var seconds = CoordinationMethods.defaultMessageTTLSeconds
            if let value = params.member("ttl"), value.kind != .null {
                guard let number = CoordinationMethods.number(value), number > 0, number <= CoordinationMethods.maximumMessageTTLSeconds else {
                    throw JSONRPCError.invalidParams(
                        "\"ttl\" must be a number of seconds above 0 and at most \(Int(CoordinationMethods.maximumMessageTTLSeconds))")
                }
                seconds = number
            }
            ttl = .nanoseconds(Int64(seconds * 1e9))
            if let value = params.member("priority"), value.kind != .null {
                guard let number = CoordinationMethods.integer(value), (1...10).contains(number) else {
                    throw JSONRPCError.invalidParams("\"priority\" must be an integer from 1 (highest) to 10 (lowest)")
                }
                priority = number
            }
        }
    }

    private func send(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        guard let params = request.params, params.kind == .object else {
            return .error(.invalidParams("messages/send takes an object: targetAgentId or capability, messageType, messageData, expectResponse, ttl, priority"))
        }
        let message: OutgoingMessage
        let chosen: [Recipient]
        do {
            message = try OutgoingMessage(params)
            chosen = try choose(message.recipients, broadcast: message.isBroadcast, tenant: context.tenant)
        } catch let error as JSONRPCError {
            return .error(error)
        } catch {
            return .error(.internalError("\(error)"))
        }
        let messageID = "msg-\(UUID().uuidString.lowercased())"
        var delivery: [String: JSONValue] = [
            "messageId": .string(messageID),
            "from": .string(context.agentInstance?.rawValue ?? "client:\(context.connectionID)"),
            "messageType": .string(message.messageType),
            "messageData": .raw(message.data),
        ]
        if let priority = message.priority { delivery["priority"] = .integer(priority) }
        counters.messages.add(1, ordering: .relaxed)
        let observers = sentObservers.withLock { $0 }
        if !observers.isEmpty {
            let sent = SentMessage(sender: context.agentInstance, recipients: chosen.map(\.id), delivery: .object(delivery))
            for observer in observers { observer(sent) }
        }

        messageLog?.sent(
            messageID, sender: context.agentInstance?.rawValue ?? "client:\(context.connectionID)", recipients: chosen.map(\.id.rawValue),
            messageType: message.messageType, tenant: context.tenant)
        guard message.expectResponse, let recipient = chosen.first else {
            for recipient in chosen { recipient.endpoint.notify("notifications/messages/message", params: .object(delivery)) }
            messageLog?.delivered(messageID)
            return .result(["messageId": .string(messageID), "delivered": .integer(Int64(chosen.count))])
        }
        return deliverRequest(.object(delivery), messageID: messageID, to: recipient, ttl: message.ttl, context)
    }

    private static func visible(_ status: JSONValue, to tenant: String?) -> Bool {
        AgentMethods.isVisible(status, to: tenant)
    }

    private struct Recipient {
        var id: AgentRegistry.InstanceID
        var endpoint: any AgentEndpoint
    }

    /// The agents a message goes to: all that match for a broadcast, else the one best able to
    /// take it (in service before in maintenance, then the least loaded). With a `tenant`, only
    /// its agents and those of every tenant: another tenant's agent is not found.
    private func choose(_ recipients: Recipients, broadcast: Bool, tenant: String?) throws -> [Recipient] {
        var candidates: [JSONValue]
        switch recipients {
        case .agent(let name):
            if let id = agents.instance(named: name), let status = agents.status(id), Self.visible(status, to: tenant) {
                candidates = [status]
            } else {
                candidates = agents.list(AgentRegistry.Filter(template: name)).filter { Self.visible($0, to: tenant) }
                guard !candidates.isEmpty else {
                    throw JSONRPCError.invalidParams("no agent \"\(name)\"", extra: ["targetAgentId": .string(name)])
                }
            }
        case .capability(let tag):
            candidates = agents.list(AgentRegistry.Filter(capability: tag))
        case .everyone:
            candidates = agents.list()
        }
        candidates = candidates.filter { Self.visible($0, to: tenant) }
        var reachable: [(recipient: Recipient, inService: Bool, load: Int64)] = []
        for status in candidates {
            guard let id = status["agentId"]?.stringValue.map(AgentRegistry.InstanceID.init),
                let state = status["currentState"]?.stringValue, state != "OFFLINE", state != "ERROR",
                let endpoint = agents.endpoint(id)
            else { continue }
            let inService = state != "MAINTENANCE" && status["draining"] != .bool(true)
            reachable.append((Recipient(id: id, endpoint: endpoint), inService, status["inFlight"]?.integerValue ?? 0))
        }
        guard !reachable.isEmpty else {
            let (what, data): (String, [String: JSONValue]) = switch recipients {
            case .agent(let name): ("agent \(name) is offline", ["agent": .string(name)])
            case .capability(let tag): (candidates.isEmpty ? "no agent has capability \(tag)" : "every agent with capability \(tag) is offline", ["capability": .string(tag)])
            case .everyone: ("no agent is online", [:])
            }
            var details = data
            let reason = candidates.first?["error"]?.stringValue.map { "\(what) (\($0))" } ?? what
            details["reason"] = .string(reason)
            throw JSONRPCError(code: JSONRPCError.Code.noAgentAvailable, message: "No agent available: \(reason)", data: .object(details))
        }
        if broadcast { return reachable.map(\.recipient) }
        let best = reachable.min { lhs, rhs in
            if lhs.inService != rhs.inService { return lhs.inService }
            if lhs.load != rhs.load { return lhs.load < rhs.load }
            return lhs.recipient.id < rhs.recipient.id
        }!
        return [best.recipient]
    }

    /// Sends `messages/deliver` and relays the agent's answer. The ttl bounds the wait; when it
    /// runs out the agent is told (`notifications/cancelled`) and the sender gets -32013.
    private func deliverRequest(_ params: JSONValue, messageID: String, to recipient: Recipient, ttl: Duration, _ context: MethodContext) -> MethodReply {
        let agent = recipient.id.rawValue
        let endpoint = recipient.endpoint
        // The endpoint's own timeout is a backstop; the ttl timer below cancels first.
        let call = endpoint.call("messages/deliver", params: params, timeout: TimeAmount(ttl) + .seconds(5))
        let messageLog = self.messageLog
        messageLog?.delivered(messageID)
        let expiredFlag = ExpiryFlag()
        let timer = context.eventLoop.scheduleTask(in: TimeAmount(ttl)) {
            expiredFlag.set()
            endpoint.cancel(call.id, reason: "the message's ttl ran out")
        }
        let seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        let future = call.result.hop(to: context.eventLoop).always { _ in timer.cancel() }
            .map { response -> JSONValue in
                messageLog?.acknowledged(messageID, by: nil, outcome: "answered")
                return ["messageId": .string(messageID), "agentId": .string(agent), "response": .raw(response)]
            }
            .flatMapErrorThrowing { error -> JSONValue in
                messageLog?.ended(messageID, outcome: error is JSONRPCError ? "error" : expiredFlag.isSet ? "expired" : "failed")
                switch error {
                case let error as JSONRPCError:
                    throw error  // the agent's own answer
                case is AgentCallTimedOut,
                    is AgentCallCancelled where expiredFlag.isSet:
                    throw JSONRPCError(
                        code: JSONRPCError.Code.callTimedOut, message: "Agent \(agent) did not answer within the message's ttl",
                        data: ["agent": .string(agent), "messageId": .string(messageID), "timeoutSeconds": .double(seconds)])
                case let error as AgentEndpointClosed:
                    throw JSONRPCError(
                        code: JSONRPCError.Code.agentFailed, message: "Agent \(agent) went away before answering: \(error.reason)",
                        data: ["agent": .string(agent), "messageId": .string(messageID), "reason": .string(error.reason)])
                default:
                    throw error
                }
            }
        return .cancellable(future) { endpoint.cancel(call.id, reason: "cancelled by the sender") }
    }

    // MARK: Plumbing

    /// What a request does on the backend: `later` in a task, or `now`, on the request's event
    /// loop, when the backend lives in this process and answers without waiting.
    private struct BackendCall {
        var now: (() throws -> JSONValue)?
        var later: @Sendable () async throws -> JSONValue
    }

    /// Parses and checks the params on the event loop (errors at once), then runs the backend
    /// call after the connection's earlier backend calls.
    private func perform(
        _ request: JSONRPCRequest, _ context: MethodContext, paramsOptional: Bool = false,
        _ prepare: (RawJSON) throws -> @Sendable () async throws -> JSONValue
    ) -> MethodReply {
        performOnBackend(request, context, paramsOptional: paramsOptional) { params in BackendCall(later: try prepare(params)) }
    }

    /// Checks the params, prepares the call, and runs it: at once when it can and the
    /// connection has no earlier backend call still under way (so that a connection's calls
    /// stay in order), else after the connection's earlier calls, in a task.
    private func performOnBackend(
        _ request: JSONRPCRequest, _ context: MethodContext, paramsOptional: Bool = false,
        _ prepare: (RawJSON) throws -> BackendCall
    ) -> MethodReply {
        let params: RawJSON
        switch request.params {
        case let given? where given.kind == .object:
            params = given
        case nil where paramsOptional:
            params = .emptyObject
        default:
            return .error(.invalidParams("\(request.method) takes its params as an object"))
        }
        let call: BackendCall
        do {
            call = try prepare(params)
        } catch let error as JSONRPCError {
            return .error(error)
        } catch {
            return .error(.internalError("\(error)"))
        }
        let connection = connection(context)
        if let now = call.now, connection.isIdle {
            do {
                return .result(try now())
            } catch let error as JSONRPCError {
                return .error(error)
            } catch {
                return .error(.internalError("\(error)"))
            }
        }
        let logger = self.logger
        let method = request.method
        let future = connection.serially(call.later).flatMapErrorThrowing { error -> JSONValue in
            switch error {
            case let error as JSONRPCError: throw error
            case let error as BackendUnavailable:
                logger.error("\(method): the backend failed: \(error.reason)")
                throw JSONRPCError.backendUnavailable(error.reason)
            default:
                // Only the backend throws past the checks above (a Redis connection error).
                logger.error("\(method): the backend failed: \(error)")
                throw JSONRPCError.backendUnavailable("\(error)")
            }
        }
        return .later(future)
    }

    fileprivate static func integer(_ value: RawJSON) -> Int64? {
        guard value.kind == .number else { return nil }
        return value.decoded().integerValue
    }

    fileprivate static func number(_ value: RawJSON) -> Double? {
        switch value.decoded() {
        case .integer(let integer): return Double(integer)
        case .double(let double) where double.isFinite: return double
        default: return nil
        }
    }
}

/// Set once when a message's ttl runs out.
private final class ExpiryFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// Gateway-wide counts of coordination traffic.
private final class CoordinationCounters: Sendable {
    let published = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    let delivered = Atomic<UInt64>(0)
    let messages = Atomic<UInt64>(0)
}

/// One connection's subscriptions and the queue its backend calls wait in.
private final class CoordinatedConnection: Sendable {
    let handle: ConnectionHandle
    let gate: FlowGate?

    private struct State {
        var pumps: [Subscription.ID: EventPump] = [:]
        var closed = false
        /// Completes when the connection's latest backend call has finished.
        var tail: EventLoopFuture<Void>?
        /// Backend calls started and not yet finished.
        var pending = 0
    }

    private let state = Mutex(State())

    init(handle: ConnectionHandle, gate: FlowGate?) {
        self.handle = handle
        self.gate = gate
    }

    var subscriptionCount: Int { state.withLock { $0.pumps.count } }

    /// False when the connection has closed: the caller stops the pump.
    func add(_ pump: EventPump) -> Bool {
        state.withLock { state in
            guard !state.closed else { return false }
            state.pumps[pump.subscription.id] = pump
            return true
        }
    }

    func remove(_ id: Subscription.ID) -> EventPump? {
        state.withLock { $0.pumps.removeValue(forKey: id) }
    }

    /// Marks the connection closed and hands back its subscriptions' pumps to stop.
    func close() -> [EventPump] {
        state.withLock { state in
            state.closed = true
            defer { state.pumps = [:] }
            return Array(state.pumps.values)
        }
    }

    /// No backend call of this connection's is under way: one made now is in order.
    var isIdle: Bool { state.withLock { $0.pending == 0 } }

    /// Runs `operation` once every backend call this connection made before it has finished.
    func serially(_ operation: @escaping @Sendable () async throws -> JSONValue) -> EventLoopFuture<JSONValue> {
        let promise = handle.eventLoop.makePromise(of: JSONValue.self)
        let done = promise.futureResult.map { _ in () }.recover { _ in () }
        let previous = state.withLock { state in
            state.pending += 1
            defer { state.tail = done }
            return state.tail
        }
        done.whenComplete { [self] _ in state.withLock { $0.pending -= 1 } }
        if let previous {
            previous.whenComplete { _ in promise.completeWithTask(operation) }
        } else {
            promise.completeWithTask(operation)
        }
        return promise.futureResult
    }
}

/// Moves one subscription's queued events to its connection, on the connection's event loop,
/// only while the connection's socket takes more bytes. Everything else waits in the
/// subscription's bounded queue, where the oldest events give way to new ones.
private final class EventPump: Sendable {
    /// Events sent per turn of the event loop, so one busy subscription cannot starve the rest.
    static let burst = 32

    let subscription: Subscription
    let connection: CoordinatedConnection
    let counters: CoordinationCounters
    /// What the subscription holds of its principal's quota, given back when it ends.
    let hold: QuotaHold
    private let countedDrops = Atomic<UInt64>(0)

    init(subscription: Subscription, connection: CoordinatedConnection, counters: CoordinationCounters, hold: QuotaHold = QuotaHold()) {
        self.hold = hold
        self.subscription = subscription
        self.connection = connection
        self.counters = counters
    }

    func start() { schedule() }

    /// Ends the subscription and counts the drops no delivery reported.
    func stop() {
        subscription.cancel()
        countDrops(upTo: subscription.statistics.dropped)
    }

    private func countDrops(upTo total: UInt64) {
        let counted = countedDrops.exchange(total, ordering: .relaxed)
        if total > counted { counters.dropped.add(total - counted, ordering: .relaxed) }
    }

    private func schedule() {
        connection.handle.eventLoop.execute { self.drain() }
    }

    private func drain() {
        for _ in 0..<Self.burst {
            if let gate = connection.gate, !gate.isWritable {
                gate.whenWritable { self.drain() }
                return
            }
            guard let delivery = subscription.poll(orWhenAvailable: { self.schedule() }) else { return }
            countDrops(upTo: delivery.dropped)
            connection.handle.notify("notifications/events/message", params: Self.notification(delivery, subscription: subscription.id))
            counters.delivered.add(1, ordering: .relaxed)
        }
        schedule()
    }

    private static func notification(_ delivery: Subscription.Delivery, subscription: Subscription.ID) -> JSONValue {
        let message = delivery.message
        var params: [String: JSONValue] = [
            "subscriptionId": .string(subscription),
            "topic": .string(TenantScope.unscopedTopic(message.topic)),
            // Published as validated JSON bytes; passed on as they are.
            "data": .raw(RawJSON(unchecked: message.payload)),
            "publishedAt": .string(message.publishedAt.iso8601),
        ]
        if let publisher = message.publisher { params["publisher"] = .string(publisher) }
        if delivery.dropped > 0 { params["dropped"] = .integer(Int64(delivery.dropped)) }
        return .object(params)
    }
}

/// Whether a connection's socket takes more bytes, and who waits until it does.
final class FlowGate: Sendable {
    private let channel: any Channel
    private let waiters: NIOLoopBoundBox<[() -> Void]>

    /// On the channel's event loop.
    init(channel: any Channel) {
        self.channel = channel
        self.waiters = NIOLoopBoundBox([], eventLoop: channel.eventLoop)
    }

    var isWritable: Bool { channel.isWritable }

    /// Runs `body` (on the event loop) once the socket takes bytes again.
    func whenWritable(_ body: @escaping () -> Void) {
        if channel.isWritable {
            body()
        } else {
            waiters.value.append(body)
        }
    }

    fileprivate func writabilityChanged() {
        guard channel.isWritable, !waiters.value.isEmpty else { return }
        let ready = waiters.value
        waiters.value = []
        ready.forEach { $0() }
    }

    fileprivate func drop() {
        waiters.value = []
    }
}

/// Watches a connection's writability for its event deliveries. Sits after
/// `RPCConnectionHandler` (which never passes reads on), so it sees only channel events.
final class EventFlowHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let coordination: CoordinationMethods
    private var gate: FlowGate?

    init(coordination: CoordinationMethods) {
        self.coordination = coordination
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { attach(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        attach(context)
        context.fireChannelActive()
    }

    private func attach(_ context: ChannelHandlerContext) {
        // The connection handler in front of us registered the connection just before.
        guard gate == nil, let handle = try? context.pipeline.syncOperations.handler(type: RPCConnectionHandler.self).handle else { return }
        let gate = FlowGate(channel: context.channel)
        self.gate = gate
        coordination.attach(handle, gate: gate)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        gate?.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        gate?.drop()
        gate = nil
        context.fireChannelInactive()
    }
}
