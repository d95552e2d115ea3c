import Agents
import JSONRPC
import NIOCore
import Router
import Synchronization
import Telemetry

#if canImport(Glibc)
import Glibc
#endif

/// Forwards MCP calls (`tools/call`, `prompts/get`, `resources/read`) to the agent instance the
/// registry picks, and relays what flows back during a call: progress notifications and
/// requests that the agent makes of the client (sampling, elicitation, roots).
///
/// Arguments and results pass through as raw bytes; only the members the gateway must change
/// (an exposed tool name, a progress token) are rewritten.
final class AgentCallRouter: Sendable {
    let agents: AgentRegistry
    let tasks: any TaskService
    let progress = ProgressRelay()
    let callers = CallerTracker()
    /// How long a call waits for a busy or restarting agent before giving up.
    let queueTimeout: Duration
    /// How long a resource read waits for the agents still starting.
    let readinessWait: Duration
    /// Counts a call made a task against its principal's `queuedTasks` quota.
    let quotas: QuotaKeeper?
    /// Where a relayed call's duration, outcome and span go.
    let observability: GatewayObservability?

    init(
        agents: AgentRegistry, tasks: any TaskService, quotas: QuotaKeeper? = nil, queueTimeout: Duration = .seconds(60),
        readinessWait: Duration = .seconds(30), observability: GatewayObservability? = nil
    ) {
        self.observability = observability
        self.agents = agents
        self.tasks = tasks
        self.quotas = quotas
        self.queueTimeout = queueTimeout
        self.readinessWait = readinessWait
    }

    func register(in table: inout MethodTable) {
        table.register("tools/call") { [self] request, context in callTool(request, context) }
        table.register("prompts/get") { [self] request, context in getPrompt(request, context) }
        table.register("resources/read") { [self] request, context in readResource(request, context) }
        for (method, capability) in [("sampling/createMessage", "sampling"), ("elicitation/create", "elicitation"), ("roots/list", "roots")] {
            table.register(method) { [self] request, context in relayToCaller(request, context, capability: capability) }
        }
    }

    // MARK: Client → agent

    func callTool(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        guard let params = request.params, params.kind == .object else {
            return .error(.invalidParams("tools/call needs params with the tool's \"name\""))
        }
        // One pass over the params for every member this call reads.
        let members = params.members("name", "arguments", "task", "_meta")
        guard let name = members[0]?.stringValue else {
            return .error(.invalidParams("\"name\" must be a string naming the tool"))
        }
        if let arguments = members[1], arguments.kind != .object, arguments.kind != .null {
            return .error(.invalidParams("\"arguments\" must be an object", extra: ["tool": .string(name)]))
        }
        if members[2]?.kind == .object {
            if let tenant = context.tenant, !agents.serves(.tool, name, tenant: tenant) { return .error(Self.notFound(.tool, name)) }
            // MCP 2025-11-25: a task-augmented call returns a task at once; its result comes later.
            return TaskMethods.callAsTask(request, params: params, engine: tasks, quotas: quotas, context: context)
        }
        return forward(.tool, name: name, method: "tools/call", params: params, meta: members[3], context)
    }

    func getPrompt(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        guard let params = request.params, params.kind == .object, let name = params.member("name")?.stringValue else {
            return .error(.invalidParams("prompts/get needs params with the prompt's \"name\""))
        }
        return forward(.prompt, name: name, method: "prompts/get", params: params, meta: params.member("_meta"), context)
    }

    func readResource(_ request: JSONRPCRequest, _ context: MethodContext) -> MethodReply {
        guard let params = request.params, params.kind == .object, let uri = params.member("uri")?.stringValue else {
            return .error(.invalidParams("resources/read needs params with the resource's \"uri\""))
        }
        if let template = agents.templateServing(resource: uri) {
            return forward(.resource(template: template), name: uri, method: "resources/read", params: params, meta: params.member("_meta"), context)
        }
        let agents = self.agents
        // An agent still starting may serve it: look once the start-up window is over.
        return AgentMethods.afterStartup(agents, context, within: readinessWait) { [self] in
            guard let template = agents.templateServing(resource: uri) else {
                return .error(JSONRPCError(code: -32002, message: "Resource not found: \(uri)", data: ["uri": .string(uri)]))
            }
            return forward(.resource(template: template), name: uri, method: "resources/read", params: params, meta: params.member("_meta"), context)
        }
    }

