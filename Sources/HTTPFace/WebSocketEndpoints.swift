import JSONRPC
import NIOCore
import NIOHTTP1
import NIOWebSocket

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// WebSockets: `/ws` carries the whole JSON-RPC surface (one message per text frame, for
/// browsers), `/ws/events?pattern=P[&pattern=Q]` the events of the topics the patterns match,
/// `/ws/agents/{agentId}/communications` the seed's AgentCommunicationEvents of one agent (an
/// instance, or every instance of a template): its status first, then each change and message.
/// Both run on a link of their own, as the credential of the upgrade's `Authorization` header
/// (a browser, which cannot set one, sends `auth/authenticate` as its first frame).
extension HTTPFace {
    enum WebSocketEndpoint {
        case rpc
        case events(patterns: [String])
        case agentCommunications(agentId: String)
    }

    /// Where the gateway publishes an agent's communication events.
    static let agentTopicPrefix = "switchboard.agents."

    static func webSocketEndpoint(_ head: HTTPRequestHead) -> WebSocketEndpoint? {
        let (path, _) = HTTPConnectionHandler.split(head.uri)
        switch path {
        case "/ws", "/ws/": return .rpc
        case "/ws/events":
            let patterns = Self.queryValues(head.uri, name: "pattern") + Self.queryValues(head.uri, name: "topic")
            return .events(patterns: patterns.isEmpty ? ["*"] : patterns)
        default:
            let parts = path.split(separator: "/", omittingEmptySubsequences: true)
            if parts.count == 4, parts[0] == "ws", parts[1] == "agents", parts[3] == "communications" {
                let agent = String(parts[2]).removingPercentEncoding(plusIsSpace: false)
                guard !agent.isEmpty, !agent.contains(where: { "*?[]\\ ".contains($0) }) else { return nil }
                return .agentCommunications(agentId: agent)
            }
            return nil
        }
    }

    static func queryValues(_ uri: String, name: String) -> [String] {
        guard let mark = uri.firstIndex(of: "?") else { return [] }
        return uri[uri.index(after: mark)...].split(separator: "&").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, String(parts[0]).removingPercentEncodingForQuery == name else { return nil }
            return String(parts[1]).removingPercentEncodingForQuery
        }
    }

    func admitsWebSocket(_ head: HTTPRequestHead, secure: Bool) -> Bool {
        guard Self.webSocketEndpoint(head) != nil else { return false }
        if let origin = head.headers.first(name: "origin"), !allows(origin: origin, of: head, secure: secure) { return false }
        if settings.accessControlled, case .malformed = HTTPConnectionHandler.credential(head) { return false }
        return true
    }

    func configureWebSocket(_ channel: any Channel, head: HTTPRequestHead) throws {
        guard let endpoint = Self.webSocketEndpoint(head) else { throw ChannelError.inappropriateOperationForState }
        // Without access control a credential is not asked for, and not looked at.
        let credential = settings.accessControlled ? HTTPConnectionHandler.credential(head).token : nil
        let handler = WebSocketLinkHandler(face: self, endpoint: endpoint, credential: credential)
        try channel.pipeline.syncOperations.addHandlers(
            NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1024, maxAccumulatedFrameSize: max(maximumMessageBytes, 1 << 16)),
            handler)
    }
}

