import Agents
import JSONRPC
import MCPProtocol
import NIOCore

/// The MCP client side of talking to an agent: the `initialize` handshake, then listing what it
/// offers, following pagination.
enum AgentDiscovery {
    /// What the gateway declares to agents. It relays sampling, elicitation and roots requests to
    /// the client whose call the agent is serving (and refuses them when that client cannot).
    static let clientCapabilities: JSONValue = ["roots": ["listChanged": false], "sampling": [:], "elicitation": [:]]

    static func handshake(_ endpoint: any AgentEndpoint, timeout: TimeAmount) async throws -> AgentOffer {
        let result = try await endpoint.call(
            "initialize",
            params: [
                "protocolVersion": .string(ProtocolVersion.latestHandshake),
                "capabilities": clientCapabilities,
                "clientInfo": ["name": "switchboard", "title": "Switchboard", "version": .string(BuildInfo.version)],
            ],
            timeout: timeout
        ).result.get()
        endpoint.notify("notifications/initialized", params: nil)
        var offer = try await discover(endpoint, capabilities: result.member("capabilities"), timeout: timeout)
        offer.serverInfo = result.member("serverInfo").map(JSONValue.raw)
        offer.protocolVersion = result.member("protocolVersion")?.stringValue
        return offer
    }

    /// Lists tools, resources, resource templates and prompts, as far as the agent's
    /// capabilities say it has them (nil capabilities: ask for everything, tolerate -32601).
    static func discover(_ endpoint: any AgentEndpoint, capabilities: RawJSON?, timeout: TimeAmount) async throws -> AgentOffer {
        func offers(_ capability: String) -> Bool {
            guard let capabilities else { return true }
            return capabilities.member(capability) != nil
        }
        var offer = AgentOffer()
        if offers("tools") {
            offer.tools = try await list(endpoint, "tools/list", key: "tools", timeout: timeout).compactMap(named)
        }
        if offers("resources") {
            offer.resources = try await list(endpoint, "resources/list", key: "resources", timeout: timeout)
            offer.resourceTemplates = try await list(endpoint, "resources/templates/list", key: "resourceTemplates", timeout: timeout)
        }
        if offers("prompts") {
            offer.prompts = try await list(endpoint, "prompts/list", key: "prompts", timeout: timeout).compactMap(named)
        }
        return offer
    }

    private static func named(_ definition: RawJSON) -> ToolDefinition? {
        definition.member("name")?.stringValue.map { ToolDefinition(name: $0, definition: definition) }
    }

    /// Every page of a list method. An agent that does not implement it offers nothing.
    private static func list(_ endpoint: any AgentEndpoint, _ method: String, key: String, timeout: TimeAmount) async throws -> [RawJSON] {
        var items: [RawJSON] = []
        var cursor: String?
        for _ in 0..<1_000 {
            let params: JSONValue? = cursor.map { ["cursor": .string($0)] }
            let page: RawJSON
            do {
                page = try await endpoint.call(method, params: params, timeout: timeout).result.get()
            } catch let error as JSONRPCError where error.code == JSONRPCError.Code.methodNotFound {
                return items
            }
            if let list = page.member(key), list.kind == .array {
                items += list.elements()
            }
            guard let next = page.member("nextCursor")?.stringValue, !next.isEmpty else { return items }
            cursor = next
        }
        return items
    }
}