    /// How many agents deep a chain of nested calls may go.
    static let maximumChainDepth = 8
    /// `_meta` member naming the caller's zone.
    static let zoneKey = "switchboard/zone"

    /// `meta` is the params' `_meta` member, which the caller has already looked up.
    private func forward(_ kind: AgentRegistry.OfferKind, name: String, method: String, params: RawJSON, meta: RawJSON?, _ context: MethodContext) -> MethodReply {
        // A call an agent makes while serving calls belongs to their chains: it must not go back
        // to an agent in them (it would wait on itself), nor go deeper than the limit.
        let chain = context.agentInstance.map { callers.chain(through: $0) } ?? []
        if !chain.isEmpty {
            guard chain.count <= Self.maximumChainDepth else {
                return .error(JSONRPCError(
                    code: JSONRPCError.Code.callChainRefused,
                    message: "Call chain too deep: \(chain.count) agents (the limit is \(Self.maximumChainDepth))",
                    data: ["reason": "too deep", "chain": .array(chain.map { .string($0.rawValue) }), "limit": .integer(Int64(Self.maximumChainDepth))]))
            }
        }
        // No futures on this path: a relayed call is cheaper than two of them.
        let reply = DeferredReply()
        let cancellation = CallCancellation()
        let caller = context.connection
        var constraints = AgentRegistry.Constraints(excluding: Set(chain))
        // Only agents the caller's tenant may use take the call; what another tenant's agents
        // offer is not found, exactly as what nobody offers (the registry answers so).
        constraints.tenant = context.tenant
        // A caller may name its zone; otherwise the replica's own is preferred.
        if let meta, agents.zonesInUse, let zone = meta.member(Self.zoneKey)?.stringValue { constraints.preferredZone = zone }
        @Sendable func begin(_ acquired: Result<AgentRegistry.Lease, any Error>) {
            let lease: AgentRegistry.Lease
            switch acquired {
            case .failure(AgentRegistry.AcquireError.noAgentAvailable(_, _, let reason)) where !chain.isEmpty && reason.contains("chain"):
                reply.fail(JSONRPCError(
                    code: JSONRPCError.Code.callChainRefused,
                    message: "Call cycle refused: every agent offering \"\(name)\" is already in this call's chain",
                    data: ["reason": "cycle", "tool": .string(name), "chain": .array(chain.map { .string($0.rawValue) })]))
                return
            case .failure(let error):
                reply.fail(AgentCallError(error, name: name))
                return
            case .success(let granted):
                lease = granted
            }
            if cancellation.isCancelled {
                lease.release()
                reply.fail(AgentCallCancelled())
                return
            }
            let span = context.trace.flatMap { parent in observability?.tracing?.callSpan(kind, name: name, lease: lease, parent: .span(parent)) }
            let (forwarded, relayToken) = rewrite(
                params, meta: meta, kind: kind, exposedName: name, originalName: lease.originalName, caller: caller, trace: span?.context)
            callers.add(lease.instance, caller, chain: chain)
            let started = observability == nil ? nil : NIODeadline.now()
            let id = lease.endpoint.call(method, params: .raw(forwarded), timeout: TimeAmount(lease.callTimeout)) { [self] outcome in
                callers.remove(lease.instance, caller)
                if let relayToken { progress.unregister(relayToken) }
                let observed: GatewayObservability.CallOutcome
                switch outcome {
                case .success(let result):
                    let toolError = kind == .tool && Self.isToolError(result)
                    lease.finish(succeeded: true, answeredWithError: toolError)
                    observed = toolError ? .failed : .succeeded
                    reply.succeed(.raw(result))
                case .failure(is AgentCallCancelled):
                    // The client changed its mind: no verdict on the agent.
                    lease.release()
                    observed = .cancelled
                    reply.fail(AgentCallCancelled())
                case .failure(let error):
                    // An error the agent answered with is the tool's business, not a failure of
                    // the agent.
                    lease.finish(succeeded: error is JSONRPCError, answeredWithError: error is JSONRPCError)
                    observed = error is JSONRPCError ? .failed : .unanswered
                    reply.fail(AgentCallError(error, name: name, agent: lease.instance.rawValue))
                }
                if let observability, let started {
                    observability.callEnded(
                        kind: kind.metricName, name: name, template: lease.template, agent: lease.instance.rawValue, outcome: observed,
                        seconds: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
                }
                span?.end(outcome: observed)
            }
            cancellation.started(id, on: lease.endpoint)
        }
        // A free instance is the common case: the call starts at once, without a future.
        switch agents.acquisition(kind, name, on: context.eventLoop, timeout: queueTimeout, constraints: constraints, nested: !chain.isEmpty) {
        case .leased(let lease): begin(.success(lease))
        case .refused(let error): begin(.failure(error))
        case .waiting(let lease): lease.whenComplete(begin)
        }
        return .deferred(reply) { cancellation.cancel(reason: "cancelled by the client") }
    }

    /// The params as the agent must see them: its own name for the tool or prompt, without the
    /// client's 2026-07-28 envelope keys (the agent speaks the handshake era with the gateway,
    /// and those keys describe the client's session), and with a progress token of the gateway's
    /// (two clients may use the same token). Everything else is copied as bytes.
    private func rewrite(
        _ params: RawJSON, meta: RawJSON?, kind: AgentRegistry.OfferKind, exposedName: String, originalName: String, caller: ConnectionHandle,
        trace: TraceContext?
    ) -> (RawJSON, relayToken: String?) {
        var replacements: [String: JSONValue?] = [:]
        switch kind {
        case .tool, .prompt: if originalName != exposedName { replacements["name"] = .string(originalName) }
        case .resource: break
        }
        var relayToken: String?
        var metaChanges: [String: JSONValue?] = [:]
        if let meta {
            for (key, _) in meta.members() where key.hasPrefix("io.modelcontextprotocol/") { metaChanges[key] = .some(nil) }
            if let token = meta.member("progressToken") {
                let ours = progress.register(caller: caller, token: token)
                relayToken = ours
                metaChanges["progressToken"] = .string(ours)
            }
        }
        if let trace {
            // The agent's work belongs to the gateway's span of the call: its context replaces
            // the caller's, and the caller's tracestate goes on with it (without one, a removal,
            // never a JSON null).
            metaChanges["traceparent"] = .string(trace.traceparent)
            let tracestate: JSONValue?? = trace.tracestate.map { .some(.string($0)) } ?? .some(nil)
            metaChanges["tracestate"] = tracestate
        }
        if !metaChanges.isEmpty {
            if let meta {
                let rewritten = meta.replacingMembers(metaChanges)
                replacements["_meta"] = rewritten.members().isEmpty ? .some(nil) : .raw(rewritten)
            } else {
                replacements["_meta"] = .object(metaChanges.compactMapValues { $0 })
            }
        }
        return (replacements.isEmpty ? params : params.replacingMembers(replacements), relayToken)
    }

    // MARK: Agent → client

    /// A request an agent makes during a call goes to the client whose call it is serving,
    /// if that client declared the capability.
    private func relayToCaller(_ request: JSONRPCRequest, _ context: MethodContext, capability: String) -> MethodReply {
        guard let instance = context.agentInstance else {
            return .error(.methodNotFound(request.method))
        }
        // Only handshake-era sessions take requests from the gateway.
        guard let caller = callers.callers(of: instance).first(where: { $0.acceptsServerRequests && $0.clientCapabilities?[capability] != nil }) else {
            return .error(JSONRPCError(
                code: JSONRPCError.Code.methodNotFound,
                message: "No client of this agent's calls offers \(capability)",
                data: ["reason": .string("\(request.method) needs a client that declared the \(capability) capability, and no call in flight has one"), "method": .string(request.method)]
            ))
        }
        let call = caller.call(request.method, params: request.params.map(JSONValue.raw), timeout: .minutes(10))
        return .later(call.result.map { JSONValue.raw($0) })
    }
}

extension AgentCallRouter {
    /// The error for a name nobody offers (to the caller's tenant).
    static func notFound(_ kind: AgentRegistry.OfferKind, _ name: String) -> JSONRPCError {
        switch kind {
        case .tool, .prompt: AgentCallError(AgentRegistry.AcquireError.unknownTool(name), name: name).jsonRPCError
        case .resource: JSONRPCError(code: -32002, message: "Resource not found: \(name)", data: ["uri": .string(name)])
        }
    }
}

/// The client-facing error for everything that can go wrong between gateway and agent.
struct AgentCallError: GatewayErrorConvertible, CustomStringConvertible {
    var jsonRPCError: JSONRPCError
    var description: String { jsonRPCError.message }

