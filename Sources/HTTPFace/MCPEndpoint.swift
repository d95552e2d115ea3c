import JSONRPC
import MCPProtocol
import NIOCore
import NIOHTTP1
import Synchronization

/// `/mcp`: MCP's Streamable HTTP transport, both eras on one endpoint.
///
/// - 2025-03-26 … 2025-11-25: `initialize` opens a session (`MCP-Session-Id`); its requests are
///   answered with JSON, or with a stream of server-sent events when progress or requests from
///   the server may come; a GET opens the session's own stream; `Last-Event-ID` resumes one;
///   DELETE ends the session.
/// - 2026-07-28: each POST stands alone; the `Mcp-Method` / `Mcp-Name` headers must agree with
///   the body; GET and DELETE are 405; a client that closes the response stream cancels the
///   request.
extension HTTPConnectionHandler {
    /// MCP's code for headers that disagree with the body (2026-07-28).
    static let headerMismatch = -32020
    static let sessionNotFound = -32001

    func serveMCP(_ head: HTTPRequestHead, body: ByteBuffer) {
        guard let credential = readCredential(head) else { return }
        switch head.method {
        case .POST: mcpPost(head, body: body, credential: credential.token)
        case .GET: mcpGet(head, credential: credential.token)
        case .DELETE: mcpDelete(head, credential: credential.token)
        default:
            respondError(
                .methodNotAllowed, JSONRPCError(code: JSONRPCError.Code.invalidRequest, message: "/mcp takes POST, GET and DELETE"),
                headers: [("allow", "POST, GET, DELETE")])
        }
    }

    // MARK: POST

    private func mcpPost(_ head: HTTPRequestHead, body: ByteBuffer, credential: String?) {
        let accept = head.headers[canonicalForm: "accept"].map { $0.lowercased() }
        let acceptsJSON = accept.isEmpty || accept.contains { $0.hasPrefix("application/json") || $0 == "*/*" || $0 == "application/*" }
        let acceptsStream = accept.contains { $0.hasPrefix("text/event-stream") }
        guard acceptsJSON || acceptsStream else {
            respondError(
                .notAcceptable,
                JSONRPCError(code: JSONRPCError.Code.invalidRequest, message: "/mcp answers application/json or text/event-stream: accept at least one"))
            return
        }
        if let type = head.headers.first(name: "content-type"), !type.lowercased().hasPrefix("application/json") {
            respondError(
                .unsupportedMediaType, JSONRPCError(code: JSONRPCError.Code.invalidRequest, message: "/mcp takes application/json, not \(type)"))
            return
        }
        let traced = Self.carryingTraceContext(body, head)
        let decoder = MessageDecoder(maximumBatchSize: face.settings.maximumBatchSize)
        var messages: [JSONRPCMessage] = []
        var isBatch = false
        switch decoder.decode(line: traced) {
        case .single(.message(let message)):
            messages = [message]
        case .single(.invalid(let id, let error)):
            respondRPCError(.badRequest, id: id, error)
            return
        case .batch(let entries):
            isBatch = true
            for entry in entries {
                guard case .message(let message) = entry else {
                    if case .invalid(let id, let error) = entry { respondRPCError(.badRequest, id: id, error) }
                    return
                }
                messages.append(message)
            }
        case .parseError(let error):
            respondRPCError(.badRequest, id: nil, error)
            return
        case .blank, .emptyBatch:
            respondRPCError(.badRequest, id: nil, .invalidRequest("the body holds no JSON-RPC message"))
            return
        case .batchTooLarge(let entries, let limit):
            respondRPCError(.badRequest, id: nil, .batchTooLarge(entries: entries, limit: limit))
            return
        }
        // One line to the gateway. The body is valid JSON (it was just decoded), so a line break
        // in it (pretty-printed JSON) stands where whitespace may, never inside a string: a
        // space does as well.
        let body = Self.singleLine(traced)

        let sessionHeader = head.headers.first(name: "mcp-session-id")
        let opensSession = messages.contains { if case .request(let request) = $0 { request.method == "initialize" } else { false } }
        if opensSession {
            guard sessionHeader == nil, messages.count == 1, case .request(let request) = messages[0] else {
                respondRPCError(
                    .badRequest, id: nil,
                    .invalidRequest("initialize opens a new session: send it alone, without an Mcp-Session-Id header"))
                return
            }
            openSession(head, request: request, line: body, credential: credential)
        } else if let sessionHeader {
            guard checkHandshakeVersionHeader(head) else { return }
            let (messages, isBatch) = (messages, isBatch)
            withSession(sessionHeader, head: head, credential: credential) { handler, session in
                if isBatch, !ProtocolVersion.allowingBatches.contains(session.id.protocolVersion) {
                    handler.respondRPCError(.badRequest, id: nil, .invalidRequest("batches are not allowed in MCP protocol version \(session.id.protocolVersion)"))
                    return
                }
                handler.post(messages, isBatch: isBatch, on: session, head: head, acceptsStream: acceptsStream)
            }
        } else if Self.isModern(head, messages) {
            guard !isBatch else {
                respondRPCError(
                    .badRequest, id: nil, .invalidRequest("batches are not allowed in MCP protocol version \(ProtocolVersion.latestModern)"))
                return
            }
            postModern(messages[0], line: body, head: head, credential: credential, acceptsStream: acceptsStream)
        } else {
            respondRPCError(
                .badRequest, id: nil,
                .invalidRequest(
                    "no Mcp-Session-Id header: send initialize first (MCP 2025-03-26 … 2025-11-25), or carry the 2026-07-28 envelope in params._meta with the MCP-Protocol-Version header"
                ))
        }
    }

