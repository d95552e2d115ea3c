import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The gateway's HTTP face: MCP's Streamable HTTP at `/mcp`, the REST API under `/api/v1`,
/// WebSockets, health and the OAuth protected-resource metadata. It translates; the gateway
/// decides and runs (through `GatewayDoor`).
public final class HTTPFace: Sendable {
    let door: any GatewayDoor
    let settings: HTTPFaceSettings
    let logger: Logger
    let sessions: MCPSessionDirectory
    /// The largest JSON-RPC message, as on the gateway's other listeners.
    let maximumMessageBytes: Int
    let openAPIDocument: ByteBuffer

    public init(door: any GatewayDoor, settings: HTTPFaceSettings, maximumMessageBytes: Int, logger: Logger) {
        self.door = door
        self.settings = settings
        self.logger = logger
        self.sessions = MCPSessionDirectory(settings: settings)
        self.maximumMessageBytes = maximumMessageBytes
        self.openAPIDocument = OpenAPIDocument.render(routes: RESTRoutes.all)
    }

    /// Serves an accepted connection: HTTP/1.1 (after TLS, when the listener has it), with
    /// WebSocket upgrades for the `/ws` paths.
    public func configure(_ channel: any Channel, secure: Bool) throws {
        let face = self
        let http = HTTPConnectionHandler(face: self, secure: secure)
        let httpName = "switchboard.http"

        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: max(maximumMessageBytes, 1 << 16),
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                channel.eventLoop.makeSucceededFuture(face.admitsWebSocket(head, secure: secure) ? HTTPHeaders() : nil)
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    try face.configureWebSocket(channel, head: head)
                }
            }
        )
        let sync = channel.pipeline.syncOperations
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: true,
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                context.pipeline.syncOperations.removeHandler(name: httpName, promise: nil)
            }),
            withErrorHandling: true
        )
        try sync.addHandler(IdleStateHandler(allTimeout: settings.idleTimeout))
        try sync.addHandler(http, name: httpName)
    }

    /// Ends sessions idle for too long, until cancelled; then every session.
    public func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(30))
            sessions.sweep()
        }
        sessions.endAll()
    }

    /// Whether a browser page from `origin` may call: an allowed origin (`http.allowedOrigins`),
    /// or the console this gateway serves when it is reached at a loopback address (so that it
    /// works on the machine itself whatever `allowedOrigins` says). A page of any other name is
    /// judged by `allowedOrigins` alone: a name the browser resolved to this listener (DNS
    /// rebinding) is not "the gateway's own".
    func allows(origin: String, of head: HTTPRequestHead, secure: Bool) -> Bool {
        if settings.allows(origin: origin) { return true }
        guard let host = head.headers.first(name: "host") else { return false }
        let own = "\(secure ? "https" : "http")://\(host.lowercased())"
        return origin.lowercased() == own && HTTPFaceSettings.isLoopback(origin: own)
    }

    public func shutdown() {
        sessions.endAll()
    }
}
