import JSONRPC

/// Who the gateway says it is, and what it offers, in both eras.
public struct ServerIdentity: Sendable {
    public var name: String
    public var title: String
    public var version: String
    public var instructions: String
    /// The MCP `ServerCapabilities` object, listing only what is actually served.
    public var capabilities: JSONValue

    public init(name: String, title: String, version: String, instructions: String, capabilities: JSONValue) {
        self.name = name
        self.title = title
        self.version = version
        self.instructions = instructions
        self.capabilities = capabilities
    }

    /// The MCP `Implementation` object.
    public var implementation: JSONValue {
        ["name": .string(name), "title": .string(title), "version": .string(version)]
    }

    /// MCP 2025-11-25's task capability: `tasks/list`, `tasks/cancel`, and task-augmented
    /// `tools/call`. Only that revision has it (2026-07-28 moved tasks to an extension).
    static let tasksCapability: JSONValue = ["list": [:], "cancel": [:], "requests": ["tools": ["call": [:]]]]

    func initializeResult(protocolVersion: String) -> JSONValue {
        var capabilities = self.capabilities
        if protocolVersion == "2025-11-25", case .object(var members) = capabilities {
            members["tasks"] = Self.tasksCapability
            capabilities = .object(members)
        }
        return [
            "protocolVersion": .string(protocolVersion),
            "capabilities": capabilities,
            "serverInfo": implementation,
            "instructions": .string(instructions),
        ]
    }

    func discoverResult() -> JSONValue {
        [
            "supportedVersions": .array(ProtocolVersion.all.map(JSONValue.string)),
            "capabilities": capabilities,
            "instructions": .string(instructions),
            "cacheScope": "public",
            // Capabilities change only when agents come and go; clients may cache for a minute.
            "ttlMs": 60_000,
        ]
    }
}
