import JSONRPC

/// What a request acts on, as the rules' target patterns see it: the tool of `tools/call`, the
/// namespace of `memory/*`, the workflow of `workflows/execute`… Read from the params as the
/// client wrote them; a method with no target has none, and then only rules without a target
/// pattern apply to it.
public enum RequestTarget {
    /// The member of `params` that names the target, per method.
    static func member(for method: String) -> String? {
        switch method {
        case "tools/call", "prompts/get": return "name"
        case "resources/read": return "uri"
        case "tasks/scatter": return "tool"
        case "memory/get", "memory/set", "memory/delete", "memory/cas", "memory/list": return "namespace"
        case "events/publish": return "topic"
        case "events/subscribe", "events/unsubscribe": return "pattern"
        case "messages/send": return "targetAgentId"
        case "agents/register": return "agentName"
        case "agents/get", "agents/drain", "agents/setState", "agents/heartbeat", "agents/deregister": return "agentId"
        case "agents/scale", "agents/rollback", "agents/activate", "agents/resize": return "template"
        case "workflows/execute", "workflows/get", "workflows/list": return "workflowName"
        default: return nil
        }
    }

    /// The one target of `params` for a method that has at most one (every method but
    /// `tasks/pipeline`, which has one per stage): nil when it names none. The relay path's form:
    /// no array.
    public static func single(method: String, params: RawJSON?) -> String?? {
        guard method != "tasks/pipeline" else { return .none }
        guard let params, params.kind == .object else { return .some(nil) }
        if method == "tasks/submit" {
            return .some(params.member("tool")?.stringValue ?? params.member("taskType")?.stringValue)
        }
        guard let member = member(for: method) else { return .some(nil) }
        return .some(params.member(member)?.stringValue)
    }

    /// The targets of `params` for `method`: usually one; every stage's tool for
    /// `tasks/pipeline`; the tool or task type for `tasks/submit`. Empty when there is none.
    public static func targets(method: String, params: RawJSON?) -> [String] {
        guard let params, params.kind == .object else { return [] }
        switch method {
        case "tasks/submit":
            let tool = params.member("tool")?.stringValue ?? params.member("taskType")?.stringValue
            return tool.map { [$0] } ?? []
        case "tasks/pipeline":
            guard let stages = params.member("stages"), stages.kind == .array else { return [] }
            return stages.elements().compactMap { $0.member("tool")?.stringValue }
        default:
            guard let member = member(for: method), let value = params.member(member)?.stringValue else { return [] }
            return [value]
        }
    }
}
