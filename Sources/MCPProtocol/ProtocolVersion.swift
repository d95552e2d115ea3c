/// MCP protocol revisions and how a session settles on one.
public enum ProtocolVersion {
    /// Revisions reached through the `initialize` handshake, oldest first.
    public static let handshake = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
    /// Revisions of the stateless era: `server/discover` and a per-request `_meta` envelope.
    public static let modern = ["2026-07-28"]
    public static let all = handshake + modern

    public static let latestHandshake = "2025-11-25"
    public static let latestModern = "2026-07-28"

    /// JSON-RPC batches exist in exactly one MCP revision.
    public static let allowingBatches: Set<String> = ["2025-03-26"]

    /// The answer to an `initialize` offering `offered`: the same version when we speak it,
    /// otherwise our latest handshake version, as the MCP lifecycle prescribes.
    public static func negotiateHandshake(offered: String) -> String {
        handshake.contains(offered) ? offered : latestHandshake
    }
}

/// Reserved `_meta` keys of the 2026-07-28 envelope.
public enum MetaKey {
    public static let protocolVersion = "io.modelcontextprotocol/protocolVersion"
    public static let clientInfo = "io.modelcontextprotocol/clientInfo"
    public static let clientCapabilities = "io.modelcontextprotocol/clientCapabilities"
    public static let serverInfo = "io.modelcontextprotocol/serverInfo"
}
