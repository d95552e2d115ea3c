import Agents
import Fleet
import Foundation
import JSONRPC

/// `fleet/status`, `fleet/decisions`, `fleet/allocations` and `agents/resize`: what the fleet
/// holds and costs, why it grew or shrank, and vertical scaling.
enum FleetMethods {
    static func register(
        in table: inout MethodTable, fleet: FleetController, agents: AgentRegistry, supervisor: SupervisorSlot, configurationFile: String?
    ) {
        table.register("gateway/reload") { _, context in
            do throws(FleetController.ReloadFailure) {
                let report = try fleet.reload(from: configurationFile)
                context.logger.notice("configuration reloaded by \(context.principal.name)")
                return .result(json(report))
            } catch {
                return .error(JSONRPCError(
                    code: JSONRPCError.Code.invalidRequest, message: error.description,
                    data: ["method": "gateway/reload", "reason": .string(error.description)]))
            }
        }
        table.register("fleet/rollouts") { request, context in
            let visible = visibility(context, supervisor.value)
            let template = request.params?.member("template")?.stringValue
            let records = fleet.rollouts.records.filter { (template == nil || $0.template == template) && visible($0.template) }.map { record -> JSONValue in
                [
                    "template": .string(record.template), "from": .string(record.from), "to": .string(record.to),
                    "outcome": .string(record.outcome.rawValue), "startedAt": .string(record.startedAt.formatted(.iso8601)),
                    "endedAt": record.endedAt.map { .string($0.formatted(.iso8601)) } ?? .null,
                    "reason": record.reason.map(JSONValue.string) ?? .null, "steps": .array(record.steps.map(JSONValue.string)),
                ]
            }
            return .result(["rollouts": .array(records)])
        }
        table.register("fleet/status") { _, context in
            .result(status(fleet, supervisor: supervisor.value, visible: visibility(context, supervisor.value)))
        }
        table.register("fleet/decisions") { request, context in
            let visible = visibility(context, supervisor.value)
            let template = request.params?.member("template")?.stringValue
            guard let limit = limit(request.params, default: 100) else { return .error(.invalidParams("\"limit\" must be an integer from 1 to 1000")) }
            let decisions = fleet.decisions(template: template, limit: limit, where: visible).map { entry -> JSONValue in
                [
                    "at": .string(entry.at.formatted(.iso8601)), "template": .string(entry.template), "kind": .string(entry.decision.kind.rawValue),
                    "from": .integer(Int64(entry.decision.from)), "to": .integer(Int64(entry.decision.to)),
                    "reason": .string(entry.decision.reason), "outcome": .string(entry.outcome),
                ]
            }
            return .result(["decisions": .array(decisions)])
        }
        table.register("fleet/allocations") { request, context in
            let visible = visibility(context, supervisor.value)
            let template = request.params?.member("template")?.stringValue
            let includeReleased = request.params?.member("includeReleased")?.decoded() == .bool(true)
            guard let limit = limit(request.params, default: 500) else { return .error(.invalidParams("\"limit\" must be an integer from 1 to 1000")) }
            let rows = fleet.ledger.rows(template: template, includeReleased: includeReleased, limit: limit, where: visible).map { row -> JSONValue in
                var object: [String: JSONValue] = [
                    "id": .integer(Int64(row.id)), "agentId": .string(row.instance), "template": .string(row.template),
                    "resourceType": .string(row.resourceType), "allocatedAmount": .double(row.amount), "allocatedUnit": .string(row.unit),
                    "allocatedAt": .string(date(row.allocatedAt)), "costPerHour": .double(money(row.costPerHour)),
                    "utilizationPercentage": row.utilizationPercent.map(JSONValue.double) ?? .null,
                    "releasedAt": row.releasedAt.map { .string(date($0)) } ?? .null,
                ]
                if row.resourceType == "gpu", let grant = fleet.ledger.grant(of: row.instance), row.releasedAt == nil {
                    object["devices"] = .array(grant.gpus.map(JSONValue.string))
                }
                return .object(object)
            }
            return .result(["allocations": .array(rows)])
        }
        table.register("agents/resize") { request, _ in
            guard let params = request.params, let template = params.member("template")?.stringValue else {
                return .error(.invalidParams("agents/resize needs \"template\", and \"maxConcurrency\" or \"resources\""))
            }
            var maximumConcurrency: Int?
            if let value = params.member("maxConcurrency") {
                guard let count = value.decoded().integerValue, count >= 1, count <= 100_000 else {
                    return .error(.invalidParams("\"maxConcurrency\" must be an integer from 1 to 100000"))
                }
                maximumConcurrency = Int(count)
            }
            var resources: ResourceRequest?
            if let value = params.member("resources") {
                do throws(ResourceRequest.Problem) {
                    resources = try resourceRequest(value.decoded(), where: "resources")
                } catch {
                    return .error(.invalidParams(error.description))
                }
            }
            guard maximumConcurrency != nil || resources != nil else {
                return .error(.invalidParams("agents/resize needs \"maxConcurrency\" or \"resources\""))
            }
            do {
                let outcome = try supervisor.value.resize(template, maximumConcurrency: maximumConcurrency, resources: resources)
                return .result([
                    "template": .string(template), "maxConcurrency": .integer(Int64(outcome.template.maximumConcurrency)),
                    "resources": json(outcome.template.resources), "instances": .array(outcome.instances.map { .string($0.rawValue) }),
                    "appliedLive": .bool(outcome.appliedLive),
                ])
            } catch {
                return .error(.invalidParams("\(error)", extra: ["template": .string(template)]))
            }
        }
    }

