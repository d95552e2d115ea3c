import JSONRPC
import Logging
import NIOCore
import NIOHTTP1

/// Serves one HTTP/1.1 connection: reads each request (bounded), routes it, and writes its
/// response whole or as a stream of server-sent events.
///
/// Requests on a connection are answered in order (the pipelining handler in front holds the
/// next until this one's response has ended), so one exchange is in progress at a time.
/// Everything here runs on the connection's event loop; what arrives from other loops (a
/// session's link) hops here first.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let face: HTTPFace
    let secure: Bool
    private(set) var context: ChannelHandlerContext?
    private var reading: (head: HTTPRequestHead, body: ByteBuffer, tooLarge: Bool)?
    /// The exchange whose response is being written; callbacks for an older one are dropped.
    private(set) var exchange: Exchange?
    private var exchanges = 0
    /// The connection's own links to the gateway, opened on first use: REST and WebSocket-less
    /// plain JSON-RPC on one, 2026-07-28 MCP on the other (a link settles its era once).
    var links: [LinkPurpose: GatewayLink] = [:]
    private var peer = "unknown"
    /// The body of the request being read must arrive by then.
    private var bodyDeadline: Scheduled<Void>?
    /// Bytes written to a client that was not taking them: past the bound, the connection closes.
    private var unreadBytes = 0

    enum LinkPurpose { case plain, modern }

    struct Exchange {
        let number: Int
        let keepAlive: Bool
        let head: HTTPRequestHead
        let started: NIODeadline
        var streaming = false
        var status: HTTPResponseStatus?
        /// Runs if the client goes away before the response ends.
        var onAbandon: (@Sendable () -> Void)?
        var keepaliveTask: RepeatedTask?
    }

    init(face: HTTPFace, secure: Bool) {
        self.face = face
        self.secure = secure
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let remote = context.channel.remoteAddress { peer = "\(remote)" }
    }

    func channelActive(context: ChannelHandlerContext) {
        if let remote = context.channel.remoteAddress { peer = "\(remote)" }
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Removed for a WebSocket upgrade, or the connection closed: links go with it.
        abandonExchange()
        closeLinks()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        abandonExchange()
        closeLinks()
        context.fireChannelInactive()
    }

    /// A client that starts a request and does not finish sending it is not waited for.
    private func armBodyDeadline(_ context: ChannelHandlerContext) {
        bodyDeadline?.cancel()
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timeout = face.settings.bodyTimeout
        bodyDeadline = context.eventLoop.scheduleTask(in: timeout) {
            let handler = bound.value
            guard handler.reading != nil, let context = handler.context else { return }
            handler.face.logger.debug("HTTP: a request body did not arrive within \(timeout); closing", metadata: ["peer": "\(handler.peer)"])
            context.close(promise: nil)
        }
    }

    /// An idle connection (no request in progress for `idleTimeout`) is closed; a stream or a
    /// long request in progress is not idle.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent, exchange == nil, reading == nil {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { unreadBytes = 0 }
        context.fireChannelWritabilityChanged()
    }

    /// Counts what is written while the client takes nothing; closes past the bound, so that a
    /// client that does not read an event stream cannot grow the gateway's memory.
    func boundUnreadOutput(_ context: ChannelHandlerContext, _ bytes: Int) {
        guard !context.channel.isWritable else { return }
        unreadBytes += bytes
        if unreadBytes > face.settings.maximumUnreadBytes {
            face.logger.notice(
                "HTTP: the client does not read its response: \(unreadBytes) bytes queued, over the limit of \(face.settings.maximumUnreadBytes); closing",
                metadata: ["peer": "\(peer)"])
            context.close(promise: nil)
        }
    }

    private func closeLinks() {
        for link in links.values { link.close() }
        links = [:]
    }

    private func abandonExchange() {
        guard var exchange else { return }
        self.exchange = nil
        exchange.keepaliveTask?.cancel()
        exchange.onAbandon?()
        exchange.onAbandon = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            armBodyDeadline(context)
            let declared = head.headers.first(name: "content-length").flatMap(Int.init) ?? 0
            reading = (head, context.channel.allocator.buffer(capacity: min(declared, face.settings.maximumBodyBytes)), declared > face.settings.maximumBodyBytes)
        case .body(var part):
            guard var current = reading else { return }
            reading = nil
            if !current.tooLarge {
                if current.body.readableBytes + part.readableBytes > face.settings.maximumBodyBytes {
                    current.tooLarge = true
                    current.body.clear()
                } else {
                    current.body.writeBuffer(&part)
                }
            }
            reading = current
        case .end:
            bodyDeadline?.cancel()
            bodyDeadline = nil
            guard let current = reading else { return }
            reading = nil
            exchanges += 1
            exchange = Exchange(number: exchanges, keepAlive: current.head.isKeepAlive, head: current.head, started: .now())
            if current.tooLarge {
                let limit = face.settings.maximumBodyBytes
                respondError(
                    .payloadTooLarge,
                    JSONRPCError(
                        code: JSONRPCError.Code.messageTooLarge, message: "the request body is over the limit of \(limit) bytes",
                        data: ["limit": .integer(Int64(limit))]))
                return
            }
            route(current.head, body: current.body)
        }
    }

    // MARK: Routing

    private func route(_ head: HTTPRequestHead, body: ByteBuffer) {
        let (path, query) = Self.split(head.uri)
        if let origin = head.headers.first(name: "origin"), !face.allows(origin: origin, of: head, secure: secure) {
            respondError(
                .forbidden,
                JSONRPCError(code: JSONRPCError.Code.forbidden, message: "requests from the origin \(origin) are not allowed (http.allowedOrigins)"))
            return
        }
        switch path {
        case "/mcp", "/mcp/":
            serveMCP(head, body: body)
        case "/healthz":
            respondJSON(.ok, ["status": "alive"])
        case "/readyz":
            serveReadiness()
        case "/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp":
            serveResourceMetadata(head)
        case "/api/v1/openapi.json":
            respond(.ok, contentType: "application/json", body: face.openAPIDocument)
        case "/metrics":
            serveMetrics(head)
        case "/console":
            serveConsole(head, path: path)
        default:
            if path.hasPrefix("/console/") {
                serveConsole(head, path: path)
                return
            }
            if path.hasPrefix("/api/v1/") {
                serveREST(head, path: path, query: query, body: body)
            } else if path.hasPrefix("/ws") {
                respondError(
                    .badRequest, JSONRPCError(code: JSONRPCError.Code.invalidRequest, message: "\(path) is a WebSocket endpoint: connect with an Upgrade: websocket request"))
            } else {
                respondError(.notFound, JSONRPCError(code: JSONRPCError.Code.methodNotFound, message: "no such path: \(path) (see /api/v1/openapi.json)"))
            }
        }
    }

    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]).removingPercentEncodingForQuery
            query[name] = parts.count > 1 ? String(parts[1]).removingPercentEncodingForQuery : ""
        }
        return (String(uri[..<mark]), query)
    }

    private func serveReadiness() {
        let bound = onLoopForExchange()
        let door = face.door
        _ = context?.eventLoop.makeFutureWithTask { await door.readiness() }.whenSuccess { readiness in
            bound { handler in
                let checks = JSONValue.object(readiness.checks.mapValues(JSONValue.string))
                handler.respondJSON(readiness.ready ? .ok : .serviceUnavailable, ["ready": .bool(readiness.ready), "checks": checks])
            }
        }
    }

    /// RFC 9728: what this resource is and who issues tokens for it.
    private func serveResourceMetadata(_ head: HTTPRequestHead) {
        let settings = face.settings
        var document: [String: JSONValue] = [
            "resource": .string(settings.resource ?? "\(origin(of: head))/mcp"),
            "bearer_methods_supported": ["header"],
            "resource_name": "Switchboard",
        ]
        if !settings.authorizationServers.isEmpty {
            document["authorization_servers"] = .array(settings.authorizationServers.map(JSONValue.string))
        }
        if !settings.scopesSupported.isEmpty {
            document["scopes_supported"] = .array(settings.scopesSupported.map(JSONValue.string))
        }
        respondJSON(.ok, .object(document))
    }

    /// Where the RFC 9728 metadata is: beside the configured resource (its origin, then the
    /// well-known path, then the resource's path), or beside this listener as addressed.
    func resourceMetadataURL(_ head: HTTPRequestHead) -> String {
        if let resource = face.settings.resource, let schemeEnd = resource.firstRange(of: "://") {
            let afterScheme = resource[schemeEnd.upperBound...]
            let authorityEnd = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
            let origin = resource[..<authorityEnd]
            let path = afterScheme[authorityEnd...]
            return "\(origin)/.well-known/oauth-protected-resource\(path)"
        }
        return "\(origin(of: head))/.well-known/oauth-protected-resource/mcp"
    }

    /// `scheme://host` as the client addressed this server.
    func origin(of head: HTTPRequestHead) -> String {
        let host = head.headers.first(name: "host") ?? context?.channel.localAddress.map { "\($0.ipAddress ?? "localhost"):\($0.port ?? 0)" } ?? "localhost"
        return "\(secure ? "https" : "http")://\(host)"
    }

    // MARK: Credentials

    enum Credential {
        case none
        case bearer(String)
        case malformed(String)

        var token: String? {
            if case .bearer(let token) = self { return token }
            return nil
        }
    }

    /// The request's credential; none without access control (a client that sends a token to a
    /// gateway that asks for none is served like any other).
    func credential(of head: HTTPRequestHead) -> Credential {
        face.settings.accessControlled ? Self.credential(head) : .none
    }

    /// The request's credential; nil when its `Authorization` header is malformed, which has
    /// been answered (401, `invalid_request`).
    func readCredential(_ head: HTTPRequestHead) -> Credential? {
        let credential = credential(of: head)
        if case .malformed(let reason) = credential {
            respondError(
                .unauthorized, Self.unauthenticated(reason),
                headers: [("www-authenticate", challenge(head, error: "invalid_request", description: reason))])
            return nil
        }
        return credential
    }

    static func credential(_ head: HTTPRequestHead) -> Credential {
        guard let value = head.headers.first(name: "authorization") else { return .none }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].trimmingSpaces.isEmpty else {
            return .malformed("the Authorization header must be \"Bearer TOKEN\"")
        }
        return .bearer(String(parts[1].trimmingSpaces))
    }

    /// The `WWW-Authenticate` challenge of RFC 6750 / 9728.
    func challenge(_ head: HTTPRequestHead, error: String? = nil, description: String? = nil) -> String {
        var parts = ["Bearer resource_metadata=\"\(resourceMetadataURL(head))\""]
        if let error { parts.append("error=\"\(error)\"") }
        if let description { parts.append("error_description=\"\(description.replacing("\"", with: "'"))\"") }
        return parts.joined(separator: ", ")
    }

    // MARK: Links

    /// The connection's link for `purpose`, made the credential's principal: opened on first
    /// use, authenticated once per credential. A request without a credential after one with
    /// gets a fresh, anonymous link.
    func withLink(
        _ purpose: LinkPurpose, credential: String?,
        _ body: @escaping @Sendable (HTTPConnectionHandler, GatewayLink) -> Void,
        refused: @escaping @Sendable (HTTPConnectionHandler, JSONRPCError) -> Void
    ) {
        if let link = links[purpose], !link.isClosed {
            if link.credential == credential {
                body(self, link)
                return
            }
            if let credential {
                authenticate(link, credential: credential, body, refused: refused)
                return
            }
            link.close()
            links[purpose] = nil
        }
        let bound = onLoopForExchange()
        guard let context else { return }
        GatewayLink.open(door: face.door, on: context.eventLoop, peer: peer, maximumMessageBytes: face.maximumMessageBytes)
            .whenComplete { outcome in
                bound { handler in
                    switch outcome {
                    case .success(let link):
                        handler.links[purpose]?.close()
                        handler.links[purpose] = link
                        if let credential {
                            handler.authenticate(link, credential: credential, body, refused: refused)
                        } else {
                            body(handler, link)
                        }
                    case .failure(let error):
                        refused(handler, JSONRPCError(code: JSONRPCError.Code.internalError, message: "cannot reach the gateway: \(error)"))
                    }
                }
            }
    }

    func authenticate(
        _ link: GatewayLink, credential: String,
        _ body: @escaping @Sendable (HTTPConnectionHandler, GatewayLink) -> Void,
        refused: @escaping @Sendable (HTTPConnectionHandler, JSONRPCError) -> Void
    ) {
        let bound = onLoopForExchange()
        link.authenticate(credential) { error in
            bound { handler in
                if let error { refused(handler, error) } else { body(handler, link) }
            }
        }
    }

    // MARK: Responses

    /// Runs `body` on the connection's loop if the current exchange is still the one in
    /// progress now: a reply to a request whose client has gone is dropped.
    func onLoopForExchange() -> ExchangeCallback {
        guard let context else { return ExchangeCallback(bound: nil, number: nil) }
        return ExchangeCallback(bound: NIOLoopBound(self, eventLoop: context.eventLoop), number: exchange?.number)
    }

    /// Calls back into the connection, on its loop, for one exchange.
    struct ExchangeCallback: Sendable {
        let bound: NIOLoopBound<HTTPConnectionHandler>?
        let number: Int?

        func callAsFunction(_ body: @escaping @Sendable (HTTPConnectionHandler) -> Void) {
            guard let bound else { return }
            let number = self.number
            let run: @Sendable () -> Void = {
                let handler = bound.value
                guard handler.exchange?.number == number, handler.context != nil else { return }
                body(handler)
            }
            if bound.eventLoop.inEventLoop { run() } else { bound.eventLoop.execute(run) }
        }
    }

    /// `declaredLength`: the length to announce in place of the body's own, for a HEAD request
    /// (the length the GET would have, with no body sent).
    func respond(
        _ status: HTTPResponseStatus, contentType: String = "application/json", headers extra: [(String, String)] = [], body: ByteBuffer,
        declaredLength: Int? = nil
    ) {
        guard let context, let current = exchange, !current.streaming else { return }
        var headers = HTTPHeaders()
        if body.readableBytes > 0 || declaredLength != nil { headers.add(name: "content-type", value: contentType) }
        headers.add(name: "content-length", value: "\(declaredLength ?? body.readableBytes)")
        for (name, value) in extra { headers.add(name: name, value: value) }
        if !current.keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: current.head.version, status: status, headers: headers))), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        exchange?.status = status
        finishExchange(context)
        boundUnreadOutput(context, body.readableBytes)
    }

    func respondJSON(_ status: HTTPResponseStatus, _ value: JSONValue, headers: [(String, String)] = []) {
        var buffer = context?.channel.allocator.buffer(capacity: 256) ?? ByteBuffer()
        value.write(to: &buffer)
        respond(status, headers: headers, body: buffer)
    }

    /// An error in the shape every HTTP error of the gateway has: the JSON-RPC error beside
    /// the HTTP status.
    func respondError(_ status: HTTPResponseStatus, _ error: JSONRPCError, headers: [(String, String)] = []) {
        var body: [String: JSONValue] = ["error": error.jsonValue, "status": .integer(Int64(status.code))]
        if let exchange { body["path"] = .string(Self.split(exchange.head.uri).path) }
        respondJSON(status, .object(body), headers: headers)
    }

    /// Starts a stream of server-sent events; the sink writes its events and ends it.
    func startEventStream(headers extra: [(String, String)] = []) -> EventSink {
        guard let context, exchange != nil else { return EventSink(send: { _ in }, finish: {}) }
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/event-stream")
        headers.add(name: "cache-control", value: "no-cache")
        for (name, value) in extra { headers.add(name: name, value: value) }
        let version = exchange?.head.version ?? .http1_1
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))), promise: nil)
        exchange?.streaming = true
        exchange?.status = .ok
        let bound = onLoopForExchange()
        // A comment now and then keeps proxies from closing a quiet stream.
        let keepaliveBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let number = exchange?.number
        exchange?.keepaliveTask = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(20), delay: .seconds(20)) { task in
            let handler = keepaliveBound.value
            guard handler.exchange?.number == number, let context = handler.context else {
                task.cancel()
                return
            }
            context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: ": keepalive\n\n")))), promise: nil)
        }
        return EventSink(
            send: { event in
                bound { handler in
                    guard let context = handler.context else { return }
                    context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(event))), promise: nil)
                    handler.boundUnreadOutput(context, event.readableBytes)
                }
            },
            finish: {
                bound { handler in
                    guard let context = handler.context else { return }
                    handler.finishExchange(context)
                }
            })
    }

    private func finishExchange(_ context: ChannelHandlerContext) {
        guard let current = exchange else { return }
        current.keepaliveTask?.cancel()
        exchange = nil
        face.accessLog(current, peer: peer)
        if current.keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        }
    }

    /// What to do if the client leaves before the current response ends.
    func onAbandon(_ body: @escaping @Sendable () -> Void) {
        exchange?.onAbandon = body
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        face.logger.debug("HTTP connection error: \(error)", metadata: ["peer": "\(peer)"])
        context.close(promise: nil)
    }
}