    /// W3C trace context from the `traceparent` and `tracestate` headers goes where MCP carries
    /// it, in the request's `params._meta`, unless the message carries its own: the gateway then
    /// traces an HTTP request as it traces any other.
    static func carryingTraceContext(_ body: ByteBuffer, _ head: HTTPRequestHead) -> ByteBuffer {
        guard let traceparent = head.headers.first(name: "traceparent"), traceparent.utf8.count <= 64,
            let message = try? RawJSON(validating: body), message.kind == .object, message.member("method") != nil
        else { return body }
        let params = message.member("params")
        if let params, params.kind != .object { return body }
        let meta = params?.member("_meta")
        if let meta, meta.kind != .object || meta.member("traceparent") != nil { return body }
        var trace: [String: JSONValue] = ["traceparent": .string(traceparent)]
        if let state = head.headers.first(name: "tracestate"), state.utf8.count <= 512 { trace["tracestate"] = .string(state) }
        let newMeta: JSONValue = meta.map { .raw($0.replacingMembers(trace.mapValues { Optional($0) })) } ?? .object(trace)
        let newParams: JSONValue = params.map { .raw($0.replacingMembers(["_meta": newMeta])) } ?? .object(["_meta": newMeta])
        return message.replacingMembers(["params": newParams]).buffer
    }

    /// A request of the stateless era: the envelope in `_meta`, or the version header naming a
    /// stateless version, or `server/discover` (the probe clients send first).
    private static func isModern(_ head: HTTPRequestHead, _ messages: [JSONRPCMessage]) -> Bool {
        if let version = head.headers.first(name: "mcp-protocol-version"), !ProtocolVersion.handshake.contains(version) { return true }
        for message in messages {
            let params: RawJSON?
            switch message {
            case .request(let request):
                if request.method == "server/discover" { return true }
                params = request.params
            case .notification(let notification): params = notification.params
            case .response: params = nil
            }
            if params?.member("_meta")?.member(MetaKey.protocolVersion) != nil { return true }
        }
        return false
    }

