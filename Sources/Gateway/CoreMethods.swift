import JSONRPC
import MCPProtocol

/// The methods the gateway core serves itself: `ping` and `gateway/status`.
enum CoreMethods {
    static func register(in table: inout MethodTable, status: GatewayStatusSource) {
        table.register("ping") { _, _ in .result([:]) }
        ListenSubscriptions.register(in: &table)
        table.register("gateway/status") { _, context in .later(context.eventLoop.makeFutureWithTask { await status.snapshot() }) }
    }
}
