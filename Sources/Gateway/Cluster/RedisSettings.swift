import Redis
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// Where replicas meet: the Redis server they share, and this replica's name there.
public struct RedisSettings: Sendable {
    /// The URL as given, with any password hidden, for logs and `gateway/status`.
    public var displayURL: String
    public var configuration: RedisConfiguration
    /// Unique among the replicas; by default host name and process id.
    public var replicaID: String
    /// Prefix of every Redis key and channel, so that several gateways can share one server.
    public var keyPrefix: String
    /// How long a task's lease lasts without renewal: how soon another replica runs the tasks of
    /// a replica that died.
    public var taskLease: Duration

    /// - Parameter caPath: for `rediss://`, the CA bundle the server's certificate must chain to
    ///   (nil: the system's trust store).
    public init(url: String, replicaID: String? = nil, keyPrefix: String = "switchboard:", taskLease: Duration = .seconds(10), caPath: String? = nil) throws {
        let parsed = try RedisURL(url)
        var tls: TLSContext?
        if parsed.usesTLS {
            var hostname: String?
            if case .tcp(let host, _) = parsed.endpoint { hostname = host }
            tls = try TLSContext(client: .client(trustRootsPath: caPath, serverHostname: hostname))
        }
        configuration = try RedisConfiguration(url: parsed, tls: tls)
        let location: String = switch parsed.endpoint {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): path
        }
        let credentials = parsed.password == nil ? "" : "\(parsed.username ?? ""):***@"
        displayURL = "\(parsed.scheme)://\(credentials)\(location)/\(parsed.database)"
        if let replicaID, replicaID.isEmpty || replicaID.contains("/") {
            // A slash names shares no replica owns (the quota of unfinished tasks).
            throw RedisSettingsError(description: "--replica-id must be a non-empty name without \"/\", not \"\(replicaID)\"")
        }
        self.replicaID = replicaID ?? Self.defaultReplicaID()
        self.keyPrefix = keyPrefix
        self.taskLease = taskLease
    }

    static func defaultReplicaID() -> String {
        var name = [UInt8](repeating: 0, count: 256)
        let host = name.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { gethostname($0.baseAddress!, $0.count) } == 0
        } ? String(decoding: name.prefix { $0 != 0 }, as: UTF8.self) : "replica"
        return "\(host)-\(getpid())"
    }
}

struct RedisSettingsError: Error, CustomStringConvertible {
    var description: String
}
