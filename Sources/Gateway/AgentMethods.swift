import Access
import Agents
import Fleet
import JSONRPC
import MCPProtocol
import NIOCore
import Synchronization
import Transport

/// The MCP face of the fleet (`tools/list`, `prompts/list`, `resources/list`,
/// `resources/templates/list`) and the `agents/*` methods.
enum AgentMethods {
    /// Tools per `tools/list` page.
    static let pageSize = 100

    static func register(
        in table: inout MethodTable, agents: AgentRegistry, supervisor: SupervisorSlot, quotas: QuotaKeeper? = nil, egress: EgressPolicy = EgressPolicy(),
        requireAgentNameMatch: Bool, readinessWait: Duration, activatesNewVersions: Bool = true,
        capacity: ResourceLedger = ResourceLedger(capacity: MachineCapacity.probe())
    ) {
        // A list waits for the agents still starting, so that a host that lists once, right
        // after connecting, sees every tool that comes up within the start-up window.
        table.register("tools/list") { request, context in
            afterStartup(agents, context, within: readinessWait) {
                page(request, items: visible(agents.toolDefinitions(visibleTo: context.tenant), through: "tools/call", context), key: "tools", era: context.era,
                     stillStarting: agents.hasStartingInstances)
            }
        }
        table.register("prompts/list") { request, context in
            afterStartup(agents, context, within: readinessWait) {
                page(request, items: visible(agents.promptDefinitions(visibleTo: context.tenant), through: "prompts/get", context), key: "prompts", era: context.era,
                     stillStarting: agents.hasStartingInstances)
            }
        }
        table.register("resources/list") { request, context in
            afterStartup(agents, context, within: readinessWait) {
                pageRaw(request, items: visible(agents.resources(visibleTo: context.tenant).resources, context), key: "resources", era: context.era,
                        stillStarting: agents.hasStartingInstances)
            }
        }
        table.register("resources/templates/list") { request, context in
            afterStartup(agents, context, within: readinessWait) {
                pageRaw(request, items: agents.resources(visibleTo: context.tenant).templates, key: "resourceTemplates", era: context.era,
                        stillStarting: agents.hasStartingInstances)
            }
        }

        table.register("agents/register") { request, context in
            // With an endpoint: an agent the gateway connects to over HTTP, not this connection.
            if let params = request.params, params.kind == .object, let endpoint = params.member("endpoint"), endpoint.kind != .null {
                return RemoteAgentRegistration.register(params, context, agents: agents, supervisor: supervisor.value, egress: egress)
            }
            return register(
                request, context, agents: agents, quotas: quotas, requireAgentNameMatch: requireAgentNameMatch,
                activatesNewVersions: activatesNewVersions, capacity: capacity)
        }
        table.register("agents/activate") { request, context in
            guard let template = request.params?.member("template")?.stringValue, let version = request.params?.member("version")?.stringValue else {
                return .error(.invalidParams("agents/activate needs \"template\" and \"version\""))
            }
            do {
                let before = try agents.activate(template: template, version: version)
                context.logger.info("template \(template): version \(version) activated by \(context.principal.name)")
                var result: [String: JSONValue] = ["template": .string(template), "activeVersion": .string(version)]
                if let before, before != version { result["previousVersion"] = .string(before) }
                return .result(.object(result))
            } catch {
                return .error(.invalidParams("\(error)", extra: ["template": .string(template), "version": .string(version)]))
            }
        }
        table.register("agents/heartbeat") { request, context in
            guard let id = agentID(request.params, context, agents) else {
                return .error(.invalidParams("\"agentId\" must name a registered agent (or call from the agent's own connection)"))
            }
            let usage = request.params?.member("resourceUsage").map(JSONValue.raw)
            // Another tenant's agent does not exist here.
            guard visible(id, to: context.tenant, agents), agents.heartbeat(id, usage: usage) else { return .error(unknownAgent(id.rawValue)) }
            return .result(["agentId": .string(id.rawValue), "heartbeatIntervalSeconds": 10])
        }
        table.register("agents/deregister") { request, context in
            guard let id = agentID(request.params, context, agents) else {
                return .error(.invalidParams("\"agentId\" must name a registered agent (or call from the agent's own connection)"))
            }
            guard let status = agents.status(id), Self.isVisible(status, to: context.tenant) else { return .error(unknownAgent(id.rawValue)) }
            agents.remove(id)
            return .result(["agentId": .string(id.rawValue), "deregistered": true])
        }
        table.register("agents/list") { request, context in
            // Another tenant's agents are not listed.
            var filter = AgentRegistry.Filter(tenant: context.tenant)
            if let params = request.params {
                guard params.kind == .object else { return .error(.invalidParams("agents/list takes an object")) }
                if let state = params.member("state")?.stringValue {
                    guard let parsed = AgentState(rawValue: state.uppercased()) else {
                        return .error(.invalidParams("unknown state \"\(state)\" (one of \(AgentState.allCases.map(\.rawValue).joined(separator: ", ")))"))
                    }
                    filter.state = parsed
                }
                filter.capability = params.member("capability")?.stringValue
                filter.agentType = params.member("agentType")?.stringValue
                filter.template = params.member("template")?.stringValue
            }
            return .result(["agents": .array(agents.list(filter))])
        }
        table.register("agents/get") { request, context in
            guard let name = request.params?.member("agentId")?.stringValue else {
                return .error(.invalidParams("agents/get needs \"agentId\""))
            }
            guard let id = agents.instance(named: name), let status = agents.status(id), Self.isVisible(status, to: context.tenant) else {
                return .error(unknownAgent(name))
            }
            return .result(status)
        }
        table.register("agents/setState") { request, _ in
            guard let name = request.params?.member("agentId")?.stringValue, let state = request.params?.member("state")?.stringValue else {
                return .error(.invalidParams("agents/setState needs \"agentId\" and \"state\" (MAINTENANCE, or IDLE to return to service)"))
            }
            guard let id = agents.instance(named: name) else { return .error(unknownAgent(name)) }
            let maintenance: Bool
            switch state.uppercased() {
            case "MAINTENANCE": maintenance = true
            case "IDLE", "ACTIVE", "READY": maintenance = false
            default: return .error(.invalidParams("state must be MAINTENANCE, or IDLE to return to service"))
            }
            do {
                try agents.setMaintenance(id, maintenance)
            } catch {
                return .error(.invalidParams("\(error)", extra: ["agentId": .string(name)]))
            }
            return .result(agents.status(id) ?? [:])
        }
        table.register("agents/drain") { request, _ in
            guard let name = request.params?.member("agentId")?.stringValue else {
                return .error(.invalidParams("agents/drain needs \"agentId\""))
            }
            guard let id = agents.instance(named: name) else { return .error(unknownAgent(name)) }
            do {
                try agents.drain(id)
            } catch {
                return .error(.invalidParams("\(error)", extra: ["agentId": .string(name)]))
            }
            return .result(agents.status(id) ?? ["agentId": .string(name), "currentState": "OFFLINE"])
        }
        table.register("agents/scale") { request, _ in
            guard let template = request.params?.member("template")?.stringValue,
                let count = request.params?.member("instances")?.decoded().integerValue, count >= 0, count <= 1_000
            else {
                return .error(.invalidParams("agents/scale needs \"template\" and \"instances\" (0 to 1000)"))
            }
            do {
                let (before, after) = try supervisor.value.scale(template, to: Int(count))
                return .result(["template": .string(template), "instancesBefore": .integer(Int64(before)), "instances": .integer(Int64(after))])
            } catch {
                return .error(.invalidParams("\(error)", extra: ["template": .string(template)]))
            }
        }
        table.register("agents/rollback") { request, _ in
            guard let template = request.params?.member("template")?.stringValue else {
                return .error(.invalidParams("agents/rollback needs \"template\""))
            }
            // A spawned template goes back to the template it ran before its last rollout,
            // rolled out like any change.
            if supervisor.value.template(named: template) != nil {
                do throws(RolloutController.Refusal) {
                    let record = try supervisor.value.rollBackSpawned(template)
                    return .result([
                        "template": .string(template), "from": .string(record.from), "to": .string(record.to), "rollingOut": true,
                    ])
                } catch {
                    return .error(.invalidParams(error.description, extra: ["template": .string(template)]))
                }
            }
            do {
                let (from, to, newer) = try agents.rollback(template: template)
                for id in newer { try? agents.drain(id) }
                return .result([
                    "template": .string(template), "from": .string(from), "activeVersion": .string(to),
                    "draining": .array(newer.map { .string($0.rawValue) }),
                ])
            } catch {
                return .error(.invalidParams("\(error)", extra: ["template": .string(template)]))
            }
        }
    }