    init(_ error: any Error, name: String, agent: String? = nil) {
        switch error {
        case let error as JSONRPCError:
            jsonRPCError = error
        case let error as AgentRegistry.AcquireError:
            switch error {
            case .unknownTool:
                jsonRPCError = .invalidParams("unknown tool \"\(name)\": no connected agent offers it", extra: ["tool": .string(name)])
            case .ambiguous(_, let candidates):
                jsonRPCError = .invalidParams(
                    "\"\(name)\" is ambiguous: several agents offer it; call one of \(candidates.joined(separator: ", "))",
                    extra: ["tool": .string(name), "candidates": .array(candidates.map(JSONValue.string))])
            case .notYetOffered(_, let starting, let waited):
                jsonRPCError = .invalidParams(
                    "unknown tool \"\(name)\": no agent offered it within \(waited) while \(starting.joined(separator: ", ")) kept starting",
                    extra: ["tool": .string(name), "starting": .array(starting.map(JSONValue.string))])
            case .noAgentAvailable(_, let template, let reason):
                jsonRPCError = JSONRPCError(
                    code: JSONRPCError.Code.noAgentAvailable, message: "No agent available for \"\(name)\": \(reason)",
                    data: ["tool": .string(name), "template": .string(template), "reason": .string(reason)])
            case .timedOut(_, let template, let waited):
                jsonRPCError = JSONRPCError(
                    code: JSONRPCError.Code.agentBusy, message: "Every instance of \(template) stayed busy for \(waited)",
                    data: ["tool": .string(name), "template": .string(template), "waitedSeconds": .integer(waited.components.seconds)])
            }
        case let error as AgentEndpointClosed:
            jsonRPCError = JSONRPCError(
                code: JSONRPCError.Code.agentFailed, message: "The agent failed during the call: \(error.reason)",
                data: ["agent": .string(agent ?? ""), "reason": .string(error.reason)])
        case let error as AgentCallTimedOut:
            jsonRPCError = JSONRPCError(
                code: JSONRPCError.Code.callTimedOut, message: "The agent did not answer within \(error.timeout)",
                data: ["agent": .string(agent ?? ""), "timeoutSeconds": .double(Double(error.timeout.nanoseconds) / 1e9)])
        default:
            jsonRPCError = .internalError(String(describing: error))
        }
    }
}

/// Cancels a forwarded call whether the cancellation comes before or after it left.
final class CallCancellation: Sendable {
    private enum State {
        case waiting
        case sent(JSONRPCID, any AgentEndpoint)
        case cancelled
    }

