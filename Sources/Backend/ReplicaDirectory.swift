import NIOCore

/// Which gateway replicas are alive and what each one offers (its agents, their tools and
/// capabilities, its addresses). Every replica announces itself on a heartbeat; an announcement
/// that is not refreshed within its time to live lapses, so a replica killed without a word
/// disappears from everyone's view within that time.
///
/// Semantics every implementation keeps (the contract tests in `BackendTests` check them):
/// - `announce` replaces the replica's previous announcement and restarts its time to live.
/// - `replicas()` lists every announcement whose time to live has not passed, by replica id.
/// - `withdraw` removes an announcement at once (a replica stopping cleanly).
public protocol ReplicaDirectory: Sendable {
    func announce(_ replica: String, payload: ByteBuffer, ttl: Duration) async throws
    func withdraw(_ replica: String) async throws
    func replicas() async throws -> [ReplicaAnnouncement]
}

public struct ReplicaAnnouncement: Sendable, Equatable {
    public var replica: String
    /// What the replica said about itself (the gateway puts JSON here).
    public var payload: ByteBuffer
    public var expiresAt: Timestamp

    public init(replica: String, payload: ByteBuffer, expiresAt: Timestamp) {
        self.replica = replica
        self.payload = payload
        self.expiresAt = expiresAt
    }
}