    // MARK: Lists

    /// What the principal may use: a list shows nothing the principal would be refused.
    private static func visible(
        _ items: [(name: String, definition: RawJSON)], through method: String, _ context: MethodContext
    ) -> [(name: String, definition: RawJSON)] {
        guard !context.grant.isUnrestricted else { return items }
        return items.filter { context.grant.mayUse(method, $0.name) }
    }

    private static func visible(_ resources: [RawJSON], _ context: MethodContext) -> [RawJSON] {
        guard !context.grant.isUnrestricted else { return resources }
        return resources.filter { resource in resource.member("uri")?.stringValue.map { context.grant.mayUse("resources/read", $0) } ?? false }
    }

    /// `answer` now when no template is starting, else once none is or `limit` has passed.
    static func afterStartup(
        _ agents: AgentRegistry, _ context: MethodContext, within limit: Duration, _ answer: @escaping @Sendable () -> MethodReply
    ) -> MethodReply {
        guard agents.isStarting else { return answer() }
        let reply = DeferredReply()
        let cancellation = WaitCancellation()
        let eventLoop = context.eventLoop
        agents.afterStartup(on: eventLoop, within: limit) {
            // Cancelled while it waited: nothing is started.
            guard !cancellation.isCancelled else { return }
            switch answer() {
            case .result(let value): reply.succeed(value)
            case .error(let error): reply.fail(error)
            case .later(let future): future.whenComplete(reply.complete)
            case .cancellable(let future, let cancel):
                cancellation.started(cancel)
                future.whenComplete(reply.complete)
            case .deferred(let inner, let cancel):
                cancellation.started(cancel)
                inner.whenComplete(on: eventLoop, reply.complete)
            }
        }
        return .deferred(reply) {
            cancellation.cancel()
            reply.fail(AgentCallCancelled())
        }
    }

