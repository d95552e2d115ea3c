import Access
import Agents
import JSONRPC
import NIOCore

/// `agents/register` with an `endpoint`: an agent the gateway reaches over Streamable HTTP,
/// added at run time (`POST /api/v1/agents/register` is its REST twin). The gateway connects to
/// it, as to a template with a `url`, and keeps it connected (restarts with back-off); the
/// name is owned as any agent name is; the egress rules decide where the gateway may connect;
/// the headers (a token for the agent, say) go with every request and are never shown.
enum RemoteAgentRegistration {
    static func register(_ params: RawJSON, _ context: MethodContext, agents: AgentRegistry, supervisor: AgentSupervisor, egress: EgressPolicy) -> MethodReply {
        guard let name = params.member("agentName")?.stringValue, !name.isEmpty, name.utf8.count <= 128,
            name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "_-.".unicodeScalars.contains($0)) })
        else {
            return .error(.invalidParams("\"agentName\" must be 1 to 128 letters, digits, '_', '-' or '.' (it names the agent's instances, NAME#1)"))
        }
        guard let url = params.member("endpoint")?.stringValue,
            RemoteAgentBridge.Endpoint(url: url, urlAsWritten: url, headers: [:]) != nil
        else {
            return .error(.invalidParams("\"endpoint\" must be the agent's MCP endpoint, an http:// or https:// URL", extra: ["agentName": .string(name)]))
        }
        let principal = context.principal
        if principal.proof != .unconfigured, !context.grant.isUnrestricted, !principal.agentNames.contains(where: { Glob($0).matches(name) }) {
            let allowed = principal.agentNames.isEmpty ? "none" : principal.agentNames.joined(separator: ", ")
            return .error(AccessError.forbidden(
                principal: principal.name, what: "agents/register \(name)",
                reason: "the agent names this principal may register are: \(allowed)").jsonRPCError)
        }
        if let refusal = CallbackEgress.refusal(of: withoutCredentials(url), policy: egress, purpose: "agent") { return .error(refusal) }
        var headers: [String: String] = [:]
        if let given = params.member("headers"), given.kind != .null {
            guard given.kind == .object else { return .error(.invalidParams("\"headers\" must be an object of strings")) }
            for (header, value) in given.members() {
                guard let text = value.stringValue, !header.isEmpty, !header.contains(where: { $0 == ":" || $0.isWhitespace }),
                    !text.contains(where: { $0 == "\r" || $0 == "\n" })
                else {
                    return .error(.invalidParams("\"headers\" must map header names to strings on one line", extra: ["header": .string(header)]))
                }
                headers[header] = text
            }
        }
        var template = AgentTemplate(name: name, command: "")
        template.remote = AgentTemplate.RemoteAddress(url: url, urlAsWritten: Self.withoutCredentials(url), headers: headers)
        template.version = params.member("version")?.stringValue
        template.capabilities = params.member("capabilities")?.elements().compactMap(\.stringValue) ?? []
        if let tenant = context.tenant { template.tenants = [tenant] }
        guard let id = supervisor.addRemote(template) else {
            return .error(.invalidParams("an agent named \"\(name)\" exists already", extra: ["agentName": .string(name)]))
        }
        context.logger.info("agent \(name) registered at \(template.remote!.urlAsWritten) by \(principal.name)")
        return .later(settled(id, agents: agents, on: context.eventLoop, within: template.startupTimeout))
    }

    /// The instance's status once its first connection has succeeded or failed (or the start-up
    /// timeout passed): the caller learns whether the gateway could reach the agent, and a list
    /// made after the answer shows its tools. Looked at every 20 ms: a registration is rare, and
    /// the registry's status is a lookup.
    private static func settled(
        _ id: AgentRegistry.InstanceID, agents: AgentRegistry, on eventLoop: any EventLoop, within timeout: Duration
    ) -> EventLoopFuture<JSONValue> {
        let promise = eventLoop.makePromise(of: JSONValue.self)
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { task in
            let status = agents.status(id)
            let state = status?["currentState"]?.stringValue
            if state != "STARTING" || NIODeadline.now() >= deadline {
                task.cancel()
                promise.succeed(status ?? ["agentId": .string(id.rawValue), "currentState": "OFFLINE"])
            }
        }
        return promise.futureResult
    }

    /// A URL as shown: without a `user:password@`.
    static func withoutCredentials(_ url: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + String(rest[rest.index(after: at)...])
    }
}