/// One WebSocket: frames in, lines to its link; lines out, frames to the client.
final class WebSocketLinkHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let face: HTTPFace
    private let endpoint: HTTPFace.WebSocketEndpoint
    private let credential: String?
    private var link: GatewayLink?
    /// Frames that came before the link was open.
    private var early: [ByteBuffer] = []
    private var context: ChannelHandlerContext?
    private var closing = false

    init(face: HTTPFace, endpoint: HTTPFace.WebSocketEndpoint, credential: String?) {
        self.face = face
        self.endpoint = endpoint
        self.credential = credential
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let peer = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        GatewayLink.open(door: face.door, on: context.eventLoop, peer: peer, maximumMessageBytes: face.maximumMessageBytes).whenComplete { outcome in
            let handler = bound.value
            switch outcome {
            case .success(let link): handler.opened(link)
            case .failure: handler.close(code: .unexpectedServerError, reason: "cannot reach the gateway")
            }
        }
    }

    private func opened(_ link: GatewayLink) {
        guard let context, !closing else {
            link.close()
            return
        }
        self.link = link
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        let endpoint = self.endpoint
        link.setOutputHandler { line in
            let frame: ByteBuffer
            switch endpoint {
            case .rpc:
                frame = line
            case .events:
                // Only the events themselves: the replies to the subscriptions are not news.
                guard line.readableBytesView.starts(with: Self.eventPrefix) else { return }
                frame = line
            case .agentCommunications:
                // The event itself, as the seed shapes it: the data the gateway published.
                guard line.readableBytesView.starts(with: Self.eventPrefix),
                    let data = (try? RawJSON(validating: line))?.member("params")?.member("data")
                else { return }
                frame = data.buffer
            }
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: frame), promise: nil)
            if !channel.isWritable { link.setReading(false) }
        }
        link.onClose { channel.eventLoop.execute { bound.value.close(code: .normalClosure, reason: "the gateway closed the connection") } }
        if let credential {
            // Held by the gateway until decided: frames sent meanwhile run as the principal.
            link.call("auth/authenticate", params: ["token": .string(credential)]) { response, _ in
                if case .error(let error) = response.outcome {
                    channel.eventLoop.execute { bound.value.close(code: .policyViolation, reason: "unauthenticated: \(error.message)") }
                }
            }
        }
        var patterns: [String] = []
        switch endpoint {
        case .rpc: break
        case .events(let given): patterns = given
        case .agentCommunications(let agent):
            // An instance's own topic; a template's name covers each of its instances.
            patterns = [HTTPFace.agentTopicPrefix + agent]
            if !agent.contains("#") { patterns.append(HTTPFace.agentTopicPrefix + agent + "#*") }
            // Where each instance stands now, then what changes.
            let isInstance = agent.contains("#")
            let method = isInstance ? "agents/get" : "agents/list"
            let params: JSONValue = isInstance ? ["agentId": .string(agent)] : ["template": .string(agent)]
            link.call(method, params: params) { response, _ in
                switch response.outcome {
                case .result(let result):
                    let statuses = isInstance ? [result] : result.member("agents")?.elements() ?? []
                    for status in statuses {
                        var event = ByteBuffer()
                        JSONValue.object([
                            "eventType": "agent_status_changed", "agentId": status.member("agentId").map(JSONValue.raw) ?? .string(agent),
                            "timestamp": .string(Self.now()), "data": .raw(status),
                        ]).write(to: &event)
                        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: event), promise: nil)
                    }
                case .error(let error):
                    channel.eventLoop.execute { bound.value.close(code: .policyViolation, reason: error.message) }
                }
            }
        }
        if !patterns.isEmpty {
            for pattern in patterns {
                link.call("events/subscribe", params: ["pattern": .string(pattern)]) { response, _ in
                    if case .error(let error) = response.outcome {
                        channel.eventLoop.execute { bound.value.close(code: .policyViolation, reason: "events/subscribe \(pattern): \(error.message)") }
                    }
                }
            }
        }
        for line in early { link.send(line: line) }
        early = []
    }

    private static let eventPrefix = Array(#"{"jsonrpc":"2.0","method":"notifications/events/message""#.utf8)

    static func now() -> String {
        Date().formatted(.iso8601)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { link?.setReading(true) }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            var line = frame.unmaskedData
            // One message per frame: a line break would split it in two on the link. In valid
            // JSON one stands only where whitespace may, and a space does as well; a frame that
            // is not valid JSON is answered here, as the gateway would answer it.
            if line.readableBytesView.contains(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
                do {
                    _ = try RawJSON(validating: line)
                } catch {
                    var reply = ByteBuffer()
                    MessageEncoder.writeError(id: nil, error: .parseError(error), to: &reply)
                    context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: reply)), promise: nil)
                    return
                }
                line = ByteBuffer(bytes: line.readableBytesView.map { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") ? UInt8(ascii: " ") : $0 })
            }
            if let link { link.send(line: line) } else if early.count < 256 { early.append(line) } else { close(code: .policyViolation, reason: "too many frames before the connection was ready") }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            close(code: .normalClosure, reason: "")
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        link?.close()
        link = nil
        context.fireChannelInactive()
    }

    private func close(code: WebSocketErrorCode, reason: String) {
        guard !closing, let context else { return }
        closing = true
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(String(reason.utf8.prefix(120)) ?? "")
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).whenComplete { _ in
            context.close(promise: nil)
        }
        link?.close()
    }
}
