import JSONRPC
import NIOHTTP1

/// One route of the REST API: an HTTP method and path under `/api/v1`, and the JSON-RPC method
/// it runs, with how its params are made from the path, the query and the body. The OpenAPI
/// document is written from this table, so the two cannot drift apart.
struct RESTRoute: Sendable {
    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    enum QueryType: String, Sendable {
        case string, integer, boolean
        /// A string with the namespace rule.
        case namespace
        /// An integer from 1 to 1000.
        case pageSize

        var schema: JSONValue {
            switch self {
            case .string: ["type": "string"]
            case .integer: ["type": "integer"]
            case .boolean: ["type": "boolean"]
            case .namespace: RESTRoutes.namespace
            case .pageSize: ["type": "integer", "minimum": 1, "maximum": 1000]
            }
        }
    }

    struct QueryParameter: Sendable {
        var name: String
        var type: QueryType
        var description: String
    }

    enum Body: Sendable {
        case none
        /// A JSON object; its members become the params (path parameters are added).
        case object(schema: JSONValue)
        /// Any JSON value, put in the params under `key`.
        case value(key: String)
    }

    let method: HTTPMethod
    let segments: [Segment]
    let rpcMethod: String
    let operationID: String
    let summary: String
    var query: [QueryParameter] = []
    var body: Body = .none
    /// Path parameter → params key (`{workflowId}` is the workflow's name, for instance).
    var renamed: [String: String] = [:]
    var result: JSONValue = ["type": "object"]

    init(
        _ method: HTTPMethod, _ path: String, _ rpcMethod: String, operationID: String, summary: String,
        query: [QueryParameter] = [], body: Body = .none, renamed: [String: String] = [:], result: JSONValue = ["type": "object"]
    ) {
        self.method = method
        self.segments = path.split(separator: "/").map { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? .parameter(String(part.dropFirst().dropLast())) : .literal(String(part))
        }
        self.rpcMethod = rpcMethod
        self.operationID = operationID
        self.summary = summary
        self.query = query
        self.body = body
        self.renamed = renamed
        self.result = result
    }

    var path: String {
        "/" + segments.map { segment in
            switch segment {
            case .literal(let text): text
            case .parameter(let name): "{\(name)}"
            }
        }.joined(separator: "/")
    }

    /// The path parameters, if `parts` (the path under `/api/v1`, split) is this route's.
    func match(_ parts: [Substring]) -> [String: String]? {
        guard parts.count == segments.count else { return nil }
        var parameters: [String: String] = [:]
        for (segment, part) in zip(segments, parts) {
            switch segment {
            case .literal(let text): guard part == text else { return nil }
            case .parameter(let name): parameters[name] = String(part).removingPercentEncoding(plusIsSpace: false)
            }
        }
        return parameters
    }
}

enum RESTRoutes {
    static let object: JSONValue = ["type": "object"]
    /// What the gateway takes as a name (a task type, a step, a key): at least one character.
    static let name: JSONValue = ["type": "string", "minLength": 1]
    /// An event topic: printable ASCII without spaces or the pattern characters * ? [ ] \.
    static let topic: JSONValue = ["type": "string", "pattern": "^[!-)+->@-Z^-~]{1,256}$"]
    /// A memory namespace.
    static let namespace: JSONValue = ["type": "string", "pattern": "^[A-Za-z0-9_.:@#/-]{1,128}$"]

