import JSONRPC
import NIOCore
import NIOHTTP1
import Testing

@testable import HTTPFace

@Suite struct RESTRoutingTests {
    @Test func pathsFindTheirRouteAndParameters() throws {
        guard case .found(let route, let parameters) = RESTRoutes.find(.GET, "tasks/task-1/result") else {
            Issue.record("no route")
            return
        }
        #expect(route.rpcMethod == "tasks/result" && parameters == ["taskId": "task-1"])
        guard case .found(let agent, let escaped) = RESTRoutes.find(.GET, "agents/echo%231/status") else {
            Issue.record("no route")
            return
        }
        #expect(agent.rpcMethod == "agents/get" && escaped == ["agentId": "echo#1"])
    }

    @Test func aKnownPathWithAnotherMethodIs405WithTheAllowedOnes() {
        guard case .methodNotAllowed(let allowed) = RESTRoutes.find(.POST, "memory/plan") else {
            Issue.record("expected 405")
            return
        }
        #expect(Set(allowed.map { "\($0)" }) == ["GET", "PUT", "DELETE"])
        guard case .notFound = RESTRoutes.find(.GET, "nothing/here") else {
            Issue.record("expected 404")
            return
        }
    }

    @Test func paramsComeFromTheBodyThePathAndTheTypedQuery() throws {
        guard case .found(let route, let parameters) = RESTRoutes.find(.POST, "workflows/quick-trade/execute") else {
            Issue.record("no route")
            return
        }
        let params = try RESTEndpointParams.make(route, parameters, [:], #"{"inputs":{"symbol":"X"}}"#).get()
        #expect(params["workflowName"] == "quick-trade")
        #expect(params["inputs"]?.encoded == #"{"symbol":"X"}"#)

        guard case .found(let list, let none) = RESTRoutes.find(.GET, "memory") else {
            Issue.record("no route")
            return
        }
        let listed = try RESTEndpointParams.make(list, none, ["limit": "2", "prefix": "task."], "").get()
        #expect(listed["limit"] == .integer(2) && listed["prefix"] == "task.")
        let refused = RESTEndpointParams.make(list, none, ["limit": "two"], "")
        #expect(throws: JSONRPCError.self) { try refused.get() }
        let notJSON = RESTEndpointParams.make(route, parameters, [:], "{nope")
        #expect(throws: JSONRPCError.self) { try notJSON.get() }
    }

    @Test func errorsMapToStatuses() {
        #expect(RESTRoutes.status(of: .invalidParams("no task \"x\"")) == .notFound)
        #expect(RESTRoutes.status(of: .invalidParams("\"priority\" must be an integer")) == .badRequest)
        #expect(RESTRoutes.status(of: JSONRPCError(code: -32007, message: "Unauthenticated")) == .unauthorized)
        #expect(RESTRoutes.status(of: JSONRPCError(code: -32005, message: "Forbidden")) == .forbidden)
        #expect(RESTRoutes.status(of: JSONRPCError(code: -32008, message: "Limited")) == .tooManyRequests)
        #expect(RESTRoutes.status(of: JSONRPCError(code: -32013, message: "timed out")) == .gatewayTimeout)
        #expect(RESTRoutes.status(of: JSONRPCError(code: -32011, message: "no agent")) == .serviceUnavailable)
    }

    @Test func theOpenAPIDocumentNamesEveryRouteOnce() throws {
        let document = try RawJSON(validating: OpenAPIDocument.render(routes: RESTRoutes.all))
        let paths = try #require(document.member("paths"))
        var operations = 0
        for (_, item) in paths.members() { operations += item.members().count }
        #expect(operations == RESTRoutes.all.count)
        #expect(Set(RESTRoutes.all.map(\.operationID)).count == RESTRoutes.all.count)
    }
}

@Suite struct StreamableHTTPRulesTests {
    func head(_ headers: [(String, String)]) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: .POST, uri: "/mcp", headers: HTTPHeaders(headers))
    }

    func request(_ method: String, _ params: String) throws -> JSONRPCRequest {
        JSONRPCRequest(id: .integer(1), method: method, params: try RawJSON(validating: params))
    }

    @Test func headersMustSayWhatTheBodySays() throws {
        let call = try request("tools/call", #"{"name":"café","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#)
        #expect(HTTPConnectionHandler.headerMismatch(head([("mcp-method", "tools/call"), ("mcp-name", "=?base64?Y2Fmw6k=?=")]), call) == nil)
        #expect(HTTPConnectionHandler.headerMismatch(head([("mcp-method", "tools/list")]), call) != nil)
        #expect(HTTPConnectionHandler.headerMismatch(head([("mcp-name", "cafe")]), call) != nil)
        #expect(HTTPConnectionHandler.headerMismatch(head([("mcp-protocol-version", "2025-11-25")]), call) != nil)
    }

    @Test func eventIDsNameTheirStreamAndPlace() {
        #expect(HTTPConnectionHandler.eventPosition("3-17")! == (3, 17))
        #expect(HTTPConnectionHandler.eventPosition("3") == nil)
        #expect(HTTPConnectionHandler.eventPosition("a-1") == nil)
        #expect(HTTPConnectionHandler.eventPosition("-1-2") == nil)
    }

    @Test func anEventCarriesItsIDAndOneDataLine() {
        let event = ServerSentEvent.message(ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"result":{}}"#), id: "1-2")
        #expect(String(buffer: event) == "id: 1-2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n")
    }
}