    private let state = Mutex(State.waiting)

    var isCancelled: Bool {
        state.withLock { if case .cancelled = $0 { true } else { false } }
    }

    func started(_ id: JSONRPCID, on endpoint: any AgentEndpoint) {
        let alreadyCancelled: Bool = state.withLock { state in
            if case .cancelled = state { return true }
            state = .sent(id, endpoint)
            return false
        }
        if alreadyCancelled { endpoint.cancel(id, reason: "cancelled by the client") }
    }

    func cancel(reason: String) {
        let sent: (JSONRPCID, any AgentEndpoint)? = state.withLock { state in
            defer { state = .cancelled }
            if case .sent(let id, let endpoint) = state { return (id, endpoint) }
            return nil
        }
        if let (id, endpoint) = sent { endpoint.cancel(id, reason: reason) }
    }
}

/// Maps the progress tokens the gateway gives agents back to the client's own.
final class ProgressRelay: Sendable {
    private let routes = Mutex<[String: (caller: ConnectionHandle, token: RawJSON)]>([:])
    private let counter = Atomic<UInt64>(1)

    func register(caller: ConnectionHandle, token: RawJSON) -> String {
        let ours = "sb-progress-\(counter.wrappingAdd(1, ordering: .relaxed).oldValue)"
        routes.withLock { $0[ours] = (caller, token) }
        return ours
    }

    func unregister(_ token: String) {
        routes.withLock { _ = $0.removeValue(forKey: token) }
    }

    /// Delivers an agent's `notifications/progress` to the client that asked for it.
    func relay(_ params: RawJSON) {
        guard let token = params.member("progressToken")?.stringValue,
            let route = routes.withLock({ $0[token] })
        else { return }
        route.caller.notify("notifications/progress", params: .raw(params.replacingMembers(["progressToken": .raw(route.token)])))
    }
}

/// Which clients have calls in flight on which agent instance, and the chain of agents each call
/// came through (for calls that agents make while serving calls).
final class CallerTracker: Sendable {
    private struct Call {
        var caller: ConnectionHandle
        var chain: [AgentRegistry.InstanceID]
    }

    private let calls = Mutex<[AgentRegistry.InstanceID: [Call]]>([:])

