import Access
import Agents
import JSONRPC
import Logging
import MCPProtocol
import NIOCore
import Telemetry
import Transport

/// Serves one connection: decodes each line, runs the MCP lifecycle, dispatches requests to the
/// method table and writes the replies.
///
/// Everything here runs on the connection's event loop. Output is gathered into one buffer and
/// flushed once: at the end of a read for what the read produced, and otherwise once the
/// event loop has run the tasks queued with it, so that many replies (or requests to an agent)
/// arriving together from other loops cost one write and one flush.
final class RPCConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = LineFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Which side of MCP this connection is on.
    enum Role {
        /// A client (or an agent that attaches by registering): the gateway is the server and
        /// runs the MCP lifecycle.
        case server
        /// A spawned agent's pipes: the gateway is the client.
        case client(agent: AgentRegistry.InstanceID)
    }

    private let gateway: GatewayCore
    private let role: Role
    private var session: MCPSession
    private var logger: Logger {
        didSet { forgetMethodContexts() }
    }
    private var context: ChannelHandlerContext?
    private var connectionID: UInt64 = 0
    private(set) var handle: ConnectionHandle?
    /// The agent instance behind this connection: a spawned agent, or an attached one once it
    /// has registered.
    var agentInstance: AgentRegistry.InstanceID? {
        didSet { forgetMethodContexts() }
    }
    /// What the method handlers are told of this connection, built once and again only when
    /// something in it changes (the era, the agent, the peer's identity, the logger): a request
    /// then costs no new closure, logger copy or lock.
    private var methodContext: MethodContext?

    /// Output not yet written: flushed at `channelReadComplete`, or by the flush task.
    private var pendingOutput: ByteBuffer?
    private var inReadCycle = false
    private var flushScheduled = false

    private var inFlight = 0
    private var readHeld = false
    /// Lines that arrived while a verdict was awaited: an `auth/authenticate` being verified (a
    /// client that pipelines its first request behind the token must not have it refused as
    /// anonymous), or a rate limit decided by Redis (requests run in the order they came).
    /// Handled once every verdict is in. Nil when none is awaited.
    private var heldLines: [LineFrame]?
    /// Verdicts awaited; lines are held while there is one.
    private var verdictsAwaited = 0
    private static let maximumHeldLines = 256
    private var inputClosed = false
    private var closing = false
    /// Gone: what arrives for it now (a hold taken while it closed) is given back at once.
    private var closed = false
    /// What the connection holds of its principal's quotas: the connection itself, and the
    /// agent it registered as. Given back when it closes.
    private var connectionHold = QuotaHold()
    private var agentHold = QuotaHold()
    /// The principal proved by the token the connection's modern-era requests carry.
    private var tokenIdentity: TokenIdentity?

    private func forgetMethodContexts() {
        methodContext = nil
        tokenIdentity?.methodContext = nil
    }

    private var outboundRequests: [JSONRPCID: OutboundRequest] = [:]
    /// Open `subscriptions/listen` streams: what each wants, and the reply that ends it.
    private var listens: [JSONRPCID: Listen] = [:]

    private struct Listen {
        var methods: Set<String>
        var reply: DeferredReply
    }
    /// One timer for every request to the peer, set for the earliest deadline: a call costs a
    /// deadline, not a scheduled task of its own.
    private var deadlineTimer: (task: Scheduled<Void>, deadline: NIODeadline)?
    private var keepalive: RepeatedTask?
    /// What to do when the peer cancels one of its requests still in flight here.
    private var cancellers: [JSONRPCID: @Sendable () -> Void] = [:]
    private var cancelledRequests: Set<JSONRPCID> = []
    /// A line per request at debug level; decided once, since asking the logger costs a call.
    private let logsRequests: Bool
    /// Whether a request's start and outcome are kept: for the debug log, the audit trail, the
    /// metrics, a span or the access log.
    private let observesRequests: Bool
    /// Bytes and connections of this connection's transport, when metrics are on.
    private let transportInstruments: TransportInstruments?
    /// The transport's name in logs and metrics: `tcp`, `unix`, `tls`, `http`, `stdio`, `agent`.
    private let transport: String
    /// The span of the request whose handler is running, for the spans it starts.
    private var requestSpan: TraceSpan?
    /// This connection's output that the peer has not taken yet, against the gateway's budget.
    private var queuedOutput = QueuedOutput()
    /// Who the peer is and what it may do, decided before any handler runs.
    private var access: AccessDecisions {
        didSet { if access.grant.principal != oldValue.grant.principal { forgetMethodContexts() } }
    }

    private struct OutboundRequest {
        var completion: OutboundCompletion
        var method: String
        var timeout: TimeAmount
        var deadline: NIODeadline
    }

    /// `isStdio`: the connection is the gateway's own standard input and output, whose peer is
    /// the operator who started it.
    init(gateway: GatewayCore, role: Role = .server, isStdio: Bool = false, transport: String? = nil) {
        self.gateway = gateway
        self.role = role
        let transport = transport ?? (isStdio ? "stdio" : { if case .client = role { "agent" } else { "tcp" } }())
        self.transport = transport
        self.transportInstruments = gateway.observability.transport(transport)
        // A spawned agent's pipes carry requests the gateway's own agent makes: the gateway
        // started it, it is trusted like stdio.
        let trusted: Bool = if case .client = role { true } else { isStdio }
        let grant = gateway.access?.initialGrant(isStdio: trusted) ?? .unrestricted
        self.access = AccessDecisions(grant: grant, rateChecks: gateway.access?.rateChecks(for: grant) ?? [])
        self.session = MCPSession(identity: gateway.identity)
        self.logger = gateway.logger
        self.logsRequests = gateway.logger.logLevel <= .debug
        self.observesRequests = logsRequests || gateway.audit != nil || gateway.observability.observesRequests
        if case .client(let agent) = role {
            agentInstance = agent
            logger[metadataKey: "agent"] = "\(agent)"
        }
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { register(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        register(context)
        context.fireChannelActive()
    }

    private func register(_ context: ChannelHandlerContext) {
        guard connectionID == 0 else { return }
        connectionID = gateway.registry.nextConnectionID()
        let handle = ConnectionHandle(id: connectionID, eventLoop: context.eventLoop, handler: self)
        self.handle = handle
        if case .server = role { gateway.registry.add(context.channel, handle: handle, id: connectionID) }
        logger[metadataKey: "connection"] = "\(connectionID)"
        if let peer = context.channel.remoteAddress {
            logger[metadataKey: "peer"] = "\(peer)"
        }
        if let transportInstruments {
            transportInstruments.opened.increment()
            transportInstruments.open.increment()
        }
        logger.debug("connection opened")
    }

    func channelInactive(context: ChannelHandlerContext) {
        gateway.registry.remove(connectionID)
        if connectionID != 0 { transportInstruments?.open.decrement() }
        closed = true
        heldLines = nil
        gateway.quotas?.release(connectionHold)
        gateway.quotas?.release(agentHold)
        connectionHold = QuotaHold()
        agentHold = QuotaHold()
        keepalive?.cancel()
        keepalive = nil
        deadlineTimer?.task.cancel()
        deadlineTimer = nil
        // The agent is marked down before its calls fail, so that whoever hears of the failure
        // already sees it offline, and no new call is sent its way.
        if let handle, !inputClosed { gateway.connectionClosed(handle, agent: agentInstance, role: role) }
        failOutboundRequests(reason: agentInstance.map { "the connection to agent \($0) closed" } ?? "the connection closed")
        // Work the peer can no longer hear the end of is stopped, at the agents too.
        cancelRequestsInFlight(reason: "the connection closed")
        let heldOutput = queuedOutput.reported
        queuedOutput.drained(budget: gateway.outputBudget)
        if heldOutput > 1024 * 1024 { gateway.outputBudget.releaseMemorySoon(on: context.eventLoop) }
        logger.debug("connection closed")
        context.fireChannelInactive()
    }

    // MARK: Output bounds

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            queuedOutput.drained(budget: gateway.outputBudget)
        } else {
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let stall = gateway.outputBudget.limits.stall
            queuedOutput.stalled(on: context.eventLoop, budget: gateway.outputBudget) {
                let handler = loopBound.value
                guard let channel = handler.context?.channel, !channel.isWritable else { return }
                handler.closeForOutput("the peer has taken none of its output for \(stall)")
            }
        }
        context.fireChannelWritabilityChanged()
    }

    /// Called after a flush that the peer could not take at once.
    private func boundQueuedOutput(_ context: ChannelHandlerContext) {
        switch queuedOutput.check(context.channel, budget: gateway.outputBudget) {
        case .withinBounds:
            break
        case .overConnectionBound(let queued):
            closeForOutput("the peer does not read: \(queued) bytes of output queued, over the limit of \(gateway.outputBudget.limits.perConnectionBytes)")
        case .overTotalBound(let queued, let total):
            closeForOutput(
                "peers that do not read hold \(total) bytes of output, over the gateway's limit of \(gateway.outputBudget.limits.totalBytes); this one held \(queued)")
        }
    }

    /// Closes a connection whose peer does not take its output; its work at agents stops.
    private func closeForOutput(_ reason: String) {
        guard let context, !closing else { return }
        closing = true
        logger.warning("closing the connection: \(reason)")
        cancelRequestsInFlight(reason: "the client does not read its replies")
        context.close(promise: nil)
    }

    private func cancelRequestsInFlight(reason: String) {
        guard !cancellers.isEmpty else { return }
        let pending = cancellers
        cancellers = [:]
        for (id, cancel) in pending {
            cancelledRequests.insert(id)
            cancel()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // The handle and the cached method context both lead back to this handler: let go of
        // them, so that a closed connection's objects are freed.
        methodContext = nil
        tokenIdentity = nil
        handle = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let handshake = event as? TLSHandshakeCompleted {
            handle?.peerIdentity = handshake.peer
            methodContext = nil
            // A client certificate that the configuration maps to a principal is its proof.
            if let peer = handshake.peer, let grant = gateway.access?.grant(forCertificate: peer) {
                access.change(to: grant, rateChecks: gateway.access?.rateChecks(for: grant) ?? [])
                logger[metadataKey: "principal"] = "\(grant.principal.name)"
                holdConnectionQuota(of: grant.principal, context: context)
            }
            if let peer = handshake.peer { logger[metadataKey: "peer.subject"] = "\(peer.subject)" }
            logger.debug("TLS \(handshake.protocolVersion) \(handshake.cipher)")
        }
        if case .inputClosed = event as? ChannelEvent {
            // The peer will send nothing more: answer what is in flight, then close. Requests we
            // sent it can no longer be answered, so they fail now rather than at their timeout.
            inputClosed = true
            if let handle { gateway.connectionClosed(handle, agent: agentInstance, role: role) }
            failOutboundRequests(reason: agentInstance.map { "agent \($0) closed its side of the connection" } ?? "the peer closed its side of the connection")
            closeIfFinished()
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A certificate's principal takes one of its connection quota; past it the connection is
    /// closed (there is no request to refuse). Its requests wait for the verdict.
    private func holdConnectionQuota(of principal: Principal, context: ChannelHandlerContext) {
        guard let quotas = gateway.quotas, quotas.counts(.connections) else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        awaitVerdict()
        context.eventLoop.makeFutureWithTask { try await quotas.acquire(.connections, for: principal) }.whenComplete { outcome in
            let handler = loopBound.value
            defer { handler.verdictReached() }
            switch outcome {
            case .success(let hold):
                handler.connectionHold = hold
                if handler.closed {
                    quotas.release(hold)
                    handler.connectionHold = QuotaHold()
                }
            case .failure(let error):
                handler.logger.notice("closing the connection of \(principal.name): \((error as? JSONRPCError)?.message ?? "\(error)")")
                handler.closing = true
                handler.context?.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? TLSError {
            // Certificate and protocol problems are the operator's business: say them plainly.
            // A peer that hangs up without close_notify is common and harmless.
            if error.code == .uncleanShutdown {
                logger.debug("TLS: \(error.reason)")
            } else {
                logger.warning("TLS: \(error.reason)")
            }
        } else {
            logger.debug("connection error: \(error)")
        }
        context.close(promise: nil)
    }

    /// Whether something other than traffic keeps this connection from being idle: a request of
    /// the peer in flight, a reply written but not flushed yet (a request that has just ended), a
    /// request to it awaiting its reply, an agent behind it, keepalive, or a subscription. Asked
    /// by the idle timeout, only when its deadline passes.
    var holdsConnectionOpen: Bool {
        inFlight > 0 || pendingOutput != nil || !outboundRequests.isEmpty || agentInstance != nil || keepalive != nil
            || gateway.coordination.hasSubscriptions(connectionID)
    }

    // MARK: Flow control

    /// Holds reads while the connection has too many requests outstanding; `BackPressureHandler`
    /// in front of us holds them while the peer is not reading its replies.
    func read(context: ChannelHandlerContext) {
        if inFlight >= gateway.settings.limits.maximumInFlightPerConnection
            || (heldLines?.count ?? 0) >= Self.maximumHeldLines
        {
            readHeld = true
        } else {
            context.read()
        }
    }

    private func releaseHeldRead() {
        guard readHeld, let context, inFlight < gateway.settings.limits.maximumInFlightPerConnection,
            (heldLines?.count ?? 0) < Self.maximumHeldLines
        else { return }
        readHeld = false
        context.read()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A connection closed for not reading its output gets no more work done.
        guard !closing else { return }
        inReadCycle = true
        let frame = unwrapInboundIn(data)
        if heldLines != nil {
            heldLines?.append(frame)
            return
        }
        receive(frame)
    }

    private func receive(_ frame: LineFrame) {
        switch frame {
        case .oversize(let line):
            oversize(line)
        case .line(let line):
            transportInstruments?.received.increment(by: Int64(line.readableBytes + 1))
            let decoded = gateway.decoder.decode(line: line)
            if case .parseError = decoded, case .client = role {
                agentWroteNonJSON(line)
            } else {
                handle(decoded)
            }
        }
    }

    /// A message over the limit is never silent: a request is answered with an error carrying
    /// its id, and a reply to one of our requests fails that request at once.
    private func oversize(_ line: OversizeLine) {
        let message = OversizeMessage(head: line.head, tail: line.tail)
        if message.isResponse {
            guard let id = message.id, let request = outboundRequests.removeValue(forKey: id) else {
                logger.warning("discarded a reply of \(line.length) bytes (over the limit of \(line.limit)) to no request in flight")
                return
            }
            logger.warning("the reply to \(request.method) \(id) was \(line.length) bytes, over the limit of \(line.limit): the call fails")
            request.completion.complete(.failure(JSONRPCError.replyTooLarge(limit: line.limit, size: line.length, method: request.method)))
            return
        }
        logger.notice("discarded a message of \(line.length) bytes (over the limit of \(line.limit))\(message.id.map { ", id \($0)" } ?? "")")
        emit { MessageEncoder.writeError(id: message.id, error: .messageTooLarge(limit: line.limit, size: line.length), to: &$0) }
    }

    /// An agent wrote something other than JSON-RPC on its stdout (a banner, a log line). Only
    /// JSON-RPC may go there; the line is noted for the handshake's diagnosis and otherwise
    /// ignored. A banner without a newline glued to a message does not lose the message.
    private func agentWroteNonJSON(_ line: ByteBuffer) {
        let view = line.readableBytesView
        if let brace = view.firstIndex(of: UInt8(ascii: "{")), brace > view.startIndex {
            let rest = line.getSlice(at: brace, length: view.endIndex - brace)!
            let decoded = gateway.decoder.decode(line: rest)
            if case .single = decoded {
                noteNonJSON(line.getSlice(at: view.startIndex, length: brace - view.startIndex)!)
                handle(decoded)
                return
            }
        }
        noteNonJSON(line)
    }

    private func noteNonJSON(_ bytes: ByteBuffer) {
        let text = String(decoding: bytes.readableBytesView.prefix(120), as: UTF8.self)
        if handle?.firstNonJSONOutput == nil {
            logger.warning("the agent wrote non-JSON on its standard output, where only JSON-RPC may go: \"\(text)\"")
        } else {
            logger.debug("the agent wrote non-JSON on its standard output: \"\(text)\"")
        }
        handle?.firstNonJSONOutput = text
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadCycle = false
        flushPendingOutput()
        context.fireChannelReadComplete()
    }

    private func handle(_ line: DecodedLine) {
        switch line {
        case .blank:
            return
        case .parseError(let error):
            logger.debug("parse error: \(error.message)")
            emit { MessageEncoder.writeError(id: nil, error: error, to: &$0) }
        case .emptyBatch:
            emit { MessageEncoder.writeError(id: nil, error: .invalidRequest("an empty batch"), to: &$0) }
        case .single(let entry):
            switch answer(entry) {
            case .none: break
            case .now(let reply): emit { reply.write(to: &$0) }
            case .later(let id, let pending, let log) where Self.isAuthentication(entry):
                // What follows waits for the verdict: it is decided as the principal proved.
                awaitVerdict()
                track(pending) { [self] result in
                    self.cancellers[id] = nil
                    if self.cancelledRequests.remove(id) == nil {
                        let reply = self.reply(id: id, result)
                        if let log { self.finished(log, reply) }
                        emit { reply.write(to: &$0) }
                    }
                    self.verdictReached()
                }
            case .later(let id, let pending, nil):
                track(pending) { [self] result in
                    self.cancellers[id] = nil
                    if self.cancelledRequests.remove(id) != nil { return }
                    emit { self.reply(id: id, result).write(to: &$0) }
                }
            case .later(let id, let pending, let log?):
                track(pending) { [self] result in
                    self.cancellers[id] = nil
                    if self.cancelledRequests.remove(id) != nil {
                        self.finished(log, nil)
                        return
                    }
                    let reply = self.reply(id: id, result)
                    self.finished(log, reply)
                    emit { reply.write(to: &$0) }
                }
            }
        case .batch(let entries):
            if let rejection = session.batchRejection {
                emit { MessageEncoder.writeError(id: nil, error: rejection, to: &$0) }
                return
            }
            handleBatch(entries)
        case .batchTooLarge(let entries, let limit):
            let error = session.batchRejection ?? .batchTooLarge(entries: entries, limit: limit)
            logger.notice("refused a batch of \(entries) entries (the limit is \(limit))")
            emit { MessageEncoder.writeError(id: nil, error: error, to: &$0) }
        }
    }

    private static func isAuthentication(_ entry: DecodedEntry) -> Bool {
        if case .message(.request(let request)) = entry { return request.method == "auth/authenticate" }
        return false
    }

    /// Lines arriving from now on wait until the verdict is reached.
    private func awaitVerdict() {
        verdictsAwaited += 1
        if heldLines == nil { heldLines = [] }
    }

    /// Once every verdict is in, the lines held meanwhile are handled, in order (one of them may
    /// await another verdict: the rest waits again).
    private func verdictReached() {
        verdictsAwaited -= 1
        guard verdictsAwaited == 0, var waiting = heldLines else { return }
        heldLines = nil
        while !waiting.isEmpty, verdictsAwaited == 0, !closing, !closed {
            receive(waiting.removeFirst())
        }
        if verdictsAwaited > 0 { heldLines = waiting + (heldLines ?? []) }
        flushPendingOutput()
        releaseHeldRead()
        closeIfFinished()
    }

    private func handleBatch(_ entries: [DecodedEntry]) {
        let batch = BatchReply()
        for entry in entries {
            switch answer(entry) {
            case .none: break
            case .now(let reply): batch.replies.append(reply)
            case .later(let id, let pending, let log):
                batch.outstanding += 1
                track(pending) { [self] result in
                    self.cancellers[id] = nil
                    let reply = self.reply(id: id, result)
                    if let log { self.finished(log, reply) }
                    batch.replies.append(reply)
                    batch.outstanding -= 1
                    if batch.outstanding == 0 && batch.sealed { emitBatch(batch) }
                }
            }
        }
        // Entries may have completed while the loop ran; the batch goes out exactly once.
        batch.sealed = true
        if batch.outstanding == 0 { emitBatch(batch) }
    }

    private func emitBatch(_ batch: BatchReply) {
        // A batch of notifications gets no reply at all, not an empty array.
        guard !batch.replies.isEmpty else { return }
        emit { buffer in
            buffer.writeInteger(UInt8(ascii: "["))
            for (index, reply) in batch.replies.enumerated() {
                if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                reply.write(to: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "]"))
        }
    }

    private enum Answer {
        case none
        case now(Reply)
        /// With what the request's log line needs, when requests are logged.
        case later(JSONRPCID, PendingReply, RequestLog?)
    }

    /// A class: the answer that carries it stays small when requests are neither logged nor
    /// audited.
    private final class RequestLog {
        let method: String
        let id: JSONRPCID
        let started: NIODeadline
        /// The request, when its outcome goes to the audit trail.
        let audited: JSONRPCRequest?
        let instruments: RequestInstruments?
        /// The request's span, when tracing is on.
        let span: TraceSpan?
        /// The trace the caller put the request in (`_meta.traceparent`), for the access log
        /// when the gateway records no span of its own.
        let callerTrace: TraceContext?

        init(
            method: String, id: JSONRPCID, started: NIODeadline, audited: JSONRPCRequest?, instruments: RequestInstruments?,
            span: TraceSpan?, callerTrace: TraceContext?
        ) {
            self.method = method
            self.id = id
            self.started = started
            self.audited = audited
            self.instruments = instruments
            self.span = span
            self.callerTrace = callerTrace
        }
    }

    /// A request is answered (nil: the peer cancelled it): one line at debug with method, id,
    /// peer and agent (the logger's metadata), duration and outcome; and its audit entry.
    private func finished(_ log: RequestLog, _ reply: Reply?) {
        let error: JSONRPCError?
        switch reply {
        case .error(_, let refusal)?: error = refusal
        default: error = nil
        }
        if observesRequests && (log.instruments != nil || log.span != nil || gateway.observability.accessLog) {
            let seconds = Double((NIODeadline.now() - log.started).nanoseconds) / 1e9
            log.instruments?.record(reply == nil ? .cancelled : error == nil ? .ok : .error, seconds: seconds)
            if let span = log.span {
                if reply == nil {
                    span.end(errorType: "cancelled")
                } else if let error {
                    span.setAttribute("rpc.jsonrpc.error_code", Int(error.code))
                    span.end(errorType: "\(error.code)", message: error.message)
                } else {
                    span.end()
                }
            }
            if gateway.observability.accessLog {
                gateway.observability.logAccess(
                    logger, method: log.method, id: log.id, error: error, cancelled: reply == nil, seconds: seconds, transport: transport,
                    span: log.span, callerTrace: log.callerTrace)
            }
        }
        if logsRequests {
            let microseconds = (NIODeadline.now() - log.started).nanoseconds / 1000
            logger.debug("request \(log.method) \(log.id): \(reply?.outcome ?? "cancelled") in \(Double(microseconds) / 1000) ms")
        }
        if let request = log.audited, let audit = gateway.audit {
            let error: JSONRPCError? = switch reply {
            case .error(_, let error)?: error
            case .result?: nil
            case nil: JSONRPCError(code: -32800, message: "cancelled by the peer")
            }
            audit.record(request, principal: principal(of: request), connection: connectionID, error: error)
            gateway.observability.metrics?.auditEntries.increment()
        }
    }

    /// Who a request was decided as: the principal its own token proved, or the connection's.
    private func principal(of request: JSONRPCRequest) -> Principal {
        if gateway.access != nil, case .modern = session.era, let token = RequestToken.read(request.params),
            let identity = tokenIdentity, identity.token == token
        {
            return identity.decisions.grant.principal
        }
        return access.grant.principal
    }

    /// A reply to come: from a future, or from a deferred reply.
    private enum PendingReply {
        case future(EventLoopFuture<JSONValue>)
        case deferred(DeferredReply)
    }

    private func answer(_ entry: DecodedEntry) -> Answer {
        switch entry {
        case .invalid(let id, let error):
            return .now(.error(id, error))
        case .message(.notification(let notification)):
            receive(notification)
            return .none
        case .message(.response(let response)):
            completeOutboundRequest(response)
            return .none
        case .message(.request(let request)):
            return answer(request)
        }
    }

    private func answer(_ request: JSONRPCRequest) -> Answer {
        let entry = gateway.methods.entry(for: request.method)
        guard observesRequests else { return dispatch(request, entry) }
        let audited = gateway.audit?.records(request.method) ?? false
        let observability = gateway.observability
        var callerTrace: TraceContext?
        var span: TraceSpan?
        if observability.tracing != nil || observability.accessLog {
            callerTrace = GatewayObservability.traceContext(of: request)
        }
        if let tracing = observability.tracing {
            span = tracing.requestSpan(for: request, transport: transport, parent: callerTrace)
        }
        let log = RequestLog(
            method: request.method, id: request.id, started: .now(), audited: audited ? request : nil,
            instruments: entry.map { $0.instruments?.instruments } ?? gateway.requestInstruments(for: request.method), span: span,
            callerTrace: callerTrace)
        requestSpan = span
        defer { requestSpan = nil }
        switch dispatch(request, entry) {
        case .now(let reply):
            finished(log, reply)
            return .now(reply)
        case .later(let id, let pending, _):
            return .later(id, pending, log)
        case .none:
            return .none
        }
    }

    @inline(__always)
    private func dispatch(_ request: JSONRPCRequest, _ entry: MethodTable.Entry?) -> Answer {
        if gateway.registry.isDraining {
            return .now(.error(request.id, .shuttingDown()))
        }
        if case .server = role {
            switch session.admit(request) {
            case .rejected(let error):
                return .now(.error(request.id, error))
            case .answered(let result):
                handle?.clientCapabilities = session.clientCapabilities
                handle?.acceptsServerRequests = session.acceptsServerRequests
                startKeepaliveIfNeeded()
                return .now(.result(request.id, result))
            case .proceed:
                break
            }
        }
        guard let handler = entry?.handler, let context, let handle else {
            return .now(.error(request.id, .methodNotFound(request.method)))
        }
        // Without an `auth` section everything is allowed and nothing is limited: nothing to decide.
        guard gateway.access != nil else { return run(request, handler, as: nil, context: context, handle: handle) }
        if case .modern = session.era, let token = RequestToken.read(request.params) {
            if let identity = tokenIdentity, identity.proves(token) {
                return decideAndRun(request, handler, as: identity, context: context, handle: handle)
            }
            return verify(token, then: request, handler, context: context, handle: handle)
        }
        return decideAndRun(request, handler, as: nil, context: context, handle: handle)
    }

    /// Decides `request` as the connection's principal, or as `identity`'s, then runs it.
    @inline(__always)
    private func decideAndRun(
        _ request: JSONRPCRequest, _ handler: @escaping MethodHandler, as identity: TokenIdentity?, context: ChannelHandlerContext,
        handle: ConnectionHandle
    ) -> Answer {
        let refusal: AccessError?
        let rateChecks: [RateCheck]
        if let identity {
            refusal = identity.decisions.refusal(of: request)
            rateChecks = identity.decisions.rateChecks
        } else {
            refusal = access.refusal(of: request)
            rateChecks = access.rateChecks
        }
        if let refusal {
            return .now(.error(request.id, refused(request, refusal, principal: (identity?.decisions.grant ?? access.grant).principal)))
        }
        if !rateChecks.isEmpty, !RateLimitSettings.exemptMethods.contains(request.method), let limiter = gateway.access?.rateLimiter {
            let principal = (identity?.decisions.grant ?? access.grant).principal
            switch limiter.admit(rateChecks, principal: principal.name, on: context.eventLoop) {
            case .allowed:
                break
            case .refused(let refusal):
                return .now(.error(request.id, refused(request, refusal, principal: principal)))
            case .pending(let verdict):
                return run(request, handler, as: identity, afterVerdict: verdict, context: context, handle: handle)
            }
        }
        return run(request, handler, as: identity, context: context, handle: handle)
    }

    /// A request the access layer refused: logged, and kept in the audit trail (here when the
    /// trail would not record it once answered).
    private func refused(_ request: JSONRPCRequest, _ refusal: AccessError, principal: Principal) -> JSONRPCError {
        let error = refusal.jsonRPCError
        if let metrics = gateway.observability.metrics {
            if case .limited = refusal { metrics.rateLimitRefusals.increment() } else { metrics.accessRefusals.increment() }
        }
        logger.info("refused \(request.method) \(request.id): \(error.message)")
        if let audit = gateway.audit, !audit.records(request.method) {
            audit.record(request, principal: principal, connection: connectionID, error: error)
            gateway.observability.metrics?.auditEntries.increment()
        }
        return error
    }

    /// Verifies a request's token, then decides and runs the request as its principal; the lines
    /// after it wait for the verdict. A token that does not verify is `-32007`, for this request.
    private func verify(
        _ token: String, then request: JSONRPCRequest, _ handler: @escaping MethodHandler, context: ChannelHandlerContext,
        handle: ConnectionHandle
    ) -> Answer {
        guard let gate = gateway.access else { return .now(.error(request.id, .internalError("no access layer"))) }
        awaitVerdict()
        let reply = DeferredReply()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let span = requestSpan
        context.eventLoop.makeFutureWithTask { try await gate.authenticator.authenticate(token: token) }
            .hop(to: context.eventLoop).whenComplete { outcome in
                let connection = loopBound.value
                defer { connection.verdictReached() }
                connection.requestSpan = span
                defer { connection.requestSpan = nil }
                switch outcome {
                case .failure(let error):
                    let refusal = error as? AccessError ?? .unauthenticated(reason: "\(error)")
                    reply.fail(connection.refused(request, refusal, principal: connection.access.grant.principal))
                case .success(let principal):
                    let grant = gate.grant(for: principal)
                    let identity = TokenIdentity(
                        token: token, decisions: AccessDecisions(grant: grant, rateChecks: gate.rateChecks(for: grant)),
                        expiresAt: principal.expiresAt)
                    connection.tokenIdentity = identity
                    guard let context = connection.context, let handle = connection.handle else {
                        reply.fail(JSONRPCError.shuttingDown())
                        return
                    }
                    connection.forward(connection.decideAndRun(request, handler, as: identity, context: context, handle: handle), to: reply)
                }
            }
        return .later(request.id, .deferred(reply), nil)
    }

    /// Completes `reply` with what `answer` comes to.
    private func forward(_ answer: Answer, to reply: DeferredReply) {
        switch answer {
        case .none: reply.fail(JSONRPCError.shuttingDown())
        case .now(let answer): reply.complete(answer.result)
        case .later(_, .future(let future), _): future.whenComplete { reply.complete($0) }
        case .later(_, .deferred(let inner), _):
            guard let eventLoop = context?.eventLoop else {
                reply.fail(JSONRPCError.shuttingDown())
                return
            }
            inner.whenComplete(on: eventLoop) { reply.complete($0) }
        }
    }

    /// Runs `request` once Redis has decided its rate limits; the lines after it wait for the
    /// verdict, not for the reply.
    private func run(
        _ request: JSONRPCRequest, _ handler: @escaping MethodHandler, as identity: TokenIdentity?,
        afterVerdict verdict: EventLoopFuture<AccessError?>, context: ChannelHandlerContext, handle: ConnectionHandle
    ) -> Answer {
        awaitVerdict()
        let reply = DeferredReply()
        let loopBound = NIOLoopBound((self, identity), eventLoop: context.eventLoop)
        let span = requestSpan
        verdict.hop(to: context.eventLoop).whenComplete { outcome in
            let (connection, identity) = loopBound.value
            defer { connection.verdictReached() }
            connection.requestSpan = span
            defer { connection.requestSpan = nil }
            switch outcome {
            case .success(let refusal?):
                reply.fail(connection.refused(request, refusal, principal: (identity?.decisions ?? connection.access).grant.principal))
            case .failure(let error):
                reply.fail(error)
            case .success(nil):
                guard let context = connection.context, let handle = connection.handle else {
                    reply.fail(JSONRPCError.shuttingDown())
                    return
                }
                connection.forward(connection.run(request, handler, as: identity, context: context, handle: handle), to: reply)
            }
        }
        return .later(request.id, .deferred(reply), nil)
    }

    /// Runs `request`'s handler: everything about it has been decided.
    private func run(
        _ request: JSONRPCRequest, _ handler: @escaping MethodHandler, as identity: TokenIdentity?, context: ChannelHandlerContext,
        handle: ConnectionHandle
    ) -> Answer {
        let methodContext: MethodContext
        if let identity {
            if let cached = identity.methodContext, cached.era == session.era {
                methodContext = cached
            } else {
                methodContext = makeMethodContext(grant: identity.decisions.grant, context: context, handle: handle)
                identity.methodContext = methodContext
            }
        } else if let cached = self.methodContext, cached.era == session.era {
            methodContext = cached
        } else {
            methodContext = makeMethodContext(grant: access.grant, context: context, handle: handle)
            self.methodContext = methodContext
        }
        guard let span = requestSpan else { return answer(request, by: handler, in: methodContext) }
        var traced = methodContext
        traced.trace = span
        return answer(request, by: handler, in: traced)
    }

    private func makeMethodContext(grant: Grant, context: ChannelHandlerContext, handle: ConnectionHandle) -> MethodContext {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        return MethodContext(
            connectionID: connectionID,
            era: session.era,
            eventLoop: context.eventLoop,
            logger: logger,
            connection: handle,
            agentInstance: agentInstance,
            peerIdentity: handle.peerIdentity,
            grant: grant,
            connectionPrincipal: access.grant.principal,
            authenticated: { principal, hold in
                // Called on this event loop by `auth/authenticate`.
                let handler = loopBound.value
                if let hold {
                    handler.gateway.quotas?.release(handler.connectionHold)
                    handler.connectionHold = hold
                    if handler.closed {
                        handler.gateway.quotas?.release(hold)
                        handler.connectionHold = QuotaHold()
                    }
                }
                let grant = handler.gateway.access?.grant(for: principal) ?? .unrestricted
                handler.access.change(to: grant, rateChecks: handler.gateway.access?.rateChecks(for: grant) ?? [])
                handler.logger[metadataKey: "principal"] = "\(principal.name)"
            },
            registerAgent: { instance, hold in
                // Called on this event loop by `agents/register`.
                let handler = loopBound.value
                guard !handler.closed, !handler.inputClosed, handler.agentInstance == nil else {
                    handler.gateway.quotas?.release(hold)
                    return false
                }
                handler.agentHold = hold
                handler.agentInstance = instance
                handler.logger[metadataKey: "agent"] = "\(instance)"
                return true
            }
        )
    }

    private func answer(_ request: JSONRPCRequest, by handler: MethodHandler, in methodContext: MethodContext) -> Answer {
        switch handler(request, methodContext) {
        case .result(let result): return .now(.result(request.id, session.stamp(result)))
        case .error(let error): return .now(.error(request.id, error))
        case .later(let future): return .later(request.id, .future(future), nil)
        case .cancellable(let future, let cancel):
            cancellers[request.id] = cancel
            return .later(request.id, .future(future), nil)
        case .deferred(let reply, let cancel):
            cancellers[request.id] = cancel
            return .later(request.id, .deferred(reply), nil)
        }
    }

    private func receive(_ notification: JSONRPCNotification) {
        switch notification.method {
        case "notifications/cancelled":
            // The peer gave up on one of its requests: stop the work, and send no reply.
            guard let id = notification.params?.member("requestId").flatMap(JSONRPCID.init),
                let cancel = cancellers.removeValue(forKey: id)
            else { return }
            cancelledRequests.insert(id)
            cancel()
        default:
            session.receive(notification)
            if let handle { gateway.notificationArrived(notification, from: handle, agent: agentInstance) }
        }
    }

    /// Turns a finished asynchronous call into its reply.
    private func reply(id: JSONRPCID, _ result: Result<JSONValue, any Error>) -> Reply {
        switch result {
        case .success(let value):
            return .result(id, session.stamp(value))
        case .failure(let error as JSONRPCError):
            return .error(id, error)
        case .failure(let error as any GatewayErrorConvertible):
            return .error(id, error.jsonRPCError)
        case .failure(let error):
            logger.error("request \(id) failed: \(error)")
            return .error(id, .internalError(String(describing: error)))
        }
    }

    /// Counts `pending` as in flight until it completes, then runs `body` on this event loop.
    private func track(_ pending: PendingReply, _ body: @escaping (Result<JSONValue, any Error>) -> Void) {
        guard let context else { return }
        inFlight += 1
        gateway.registry.requestStarted()
        let loopBound = NIOLoopBound((self, body), eventLoop: context.eventLoop)
        let finish: @Sendable (Result<JSONValue, any Error>) -> Void = { result in
            let (handler, body) = loopBound.value
            body(result)
            handler.inFlight -= 1
            handler.gateway.registry.requestFinished()
            handler.releaseHeldRead()
            handler.closeIfFinished()
        }
        switch pending {
        case .future(let future): future.hop(to: context.eventLoop).whenComplete(finish)
        case .deferred(let reply): reply.whenComplete(on: context.eventLoop, finish)
        }
    }

    // MARK: Outbound

    /// Queues `write` as one line; flushed at the end of the read in progress, or once the
    /// tasks already queued on the event loop have run.
    private func emit(_ write: (inout ByteBuffer) -> Void) {
        guard let context else { return }
        var buffer = pendingOutput ?? context.channel.allocator.buffer(capacity: 256)
        pendingOutput = nil
        write(&buffer)
        buffer.writeInteger(UInt8(ascii: "\n"))
        pendingOutput = buffer
        if buffer.readableBytes >= Self.earlyFlushBytes {
            // Much output from one read (large replies to many requests): it goes to the socket
            // now, where the output bounds see it, rather than piling up here.
            flushPendingOutput()
            return
        }
        if !inReadCycle && !flushScheduled {
            flushScheduled = true
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let handler = loopBound.value
                handler.flushScheduled = false
                handler.flushPendingOutput()
            }
        }
    }

    /// Gathered output past this size is flushed without waiting for the end of the read.
    private static let earlyFlushBytes = 256 * 1024

    private func flushPendingOutput() {
        guard let context, let buffer = pendingOutput else { return }
        pendingOutput = nil
        transportInstruments?.sent.increment(by: Int64(buffer.readableBytes))
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        if !context.channel.isWritable { boundQueuedOutput(context) }
    }

    private func closeIfFinished() {
        // Lines held for a verdict are still to be answered.
        guard inputClosed, inFlight == 0, verdictsAwaited == 0, heldLines == nil, !closing, let context else { return }
        closing = true
        // Writes complete in order: once this last one (what is left, or nothing) is written,
        // every reply before it has been too. Flushes carry no promise, so that a write costs
        // no future.
        let written = context.eventLoop.makePromise(of: Void.self)
        let last = pendingOutput ?? context.channel.allocator.buffer(capacity: 0)
        pendingOutput = nil
        transportInstruments?.sent.increment(by: Int64(last.readableBytes))
        context.writeAndFlush(wrapOutboundOut(last), promise: written)
        let channel = context.channel
        written.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: Requests to the peer

    func sendRequest(id: JSONRPCID, method: String, params: JSONValue?, timeout: TimeAmount, completion: OutboundCompletion) {
        guard let context, context.channel.isActive else {
            completion.complete(.failure(AgentEndpointClosed(reason: "the connection is closed")))
            return
        }
        let deadline = NIODeadline.now() + timeout
        outboundRequests[id] = OutboundRequest(completion: completion, method: method, timeout: timeout, deadline: deadline)
        if deadlineTimer.map({ deadline < $0.deadline }) ?? true { armDeadlineTimer(for: deadline) }
        emit { MessageEncoder.writeRequest(id: id, method: method, params: params, to: &$0) }
    }

    private func armDeadlineTimer(for deadline: NIODeadline) {
        guard let context else { return }
        deadlineTimer?.task.cancel()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(deadline: deadline) { loopBound.value.expireOutboundRequests() }
        deadlineTimer = (task, deadline)
    }

    /// Fails the requests whose time is up, and sets the timer for the next deadline.
    private func expireOutboundRequests() {
        deadlineTimer = nil
        let now = NIODeadline.now()
        var next: NIODeadline?
        for (id, request) in outboundRequests {
            guard request.deadline <= now else {
                next = min(next ?? request.deadline, request.deadline)
                continue
            }
            outboundRequests[id] = nil
            request.completion.complete(.failure(AgentCallTimedOut(method: request.method, timeout: request.timeout)))
            // The peer may still be working on it: tell it to stop.
            sendNotification(method: "notifications/cancelled", params: ["requestId": id.jsonValue, "reason": "timed out"])
        }
        if let next { armDeadlineTimer(for: next) }
    }

    func cancelOutboundRequest(_ id: JSONRPCID, reason: String) {
        guard let request = outboundRequests.removeValue(forKey: id) else { return }
        request.completion.complete(.failure(AgentCallCancelled()))
        sendNotification(method: "notifications/cancelled", params: ["requestId": id.jsonValue, "reason": .string(reason)])
    }

    func sendNotification(method: String, params: JSONValue?) {
        emit { MessageEncoder.writeNotification(method: method, params: params, to: &$0) }
    }

    /// List-changed notifications go to handshake-era MCP sessions, which asked for them by
    /// initializing, and to the `subscriptions/listen` streams that opted in to them; the
    /// modern era has no unsolicited notifications otherwise.
    func sendListChanged(_ method: String) {
        guard case .server = role else { return }
        if session.acceptsServerRequests { sendNotification(method: method, params: nil) }
        for (id, listen) in listens where listen.methods.contains(method) {
            sendNotification(method: method, params: ["_meta": ListenSubscriptions.meta(id)])
        }
    }

    // MARK: subscriptions/listen

    func startListening(_ id: JSONRPCID, methods: Set<String>, acknowledging honored: JSONValue, reply: DeferredReply) {
        guard !closed else { return }
        // The acknowledgement is the stream's first message, before any change it announces.
        sendNotification(
            method: "notifications/subscriptions/acknowledged", params: ["notifications": honored, "_meta": ListenSubscriptions.meta(id)])
        listens[id] = Listen(methods: methods, reply: reply)
    }

    /// The client cancelled the stream (or went away): the request ends, its reply unsent, so
    /// that it no longer counts as in flight.
    func stopListening(_ id: JSONRPCID) {
        listens.removeValue(forKey: id)?.reply.succeed(["_meta": ListenSubscriptions.meta(id)])
    }

    /// The gateway is shutting down: each stream ends with its result, as the specification
    /// has a graceful end, and no request is left in flight for the drain to wait for.
    func endListening() {
        let ending = listens
        listens = [:]
        for (id, listen) in ending {
            listen.reply.succeed(["_meta": ListenSubscriptions.meta(id)])
        }
    }

    func close() {
        context?.close(promise: nil)
    }

    private func failOutboundRequests(reason: String) {
        let pending = outboundRequests
        outboundRequests = [:]
        deadlineTimer?.task.cancel()
        deadlineTimer = nil
        for request in pending.values {
            request.completion.complete(.failure(AgentEndpointClosed(reason: reason)))
        }
    }

    private func completeOutboundRequest(_ response: JSONRPCResponse) {
        guard let id = response.id, let request = outboundRequests.removeValue(forKey: id) else {
            logger.debug("dropped a response to an unknown request id")
            return
        }
        switch response.outcome {
        case .result(let result): request.completion.complete(.success(result))
        case .error(let error): request.completion.complete(.failure(error))
        }
    }

    /// Pings a handshake-era peer every interval; one that does not answer in time is gone.
    private func startKeepaliveIfNeeded() {
        guard keepalive == nil, session.acceptsServerRequests, let interval = gateway.settings.keepalive.interval,
            let context
        else { return }
        let timeout = TimeAmount(gateway.settings.keepalive.timeout)
        let period = TimeAmount(interval)
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        keepalive = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            let handler = loopBound.value
            handler.handle?.call("ping", params: nil, timeout: timeout).result.whenFailure { error in
                guard error is AgentCallTimedOut else { return }
                let handler = loopBound.value
                handler.logger.warning("peer did not answer a keepalive ping within \(timeout); closing the connection")
                handler.context?.close(promise: nil)
            }
        }
    }
}

/// Who hears how a request to the peer ended: a promise, or a callback where a future would cost
/// more than the call (the relay path).
enum OutboundCompletion: Sendable {
    case promise(EventLoopPromise<RawJSON>)
    case callback(@Sendable (Result<RawJSON, any Error>) -> Void)

    func complete(_ outcome: Result<RawJSON, any Error>) {
        switch self {
        case .promise(let promise): promise.completeWith(outcome)
        case .callback(let body): body(outcome)
        }
    }
}

/// A reply ready to be written.
private enum Reply {
    case result(JSONRPCID, JSONValue)
    case error(JSONRPCID?, JSONRPCError)

    var result: Result<JSONValue, any Error> {
        switch self {
        case .result(_, let value): .success(value)
        case .error(_, let error): .failure(error)
        }
    }

    func write(to buffer: inout ByteBuffer) {
        switch self {
        case .result(let id, let result): MessageEncoder.writeResult(id: id, result: result, to: &buffer)
        case .error(let id, let error): MessageEncoder.writeError(id: id, error: error, to: &buffer)
        }
    }

    /// How the request ended, for its log line.
    var outcome: String {
        switch self {
        case .result: "ok"
        case .error(_, let error): "error \(error.code) (\(error.message))"
        }
    }
}

/// The replies of one batch, gathered until the last asynchronous entry completes.
private final class BatchReply {
    var replies: [Reply] = []
    var outstanding = 0
    /// Every entry has been dispatched.
    var sealed = false
}

