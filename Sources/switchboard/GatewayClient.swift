import JSONRPC
import Logging
import NIOCore
import NIOPosix
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// A plain JSON-RPC 2.0 client of a running gateway: one request per line, no MCP handshake (a
/// connection that never initializes is a plain JSON-RPC session, chapter 04).
///
/// The operator commands use it for a few requests on one connection, then close it.
struct GatewayClient: Sendable {
    /// Where the gateway listens: `tcp://`, `tls://` or `unix://`.
    let address: ListenAddress
    /// The client context for a `tls://` address; nil otherwise.
    let tls: TLSContext?
    /// How long the whole exchange may take, connecting included, in seconds.
    let timeout: Double

    /// Replies larger than this are refused rather than buffered without bound.
    static let maximumReplyBytes = 256 * 1024 * 1024

    /// Connects, runs `body` with a session on the connection, and closes it; all within `timeout`.
    func withSession<Result: Sendable>(
        _ body: @Sendable @escaping (inout GatewaySession) async throws -> Result
    ) async throws -> Result {
        let address = address
        let timeout = timeout
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                let channel = try await connect()
                return try await channel.executeThenClose { inbound, outbound in
                    var session = GatewaySession(address: address, replies: inbound.makeAsyncIterator(), requests: outbound)
                    return try await body(&session)
                }
            }
            group.addTask {
                try await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else {
                throw GatewayClientError.timedOut(address: address, after: timeout)
            }
            return result
        }
    }

    private func connect() async throws -> NIOAsyncChannel<LineFrame, ByteBuffer> {
        let tls = tls
        let serverHostname: String? =
            if case .tls(let host, _) = address { host } else { nil }
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(.milliseconds(Int64(timeout * 1000)))
        let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<LineFrame, ByteBuffer>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let sync = channel.pipeline.syncOperations
                if let tls {
                    // The CLI's output is the table; the handler's own log lines would only repeat the error.
                    let quiet = Logger(label: "switchboard.tls", factory: { _ in SwiftLogNoOpLogHandler() })
                    try sync.addHandler(TLSHandler(context: tls, serverHostname: serverHostname, logger: quiet))
                }
                try sync.addHandler(ByteToMessageHandler(LineFrameDecoder(maximumLineLength: Self.maximumReplyBytes)))
                return try NIOAsyncChannel<LineFrame, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        do {
            switch address {
            case .tcp(let host, let port), .tls(let host, let port):
                return try await bootstrap.connect(host: host, port: port, channelInitializer: initializer)
            case .unix(let path):
                return try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
            case .http, .https:
                throw GatewayClientError.cannotConnect(
                    address: address, reason: "the operator commands speak JSON-RPC over tcp://, tls:// or unix://; give one of the gateway's listeners of those kinds")
            }
        } catch {
            throw GatewayClientError.cannotConnect(address: address, reason: Self.describe(error))
        }
    }

    /// "connection refused" rather than NIO's type dump: the errno's text where there is one.
    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return lowercasedFirst(String(cString: strerror(error.errnoCode))) }
        if let error = error as? NIOConnectionError {
            if let failure = error.connectionErrors.first { return describe(failure.error) }
            if let dns = error.dnsAError ?? error.dnsAAAAError { return "cannot resolve \(error.host): \(dns)" }
            return "cannot resolve \(error.host)"
        }
        if case ChannelError.connectTimeout = error { return "no answer to the connection attempt" }
        return "\(error)"
    }

    private static func lowercasedFirst(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.lowercased() + text.dropFirst()
    }
}

/// One connection's requests and replies, one request at a time.
struct GatewaySession {
    let address: ListenAddress
    var replies: NIOAsyncChannelInboundStream<LineFrame>.AsyncIterator
    let requests: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var lastID: Int64 = 0

    init(address: ListenAddress, replies: NIOAsyncChannelInboundStream<LineFrame>.AsyncIterator, requests: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.address = address
        self.replies = replies
        self.requests = requests
    }

    /// Sends `method` and waits for its reply: the result, or the JSON-RPC error as
    /// `GatewayClientError.rpc`.
    mutating func call(_ method: String, params: [String: JSONValue] = [:]) async throws -> JSONValue {
        lastID += 1
        let id = lastID
        var request: [String: JSONValue] = ["jsonrpc": "2.0", "id": .integer(id), "method": .string(method)]
        if !params.isEmpty { request["params"] = .object(params) }
        var line = ByteBuffer()
        JSONValue.object(request).write(to: &line)
        line.writeStaticString("\n")
        do {
            try await requests.write(line)
        } catch {
            throw GatewayClientError.connectionLost(address: address, reason: GatewayClient.describe(error))
        }
        while true {
            let frame: LineFrame?
            do {
                frame = try await replies.next()
            } catch {
                throw GatewayClientError.connectionLost(address: address, reason: GatewayClient.describe(error))
            }
            guard let frame else { throw GatewayClientError.connectionLost(address: address, reason: "the gateway closed the connection") }
            guard case .line(let bytes) = frame else {
                throw GatewayClientError.invalidReply("a reply longer than \(GatewayClient.maximumReplyBytes) bytes")
            }
            let message: JSONValue
            do {
                message = try RawJSON(validating: bytes).decoded()
            } catch {
                throw GatewayClientError.invalidReply("a line that is not JSON: \(error)")
            }
            // Anything else on the line (a notification, a keepalive) is not ours to answer.
            guard let members = message.objectValue, members["method"] == nil, members["id"]?.integerValue == id else { continue }
            if let error = members["error"]?.objectValue {
                throw GatewayClientError.rpc(
                    code: error["code"]?.integerValue ?? 0, message: error["message"]?.stringValue ?? "(no message)", data: error["data"])
            }
            guard let result = members["result"] else { throw GatewayClientError.invalidReply("a reply with neither result nor error") }
            return result
        }
    }
}

/// Why an operator command could not get its answer.
enum GatewayClientError: Error, CustomStringConvertible {
    case cannotConnect(address: ListenAddress, reason: String)
    case connectionLost(address: ListenAddress, reason: String)
    case timedOut(address: ListenAddress, after: Double)
    case invalidReply(String)
    /// The gateway answered with a JSON-RPC error.
    case rpc(code: Int64, message: String, data: JSONValue?)

    /// 1 when the gateway answered with an error; 2 when there was no usable answer.
    var exitCode: Int32 {
        if case .rpc = self { return 1 }
        return 2
    }

    var description: String {
        switch self {
        case .cannotConnect(let address, let reason):
            "cannot connect to \(address): \(reason) — is the gateway running? (start it with `switchboard serve --config …`)"
        case .connectionLost(let address, let reason):
            "the connection to \(address) failed: \(reason)"
        case .timedOut(let address, let after):
            "no answer from \(address) within \(after.text(decimals: 1)) s (--timeout)"
        case .invalidReply(let what):
            "the gateway sent \(what)"
        case .rpc(let code, let message, let data):
            // The reason in data often says more than the generic message ("Invalid params").
            if let reason = data?["reason"]?.stringValue, !message.contains(reason) { "\(message): \(reason) (\(code))" } else { "\(message) (\(code))" }
        }
    }
}