    /// `MCP-Protocol-Version` on a session's request names a handshake version we speak.
    private func checkHandshakeVersionHeader(_ head: HTTPRequestHead) -> Bool {
        guard let version = head.headers.first(name: "mcp-protocol-version"), !ProtocolVersion.handshake.contains(version) else { return true }
        respondRPCError(
            .badRequest, id: nil,
            JSONRPCError(
                code: JSONRPCError.Code.unsupportedProtocolVersion,
                message: "Unsupported MCP-Protocol-Version \"\(version)\" for a session; supported: \(ProtocolVersion.handshake.joined(separator: ", "))",
                data: ["supported": .array(ProtocolVersion.handshake.map(JSONValue.string)), "requested": .string(version)]))
        return false
    }

    // MARK: Sessions

    private func openSession(_ head: HTTPRequestHead, request: JSONRPCRequest, line: ByteBuffer, credential: String?) {
        guard face.sessions.hasRoom() else {
            respondRPCError(.serviceUnavailable, id: nil, sessionCapError(), headers: [("retry-after", "5")])
            return
        }
        let offered = request.params?.member("protocolVersion")?.stringValue ?? ProtocolVersion.latestHandshake
        let id = SessionID(
            protocolVersion: ProtocolVersion.negotiateHandshake(offered: offered),
            capabilities: Self.capabilities(request.params?.member("capabilities")), key: face.settings.sessionKey)
        establish(id, credential: credential, head: head) { handler, session, link in
            let callback = handler.onLoopForExchange()
            link.send(request: line, id: request.id) { response, reply in
                callback { handler in
                    guard case .result = response.outcome else {
                        // A refused handshake opens no session.
                        _ = handler.face.sessions.end(id.text)
                        handler.respond(.badRequest, body: reply)
                        return
                    }
                    handler.respond(.ok, headers: [("mcp-session-id", id.text)], body: reply)
                }
            }
        }
    }

    /// Opens a session with id `id` on this replica: a link, made the credential's principal.
    /// `ready` runs once the session is in the directory.
    private func establish(
        _ id: SessionID, credential: String?, head: HTTPRequestHead,
        ready: @escaping @Sendable (HTTPConnectionHandler, MCPHTTPSession, GatewayLink) -> Void
    ) {
        guard let context else { return }
        let bound = onLoopForExchange()
        let face = self.face
        GatewayLink.open(door: face.door, on: context.eventLoop, peer: "\(context.channel.remoteAddress.map { "\($0)" } ?? "unknown")", maximumMessageBytes: face.maximumMessageBytes)
            .whenComplete { outcome in
                bound { handler in
                    guard case .success(let link) = outcome else {
                        handler.respondRPCError(.internalServerError, id: nil, JSONRPCError(code: JSONRPCError.Code.internalError, message: "cannot reach the gateway"))
                        return
                    }
                    let session = MCPHTTPSession(id: id, link: link, replayLimit: face.settings.replayedEvents)
                    link.setMessageHandler { message, line in session.route(message, line: line) }
                    let proceed: @Sendable (HTTPConnectionHandler) -> Void = { handler in
                        guard face.sessions.add(session) else {
                            link.close()
                            handler.respondRPCError(.serviceUnavailable, id: nil, handler.sessionCapError(), headers: [("retry-after", "5")])
                            return
                        }
                        session.bind(credential: credential)
                        ready(handler, session, link)
                    }
                    if let credential {
                        handler.authenticate(link, credential: credential, { handler, _ in proceed(handler) }) { handler, error in
                            link.close()
                            handler.respondUnauthenticated(head, error)
                        }
                    } else {
                        proceed(handler)
                    }
                }
            }
    }

