import JSONRPC
import NIOCore
import NIOHTTP1

/// `/api/v1`: each route runs its JSON-RPC twin on the connection's plain link, as the
/// request's credential; the result is the body, an error is `{"error": {code, message, data},
/// "status": HTTP status}`.
extension HTTPConnectionHandler {
    func serveREST(_ head: HTTPRequestHead, path: String, query: [String: String], body: ByteBuffer) {
        guard let credential = readCredential(head) else { return }
        switch RESTRoutes.find(head.method, path.dropFirst("/api/v1/".count)) {
        case .notFound:
            respondError(.notFound, JSONRPCError(code: JSONRPCError.Code.methodNotFound, message: "no such path: \(path) (see /api/v1/openapi.json)"))
        case .methodNotAllowed(let allowed):
            let names = allowed.map { "\($0)" }.joined(separator: ", ")
            respondError(
                .methodNotAllowed, JSONRPCError(code: JSONRPCError.Code.methodNotFound, message: "\(path) takes \(names)"), headers: [("allow", names)])
        case .found(let route, let parameters):
            switch Self.params(for: route, parameters: parameters, query: query, body: body) {
            case .failure(let error):
                respondError(.badRequest, error)
            case .success(let given):
                let params = Self.carryingTraceContext(given, head)
                let waits = route.rpcMethod == "tasks/result" && query["wait"] != "0"
                let method = route.rpcMethod == "tasks/result" && !waits ? "tasks/get" : route.rpcMethod
                withLink(.plain, credential: credential.token, { handler, link in
                    handler.runREST(method, params: params, link: link, checkingResult: route.rpcMethod == "tasks/result" && !waits)
                }, refused: { handler, error in handler.respondError(RESTRoutes.status(of: error), error, headers: handler.authenticationHeaders(error)) })
            }
        }
    }

    private func runREST(_ method: String, params: JSONValue, link: GatewayLink, checkingResult: Bool) {
        let bound = onLoopForExchange()
        link.call(method, params: params) { response, _ in
            bound { handler in
                switch response.outcome {
                case .error(let error):
                    handler.respondRESTError(error)
                case .result(let result):
                    if checkingResult {
                        // `?wait=0`: the result if the task has ended, else 202 and where it stands.
                        let state = result.member("status")?.stringValue ?? result.member("state")?.stringValue ?? ""
                        if ["working", "input_required", "PENDING", "ASSIGNED", "RUNNING"].contains(state) {
                            handler.respond(.accepted, body: result.buffer)
                        } else {
                            handler.runREST("tasks/result", params: params, link: link, checkingResult: false)
                        }
                        return
                    }
                    handler.respond(.ok, body: result.buffer)
                }
            }
        }
        if method == "tasks/result" {
            // The wait ends with the client: a result nobody reads is not waited for.
            onAbandon { link.close() }
        }
    }

    /// An anonymous request refused for want of a principal is 401 with the challenge, as on /mcp.
    func respondRESTError(_ error: JSONRPCError) {
        if error.code == -32005, face.settings.accessControlled, let head = exchange?.head, Self.credential(head).token == nil {
            respondError(.unauthorized, error, headers: [("www-authenticate", challenge(head))])
            return
        }
        respondError(RESTRoutes.status(of: error), error, headers: authenticationHeaders(error))
    }

    /// The W3C trace context of the HTTP request is the call's, as `_meta.traceparent` is over MCP.
    static func carryingTraceContext(_ params: JSONValue, _ head: HTTPRequestHead) -> JSONValue {
        guard let traceparent = head.headers.first(name: "traceparent"), traceparent.utf8.count <= 64, case .object(var members) = params else {
            return params
        }
        var trace: [String: JSONValue?] = ["traceparent": .string(traceparent)]
        if let state = head.headers.first(name: "tracestate"), state.utf8.count <= 512 { trace["tracestate"] = .string(state) }
        switch members["_meta"] {
        case nil, .null?:
            members["_meta"] = .object(trace.compactMapValues { $0 })
        case .raw(let meta)? where meta.kind == .object && meta.member("traceparent") == nil:
            // The body's own `_meta` keeps its members (a progress token, say).
            members["_meta"] = .raw(meta.replacingMembers(trace))
        default:
            // The body names its own trace, or `_meta` is not an object (the method says so).
            break
        }
        return .object(members)
    }

