import Access
import JSONRPC
import Logging
import NIOCore
import NIOPosix
import Router
import Transport

/// Delivers a finished task to its `callback` URL as an HTTP POST of the task's JSON, retrying a
/// few times with back-off when the receiver is down or answers with an error status.
///
/// Each attempt resolves the host once, has the egress policy judge every address, and connects
/// to those very addresses (the `Host` header and TLS name stay the URL's): a callback cannot
/// reach the gateway's own host or network unless the configuration allows it, not even through
/// a name that resolves differently the second time. A refused callback is not retried.
final class CallbackPoster: Sendable {
    private let group: any EventLoopGroup
    private let logger: Logger
    private let egress: EgressPolicy
    private let attempts = 4
    private let timeout: TimeAmount = .seconds(10)

    init(group: any EventLoopGroup, logger: Logger, egress: EgressPolicy) {
        self.group = group
        self.logger = logger
        self.egress = egress
    }

    struct Target: Equatable {
        var secure: Bool
        var host: String
        var port: Int
        var path: String

        /// `host`, or `host:port` when the port is not the scheme's default (RFC 9110, 7.2).
        var hostHeader: String {
            let host = self.host.contains(":") ? "[\(self.host)]" : self.host
            return port == (secure ? 443 : 80) ? host : "\(host):\(port)"
        }