    static func json(_ report: RolloutController.Report) -> JSONValue {
        [
            "added": .array(report.added.map(JSONValue.string)), "removed": .array(report.removed.map(JSONValue.string)),
            "rolling": .array(report.rolling.map(JSONValue.string)), "resized": .array(report.resized.map(JSONValue.string)),
            "unchanged": .array(report.unchanged.map(JSONValue.string)), "deferred": .array(report.deferred.map(JSONValue.string)),
        ]
    }

    /// A principal bound to a tenant sees the templates its tenant may use (those that list
    /// it, and those that list no tenant), and the grants, rows and decisions of those alone.
    private static func visibility(_ context: MethodContext, _ supervisor: AgentSupervisor) -> @Sendable (String) -> Bool {
        guard let tenant = context.tenant else { return { _ in true } }
        let visible = Set(supervisor.templates.filter { $0.tenants == nil || $0.tenants!.contains(tenant) }.map(\.name))
        return { visible.contains($0) }
    }

    private static func limit(_ params: RawJSON?, default value: Int) -> Int? {
        guard let member = params?.member("limit") else { return value }
        guard let limit = member.decoded().integerValue, limit >= 1, limit <= 1_000 else { return nil }
        return Int(limit)
    }

    /// `{cpu, memory, gpu, processes}` as JSON writes it.
    static func resourceRequest(_ value: JSONValue, where path: String) throws(ResourceRequest.Problem) -> ResourceRequest {
        guard case .object(let members) = value else { throw ResourceRequest.Problem("\"\(path)\" must be an object ({cpu, memory, gpu, processes})") }
        var written: [(key: String, value: ResourceRequest.Written)] = []
        for (key, member) in members.sorted(by: { $0.key < $1.key }) {
            switch member {
            case .integer(let number): written.append((key, .number(Double(number))))
            case .double(let number): written.append((key, .number(number)))
            case .string(let text): written.append((key, .string(text)))
            default: throw ResourceRequest.Problem("\(path).\(key) must be a number or a string")
            }
        }
        return try ResourceRequest.parse(written, where: path)
    }

    static func json(_ request: ResourceRequest) -> JSONValue {
        var object: [String: JSONValue] = [:]
        if let cpu = request.cpu { object["cpu"] = .double(cpu) }
        if let memory = request.memoryBytes { object["memoryBytes"] = .integer(memory) }
        if request.gpus > 0 { object["gpu"] = .integer(Int64(request.gpus)) }
        if let processes = request.processes { object["processes"] = .integer(Int64(processes)) }
        return .object(object)
    }