    private static func page(
        _ request: JSONRPCRequest, items: [(name: String, definition: RawJSON)], key: String, era: SessionEra, stillStarting: Bool
    ) -> MethodReply {
        pageRaw(request, items: items.map { item in
            // Expose the tool under its gateway name; everything else passes through.
            item.definition.member("name")?.stringValue == item.name
                ? item.definition : item.definition.replacingMembers(["name": .string(item.name)])
        }, key: key, era: era, stillStarting: stillStarting)
    }

    private static func pageRaw(_ request: JSONRPCRequest, items: [RawJSON], key: String, era: SessionEra, stillStarting: Bool) -> MethodReply {
        var offset = 0
        if let params = request.params {
            guard params.kind == .object else { return .error(.invalidParams("this list method takes its params as an object")) }
            if let cursor = params.member("cursor"), cursor.kind != .null {
                guard let text = cursor.stringValue, let start = Int(text), start > 0, start < items.count else {
                    return .error(.invalidParams("unknown cursor", extra: ["cursor": .raw(cursor)]))
                }
                offset = start
            }
        }
        let end = min(offset + pageSize, items.count)
        var result: [String: JSONValue] = [key: .array(items[offset..<end].map(JSONValue.raw))]
        if end < items.count { result["nextCursor"] = .string(String(end)) }
        if era == .modern {
            // 2026-07-28 list results carry a caching hint; agents come and go, so it is short,
            // and shorter still while some are starting: their tools are not in this list yet.
            result["cacheScope"] = "public"
            result["ttlMs"] = stillStarting ? 1_000 : 5_000
        }
        return .result(.object(result))
    }

    // MARK: Attached agents

