import JSONRPC
import MCPProtocol

/// The methods the gateway core serves itself: `ping`, the MCP tool surface (empty until agents
/// attach) and `gateway/status`.
enum CoreMethods {
    static func register(in table: inout MethodTable, status: GatewayStatusSource) {
        table.register("ping") { _, _ in .result([:]) }
        table.register("tools/list") { request, context in listTools(request, era: context.era) }
        table.register("tools/call") { request, _ in callTool(request) }
        table.register("gateway/status") { _, _ in .result(status.snapshot()) }
    }

    static func listTools(_ request: JSONRPCRequest, era: SessionEra) -> MethodReply {
        if let params = request.params {
            guard case .success(let object) = params.requireObject(for: "tools/list") else {
                return .error(.invalidParams("tools/list takes its params as an object"))
            }
            if let cursor = object.member("cursor"), cursor.kind != .null {
                // No page has a next cursor yet, so no cursor can be valid.
                return .error(.invalidParams("unknown cursor", extra: ["cursor": .raw(cursor)]))
            }
        }
        var result: [String: JSONValue] = ["tools": []]
        if era == .modern {
            // 2026-07-28 list results carry a caching hint. Tools come and go with agents, so
            // the hint is short.
            result["cacheScope"] = "public"
            result["ttlMs"] = 5_000
        }
        return .result(.object(result))
    }

    static func callTool(_ request: JSONRPCRequest) -> MethodReply {
        guard let params = request.params else {
            return .error(.invalidParams("tools/call needs params with the tool's \"name\""))
        }
        if case .failure(let error) = params.requireObject(for: "tools/call") { return .error(error) }
        guard let name = params.member("name")?.stringValue else {
            return .error(.invalidParams("\"name\" must be a string naming the tool"))
        }
        if let arguments = params.member("arguments"), arguments.kind != .object {
            return .error(.invalidParams("\"arguments\" must be an object", extra: ["tool": .string(name)]))
        }
        return .error(.invalidParams("unknown tool \"\(name)\": no connected agent offers it", extra: ["tool": .string(name)]))
    }
}
