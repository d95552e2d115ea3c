import Crypto
import JSONRPC
import Logging
import NIOCore
import Synchronization

/// Where a server-sent event stream's events go: a response being written on some connection.
/// Calls may come from any event loop; the sink hops to its own.
public final class EventSink: Sendable {
    let send: @Sendable (ByteBuffer) -> Void
    let finish: @Sendable () -> Void

    init(send: @escaping @Sendable (ByteBuffer) -> Void, finish: @escaping @Sendable () -> Void) {
        self.send = send
        self.finish = finish
    }
}

/// One MCP session of the handshake era (2025-03-26 … 2025-11-25) on this replica: its link to
/// the gateway, its GET stream, the streams of its POSTs, and the events kept for resumption.
///
/// Streams are numbered: 0 is the GET stream, each POST answered with a stream takes the next
/// number. An event's id is `STREAM-SEQUENCE`, so `Last-Event-ID` names the stream to resume
/// and where, as the specification asks (resumption replays that stream only).
final class MCPHTTPSession: Sendable {
    let id: SessionID
    let link: GatewayLink
    private let state: Mutex<State>
    private let replayLimit: Int

    private struct State {
        var lastUsed = NIODeadline.now()
        var getStream: EventSink?
        var posts: [Int: PostStream] = [:]
        var nextStream = 1
        /// Progress tokens of requests on a stream → the stream, so progress reaches it.
        var progressStreams: [String: Int] = [:]
        var kept: [KeptEvent] = []
        var nextSequence: [Int: Int] = [:]
        var ended = false
        /// A hash of the credential the session was first used with: a request with another is
        /// not this session's.
        var credentialDigest: [UInt8]?
    }

    private struct PostStream {
        var sink: EventSink?
        var pending: Set<JSONRPCID>
        var progressTokens: [String]
    }

    struct KeptEvent {
        var stream: Int
        var sequence: Int
        var event: ByteBuffer
    }

    init(id: SessionID, link: GatewayLink, replayLimit: Int) {
        self.id = id
        self.link = link
        self.state = Mutex(State())
        self.replayLimit = replayLimit
    }

    var lastUsed: NIODeadline { state.withLock { $0.lastUsed } }

    /// Whether a request with `credential` may use this session: one with the credential the
    /// session is bound to, or any while it is bound to none (a session opened anonymously may
    /// be continued with the token the client got after a 401).
    func admits(credential: String?) -> Bool {
        state.withLock { state in
            state.lastUsed = .now()
            guard let bound = state.credentialDigest else { return true }
            guard let credential else { return false }
            return bound == Array(SHA256.hash(data: Array(credential.utf8)))
        }
    }

    /// Binds the session to a credential the gateway has accepted: its first.
    func bind(credential: String?) {
        guard let credential else { return }
        state.withLock { state in
            if state.credentialDigest == nil { state.credentialDigest = Array(SHA256.hash(data: Array(credential.utf8))) }
        }
    }

    /// Nothing is in progress: no request waits for a reply and no stream is open.
    var isIdle: Bool {
        state.withLock { $0.getStream == nil && $0.posts.isEmpty } && link.isIdle
    }

    /// Opens the stream of a POST whose requests are `ids`; their replies and the messages
    /// that concern them go to `sink`.
    func openPostStream(ids: [JSONRPCID], progressTokens: [String], sink: EventSink) -> Int {
        state.withLock { state in
            let number = state.nextStream
            state.nextStream += 1
            state.posts[number] = PostStream(sink: sink, pending: Set(ids), progressTokens: progressTokens)
            for token in progressTokens { state.progressStreams[token] = number }
            return number
        }
    }

    /// The reply to `id` on stream `number`: sent (or kept, if the client is away), and the
    /// stream finished once every request on it is answered.
    func reply(_ line: ByteBuffer, to id: JSONRPCID, onStream number: Int) {
        let (sink, event, finished) = state.withLock { state -> (EventSink?, ByteBuffer?, Bool) in
            guard var post = state.posts[number] else { return (nil, nil, false) }
            let event = Self.keep(line, stream: number, in: &state, limit: replayLimit)
            post.pending.remove(id)
            let finished = post.pending.isEmpty
            if finished {
                state.posts[number] = nil
                for token in post.progressTokens { state.progressStreams[token] = nil }
            } else {
                state.posts[number] = post
            }
            return (post.sink, event, finished)
        }
        guard let sink, let event else { return }
        sink.send(event)
        if finished { sink.finish() }
    }

