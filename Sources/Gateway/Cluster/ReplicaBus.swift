import Agents
import Backend
import JSONRPC
import Logging
import NIOCore
import Synchronization

/// Calls between replicas over the shared pub-sub: each replica listens on its own topic, and a
/// call to an agent attached to (or spawned by) replica B travels A → B as a message, runs on B
/// like a local call (B's capacity limits and routing apply), and its outcome travels back.
///
/// Messages are JSON objects with a `kind`: `call` (from, call, instance, method, params,
/// timeoutMs), `result` (call, result), `error` (call, error), `closed` and `timeout` (call,
/// reason), `cancel` (from, call). Pub-sub delivers at most once: a lost message is a call that
/// times out at the caller; a replica that dies fails its callers' calls as soon as its
/// heartbeat lapses (`replicaLapsed`).
final class ReplicaBus: Sendable {
    let replica: String
    private let events: any PubSub
    private let agents: AgentRegistry
    private let logger: Logger
    private let clock: any BackendClock = SystemClock()
    private let outbox = PublishQueue()

    private struct Outbound {
        var replica: String
        var promise: EventLoopPromise<RawJSON>
        var timer: Scheduled<Void>?
        var method: String
        var timeout: TimeAmount
    }

    private struct Inbound: Hashable {
        var from: String
        var call: Int64
    }

    private let outbound = Mutex<[Int64: Outbound]>([:])
    private let inbound = Mutex<[Inbound: (id: JSONRPCID, endpoint: any AgentEndpoint)]>([:])
    private let counter = Atomic<Int64>(1)
    private let group: any EventLoopGroup
    /// How long a call may wait at the serving replica for a free instance.
    private let queueTimeout: Duration

    init(replica: String, events: any PubSub, agents: AgentRegistry, group: any EventLoopGroup, logger: Logger, queueTimeout: Duration = .seconds(60)) {
        self.replica = replica
        self.events = events
        self.agents = agents
        self.group = group
        self.logger = logger
        self.queueTimeout = queueTimeout
    }

    static func topic(of replica: String) -> String { "switchboard.replica.\(replica)" }

