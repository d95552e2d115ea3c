import Access
import Logging
import NIOCore
import Redis

/// The audit trail's second place: each entry, as written to the file, appended to a Redis stream
/// (`switchboard:audit` with the default key prefix), so that replicas' trails meet in one place and the last hash of each
/// replica's file is kept outside it (what `audit verify --expect-last` needs).
///
/// Entries reach Redis in the file's order, through one bounded queue drained by one task; when
/// Redis is down, the newest 10,000 are kept and older ones are counted as not forwarded (the
/// file holds them all).
final class AuditStream: Sendable {
    private let client: RedisClient
    private let key: String
    private let logger: Logger
    private let entries: AsyncStream<AuditEntry>
    private let continuation: AsyncStream<AuditEntry>.Continuation
    /// Entries kept in the stream, about (`MAXLEN ~`).
    static let retainedEntries = 1_000_000

    init(client: RedisClient, keyPrefix: String, logger: Logger) {
        self.client = client
        self.key = "\(keyPrefix)audit"
        self.logger = logger
        (entries, continuation) = AsyncStream.makeStream(of: AuditEntry.self, bufferingPolicy: .bufferingNewest(10_000))
    }

    /// The audit log's sink: called by its writer, in order.
    var sink: AuditLog.Sink {
        { [continuation] entry in _ = continuation.yield(entry) }
    }

    func run() async {
        var failing = false
        for await entry in entries {
            var line = ByteBuffer()
            entry.writeLine(to: &line, newline: false)
            do {
                _ = try await client.send([
                    "XADD", RedisArgument(key), "MAXLEN", "~", RedisArgument(Self.retainedEntries), "*",
                    "entry", RedisArgument(line), "sequence", RedisArgument(Int(entry.sequence)),
                ])
                if failing {
                    failing = false
                    logger.info("audit entries reach \(key) again")
                }
            } catch {
                if !failing {
                    failing = true
                    logger.warning("audit entries do not reach \(key): \(error) (the audit file has them)")
                }
            }
        }
    }

    func finish() { continuation.finish() }
}