    private static func status(_ fleet: FleetController, supervisor: AgentSupervisor, visible: (String) -> Bool) -> JSONValue {
        let capacity = fleet.ledger.capacity
        let visibleGrants = fleet.ledger.grants.filter { visible($0.template) }
        var allocated = ResourceLedger.Totals()
        for grant in visibleGrants {
            allocated.cpu += grant.request.cpu ?? 0
            allocated.memoryBytes += grant.request.memoryBytes ?? 0
            allocated.gpus += grant.gpus.count
            allocated.costPerHour += grant.costPerHour
        }
        let templates = supervisor.templatesForStatus.filter { visible($0.template.name) }.map { entry -> JSONValue in
            var object: [String: JSONValue] = [
                "template": .string(entry.template.name), "instances": .integer(Int64(entry.instances)), "dormant": .bool(entry.dormant),
                "priorityClass": .string(entry.template.priorityClass.rawValue), "resources": json(entry.template.resources),
                "maxConcurrency": .integer(Int64(entry.template.maximumConcurrency)),
                "costPerHour": .double(money(fleet.ledger.prices.costPerHour(of: entry.template.resources) * Double(entry.instances))),
            ]
            if let seconds = fleet.startSeconds(of: entry.template.name) { object["startSeconds"] = .double((seconds * 1000).rounded() / 1000) }
            if let policy = entry.template.autoscale {
                var autoscale: [String: JSONValue] = [
                    "min": .integer(Int64(policy.minimum)), "max": .integer(Int64(policy.maximum)), "targetUtilization": .double(policy.targetUtilization),
                    "scaleUpAfterSeconds": .double(policy.scaleUpAfter), "scaleDownAfterSeconds": .double(policy.scaleDownAfter),
                    "cooldownSeconds": .double(policy.cooldown), "predictive": .bool(policy.predictive),
                ]
                if let status = fleet.autoscalerStatus(entry.template.name) {
                    autoscale["desired"] = .integer(Int64(status.desired))
                    autoscale["held"] = status.held.map(JSONValue.string) ?? .null
                    autoscale["forecastReady"] = .bool(status.forecastReady)
                    if let forecast = status.forecast { autoscale["forecast"] = .double((forecast * 100).rounded() / 100) }
                    if let pending = status.forecastPending { autoscale["forecastPending"] = .string(pending) }
                }
                object["autoscale"] = .object(autoscale)
            }
            if let sandbox = entry.template.sandbox {
                var view: [String: JSONValue] = ["network": .string(sandbox.network.rawValue), "privateTmp": .bool(sandbox.privateTmp)]
                if let user = sandbox.user { view["user"] = .string(user) }
                view["readOnlyPaths"] = .array(sandbox.readOnlyPaths.map(JSONValue.string))
                view["writablePaths"] = .array(sandbox.writablePaths.map(JSONValue.string))
                object["sandbox"] = .object(view)
            }
            return .object(object)
        }
        let grants = visibleGrants.map { grant -> JSONValue in
            var object: [String: JSONValue] = [
                "agentId": .string(grant.instance), "template": .string(grant.template), "gpus": .array(grant.gpus.map(JSONValue.string)),
                "priorityClass": .string(grant.priority.rawValue), "costPerHour": .double(money(grant.costPerHour)),
                "allocatedAt": .string(date(grant.allocatedAt)),
            ]
            object["cpu"] = grant.request.cpu.map(JSONValue.double) ?? .null
            object["memoryBytes"] = grant.request.memoryBytes.map(JSONValue.integer) ?? .null
            return .object(object)
        }
        return [
            "capacity": [
                "cpu": .double(capacity.cpu), "memoryBytes": .integer(capacity.memoryBytes), "gpus": .array(capacity.gpus.map(JSONValue.string)),
            ],
            "allocated": [
                "cpu": .double((allocated.cpu * 1000).rounded() / 1000), "memoryBytes": .integer(allocated.memoryBytes),
                "gpus": .integer(Int64(allocated.gpus)), "costPerHour": .double(money(allocated.costPerHour)),
            ],
            "costPerHour": .double(money(allocated.costPerHour)),
            "prices": [
                "cpuHour": .double(fleet.ledger.prices.cpuHour), "memoryGiBHour": .double(fleet.ledger.prices.memoryGiBHour),
                "gpuHour": .double(fleet.ledger.prices.gpuHour),
            ],
            "enforcement": .object(fleet.host.summary.mapValues(JSONValue.string)),
            "templates": .array(templates),
            "grants": .array(grants),
        ]
    }

    private static func money(_ value: Double) -> Double { (value * 10_000).rounded() / 10_000 }

    private static func date(_ seconds: Double) -> String { Date(timeIntervalSince1970: seconds).formatted(.iso8601) }
}