extension HTTPFace {
    /// A line per request at info level when asked (`--log-level debug` shows them all).
    func accessLog(_ exchange: HTTPConnectionHandler.Exchange, peer: String) {
        guard settings.accessLog || logger.logLevel <= .debug else { return }
        let elapsed = Double((NIODeadline.now() - exchange.started).nanoseconds) / 1e6
        let path = HTTPConnectionHandler.split(exchange.head.uri).path
        var metadata: Logger.Metadata = [
            "peer": "\(peer)", "httpMethod": "\(exchange.head.method)", "path": "\(path)", "status": "\(exchange.status?.code ?? 0)",
            "durationMs": "\((elapsed * 1000).rounded() / 1000)",
        ]
        // The caller's trace, as the header names it (the request's own span is in its line).
        if let traceparent = exchange.head.headers.first(name: "traceparent"), traceparent.utf8.count == 55 {
            metadata["trace_id"] = "\(traceparent.dropFirst(3).prefix(32))"
        }
        logger.log(level: settings.accessLog ? .info : .debug, "http", metadata: metadata)
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}

extension String {
    /// `%XX` and `+` decoded, as a query component is written.
    var removingPercentEncodingForQuery: String { removingPercentEncoding(plusIsSpace: true) }

    /// `%XX` decoded (and `+` as a space in a query; in a path it is itself); the text as it
    /// is when an escape is malformed.
    public func removingPercentEncoding(plusIsSpace: Bool) -> String {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+") where plusIsSpace: bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next(), let low = iterator.next(), let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else {
                    return self
                }
                bytes.append(value)
            default: bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