    /// A member given, and not null.
    static func isPresent(_ value: JSONValue?) -> Bool {
        switch value {
        case nil, .null?: false
        case .raw(let raw)?: raw.kind != .null
        default: true
        }
    }

    func authenticationHeaders(_ error: JSONRPCError) -> [(String, String)] {
        guard let head = exchange?.head else { return [] }
        switch error.code {
        case -32007: return [("www-authenticate", challenge(head, error: "invalid_token"))]
        case -32008:
            if case .object(let data)? = error.data, let milliseconds = data["retryAfterMs"]?.integerValue {
                return [("retry-after", "\(max(1, (milliseconds + 999) / 1000))")]
            }
            return [("retry-after", "1")]
        default: return []
        }
    }

    /// The JSON-RPC params of a REST request: the body's members, the path parameters, the
    /// query parameters with their declared types.
    static func params(for route: RESTRoute, parameters: [String: String], query: [String: String], body: ByteBuffer) -> Result<JSONValue, JSONRPCError> {
        var params: [String: JSONValue] = [:]
        switch route.body {
        case .none:
            break
        case .object, .value:
            if body.readableBytes > 0 {
                guard let raw = try? RawJSON(validating: body) else {
                    return .failure(.invalidParams("the body is not JSON"))
                }
                switch route.body {
                case .value(let key):
                    params[key] = .raw(raw)
                default:
                    guard raw.kind == .object else { return .failure(.invalidParams("the body must be a JSON object, not \(raw.kind.name)")) }
                    for (name, value) in raw.members() { params[name] = .raw(value) }
                }
            }
        }
        // The path names what the request is about: a body cannot say otherwise.
        for (name, value) in parameters {
            params[route.renamed[name] ?? name] = .string(value)
        }
        for parameter in route.query {
            guard let text = query[parameter.name] else { continue }
            switch parameter.type {
            case .string, .namespace: params[parameter.name] = .string(text)
            case .integer, .pageSize:
                guard let value = Int64(text) else { return .failure(.invalidParams("\(parameter.name) must be an integer, not \"\(text)\"")) }
                params[parameter.name] = .integer(value)
            case .boolean:
                guard let value = Bool(text) else { return .failure(.invalidParams("\(parameter.name) must be true or false")) }
                params[parameter.name] = .bool(value)
            }
        }
        params["wait"] = nil
        if route.rpcMethod == "agents/register", !Self.isPresent(params["endpoint"]) {
            // Without one, the request's own connection would become the agent, and go with it.
            return .failure(.invalidParams(
                "POST /agents/register registers an agent the gateway reaches at \"endpoint\" (its MCP Streamable HTTP URL); an agent that connects to the gateway registers on its own connection"))
        }
        return .success(.object(params))
    }
}

/// The params of a REST request from its parts, for tests and for the endpoint alike.
enum RESTEndpointParams {
    static func make(_ route: RESTRoute, _ parameters: [String: String], _ query: [String: String], _ body: String) -> Result<[String: JSONValue], JSONRPCError> {
        HTTPConnectionHandler.params(for: route, parameters: parameters, query: query, body: ByteBuffer(string: body)).map { $0.objectValue ?? [:] }
    }
}

/// `GET /metrics`: the Prometheus text exposition, from `metrics/prometheus` on the plain link
/// as the request's credential (a scraper's bearer token), so access is decided as for any
/// method.
extension HTTPConnectionHandler {
    func serveMetrics(_ head: HTTPRequestHead) {
        guard head.method == .GET || head.method == .HEAD else {
            respondError(
                .methodNotAllowed, JSONRPCError(code: JSONRPCError.Code.methodNotFound, message: "/metrics takes GET"), headers: [("allow", "GET, HEAD")])
            return
        }
        guard let credential = readCredential(head) else { return }
        withLink(.plain, credential: credential.token, { handler, link in
            let bound = handler.onLoopForExchange()
            link.call("metrics/prometheus", params: [:]) { response, _ in
                bound { handler in
                    switch response.outcome {
                    case .error(let error):
                        handler.respondRESTError(error)
                    case .result(let result):
                        let text = result.member("text")?.stringValue ?? ""
                        let type = result.member("contentType")?.stringValue ?? "text/plain; version=0.0.4; charset=utf-8"
                        handler.respond(.ok, contentType: type, body: ByteBuffer(string: text))
                    }
                }
            }
        }, refused: { handler, error in handler.respondError(RESTRoutes.status(of: error), error, headers: handler.authenticationHeaders(error)) })
    }
}