        init?(_ url: String) {
            let secure: Bool
            let rest: Substring
            if url.hasPrefix("http://") {
                secure = false
                rest = url.dropFirst(7)
            } else if url.hasPrefix("https://") {
                secure = true
                rest = url.dropFirst(8)
            } else {
                return nil
            }
            let authority = rest.prefix { $0 != "/" }
            let path = rest.dropFirst(authority.count)
            var host = String(authority)
            var port = secure ? 443 : 80
            if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
                host = String(authority[authority.index(after: authority.startIndex)..<close])
                if let colon = authority[close...].firstIndex(of: ":"), let number = Int(authority[authority.index(after: colon)...]) { port = number }
            } else if let colon = authority.lastIndex(of: ":") {
                guard let number = Int(authority[authority.index(after: colon)...]) else { return nil }
                host = String(authority[..<colon])
                port = number
            }
            guard !host.isEmpty, (1...65535).contains(port) else { return nil }
            self.secure = secure
            self.host = host
            self.port = port
            self.path = path.isEmpty ? "/" : String(path)
        }
    }

    /// Posts `body` to `url` (an alert's webhook, say) with the same egress rules and retries as
    /// a task's callback; `subject` names it in the log.
    func post(_ body: JSONValue, to url: String, subject: String) {
        guard let target = Target(url) else {
            logger.warning("\(subject): \(url) is not an http(s) URL; not posted")
            return
        }
        var buffer = ByteBuffer()
        body.write(to: &buffer)
        attempt(1, target: target, url: url, body: buffer, taskID: subject)
    }

    func deliver(_ task: TaskRecord) {
        guard let url = task.submission.callback, let target = Target(url) else { return }
        var body = ByteBuffer()
        TaskMethods.status(task).write(to: &body)
        attempt(1, target: target, url: url, body: body, taskID: task.id)
    }

    private func attempt(_ number: Int, target: Target, url: String, body: ByteBuffer, taskID: String) {
        let eventLoop = group.any()
        HostResolver.resolve(target.host, on: eventLoop).flatMap { [self] addresses -> EventLoopFuture<Int> in
            if let refusal = egress.check(host: target.host, addresses: addresses, purpose: "callback") {
                return eventLoop.makeFailedFuture(refusal)
            }
            return post(target, to: addresses, body: body, on: eventLoop)
        }.whenComplete { [self] result in
            switch result {
            case .failure(let refusal as EgressRefusal):
                logger.warning("task \(taskID): \(refusal); \(url) is not delivered, and not retried")
            case .success(let status) where (200..<300).contains(status):
                logger.debug("task \(taskID): callback \(url) answered \(status)")
            case .success(let status) where number < attempts && (status >= 500 || status == 429):
                retry(number, target: target, url: url, body: body, taskID: taskID, reason: "status \(status)")
            case .success(let status):
                logger.warning("task \(taskID): callback \(url) answered \(status); not retried")
            case .failure(let error) where number < attempts:
                retry(number, target: target, url: url, body: body, taskID: taskID, reason: "\(error)")
            case .failure(let error):
                logger.warning("task \(taskID): callback \(url) failed \(number) times, giving up: \(error)")
            }
        }
    }

    private func retry(_ number: Int, target: Target, url: String, body: ByteBuffer, taskID: String, reason: String) {
        let delay = TimeAmount.seconds(Int64(1 << (number - 1)))
        logger.notice("task \(taskID): callback \(url) failed (\(reason)); retrying in \(delay)")
        group.any().scheduleTask(in: delay) { [self] in
            attempt(number + 1, target: target, url: url, body: body, taskID: taskID)
        }
    }

    /// One POST to the first of `addresses` that accepts the connection; completes with the
    /// response's status code.
    private func post(_ target: Target, to addresses: [IPAddress], body: ByteBuffer, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        let promise = eventLoop.makePromise(of: Int.self)
        let tls: TLSContext?
        do {
            tls = target.secure ? try TLSContext(client: .client(serverHostname: target.host)) : nil
        } catch {
            promise.fail(error)
            return promise.futureResult
        }
        let request = Self.request(for: target, body: body)
        let host = target.host
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverHostname: host)) }
                    try channel.pipeline.syncOperations.addHandler(StatusLineReader(promise: promise))
                }
            }
        Self.connect(ConfiguredBootstrap(bootstrap), to: addresses[...], port: target.port)
            .whenComplete { connected in
                switch connected {
                case .failure(let error):
                    promise.fail(error)
                case .success(let channel):
                    channel.writeAndFlush(request, promise: nil)
                    channel.eventLoop.scheduleTask(in: self.timeout) {
                        promise.fail(ChannelError.connectTimeout(self.timeout))
                        channel.close(promise: nil)
                    }
                    promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
                }
            }
        return promise.futureResult
    }

    /// Connects to each address in turn until one accepts; never to anything but these (never
    /// none: the egress policy refuses a host that resolves to no address).
    private static func connect(_ bootstrap: ConfiguredBootstrap, to addresses: ArraySlice<IPAddress>, port: Int) -> EventLoopFuture<any Channel> {
        let first = bootstrap.value.connect(to: addresses.first!.socketAddress(port: port))
        guard addresses.count > 1 else { return first }
        return first.flatMapError { _ in connect(bootstrap, to: addresses.dropFirst(), port: port) }
    }

    private static func request(for target: Target, body: ByteBuffer) -> ByteBuffer {
        var request = ByteBuffer()
        request.writeString(
            "POST \(target.path) HTTP/1.1\r\nHost: \(target.hostHeader)\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.readableBytes)\r\nUser-Agent: switchboard/\(BuildInfo.version)\r\nConnection: close\r\n\r\n")
        var payload = body
        request.writeBuffer(&payload)
        return request
    }

    /// Reads `HTTP/1.1 200 OK` and nothing more.
    private final class StatusLineReader: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<Int>

        init(promise: EventLoopPromise<Int>) {
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let text = String(buffer: unwrapInboundIn(data))
            let parts = text.prefix { $0 != "\r" && $0 != "\n" }.split(separator: " ")
            if parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) {
                promise.succeed(status)
            } else {
                promise.fail(ChannelError.inappropriateOperationForState)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.eof)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
    }
}

/// A bootstrap that is configured and then only connected with: `connect` may be called from
/// any thread, and nothing changes it any more, so it may cross to the next attempt's closure.
private struct ConfiguredBootstrap: @unchecked Sendable {
    let value: ClientBootstrap

    init(_ value: ClientBootstrap) {
        self.value = value
    }
}
