import Access
import Agents
import Backend
import JSONRPC
import Monitoring
import NIOCore
import Telemetry

/// `metrics/prometheus` (the exposition `GET /metrics` serves), `metrics/history` (an agent's
/// figures by minute, hour or day), `messages/list` and `messages/acknowledge` (the record of
/// agent communications).
enum TelemetryMethods {
    static func register(in table: inout MethodTable, observability: GatewayObservability, agents: AgentRegistry) {
        table.register("metrics/prometheus") { _, context in
            guard let metrics = observability.metrics else {
                return .error(JSONRPCError(
                    code: JSONRPCError.Code.methodNotFound, message: "Method not found: metrics/prometheus (metrics are turned off: metrics.enabled is false)",
                    data: ["method": "metrics/prometheus"]))
            }
            return .later(context.eventLoop.makeFutureWithTask {
                let text = await metrics.exposition()
                return ["contentType": .string(GatewayMetrics.contentType), "text": .string(String(decoding: text, as: UTF8.self))]
            })
        }
        table.register("metrics/history") { request, context in
            history(request, context, observability: observability, agents: agents)
        }
        table.register("messages/list") { request, context in
            listMessages(request, context, log: observability.messages)
        }
        table.register("messages/acknowledge") { request, context in
            guard let id = request.params?.member("messageId")?.stringValue, !id.isEmpty else {
                return .error(.invalidParams("messages/acknowledge needs the \"messageId\" of a message this agent received"))
            }
            guard let agent = context.agentInstance else {
                return .error(.invalidParams("only an agent acknowledges a message: this connection is not a registered agent"))
            }
            guard observability.messages.acknowledged(id, by: agent.rawValue) else {
                return .error(.invalidParams("no message \"\(id)\" was sent to agent \(agent) (or it is no longer kept)", extra: ["messageId": .string(id)]))
            }
            return .result(["messageId": .string(id), "acknowledged": true])
        }
    }

    /// The most points one answer holds.
    static let maximumPoints: Int64 = 1440

    /// The range a history request covers by default: the last hour of minutes, the last day of
    /// hours, the last month of days.
    private static func defaultSpan(_ period: HistoryPeriod) -> Int64 {
        switch period {
        case .minute: 3_600_000
        case .hour: 86_400_000
        case .day: 30 * 86_400_000
        }
    }

    private static func history(
        _ request: JSONRPCRequest, _ context: MethodContext, observability: GatewayObservability, agents: AgentRegistry
    ) -> MethodReply {
        guard let store = observability.history else {
            return .error(.internalError("the history is not kept"))
        }
        // No params at all: the whole gateway's last hour, as `{}` reads it.
        let params = request.params ?? .emptyObject
        guard params.kind == .object else {
            return .error(.invalidParams("metrics/history takes an object: agentId or template (or neither: the whole gateway), period (minute, hour, day), from, to, tool"))
        }
        let subject: HistorySubjectChoice
        switch chooseSubject(params, context, observability: observability, agents: agents) {
        case .success(let chosen): subject = chosen
        case .failure(let error): return .error(error)
        }
        var period = HistoryPeriod.minute
        if let value = params.member("period"), value.kind != .null {
            guard let text = value.stringValue, let chosen = HistoryPeriod(rawValue: text) else {
                return .error(.invalidParams("\"period\" must be minute, hour or day"))
            }
            period = chosen
        }
        let now = SystemClock().now()
        let to: Timestamp
        let asked: Timestamp
        switch (time(params.member("to")), time(params.member("from"))) {
        case (.failure(let error), _), (_, .failure(let error)):
            return .error(error)
        case (.success(let end), .success(let start)):
            to = end ?? now
            asked = start ?? Timestamp(millisecondsSinceEpoch: to.millisecondsSinceEpoch - defaultSpan(period))
        }
        guard asked <= to else { return .error(.invalidParams("\"from\" must not be after \"to\"")) }
        // A range longer than a page of buckets keeps its newest ones: the recent past is what
        // a reader of a long range wants first.
        let newestSeconds = to.millisecondsSinceEpoch / 1000 - (Self.maximumPoints - 1) * period.seconds
        let from = max(asked, Timestamp(millisecondsSinceEpoch: newestSeconds / period.seconds * period.seconds * 1000))
        var tool: String?
        if let value = params.member("tool"), value.kind != .null {
            guard let name = value.stringValue else { return .error(.invalidParams("\"tool\" must be a tool's name")) }
            tool = name
        }
        let chosenPeriod = period
        let chosenTool = tool
        return .later(context.eventLoop.makeFutureWithTask {
            let period = chosenPeriod
            let tool = chosenTool
            let points: [HistoryPoint]
            do {
                observability.drainCallSeries()
                points = try await store.history(agent: subject.key, period: period, from: from, to: to, tool: tool)
            } catch {
                throw JSONRPCError.backendUnavailable("the history could not be read: \(error)")
            }
            var result: [String: JSONValue] = [
                "subject": .string(subject.name), "period": .string(period.rawValue), "from": .string(from.iso8601), "to": .string(to.iso8601),
                "points": .array(points.map(\.json)),
            ]
            switch subject {
            case .agent(let named, _): result["agentId"] = .string(named)
            case .template(let name): result["template"] = .string(name)
            case .gateway: break
            }
            if let tool { result["tool"] = .string(tool) }
            return .object(result)
        })
    }

    /// Whose history a request reads: an instance's (`agentId`), a template's (`template`: every
    /// call of its instances, those gone included), or the whole gateway's (neither).
    enum HistorySubjectChoice: Sendable {
        case agent(named: String, key: String)
        case template(String)
        case gateway

