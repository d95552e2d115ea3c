import JSONRPC
import NIOCore

/// Refuses an HTTP connection over a connection cap: 503 with the JSON-RPC error, then close.
/// Written before any HTTP handler is installed, so the response is composed here.
final class HTTPRefusalHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let error: JSONRPCError
    private var sent = false

    init(_ refusal: ConnectionAdmission.Refusal) {
        self.error = refusal.error
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func refuse(_ context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        var body = ByteBuffer()
        JSONValue.object(["error": error.jsonValue, "status": 503]).write(to: &body)
        var response = context.channel.allocator.buffer(capacity: 160 + body.readableBytes)
        response.writeString(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: \(body.readableBytes)\r\n\r\n")
        response.writeBuffer(&body)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(response)).whenComplete { _ in channel.close(promise: nil) }
    }
}
