import Crypto
import HTTPFace
import JSONRPC
import NIOCore
import NIOPosix
import Redis
import Transport

/// The HTTP face's way into the gateway: each link is served like an accepted socket
/// connection, with the listener's message limit, as a peer that is not trusted (never the
/// operator stdio is).
struct GatewayLinkDoor: GatewayDoor {
    let core: GatewayCore
    let listener: ListenAddress

    func serveLink(socket: CInt, on eventLoop: any EventLoop, peer: String) -> EventLoopFuture<Void> {
        let core = self.core
        let listener = self.listener
        return ClientBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelOption(ChannelOptions.maxMessagesPerRead, value: 4)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try GatewayServer.addConnectionHandlers(channel, core: core, address: listener, isStdio: false, timeouts: false)
                }
            }
            .withConnectedSocket(socket)
            .map { _ in }
    }

    func readiness() async -> Readiness {
        var checks: [String: String] = [:]
        var ready = true
        let listeners = core.status.listeners
        checks["listeners"] = listeners.isEmpty ? "none bound yet" : "\(listeners.count) bound"
        if listeners.isEmpty { ready = false }
        let starting = core.agents.startingTemplates
        checks["agents"] = starting.isEmpty ? "started" : "starting: \(starting.joined(separator: ", "))"
        if !starting.isEmpty { ready = false }
        if let cluster = core.cluster {
            do {
                _ = try await cluster.client.send(["PING"], timeout: .seconds(2))
                checks["backend"] = "redis reachable"
            } catch {
                checks["backend"] = "redis unreachable: \(error)"
                ready = false
            }
        } else {
            checks["backend"] = "embedded"
        }
        return Readiness(ready: ready, checks: checks)
    }
}

extension GatewayCore {
    /// The key that signs HTTP session ids: with Redis, one key every replica shares (the first
    /// replica to start writes it); alone, the configuration's or the process's own.
    func httpSessionKey() async -> SymmetricKey? {
        guard let cluster else { return nil }
        let key = "\(cluster.settings.keyPrefix)http:session-key"
        let candidate = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        do {
            _ = try await cluster.client.send(["SET", RedisArgument(key), RedisArgument(candidate), "NX"], timeout: .seconds(5))
            let stored = try await cluster.client.send(["GET", RedisArgument(key)], timeout: .seconds(5))
            guard let bytes = stored.bytes, bytes.count == 32 else { return nil }
            return SymmetricKey(data: bytes)
        } catch {
            logger.warning("HTTP sessions: cannot read the shared session key from Redis (\(error)); sessions stay on this replica")
            return nil
        }
    }
}