    /// The client went away from stream `number`: what comes for it is kept for a GET with
    /// `Last-Event-ID`.
    func detach(stream number: Int) {
        state.withLock { state in
            if number == 0 {
                state.getStream = nil
            } else {
                state.posts[number]?.sink = nil
            }
        }
    }

    enum Attachment {
        case attached
        /// The session already has a GET stream.
        case busy
    }

    /// Attaches a GET stream: the session's own stream, or the resumption of stream `resuming`
    /// after the event `after`. The kept events after it are sent first.
    func attach(_ sink: EventSink, resuming: (stream: Int, sequence: Int)?) -> Attachment {
        let (attached, replay, finishNow) = state.withLock { state -> (Bool, [ByteBuffer], Bool) in
            state.lastUsed = .now()
            let stream = resuming?.stream ?? 0
            let replay = state.kept.filter { $0.stream == stream && $0.sequence > (resuming?.sequence ?? Int.max) }.map(\.event)
            if stream == 0 {
                guard state.getStream == nil else { return (false, [], false) }
                state.getStream = sink
                return (true, replay, false)
            }
            // A POST's stream: live again if requests on it are unanswered, else its kept tail.
            if state.posts[stream] != nil {
                state.posts[stream]?.sink = sink
                return (true, replay, false)
            }
            return (true, replay, true)
        }
        guard attached else { return .busy }
        for event in replay { sink.send(event) }
        if finishNow { sink.finish() }
        return .attached
    }

    /// A notification or request the gateway sent on its own: to the stream it concerns.
    /// A request that reaches no stream is answered for the client, so that the gateway does
    /// not wait for a reply that cannot come.
    func route(_ message: JSONRPCMessage, line: ByteBuffer) {
        let target = state.withLock { state -> (EventSink, ByteBuffer)? in
            var number: Int?
            if case .notification(let notification) = message, notification.method == "notifications/progress",
                let token = notification.params?.member("progressToken"), let stream = state.progressStreams[token.description]
            {
                number = stream
            } else if case .request = message {
                // A request concerns a call in flight: the newest stream a client listens on.
                number = state.posts.filter { $0.value.sink != nil }.keys.max()
            }
            if let number, state.posts[number]?.sink != nil {
                let event = Self.keep(line, stream: number, in: &state, limit: replayLimit)
                return state.posts[number]?.sink.map { ($0, event) }
            }
            guard let get = state.getStream else { return nil }
            return (get, Self.keep(line, stream: 0, in: &state, limit: replayLimit))
        }
        if let (sink, event) = target {
            sink.send(event)
        } else if case .request(let request) = message {
            var refusal = ByteBuffer()
            MessageEncoder.writeError(
                id: request.id,
                error: JSONRPCError(code: JSONRPCError.Code.methodNotFound, message: "the HTTP client has no open stream to receive \(request.method)"),
                to: &refusal)
            link.send(line: refusal)
        }
    }

    /// Ends the session: its link closes, its streams end.
    func end() {
        let sinks = state.withLock { state -> [EventSink] in
            state.ended = true
            defer {
                state.getStream = nil
                state.posts = [:]
            }
            return [state.getStream].compactMap { $0 } + state.posts.values.compactMap(\.sink)
        }
        for sink in sinks { sink.finish() }
        link.close()
    }

    private static func keep(_ line: ByteBuffer, stream: Int, in state: inout State, limit: Int) -> ByteBuffer {
        let sequence = state.nextSequence[stream, default: 1]
        state.nextSequence[stream] = sequence + 1
        let event = ServerSentEvent.message(line, id: "\(stream)-\(sequence)")
        state.kept.append(KeptEvent(stream: stream, sequence: sequence, event: event))
        if state.kept.count > limit { state.kept.removeFirst(state.kept.count - limit) }
        return event
    }
}