    static let all: [RESTRoute] = [
        RESTRoute(
            .GET, "agents", "agents/list", operationID: "listAgents", summary: "Every agent instance with its AgentStatus",
            query: [.init(name: "capability", type: .string, description: "only agents that offer this capability")]),
        RESTRoute(
            .POST, "agents/register", "agents/register", operationID: "registerAgent",
            summary: "Registers an agent the gateway reaches over MCP's Streamable HTTP at \"endpoint\" (the seed's AgentRegistrationRequest and the endpoint); answers its AgentStatus",
            body: .object(schema: [
                "type": "object", "required": ["agentName", "endpoint"],
                "properties": [
                    "agentName": ["type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"],
                    "endpoint": ["type": "string", "pattern": "^https?://[^/?#]+"],
                    "agentType": ["type": "string"],
                    "version": ["type": "string"],
                    "capabilities": ["type": "array", "items": ["type": "string"]],
                    "configuration": object,
                    "resourceRequirements": object,
                    "headers": ["type": "object", "additionalProperties": ["type": "string", "pattern": "^[^\\r\\n]*$"]],
                ],
            ])),
        RESTRoute(
            .GET, "agents/{agentId}/status", "agents/get", operationID: "getAgentStatus",
            summary: "One agent's AgentStatus (an instance id, or a template's name)"),
        RESTRoute(.POST, "agents/{agentId}/drain", "agents/drain", operationID: "drainAgent", summary: "Stops new work going to an agent; its work in flight finishes"),
        RESTRoute(
            .POST, "agents/{agentId}/message", "messages/send", operationID: "sendAgentMessage",
            summary: "Sends an AgentMessage to the agent the path names",
            body: .object(schema: [
                "type": "object",
                "properties": [
                    "messageType": ["type": "string", "enum": ["request", "notification", "broadcast"]],
                    "messageData": [:],
                    "priority": ["type": "integer", "minimum": 1, "maximum": 10],
                    "expectResponse": ["type": "boolean"],
                    "ttl": ["type": "number", "exclusiveMinimum": 0, "maximum": 86400],
                ],
            ]),
            renamed: ["agentId": "targetAgentId"]),
        RESTRoute(
            .POST, "tasks/submit", "tasks/submit", operationID: "submitTask", summary: "Queues a task (TaskSubmissionRequest); answers its TaskStatus",
            body: .object(schema: [
                "type": "object",
                // The seed's taskType and taskData, or MCP's tool and arguments.
                "anyOf": [["required": ["taskType"]], ["required": ["tool"]]],
                "properties": [
                    "taskType": name,
                    "taskData": [:],
                    "tool": name,
                    "arguments": object,
                    "requiredCapabilities": ["type": "array", "items": name],
                    "priority": ["type": "integer", "minimum": 1, "maximum": 10],
                    "timeout": ["type": "number", "exclusiveMinimum": 0, "maximum": 86400],
                    "maxRetries": ["type": "integer", "minimum": 0, "maximum": 100],
                    "callback": ["type": "string", "pattern": "^https?://"],
                    "idempotencyKey": name,
                ],
            ])),
        RESTRoute(
            .GET, "tasks", "tasks/list", operationID: "listTasks", summary: "Tasks, newest first",
            query: [
                .init(name: "cursor", type: .string, description: "where the previous page ended"),
                .init(name: "state", type: .string, description: "only tasks in this state"),
            ]),
        RESTRoute(.GET, "tasks/{taskId}/status", "tasks/get", operationID: "getTaskStatus", summary: "A task's TaskStatus"),
        RESTRoute(
            .GET, "tasks/{taskId}/result", "tasks/result", operationID: "getTaskResult",
            summary: "Waits for the task to end and answers its result; with wait=0 answers 202 and its TaskStatus while it runs",
            query: [.init(name: "wait", type: .integer, description: "0: do not wait")]),
        RESTRoute(.POST, "tasks/{taskId}/cancel", "tasks/cancel", operationID: "cancelTask", summary: "Cancels a task"),
        RESTRoute(
            .POST, "workflows/create", "workflows/create", operationID: "createWorkflow",
            summary: "Stores a workflow definition (the seed's WorkflowDefinition, or {\"source\": YAML})",
            body: .object(schema: [
                "type": "object",
                "properties": ["workflowName": ["type": "string"], "version": ["type": "string"], "definition": object, "source": ["type": "string"]],
            ])),
        RESTRoute(.GET, "workflows", "workflows/list", operationID: "listWorkflows", summary: "Stored workflow definitions"),
        RESTRoute(
            .GET, "workflows/{workflowId}", "workflows/get", operationID: "getWorkflow", summary: "One workflow definition",
            query: [.init(name: "version", type: .string, description: "a version other than the newest")], renamed: ["workflowId": "workflowName"]),
        RESTRoute(
            .POST, "workflows/{workflowId}/execute", "workflows/execute", operationID: "executeWorkflow",
            summary: "Starts an execution (WorkflowExecutionRequest)",
            body: .object(schema: [
                "type": "object",
                "properties": ["triggerType": ["type": "string"], "triggerData": object, "executionContext": object, "inputs": object],
            ]),
            renamed: ["workflowId": "workflowName"]),
        RESTRoute(.GET, "executions/{executionId}", "workflows/status", operationID: "getExecution", summary: "An execution's state, steps and history"),
        RESTRoute(
            .POST, "executions/{executionId}/approve", "workflows/approve", operationID: "approveStep",
            summary: "Approves or rejects a step waiting for a human",
            body: .object(schema: [
                "type": "object", "required": ["stepId", "approved"],
                "properties": ["stepId": name, "approved": ["type": "boolean"], "comment": ["type": "string"], "by": ["type": "string"]],
            ])),
        RESTRoute(.POST, "executions/{executionId}/cancel", "workflows/cancel", operationID: "cancelExecution", summary: "Cancels an execution"),
        RESTRoute(
            .GET, "memory", "memory/list", operationID: "listMemory", summary: "Keys of shared memory",
            query: [
                .init(name: "prefix", type: .string, description: "only keys starting with it"),
                .init(name: "namespace", type: .namespace, description: "the namespace (default: the shared one)"),
                .init(name: "limit", type: .pageSize, description: "keys per page, 1 to 1000"),
                .init(name: "cursor", type: .string, description: "where the previous page ended"),
            ]),
        RESTRoute(
            .GET, "memory/{key}", "memory/get", operationID: "getMemory", summary: "A key's value and version",
            query: [.init(name: "namespace", type: .namespace, description: "the namespace")]),
        RESTRoute(
            .PUT, "memory/{key}", "memory/set", operationID: "setMemory", summary: "Writes a key",
            body: .object(schema: [
                "type": "object", "required": ["value"],
                "properties": ["value": [:], "ttlSeconds": ["type": ["number", "null"], "minimum": 0.001, "maximum": 315_360_000],
                    "namespace": ["type": ["string", "null"], "pattern": "^[A-Za-z0-9_.:@#/-]{1,128}$"],
                ],
            ])),
        RESTRoute(
            .DELETE, "memory/{key}", "memory/delete", operationID: "deleteMemory", summary: "Deletes a key",
            query: [.init(name: "namespace", type: .namespace, description: "the namespace")]),
        RESTRoute(
            .POST, "events/publish", "events/publish", operationID: "publishEvent", summary: "Publishes an event on a topic",
            body: .object(schema: ["type": "object", "required": ["topic"], "properties": ["topic": topic, "data": [:]]])),
        RESTRoute(.GET, "gateway/status", "gateway/status", operationID: "gatewayStatus", summary: "The gateway's state: listeners, agents, queues"),
        RESTRoute(.GET, "auth/whoami", "auth/whoami", operationID: "whoAmI", summary: "The principal the request's credential proves"),
        RESTRoute(
            .GET, "agents/{agentId}/metrics", "metrics/history", operationID: "getAgentMetrics",
            summary: "An agent's calls, errors, latency percentiles, load and resource use by minute, hour or day",
            query: [
                .init(name: "period", type: .string, description: "minute (default), hour or day"),
                .init(name: "from", type: .string, description: "the first bucket: ISO 8601, or milliseconds since 1970"),
                .init(name: "to", type: .string, description: "the last bucket: ISO 8601, or milliseconds since 1970 (default: now)"),
                .init(name: "tool", type: .string, description: "only this tool's calls"),
            ]),
        RESTRoute(
            .GET, "messages", "messages/list", operationID: "listMessages",
            summary: "Messages sent to agents, newest first, with their sent, delivered and acknowledged times",
            query: [
                .init(name: "agentId", type: .string, description: "only messages this agent sent or received"),
                .init(name: "since", type: .string, description: "only messages sent after this time (ISO 8601 or milliseconds)"),
                .init(name: "limit", type: .pageSize, description: "messages per page, 1 to 1000"),
                .init(name: "cursor", type: .string, description: "where the previous page ended"),
            ]),
    ]