    func add(_ instance: AgentRegistry.InstanceID, _ caller: ConnectionHandle, chain: [AgentRegistry.InstanceID] = []) {
        calls.withLock { $0[instance, default: []].append(Call(caller: caller, chain: chain)) }
    }

    func remove(_ instance: AgentRegistry.InstanceID, _ caller: ConnectionHandle) {
        calls.withLock { calls in
            guard let index = calls[instance]?.firstIndex(where: { $0.caller === caller }) else { return }
            calls[instance]!.remove(at: index)
            if calls[instance]!.isEmpty { calls[instance] = nil }
        }
    }

    /// Oldest call first.
    func callers(of instance: AgentRegistry.InstanceID) -> [ConnectionHandle] {
        calls.withLock { ($0[instance] ?? []).map(\.caller) }
    }

    /// The agents a call made by `agent` goes through: those of every call `agent` is serving
    /// (it may be serving several; any of them may have led to this one), then `agent`. Empty
    /// when `agent` serves nothing: then its call is a call like any client's.
    func chain(through agent: AgentRegistry.InstanceID) -> [AgentRegistry.InstanceID] {
        calls.withLock { calls in
            guard let serving = calls[agent], !serving.isEmpty else { return [] }
            var chain: [AgentRegistry.InstanceID] = []
            for call in serving {
                for member in call.chain where !chain.contains(member) { chain.append(member) }
            }
            if !chain.contains(agent) { chain.append(agent) }
            return chain
        }
    }
}

extension AgentCallRouter {
    /// Whether a tool's result says it failed (`isError: true`). The bytes are searched first:
    /// most results never name the member, and a search costs far less than reading the members.
    static func isToolError(_ result: RawJSON) -> Bool {
        mentionsIsError(result.buffer) && result.member("isError")?.decoded() == .bool(true)
    }

    /// Whether `"isError": true` occurs in the bytes (SDKs write `"isError": false` on every
    /// success): each capital E (rare in JSON) is found with `memchr`, then its neighbours are
    /// compared.
    private static func mentionsIsError(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count >= 9 else { return false }
            var offset = 3
            while offset < bytes.count, let found = memchr(base + offset, Int32(UInt8(ascii: "E")), bytes.count - offset) {
                let index = base.distance(to: UnsafeRawPointer(found))
                if index + 6 <= bytes.count, bytes[index - 3] == UInt8(ascii: "\""), bytes[index - 2] == UInt8(ascii: "i"),
                    bytes[index - 1] == UInt8(ascii: "s"), bytes[index + 5] == UInt8(ascii: "\""),
                    bytes[index + 1] == UInt8(ascii: "r"), bytes[index + 4] == UInt8(ascii: "r")
                {
                    // The value: `true` after the colon and any whitespace.
                    var next = index + 6
                    while next < bytes.count, [UInt8(ascii: " "), UInt8(ascii: ":"), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r")].contains(bytes[next]) {
                        next += 1
                    }
                    if next < bytes.count, bytes[next] == UInt8(ascii: "t") { return true }
                }
                offset = index + 1
            }
            return false
        }
    }
}

extension AgentRegistry.OfferKind {
    /// The `kind` label of the call metrics.
    var metricName: String {
        switch self {
        case .tool: "tool"
        case .prompt: "prompt"
        case .resource: "resource"
        }
    }
}

extension GatewayTracing {
    /// The span of a call relayed to an agent: a client span under the request's, whose context
    /// the agent receives in `_meta`.
    func callSpan(_ kind: AgentRegistry.OfferKind, name: String, lease: AgentRegistry.Lease, parent: TraceParent) -> TraceSpan {
        let method = switch kind {
        case .tool: "tools/call"
        case .prompt: "prompts/get"
        case .resource: "resources/read"
        }
        let span = startSpan("\(method) \(name)", kind: .client, parent: parent)
        span.setAttribute("mcp.method.name", method)
        if case .tool = kind {
            span.setAttribute("gen_ai.tool.name", name)
            span.setAttribute("gen_ai.operation.name", "execute_tool")
        }
        span.setAttribute("switchboard.agent.id", lease.instance.rawValue)
        span.setAttribute("switchboard.agent.template", lease.template)
        return span
    }
}

extension TraceSpan {
    func end(outcome: GatewayObservability.CallOutcome) {
        switch outcome {
        case .succeeded: end()
        case .failed: end(errorType: "tool_error")
        case .unanswered: end(errorType: "agent_failed")
        case .cancelled: end(errorType: "cancelled")
        }
    }
}
