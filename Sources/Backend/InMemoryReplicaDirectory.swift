import NIOCore
import Synchronization

/// The embedded replica directory: the announcements of one process (tests, a single gateway),
/// lapsing by an injectable clock.
public final class InMemoryReplicaDirectory: ReplicaDirectory {
    private let announcements = Mutex<[String: ReplicaAnnouncement]>([:])
    public let clock: any BackendClock

    public init(clock: any BackendClock = SystemClock()) {
        self.clock = clock
    }

    public func announce(_ replica: String, payload: ByteBuffer, ttl: Duration) async throws {
        let announcement = ReplicaAnnouncement(
            replica: replica, payload: ByteBuffer(bytes: payload.readableBytesView), expiresAt: clock.now().advanced(by: ttl))
        announcements.withLock { $0[replica] = announcement }
    }

    public func withdraw(_ replica: String) async throws {
        _ = announcements.withLock { $0.removeValue(forKey: replica) }
    }

    public func replicas() async throws -> [ReplicaAnnouncement] {
        let now = clock.now()
        let live = announcements.withLock { announcements in
            announcements = announcements.filter { $0.value.expiresAt > now }
            return Array(announcements.values)
        }
        // By UTF-8 bytes, as Redis orders members.
        return live.sorted { ByteString($0.replica) < ByteString($1.replica) }
    }
}