    /// The route for `method` and `path` (under `/api/v1`), and its path parameters; or
    /// whether the path exists with other methods (405), or not at all (404).
    static func find(_ method: HTTPMethod, _ path: Substring) -> Lookup {
        let parts = path.split(separator: "/")
        // A path a route spells out is that route's: `workflows/create` is not a workflow named
        // "create". The routes with the fewest parameters that match win.
        let matching = all.compactMap { route in route.match(parts).map { (route, $0) } }
        guard let fewest = matching.map({ $0.1.count }).min() else { return .notFound }
        let candidates = matching.filter { $0.1.count == fewest }
        if let (route, parameters) = candidates.first(where: { $0.0.method == method }) { return .found(route, parameters) }
        return .methodNotAllowed(candidates.map(\.0.method))
    }

    enum Lookup {
        case found(RESTRoute, [String: String])
        case methodNotAllowed([HTTPMethod])
        case notFound
    }

    /// The HTTP status of a JSON-RPC error.
    static func status(of error: JSONRPCError) -> HTTPResponseStatus {
        switch error.code {
        case JSONRPCError.Code.parseError, JSONRPCError.Code.invalidRequest: return .badRequest
        case JSONRPCError.Code.invalidParams:
            // What names a thing that is not there is 404; any other bad parameter is 400.
            let message = error.message.lowercased()
            let absent = ["unknown", "no such", "not found", ": no task", ": no agent", ": no workflow", ": no execution", "no execution"]
            return absent.contains(where: message.contains) ? .notFound : .badRequest
        case JSONRPCError.Code.methodNotFound: return .notFound
        // No such workflow, execution or resource.
        case -32002: return .notFound
        case -32007: return .unauthorized
        case JSONRPCError.Code.forbidden: return .forbidden
        case -32008: return .tooManyRequests
        case JSONRPCError.Code.messageTooLarge: return .payloadTooLarge
        case JSONRPCError.Code.shuttingDown, JSONRPCError.Code.tooManyConnections, JSONRPCError.Code.noAgentAvailable,
            JSONRPCError.Code.agentBusy, JSONRPCError.Code.backendUnavailable:
            return .serviceUnavailable
        case JSONRPCError.Code.callTimedOut: return .gatewayTimeout
        case JSONRPCError.Code.agentFailed: return .badGateway
        case JSONRPCError.Code.taskFailed: return .unprocessableEntity
        case JSONRPCError.Code.callChainRefused: return .conflict
        case JSONRPCError.Code.unsupportedProtocolVersion: return .badRequest
        default: return error.code <= -32000 && error.code >= -32099 ? .conflict : .internalServerError
        }
    }
}