        /// The series it is kept under.
        var key: String {
            switch self {
            case .agent(_, let key): key
            case .template(let name): HistorySubject.template(name)
            case .gateway: HistorySubject.gateway
            }
        }

        /// As the answer names it.
        var name: String {
            switch self {
            case .agent(let named, _): named
            case .template(let name): "template:\(name)"
            case .gateway: "gateway"
            }
        }
    }

    private static func chooseSubject(
        _ params: RawJSON, _ context: MethodContext, observability: GatewayObservability, agents: AgentRegistry
    ) -> Result<HistorySubjectChoice, JSONRPCError> {
        func visible(_ instance: AgentRegistry.InstanceID) -> Bool {
            context.tenant.map { tenant in agents.status(instance).map { AgentMethods.isVisible($0, to: tenant) } ?? false } ?? true
        }
        let agentValue = params.member("agentId")
        let templateValue = params.member("template")
        if let agentValue, agentValue.kind != .null, let templateValue, templateValue.kind != .null {
            return .failure(.invalidParams("name an \"agentId\" or a \"template\", not both"))
        }
        if let agentValue, agentValue.kind != .null {
            guard let agent = agentValue.stringValue, !agent.isEmpty else {
                return .failure(.invalidParams("\"agentId\" must be an agent's id"))
            }
            let named = agents.instance(named: agent)?.rawValue ?? agent
            // The history is an instance's: a template's name asks which one (or for the sum).
            let instances = agents.instances(ofTemplate: agent).filter(visible)
            if agents.instance(named: agent) == nil, !instances.isEmpty {
                let listed = instances.map(\.rawValue).sorted()
                return .failure(.invalidParams(
                    "\"\(agent)\" is a template: ask for one of its instances (\(listed.joined(separator: ", "))), or for the template's sum with \"template\"",
                    extra: ["agentId": .string(agent), "instances": .array(listed.map(JSONValue.string))]))
            }
            // Another tenant's agent has no history to show: it is not found, as in agents/get.
            if context.tenant != nil, !visible(AgentRegistry.InstanceID(named)) {
                return .failure(.invalidParams("no agent \"\(agent)\"", extra: ["agentId": .string(agent)]))
            }
            return .success(.agent(named: named, key: observability.historyID(of: named)))
        }
        if let templateValue, templateValue.kind != .null {
            guard let template = templateValue.stringValue, !template.isEmpty else {
                return .failure(.invalidParams("\"template\" must be a template's name"))
            }
            // A template's sum counts the calls of every instance it ever had, whoever registered
            // it and whichever tenants' calls it served: for those who work across tenants. A
            // tenant reads its instances' own histories.
            if context.tenant != nil {
                return .failure(.invalidParams(
                    "a template's sum counts every tenant's calls of its instances: read one of your instances with \"agentId\"",
                    extra: ["template": .string(template)]))
            }
            return .success(.template(template))
        }
        // The gateway's sum counts every tenant's calls: for those who work across tenants.
        if context.tenant != nil {
            return .failure(.invalidParams(
                "the whole gateway's history counts every tenant's calls: read one of your instances with \"agentId\""))
        }
        return .success(.gateway)
    }

    /// An ISO 8601 time or milliseconds since the epoch; nil when absent.
    private static func time(_ value: RawJSON?) -> Result<Timestamp?, JSONRPCError> {
        guard let value, value.kind != .null else { return .success(nil) }
        if let text = value.stringValue {
            if let milliseconds = Int64(text) { return .success(Timestamp(millisecondsSinceEpoch: milliseconds)) }
            guard let time = AuditTime(iso8601: text) else {
                return .failure(.invalidParams("a time must be ISO 8601 (2026-12-07T18:00:00Z) or milliseconds since 1970, not \"\(text)\""))
            }
            return .success(Timestamp(millisecondsSinceEpoch: time.millisecondsSince1970))
        }
        if case .integer(let milliseconds) = value.decoded() { return .success(Timestamp(millisecondsSinceEpoch: milliseconds)) }
        return .failure(.invalidParams("a time must be ISO 8601 (2026-12-07T18:00:00Z) or milliseconds since 1970"))
    }

    private static func listMessages(_ request: JSONRPCRequest, _ context: MethodContext, log: MessageLog) -> MethodReply {
        let params = request.params
        if let params, params.kind != .object, params.kind != .null {
            return .error(.invalidParams("messages/list takes an object: agentId, since, limit, cursor"))
        }
        var agent: String?
        if let value = params?.member("agentId"), value.kind != .null {
            guard let name = value.stringValue else { return .error(.invalidParams("\"agentId\" must be a string")) }
            agent = name
        }
        var since: Timestamp?
        switch time(params?.member("since")) {
        case .failure(let error): return .error(error)
        case .success(let value): since = value
        }
        var limit = 100
        if let value = params?.member("limit"), value.kind != .null {
            guard case .integer(let number) = value.decoded(), (1...1000).contains(number) else {
                return .error(.invalidParams("\"limit\" must be an integer from 1 to 1000"))
            }
            limit = Int(number)
        }
        var before: UInt64?
        if let value = params?.member("cursor"), value.kind != .null {
            guard let text = value.stringValue, let sequence = UInt64(text) else {
                return .error(.invalidParams("\"cursor\" must be the nextCursor of an earlier page"))
            }
            before = sequence
        }
        // With tenants, a principal sees its tenant's messages; `agentId` narrows to one agent's.
        let (entries, next) = log.list(agent: agent, tenant: context.tenant, since: since, before: before, limit: limit)
        var result: [String: JSONValue] = ["messages": .array(entries.map(\.json))]
        if let next { result["nextCursor"] = .string(String(next)) }
        return .result(.object(result))
    }
}