    /// Runs `body` with the session `text` names: held here, or opened again from its signed
    /// id (another replica issued it, or this one before a restart).
    private func withSession(
        _ text: String, head: HTTPRequestHead, credential: String?, _ body: @escaping @Sendable (HTTPConnectionHandler, MCPHTTPSession) -> Void
    ) {
        switch face.sessions.lookup(text) {
        case .found(let session):
            guard session.admits(credential: credential) else {
                respondRPCError(.notFound, id: nil, JSONRPCError(code: Self.sessionNotFound, message: "Session not found"))
                return
            }
            if let credential, session.link.credential != credential {
                authenticate(session.link, credential: credential, { handler, _ in
                    // Bound only to a credential the gateway accepted.
                    session.bind(credential: credential)
                    body(handler, session)
                }) { handler, error in
                    handler.respondUnauthenticated(head, error)
                }
                return
            }
            body(self, session)
        case .restorable(let id):
            establish(id, credential: credential, head: head) { handler, session, link in
                // The handshake again, as the client made it, before its request.
                var capabilities: [String: JSONValue] = [:]
                if id.capabilities.contains(.sampling) { capabilities["sampling"] = [:] }
                if id.capabilities.contains(.elicitation) { capabilities["elicitation"] = [:] }
                if id.capabilities.contains(.roots) { capabilities["roots"] = [:] }
                link.call(
                    "initialize",
                    params: [
                        "protocolVersion": .string(id.protocolVersion), "capabilities": .object(capabilities),
                        "clientInfo": ["name": "restored-session", "version": "0"],
                    ]
                ) { _, _ in }
                link.send(line: ByteBuffer(string: #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#))
                body(handler, session)
            }
        case .unknown:
            respondRPCError(.notFound, id: nil, JSONRPCError(code: Self.sessionNotFound, message: "Session not found"))
        }
    }

    static func capabilities(_ declared: RawJSON?) -> SessionID.Capabilities {
        var flags: SessionID.Capabilities = []
        guard let declared, declared.kind == .object else { return flags }
        if declared.member("sampling") != nil { flags.insert(.sampling) }
        if declared.member("elicitation") != nil { flags.insert(.elicitation) }
        if declared.member("roots") != nil { flags.insert(.roots) }
        return flags
    }

    /// A session's POST: notifications and responses go on at once (202); requests are
    /// answered with JSON, or with a stream when progress or the server's own requests may
    /// come before the answer.
    private func post(_ messages: [JSONRPCMessage], isBatch: Bool, on session: MCPHTTPSession, head: HTTPRequestHead, acceptsStream: Bool) {
        var requests: [(request: JSONRPCRequest, line: ByteBuffer)] = []
        for message in messages {
            var line = ByteBuffer()
            switch message {
            case .request(let request):
                Self.encode(request, to: &line)
                requests.append((request, line))
            case .notification(let notification):
                Self.encode(notification, to: &line)
                session.link.send(line: line)
            case .response(let response):
                MessageEncoder.writeResponse(response, to: &line)
                session.link.send(line: line)
            }
        }
        guard !requests.isEmpty else {
            respond(.accepted, body: ByteBuffer())
            return
        }
        let progressTokens = requests.compactMap { $0.request.params?.member("_meta")?.member("progressToken")?.description }
        let mayHearFromServer =
            !progressTokens.isEmpty
            || (!session.id.capabilities.isEmpty && requests.contains { $0.request.method == "tools/call" || $0.request.method == "tasks/result" })
        if acceptsStream && mayHearFromServer {
            let sink = startEventStream()
            let number = session.openPostStream(ids: requests.map(\.request.id), progressTokens: progressTokens, sink: sink)
            sink.send(ServerSentEvent.priming(id: "\(number)-0"))
            onAbandon { session.detach(stream: number) }
            for (request, line) in requests {
                let accepted = session.link.send(request: line, id: request.id) { _, reply in
                    session.reply(reply, to: request.id, onStream: number)
                }
                if !accepted {
                    var refusal = ByteBuffer()
                    MessageEncoder.writeError(id: request.id, error: Self.idInFlight(request.id), to: &refusal)
                    session.reply(refusal, to: request.id, onStream: number)
                }
            }
            return
        }
        answerAsJSON(requests, isBatch: isBatch, link: session.link, cancelsOnAbandon: false)
    }

    static func idInFlight(_ id: JSONRPCID) -> JSONRPCError {
        .invalidRequest("a request with id \(id) is already in flight in this session")
    }

    /// Sends the requests and answers with their replies as one JSON body (an array for a batch).
    func answerAsJSON(_ requests: [(request: JSONRPCRequest, line: ByteBuffer)], isBatch: Bool, link: GatewayLink, cancelsOnAbandon: Bool) {
        let collected = ReplyCollector(count: requests.count)
        let bound = onLoopForExchange()
        for (index, (request, line)) in requests.enumerated() {
            let accepted = link.send(request: line, id: request.id) { response, reply in
                guard let all = collected.add(reply, at: index) else { return }
                bound { handler in handler.respondReplies(all, responses: [response], isBatch: isBatch) }
            }
            if !accepted {
                var refusal = ByteBuffer()
                MessageEncoder.writeError(id: request.id, error: Self.idInFlight(request.id), to: &refusal)
                if let all = collected.add(refusal, at: index) {
                    bound { handler in handler.respondReplies(all, responses: [], isBatch: isBatch) }
                }
            }
        }
        if cancelsOnAbandon {
            onAbandon {
                for (request, _) in requests where link.isWaiting(for: request.id) {
                    link.forget(request.id)
                    link.send(line: Self.cancellation(of: request.id))
                }
            }
        }
    }

    private func respondReplies(_ replies: [ByteBuffer], responses: [JSONRPCResponse], isBatch: Bool) {
        // An access refusal of a request that carried no credential is HTTP's 401, with the
        // challenge that tells an OAuth client where to get a token.
        if !isBatch, let response = responses.first, case .error(let error) = response.outcome, let head = exchange?.head {
            if error.code == -32007 || (error.code == -32005 && Self.credential(head).token == nil && face.settings.accessControlled) {
                respond(.unauthorized, headers: [("www-authenticate", challenge(head))], body: replies[0])
                return
            }
            if error.code == -32005 {
                respond(.forbidden, headers: [("www-authenticate", challenge(head, error: "insufficient_scope", description: error.message))], body: replies[0])
                return
            }
        }
        guard isBatch else {
            respond(.ok, body: replies[0])
            return
        }
        var body = ByteBuffer()
        body.writeInteger(UInt8(ascii: "["))
        for (index, reply) in replies.enumerated() {
            if index > 0 { body.writeInteger(UInt8(ascii: ",")) }
            body.writeImmutableBuffer(reply)
        }
        body.writeInteger(UInt8(ascii: "]"))
        respond(.ok, body: body)
    }

    static func cancellation(of id: JSONRPCID) -> ByteBuffer {
        var line = ByteBuffer()
        MessageEncoder.writeNotification(
            method: "notifications/cancelled", params: ["requestId": id.jsonValue, "reason": "the HTTP client closed the response stream"], to: &line)
        return line
    }

    // MARK: 2026-07-28

    private func postModern(_ message: JSONRPCMessage, line: ByteBuffer, head: HTTPRequestHead, credential: String?, acceptsStream: Bool) {
        switch message {
        case .notification(let notification):
            withLink(.modern, credential: credential, { handler, link in
                var line = ByteBuffer()
                Self.encode(notification, to: &line)
                link.send(line: line)
                handler.respond(.accepted, body: ByteBuffer())
            }, refused: { handler, error in handler.respondUnauthenticated(head, error) })
            return
        case .response:
            respondRPCError(.badRequest, id: nil, .invalidRequest("the 2026-07-28 era has no requests from the server to answer"))
            return
        case .request(let request):
            if let version = head.headers.first(name: "mcp-protocol-version"), !ProtocolVersion.modern.contains(version) {
                respondRPCError(.badRequest, id: request.id, Self.unsupportedModernVersion(version))
                return
            }
            if let mismatch = Self.headerMismatch(head, request) {
                respondRPCError(.badRequest, id: request.id, JSONRPCError(code: Self.headerMismatch, message: mismatch))
                return
            }
            if let version = request.params?.member("_meta")?.member(MetaKey.protocolVersion)?.stringValue, !ProtocolVersion.modern.contains(version),
                request.method != "server/discover" || ProtocolVersion.handshake.contains(version) == false
            {
                respondRPCError(.badRequest, id: request.id, Self.unsupportedModernVersion(version))
                return
            }
            let progressToken = request.params?.member("_meta")?.member("progressToken")
            if request.method == "subscriptions/listen" {
                guard acceptsStream else {
                    respondRPCError(.notAcceptable, id: request.id, .invalidRequest("subscriptions/listen answers with an event stream: accept text/event-stream"))
                    return
                }
                withLink(.modern, credential: credential, { handler, link in
                    handler.streamListen(request, line: line, link: link)
                }, refused: { handler, error in handler.respondUnauthenticated(head, error) })
                return
            }
            withLink(.modern, credential: credential, { handler, link in
                if acceptsStream, progressToken != nil {
                    handler.streamModern(request, line: line, link: link, progressToken: progressToken!.description)
                } else {
                    handler.answerAsJSON([(request, line)], isBatch: false, link: link, cancelsOnAbandon: true)
                }
            }, refused: { handler, error in handler.respondUnauthenticated(head, error) })
        }
    }

    /// The headers a 2026-07-28 request carries must say what its body says.
    static func headerMismatch(_ head: HTTPRequestHead, _ request: JSONRPCRequest) -> String? {
        let meta = request.params?.member("_meta")
        if let header = head.headers.first(name: "mcp-protocol-version"),
            let body = meta?.member(MetaKey.protocolVersion)?.stringValue, header != body
        {
            return "the MCP-Protocol-Version header (\(header)) does not match params._meta's protocol version (\(body))"
        }
        if let method = head.headers.first(name: "mcp-method"), method != request.method {
            return "the Mcp-Method header (\(method)) does not match the body's method (\(request.method))"
        }
        let nameKey: String? =
            switch request.method {
            case "tools/call", "prompts/get": "name"
            case "resources/read": "uri"
            default: nil
            }
        if let nameKey, let header = head.headers.first(name: "mcp-name") {
            let body = request.params?.member(nameKey)?.stringValue
            if let body, decodeHeaderValue(header) != body {
                return "the Mcp-Name header does not match the body's \(nameKey) (\(body))"
            }
        }
        return nil
    }

    /// A header value as MCP writes non-ASCII ones: `=?base64?…?=`.
    static func decodeHeaderValue(_ value: String) -> String {
        guard value.hasPrefix("=?base64?"), value.hasSuffix("?="), value.count >= 11 else { return value }
        let payload = String(value.dropFirst(9).dropLast(2))
        guard let bytes = Base64.decode(payload) else { return value }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A stateless request that asked for progress: its notifications, then its reply, as events.
    private func streamModern(_ request: JSONRPCRequest, line: ByteBuffer, link: GatewayLink, progressToken: String) {
        let sink = startEventStream()
        link.setMessageHandler { message, line in
            if case .notification(let notification) = message, notification.method == "notifications/progress",
                notification.params?.member("progressToken")?.description == progressToken
            {
                sink.send(ServerSentEvent.message(line, id: nil))
            }
        }
        let sent = link.send(request: line, id: request.id) { _, reply in
            link.setMessageHandler(nil)
            sink.send(ServerSentEvent.message(reply, id: nil))
            sink.finish()
        }
        if !sent {
            var refusal = ByteBuffer()
            MessageEncoder.writeError(id: request.id, error: Self.idInFlight(request.id), to: &refusal)
            sink.send(ServerSentEvent.message(refusal, id: nil))
            sink.finish()
            return
        }
        onAbandon {
            link.setMessageHandler(nil)
            if link.isWaiting(for: request.id) {
                link.forget(request.id)
                link.send(line: Self.cancellation(of: request.id))
            }
        }
    }

    /// `subscriptions/listen`: the stream stays open with the notifications that carry its
    /// subscription id, until the gateway ends it (its result) or the client closes it (the
    /// request is cancelled, and the gateway forgets the subscription).
    private func streamListen(_ request: JSONRPCRequest, line: ByteBuffer, link: GatewayLink) {
        let sink = startEventStream()
        let id = request.id
        link.setMessageHandler { message, line in
            guard case .notification(let notification) = message,
                let subscription = notification.params?.member("_meta")?.member("io.modelcontextprotocol/subscriptionId"),
                JSONRPCID(subscription) == id
            else { return }
            sink.send(ServerSentEvent.message(line, id: nil))
        }
        let sent = link.send(request: line, id: id) { _, reply in
            link.setMessageHandler(nil)
            sink.send(ServerSentEvent.message(reply, id: nil))
            sink.finish()
        }
        if !sent {
            var refusal = ByteBuffer()
            MessageEncoder.writeError(id: id, error: Self.idInFlight(id), to: &refusal)
            sink.send(ServerSentEvent.message(refusal, id: nil))
            sink.finish()
            return
        }
        onAbandon {
            link.setMessageHandler(nil)
            if link.isWaiting(for: id) {
                link.forget(id)
                link.send(line: Self.cancellation(of: id))
            }
        }
    }

    // MARK: GET and DELETE

    private func mcpGet(_ head: HTTPRequestHead, credential: String?) {
        guard let text = head.headers.first(name: "mcp-session-id") else {
            respondError(
                .methodNotAllowed,
                JSONRPCError(
                    code: JSONRPCError.Code.invalidRequest,
                    message: "GET /mcp opens a session's stream (MCP 2025-03-26 … 2025-11-25) and needs its Mcp-Session-Id; the 2026-07-28 era has no GET"),
                headers: [("allow", "POST")])
            return
        }
        let accept = head.headers[canonicalForm: "accept"].map { $0.lowercased() }
        guard accept.contains(where: { $0.hasPrefix("text/event-stream") }) else {
            respondError(.notAcceptable, JSONRPCError(code: JSONRPCError.Code.invalidRequest, message: "GET /mcp answers text/event-stream: accept it"))
            return
        }
        guard checkHandshakeVersionHeader(head) else { return }
        let resuming = head.headers.first(name: "last-event-id").flatMap(Self.eventPosition)
        withSession(text, head: head, credential: credential) { handler, session in
            let sink = handler.startEventStream()
            switch session.attach(sink, resuming: resuming) {
            case .attached:
                let stream = resuming?.stream ?? 0
                handler.onAbandon { session.detach(stream: stream) }
            case .busy:
                sink.send(ByteBuffer(string: ": this session already has a GET stream open\n\n"))
                sink.finish()
            }
        }
    }

    /// `STREAM-SEQUENCE`, as this gateway numbers events.
    static func eventPosition(_ text: String) -> (stream: Int, sequence: Int)? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let stream = Int(parts[0]), let sequence = Int(parts[1]), stream >= 0, sequence >= 0 else { return nil }
        return (stream, sequence)
    }

    private func mcpDelete(_ head: HTTPRequestHead, credential: String?) {
        guard let text = head.headers.first(name: "mcp-session-id") else {
            respondError(
                .methodNotAllowed,
                JSONRPCError(code: JSONRPCError.Code.invalidRequest, message: "DELETE /mcp ends a session and needs its Mcp-Session-Id"),
                headers: [("allow", "POST")])
            return
        }
        if case .found(let session) = face.sessions.lookup(text), !session.admits(credential: credential) {
            respondRPCError(.notFound, id: nil, JSONRPCError(code: Self.sessionNotFound, message: "Session not found"))
            return
        }
        switch face.sessions.lookup(text) {
        case .unknown:
            respondRPCError(.notFound, id: nil, JSONRPCError(code: Self.sessionNotFound, message: "Session not found"))
        case .found, .restorable:
            _ = face.sessions.end(text)
            respond(.noContent, body: ByteBuffer())
        }
    }

    // MARK: Helpers

    static func unsupportedModernVersion(_ version: String) -> JSONRPCError {
        JSONRPCError(
            code: JSONRPCError.Code.unsupportedProtocolVersion,
            message: "Unsupported protocol version \"\(version)\"; supported: \(ProtocolVersion.all.joined(separator: ", "))",
            data: ["supported": .array(ProtocolVersion.all.map(JSONValue.string)), "requested": .string(version)])
    }

    static func unauthenticated(_ reason: String) -> JSONRPCError {
        JSONRPCError(code: -32007, message: "Unauthenticated: \(reason)", data: ["reason": .string(reason)])
    }

    func sessionCapError() -> JSONRPCError {
        let limit = face.settings.maximumSessions
        return JSONRPCError(
            code: JSONRPCError.Code.tooManyConnections,
            message: "this gateway holds \(limit) MCP sessions, its limit; try again later",
            data: ["limit": .integer(Int64(limit)), "reason": "MCP sessions at this gateway"])
    }

    /// The body with its line breaks turned into spaces.
    static func singleLine(_ body: ByteBuffer) -> ByteBuffer {
        guard body.readableBytesView.contains(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) else { return body }
        return ByteBuffer(bytes: body.readableBytesView.map { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") ? UInt8(ascii: " ") : $0 })
    }

    func respondRPCError(_ status: HTTPResponseStatus, id: JSONRPCID?, _ error: JSONRPCError, headers: [(String, String)] = []) {
        var body = ByteBuffer()
        MessageEncoder.writeError(id: id, error: error, to: &body)
        respond(status, headers: headers, body: body)
    }

    func respondUnauthenticated(_ head: HTTPRequestHead, _ error: JSONRPCError) {
        if error.code == -32007 {
            respondRPCError(.unauthorized, id: nil, error, headers: [("www-authenticate", challenge(head, error: "invalid_token", description: error.message))])
        } else {
            respondRPCError(RESTRoutes.status(of: error), id: nil, error, headers: authenticationHeaders(error))
        }
    }

    static func encode(_ request: JSONRPCRequest, to buffer: inout ByteBuffer) {
        MessageEncoder.writeRequest(id: request.id, method: request.method, params: request.params.map(JSONValue.raw), to: &buffer)
    }

    static func encode(_ notification: JSONRPCNotification, to buffer: inout ByteBuffer) {
        MessageEncoder.writeNotification(method: notification.method, params: notification.params.map(JSONValue.raw), to: &buffer)
    }
}

/// The replies to a POST's requests, gathered in order; complete when each has one.
final class ReplyCollector: Sendable {
    private let state: Mutex<(replies: [ByteBuffer?], missing: Int)>

    init(count: Int) {
        state = Mutex((Array(repeating: nil, count: count), count))
    }

    /// Every reply, once the last has come.
    func add(_ reply: ByteBuffer, at index: Int) -> [ByteBuffer]? {
        state.withLock { state in
            guard state.replies[index] == nil else { return nil }
            state.replies[index] = reply
            state.missing -= 1
            return state.missing == 0 ? state.replies.map { $0! } : nil
        }
    }
}

/// Standard base64 (with or without padding).
enum Base64 {
    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in text.utf8 {
            let value: UInt8
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = byte - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = byte - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"), UInt8(ascii: "-"): value = 62
            case UInt8(ascii: "/"), UInt8(ascii: "_"): value = 63
            case UInt8(ascii: "="): continue
            default: return nil
            }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                values.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return values
    }
}