/// The sessions this replica holds, bounded in number and in idleness.
final class MCPSessionDirectory: Sendable {
    private let sessions = Mutex<[String: MCPHTTPSession]>([:])
    /// Sessions ended with DELETE, so that their signed ids are not served again here.
    private let ended = Mutex<EndedSessions>(EndedSessions())
    let settings: HTTPFaceSettings

    init(settings: HTTPFaceSettings) {
        self.settings = settings
    }

    var count: Int { sessions.withLock { $0.count } }

    enum Lookup {
        case found(MCPHTTPSession)
        /// Issued by a replica sharing the key, not held here: open it again.
        case restorable(SessionID)
        case unknown
    }

    func lookup(_ text: String) -> Lookup {
        if let session = sessions.withLock({ $0[text] }), !session.link.isClosed { return .found(session) }
        guard !ended.withLock({ $0.contains(text) }), let id = SessionID(verifying: text, key: settings.sessionKey) else { return .unknown }
        return .restorable(id)
    }

    /// Adds a session; false when the replica holds as many as it may.
    func add(_ session: MCPHTTPSession) -> Bool {
        let added = sessions.withLock { sessions -> Bool in
            if let old = sessions[session.id.text], !old.link.isClosed { return false }
            guard sessions.count < settings.maximumSessions else { return false }
            sessions[session.id.text] = session
            return true
        }
        if added {
            // A link closes when its session ends: a DELETE, idleness, the gateway closing it
            // (draining an agent, shutting down). The session is over then, and says so: its
            // streams end, and its id is not served here again.
            session.link.onClose { [weak self] in self?.closed(session) }
        }
        return added
    }

    func hasRoom() -> Bool { sessions.withLock { $0.count < settings.maximumSessions } }

    private func closed(_ session: MCPHTTPSession) {
        let current = sessions.withLock { sessions -> Bool in
            guard sessions[session.id.text] === session else { return false }
            sessions[session.id.text] = nil
            return true
        }
        guard current else { return }
        ended.withLock { $0.insert(session.id.text) }
        session.end()
    }

    /// DELETE: the session ends here and is not served again by this replica.
    func end(_ text: String) -> Bool {
        let session = sessions.withLock { $0.removeValue(forKey: text) }
        ended.withLock { $0.insert(text) }
        session?.end()
        return session != nil
    }

    /// Ends sessions unused for longer than the timeout (one with a stream open or a request in
    /// flight is in use); their next request gets 404, and the client initializes again.
    func sweep(now: NIODeadline = .now()) {
        let idle = sessions.withLock { sessions -> [MCPHTTPSession] in
            let expired = sessions.values.filter { now - $0.lastUsed > settings.sessionIdleTimeout && $0.isIdle }
            for session in expired { sessions[session.id.text] = nil }
            return expired
        }
        ended.withLock { ended in for session in idle { ended.insert(session.id.text) } }
        for session in idle { session.end() }
    }

    func endAll() {
        let all = sessions.withLock { sessions in
            defer { sessions = [:] }
            return Array(sessions.values)
        }
        for session in all { session.end() }
    }
}

/// Ids of ended sessions, the newest 100,000.
private struct EndedSessions {
    private var set: Set<String> = []
    private var order: [String] = []
    private static let limit = 100_000

    func contains(_ text: String) -> Bool { set.contains(text) }

    mutating func insert(_ text: String) {
        guard set.insert(text).inserted else { return }
        order.append(text)
        if order.count > Self.limit {
            let dropped = order.prefix(order.count / 2)
            for text in dropped { set.remove(text) }
            order.removeFirst(dropped.count)
        }
    }
}

/// Server-sent events, as the Streamable HTTP transport writes them.
enum ServerSentEvent {
    /// `id: ID`, `event: message` and the message on one `data:` line (a JSON-RPC line holds
    /// no newline).
    static func message(_ line: ByteBuffer, id: String?) -> ByteBuffer {
        var event = ByteBuffer()
        event.reserveCapacity(line.readableBytes + 48)
        if let id { event.writeString("id: \(id)\n") }
        event.writeString("event: message\ndata: ")
        event.writeImmutableBuffer(line)
        event.writeString("\n\n")
        return event
    }

    /// An event with an id and no data: the client's point to resume from, sent first.
    static func priming(id: String) -> ByteBuffer {
        ByteBuffer(string: "id: \(id)\ndata: \n\n")
    }
}
