import JSONRPC
import MCPProtocol

/// `subscriptions/listen` (MCP 2026-07-28): a long-lived request whose stream carries the
/// change notifications the client opted in to, each with the request's id as
/// `_meta["io.modelcontextprotocol/subscriptionId"]`. The first message is
/// `notifications/subscriptions/acknowledged` with what the gateway will send; the request
/// ends (its result, with the id) when the gateway shuts down, or when the client cancels it.
enum ListenSubscriptions {
    static let subscriptionIDKey = "io.modelcontextprotocol/subscriptionId"

    /// The notifications the gateway can send a listener, by their filter key.
    static let offered: [(key: String, method: String)] = [
        ("toolsListChanged", "notifications/tools/list_changed"),
        ("promptsListChanged", "notifications/prompts/list_changed"),
    ]

    static func register(in table: inout MethodTable) {
        table.register("subscriptions/listen") { request, context in
            guard context.era == .modern else {
                return .error(JSONRPCError(
                    code: JSONRPCError.Code.methodNotFound,
                    message: "subscriptions/listen belongs to MCP \(ProtocolVersion.latestModern); this session is \(context.era), where list changes come unasked"))
            }
            guard let filter = request.params?.member("notifications"), filter.kind == .object else {
                return .error(.invalidParams("subscriptions/listen needs \"notifications\": the notification types to receive, such as {\"toolsListChanged\": true}"))
            }
            var honored: [String: JSONValue] = [:]
            var methods: Set<String> = []
            for (key, method) in offered where filter.member(key)?.decoded() == .bool(true) {
                honored[key] = true
                methods.insert(method)
            }
            let reply = DeferredReply()
            context.connection.listen(request.id, methods: methods, acknowledging: .object(honored), until: reply)
            let connection = context.connection
            let id = request.id
            return .deferred(reply, cancel: { connection.stopListening(id) })
        }
    }

    /// The `_meta` of every message on the stream.
    static func meta(_ id: JSONRPCID) -> JSONValue {
        [subscriptionIDKey: id.jsonValue]
    }
}
