import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A local HTTP server that answers every request with the JWKS it is given and counts the
/// requests, standing in for an identity provider's JWKS endpoint.
final class JWKSTestServer: Sendable {
    struct Answer: Sendable {
        var status: HTTPResponseStatus = .ok
        var body = ""
    }

    private let state: State
    private let channel: any Channel

    var port: Int { channel.localAddress?.port ?? 0 }
    var url: String { "http://127.0.0.1:\(port)/.well-known/jwks.json" }
    var fetches: Int { state.fetches.withLock { $0 } }

    func answer(_ status: HTTPResponseStatus = .ok, body: String) {
        state.answer.withLock { $0 = Answer(status: status, body: body) }
    }

    static func start(body: String) async throws -> JWKSTestServer {
        let state = State(answer: Answer(body: body))
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Responder(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return JWKSTestServer(state: state, channel: channel)
    }

    private init(state: State, channel: any Channel) {
        self.state = state
        self.channel = channel
    }

    func stop() async throws {
        try await channel.close()
    }

    private final class State: Sendable {
        let answer: Mutex<Answer>
        let fetches = Mutex(0)

        init(answer: Answer) {
            self.answer = Mutex(answer)
        }
    }

    private final class Responder: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let state: State

        init(state: State) {
            self.state = state
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            state.fetches.withLock { $0 += 1 }
            let answer = state.answer.withLock { $0 }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: "\(answer.body.utf8.count)")
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body)))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