    private static func register(
        _ request: JSONRPCRequest, _ context: MethodContext, agents: AgentRegistry, quotas: QuotaKeeper?, requireAgentNameMatch: Bool,
        activatesNewVersions: Bool, capacity: ResourceLedger
    ) -> MethodReply {
        guard let params = request.params, params.kind == .object else {
            return .error(.invalidParams("agents/register takes an object: agentName, agentType, version, capabilities, tools, maxConcurrency"))
        }
        if let existing = context.agentInstance {
            return .error(.invalidRequest("this connection is already registered as agent \(existing)"))
        }
        guard let name = params.member("agentName")?.stringValue, !name.isEmpty,
            name.utf8.count <= 256,
            // ':' and '/' let a URI SAN (a SPIFFE ID, say) be the name.
            name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "_-.:/".unicodeScalars.contains($0)) })
        else {
            return .error(.invalidParams("\"agentName\" must be 1 to 256 letters, digits, '_', '-', '.', ':' or '/'"))
        }
        // An agent name is owned: only a principal given the name may register as it, whatever
        // the version (a higher version would otherwise take the name's calls).
        let principal = context.principal
        if principal.proof != .unconfigured, !context.grant.isUnrestricted,
            !principal.agentNames.contains(where: { Glob($0).matches(name) })
        {
            let allowed = principal.agentNames.isEmpty ? "none" : principal.agentNames.joined(separator: ", ")
            return .error(AccessError.forbidden(
                principal: principal.name, what: "agents/register \(name)",
                reason: "the agent names this principal may register are: \(allowed)").jsonRPCError)
        }
        if requireAgentNameMatch {
            guard let identity = context.peerIdentity else {
                return .error(JSONRPCError(
                    code: JSONRPCError.Code.forbidden, message: "Agents must present a TLS client certificate that names them",
                    data: ["reason": "no client certificate", "agentName": .string(name)]))
            }
            guard identity.names.contains(name) else {
                return .error(JSONRPCError(
                    code: JSONRPCError.Code.forbidden,
                    message: "The client certificate does not name agent \"\(name)\"",
                    data: ["reason": .string("the certificate names \(identity.names.joined(separator: ", "))"), "agentName": .string(name),
                           "subject": .string(identity.subject)]))
            }
        }
        var tools: [ToolDefinition] = []
        if let list = params.member("tools") {
            guard list.kind == .array else { return .error(.invalidParams("\"tools\" must be an array of MCP tool definitions")) }
            for definition in list.elements() {
                guard definition.kind == .object, let toolName = definition.member("name")?.stringValue, !toolName.isEmpty else {
                    return .error(.invalidParams("every tool needs a string \"name\"", extra: ["tool": .raw(definition)]))
                }
                guard definition.member("inputSchema")?.kind == .object else {
                    return .error(.invalidParams("tool \"\(toolName)\" needs an \"inputSchema\" object", extra: ["tool": .string(toolName)]))
                }
                tools.append(ToolDefinition(name: toolName, definition: definition))
            }
        }
        var capabilities: [String] = []
        if let tags = params.member("capabilities") {
            guard tags.kind == .array else { return .error(.invalidParams("\"capabilities\" must be an array of strings")) }
            for tag in tags.elements() {
                guard let text = tag.stringValue else { return .error(.invalidParams("\"capabilities\" must be an array of strings")) }
                capabilities.append(text)
            }
        }
        var maximumConcurrency = 16
        if let value = params.member("maxConcurrency") {
            guard let count = value.decoded().integerValue, count >= 1, count <= 100_000 else {
                return .error(.invalidParams("\"maxConcurrency\" must be an integer from 1 to 100000"))
            }
            maximumConcurrency = Int(count)
        }
        let version = params.member("version")?.stringValue ?? "1"
        let id = AgentRegistry.InstanceID("\(name)@\(context.connectionID)")
        var registration = AgentRegistry.Registration(
            name: name, template: name, version: version, kind: .attached,
            agentType: params.member("agentType")?.stringValue ?? "mcp", capabilities: capabilities,
            maximumConcurrency: maximumConcurrency)
        registration.configuration = params.member("configuration").map(JSONValue.raw)
        if let requirements = params.member("resourceRequirements") {
            // Not enforced on an agent that runs elsewhere, but never more than the gateway has.
            do {
                try capacity.check(FleetMethods.resourceRequest(requirements.decoded(), where: "resourceRequirements"))
            } catch let refusal as ResourceLedger.Refusal {
                return .error(.invalidParams("resourceRequirements \(refusal.description)", extra: ["agentName": .string(name)]))
            } catch {
                return .error(.invalidParams("\(error)", extra: ["agentName": .string(name)]))
            }
            registration.resourceRequirements = .raw(requirements)
        }
        registration.identity = context.peerIdentity.map(\.jsonValue)
        registration.zone = params.member("zone")?.stringValue
        registration.tenants = context.tenant.map { [$0] }
        var offer = AgentOffer()
        offer.tools = tools
        offer.resources = params.member("resources")?.elements() ?? []
        offer.prompts = (params.member("prompts")?.elements() ?? []).compactMap { definition in
            definition.member("name")?.stringValue.map { ToolDefinition(name: $0, definition: definition) }
        }
        let registered: @Sendable (QuotaHold) throws -> JSONValue = { [offer, registration, tools] hold in
            // Checked again: a register pipelined behind this one, or a close, may have come first.
            guard context.registerAgent(id, hold) else {
                throw JSONRPCError.invalidRequest("this connection is already registered as an agent, or is closing")
            }
            agents.add(id, registration, endpoint: context.connection, activatesNewVersion: activatesNewVersions)
            agents.ready(id, endpoint: context.connection, offer: offer)
            context.logger.info("agent \(id) registered: \(tools.count) tools, version \(version)")
            return [
                "agentId": .string(id.rawValue),
                "heartbeatIntervalSeconds": 10,
                "tools": .array(tools.map { .string($0.name) }),
                "activeVersion": .bool(agents.status(id)?["activeVersion"] == .bool(true)),
            ]
        }
        guard let quotas, quotas.counts(.agentInstances) else {
            do {
                return .result(try registered(QuotaHold()))
            } catch {
                return .error(error as? JSONRPCError ?? .internalError("\(error)"))
            }
        }
        // Its principal's agent quota first. Held in this process, it is taken at once, on the
        // connection's event loop: registers pipelined on one connection are decided in the order
        // they came (the first registers, the next is refused), as without quotas.
        if let taken = quotas.acquireNow(.agentInstances, for: principal) {
            do {
                return .result(try registered(try taken.get()))
            } catch {
                return .error(error as? JSONRPCError ?? .internalError("\(error)"))
            }
        }
        // Shared with replicas (Redis): registered on the connection's event loop once granted.
        let eventLoop = context.eventLoop
        return .later(eventLoop.makeFutureWithTask { try await quotas.acquire(.agentInstances, for: principal) }
            .hop(to: eventLoop).flatMapThrowing(registered))
    }

    private static func agentID(_ params: RawJSON?, _ context: MethodContext, _ agents: AgentRegistry) -> AgentRegistry.InstanceID? {
        if let name = params?.member("agentId")?.stringValue { return agents.instance(named: name) ?? AgentRegistry.InstanceID(name) }
        return context.agentInstance
    }

    private static func visible(_ id: AgentRegistry.InstanceID, to tenant: String?, _ agents: AgentRegistry) -> Bool {
        guard tenant != nil else { return true }
        return agents.status(id).map { isVisible($0, to: tenant) } ?? true
    }

    /// An agent `tenant`'s requests may use: every tenant's, or one listing it.
    static func isVisible(_ status: JSONValue, to tenant: String?) -> Bool {
        guard let tenant, case .array(let tenants)? = status["tenants"] else { return true }
        return tenants.contains(.string(tenant))
    }

    private static func unknownAgent(_ name: String) -> JSONRPCError {
        .invalidParams("no agent \"\(name)\"", extra: ["agentId": .string(name)])
    }
}

extension TLSPeerIdentity {
    /// The names an agent may register under: the subject's common names, DNS and URI SANs.
    var names: [String] {
        commonNames + dnsNames + uris
    }

    var jsonValue: JSONValue {
        [
            "subject": .string(subject),
            "dnsNames": .array(dnsNames.map(JSONValue.string)),
            "ipAddresses": .array(ipAddresses.map(JSONValue.string)),
            "uris": .array(uris.map(JSONValue.string)),
            "emailAddresses": .array(emailAddresses.map(JSONValue.string)),
        ]
    }
}

/// A cancellation that may come before the work it cancels has started, or after.
final class WaitCancellation: Sendable {
    private let state = Mutex<(cancelled: Bool, cancel: (@Sendable () -> Void)?)>((false, nil))

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// The work has started; `cancel` stops it (at once, if a cancellation came meanwhile).
    func started(_ cancel: @escaping @Sendable () -> Void) {
        let cancelNow = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.cancel = cancel
            return false
        }
        if cancelNow { cancel() }
    }

    func cancel() {
        let running = state.withLock { state -> (@Sendable () -> Void)? in
            state.cancelled = true
            defer { state.cancel = nil }
            return state.cancel
        }
        running?()
    }
}
