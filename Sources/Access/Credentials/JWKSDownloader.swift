import NIOCore
import NIOHTTP1
import NIOPosix
import Transport

/// One HTTP GET of a JWKS document over NIO's HTTP/1.1 client codec, on the project's OpenSSL
/// TLS handler for `https://`. The exchange is bounded in time and the body in size: a slow or
/// oversized answer from the identity provider fails the fetch instead of holding memory.
struct JWKSDownloader {
    let group: any EventLoopGroup
    let maximumBodySize: Int
    var timeout: TimeAmount = .seconds(10)

    func get(_ endpoint: HTTPEndpoint) async throws(JWKSLoadError) -> ByteBuffer {
        let deadline = NIODeadline.now() + timeout
        do {
            return try await exchange(endpoint, deadline: deadline)
        } catch let error as JWKSLoadError {
            throw error
        } catch {
            if NIODeadline.now() >= deadline { throw JWKSLoadError("no answer within \(timeout.seconds) seconds") }
            throw JWKSLoadError("request failed: \(error)")
        }
    }

    private typealias ClientChannel = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    private func exchange(_ endpoint: HTTPEndpoint, deadline: NIODeadline) async throws -> ByteBuffer {
        let tls: TLSContext? = endpoint.secure ? try TLSContext(client: .client(serverHostname: endpoint.host)) : nil
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverHostname: endpoint.host))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try ClientChannel(wrappingChannelSynchronously: channel)
                }
            }
        // Closing the channel at the deadline ends the response stream below, whatever it waits on.
        let closer = channel.channel.eventLoop.scheduleTask(deadline: deadline) { channel.channel.close(promise: nil) }
        defer { closer.cancel() }
        return try await channel.executeThenClose { inbound, outbound in
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: endpoint.hostHeader)
            headers.add(name: "Accept", value: "application/json, application/jwk-set+json")
            headers.add(name: "Connection", value: "close")
            // Head and end in one write: a server may answer (and close) on the head alone, and a
            // separate write of the end would then fail on the closed channel.
            try await outbound.write(contentsOf: [
                .head(HTTPRequestHead(version: .http1_1, method: .GET, uri: endpoint.target, headers: headers)), .end(nil),
            ])

            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let head):
                    guard head.status == .ok else {
                        throw JWKSLoadError("answered \(head.status.code) \(head.status.reasonPhrase)")
                    }
                    if let length = head.headers.first(name: "Content-Length").flatMap(Int.init), length > maximumBodySize {
                        throw JWKSLoadError("the JWKS is larger than \(maximumBodySize) bytes")
                    }
                case .body(var chunk):
                    guard body.readableBytes + chunk.readableBytes <= maximumBodySize else {
                        throw JWKSLoadError("the JWKS is larger than \(maximumBodySize) bytes")
                    }
                    body.writeBuffer(&chunk)
                case .end:
                    return body
                }
            }
            if NIODeadline.now() >= deadline { throw JWKSLoadError("no answer within \(timeout.seconds) seconds") }
            throw JWKSLoadError("the connection closed before the response ended")
        }
    }
}

extension TimeAmount {
    fileprivate var seconds: Int64 { nanoseconds / 1_000_000_000 }
}