    /// Serves calls from other replicas and delivers their answers, until cancelled.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await self.outbox.run(on: self.events) { error, count in
                    self.logger.warning("replicas: could not send \(count) messages: \(error)")
                }
            }
            group.addTask { await self.listen() }
            await group.next()
            group.cancelAll()
        }
    }

    private func listen() async {
        await events.listen(to: .topic(Self.topic(of: replica)), limits: SubscriptionLimits(messages: 100_000, bytes: 256 << 20)) { error in
            logger.warning("replicas: cannot listen for calls: \(error); retrying in a second")
        } _: { message in
            received(message.payload)
        }
    }

    private func send(_ message: JSONValue, to replica: String) {
        var buffer = ByteBuffer()
        message.write(to: &buffer)
        outbox.enqueue(PubSubMessage(topic: Self.topic(of: replica), payload: buffer, publishedAt: clock.now(), publisher: self.replica))
    }

    // MARK: Calling another replica

    func call(_ method: String, params: JSONValue?, timeout: TimeAmount, instance: String, on replica: String) -> PendingCall {
        let number = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        let eventLoop = group.any()
        let promise = eventLoop.makePromise(of: RawJSON.self)
        // The serving replica times the call out itself; this timer is for a replica that went
        // silent (a lost message), with a second of slack so that its own answer wins.
        let timer = eventLoop.scheduleTask(in: timeout + .seconds(1)) { [self] in
            if let entry = outbound.withLock({ $0.removeValue(forKey: number) }) {
                entry.promise.fail(AgentCallTimedOut(method: method, timeout: timeout))
            }
        }
        outbound.withLock { $0[number] = Outbound(replica: replica, promise: promise, timer: timer, method: method, timeout: timeout) }
        var message: [String: JSONValue] = [
            "kind": "call", "from": .string(self.replica), "call": .integer(number), "instance": .string(instance),
            "method": .string(method), "timeoutMs": .integer(timeout.nanoseconds / 1_000_000),
        ]
        if let params { message["params"] = params }
        send(.object(message), to: replica)
        return PendingCall(id: .integer(number), result: promise.futureResult)
    }

    func cancel(_ id: JSONRPCID, reason: String) {
        guard case .integer(let number) = id, let entry = outbound.withLock({ $0.removeValue(forKey: number) }) else { return }
        entry.timer?.cancel()
        entry.promise.fail(AgentCallCancelled())
        send(["kind": "cancel", "from": .string(replica), "call": .integer(number), "reason": .string(reason)], to: entry.replica)
    }

    /// Fails every call waiting on a replica that stopped announcing itself.
    func replicaLapsed(_ lapsed: String) {
        let failed = outbound.withLock { outbound -> [Outbound] in
            let ids = outbound.filter { $0.value.replica == lapsed }.map(\.key)
            return ids.compactMap { outbound.removeValue(forKey: $0) }
        }
        for entry in failed {
            entry.timer?.cancel()
            entry.promise.fail(AgentEndpointClosed(reason: "replica \(lapsed) stopped answering"))
        }
    }

    // MARK: Messages

    private func received(_ payload: ByteBuffer) {
        guard let message = try? RawJSON(validating: payload), let kind = message.member("kind")?.stringValue else {
            logger.warning("replicas: ignoring a malformed message")
            return
        }
        switch kind {
        case "call": serve(message)
        case "cancel": cancelInbound(message)
        default: answered(kind, message)
        }
    }

    private func answered(_ kind: String, _ message: RawJSON) {
        guard let number = message.member("call")?.decoded().integerValue,
            let entry = outbound.withLock({ $0.removeValue(forKey: number) })
        else { return }
        entry.timer?.cancel()
        let reason = message.member("reason")?.stringValue ?? "no reason given"
        switch kind {
        case "result":
            entry.promise.succeed(message.member("result") ?? .null)
        case "error":
            let error = message.member("error")
            entry.promise.fail(JSONRPCError(
                code: Int(error?.member("code")?.decoded().integerValue ?? Int64(JSONRPCError.Code.internalError)),
                message: error?.member("message")?.stringValue ?? "error", data: error?.member("data").map(JSONValue.raw)))
        case "timeout":
            entry.promise.fail(AgentCallTimedOut(method: entry.method, timeout: entry.timeout))
        default:
            entry.promise.fail(AgentEndpointClosed(reason: reason))
        }
    }

    // MARK: Serving another replica's call

    private func serve(_ message: RawJSON) {
        guard let from = message.member("from")?.stringValue, let number = message.member("call")?.decoded().integerValue,
            let instanceName = message.member("instance")?.stringValue, let method = message.member("method")?.stringValue
        else { return }
        let params = message.member("params")
        let timeout = TimeAmount.milliseconds(message.member("timeoutMs")?.decoded().integerValue ?? 300_000)
        let key = Inbound(from: from, call: number)
        let instance = AgentRegistry.InstanceID(instanceName)

        let kind: AgentRegistry.OfferKind
        let originalName: String?
        switch method {
        case "tools/call": (kind, originalName) = (.tool, params?.member("name")?.stringValue)
        case "prompts/get": (kind, originalName) = (.prompt, params?.member("name")?.stringValue)
        case "resources/read": (kind, originalName) = (.resource(template: agents.templateOf(instance) ?? ""), params?.member("uri")?.stringValue)
        default:
            reply(key, error: .methodNotFound(method))
            return
        }
        let exposed: String?
        if case .resource = kind { exposed = originalName } else { exposed = originalName.flatMap { agents.exposedName(kind, of: $0, offeredBy: instance) } }
        guard let exposed else {
            reply(key, closed: "agent \(instanceName) no longer offers \(originalName ?? "it") on replica \(replica)")
            return
        }
        var constraints = AgentRegistry.Constraints(preferred: instance)
        constraints.localOnly = true
        let eventLoop = group.any()
        agents.acquire(kind, exposed, on: eventLoop, timeout: queueTimeout, constraints: constraints).whenComplete { [self] acquired in
            let lease: AgentRegistry.Lease
            switch acquired {
            case .success(let granted): lease = granted
            case .failure(let error):
                reply(key, error: AgentCallError(error, name: exposed).jsonRPCError)
                return
            }
            let call = lease.endpoint.call(method, params: params.map(JSONValue.raw), timeout: timeout)
            inbound.withLock { $0[key] = (call.id, lease.endpoint) }
            call.result.whenComplete { [self] outcome in
                inbound.withLock { _ = $0.removeValue(forKey: key) }
                switch outcome {
                case .success(let result):
                    lease.finish(succeeded: true)
                    send(["kind": "result", "call": .integer(number), "result": .raw(result)], to: from)
                case .failure(is AgentCallCancelled):
                    lease.release()
                case .failure(let error as JSONRPCError):
                    lease.finish(succeeded: true)
                    reply(key, error: error)
                case .failure(let error as AgentCallTimedOut):
                    lease.finish(succeeded: false)
                    send(["kind": "timeout", "call": .integer(number), "reason": .string(error.description)], to: from)
                case .failure(let error):
                    lease.finish(succeeded: false)
                    reply(key, closed: "\(error)")
                }
            }
        }
    }

    private func cancelInbound(_ message: RawJSON) {
        guard let from = message.member("from")?.stringValue, let number = message.member("call")?.decoded().integerValue,
            let running = inbound.withLock({ $0.removeValue(forKey: Inbound(from: from, call: number)) })
        else { return }
        running.endpoint.cancel(running.id, reason: message.member("reason")?.stringValue ?? "cancelled by the client")
    }

    private func reply(_ key: Inbound, error: JSONRPCError) {
        send(["kind": "error", "call": .integer(key.call), "error": error.jsonValue], to: key.from)
    }

    private func reply(_ key: Inbound, closed reason: String) {
        send(["kind": "closed", "call": .integer(key.call), "reason": .string(reason)], to: key.from)
    }
}

/// Another replica's agent instance, as this replica calls it: through the bus.
struct RemoteAgentEndpoint: AgentEndpoint {
    var bus: ReplicaBus
    var replica: String
    /// The instance's id on its own replica.
    var instance: String

    func call(_ method: String, params: JSONValue?, timeout: TimeAmount) -> PendingCall {
        bus.call(method, params: params, timeout: timeout, instance: instance, on: replica)
    }

    func cancel(_ id: JSONRPCID, reason: String) {
        bus.cancel(id, reason: reason)
    }

    /// Notifications to another replica's agent are its replica's business (progress and
    /// cancellation travel with the call).
    func notify(_ method: String, params: JSONValue?) {}

    func close() {}
}
