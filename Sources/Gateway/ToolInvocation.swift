import JSONRPC

/// A tool and its arguments as a request names them: `tool` and `arguments` (MCP's words), or
/// the seed's `taskType` and `taskData`. Wherever work names a tool — a task, a scatter, a
/// pipeline stage — either pair is accepted.
struct ToolInvocation {
    var tool: String
    var arguments: RawJSON

    static func read(_ object: RawJSON) -> Result<ToolInvocation, JSONRPCError> {
        let members = object.members("tool", "taskType", "arguments", "taskData")
        if members[0] != nil, members[1] != nil {
            return .failure(.invalidParams("give \"tool\" or \"taskType\", not both: they name the same thing"))
        }
        if members[2] != nil, members[3] != nil {
            return .failure(.invalidParams("give \"arguments\" or \"taskData\", not both: they are the same thing"))
        }
        guard let tool = (members[0] ?? members[1])?.stringValue, !tool.isEmpty else {
            return .failure(.invalidParams("\"tool\" (or \"taskType\") must name the tool to run"))
        }
        let arguments = members[2] ?? members[3] ?? RawJSON.emptyObject
        guard arguments.kind == .object else {
            return .failure(.invalidParams("\"\(members[2] != nil ? "arguments" : "taskData")\" must be an object (the tool's arguments)", extra: ["tool": .string(tool)]))
        }
        return .success(ToolInvocation(tool: tool, arguments: arguments))
    }
}
