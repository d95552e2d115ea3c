import JSONRPC
import NIOCore
import Synchronization

/// Builds the `gateway/status` result from live state.
final class GatewayStatusSource: Sendable {
    private let registry: ConnectionRegistry
    private let settings: GatewaySettings
    private let started = ContinuousClock.now
    private let boundListeners = Mutex<[String]>([])
    private let sections = Mutex<[(name: String, snapshot: @Sendable () async -> JSONValue)]>([])

    init(registry: ConnectionRegistry, settings: GatewaySettings) {
        self.registry = registry
        self.settings = settings
    }

    /// Adds a section that the layers above the core report in `gateway/status`.
    func addSection(_ name: String, _ snapshot: @escaping @Sendable () async -> JSONValue) {
        sections.withLock { $0.append((name, snapshot)) }
    }

    func listenerBound(_ url: String) {
        boundListeners.withLock { $0.append(url) }
    }

    var listeners: [String] { boundListeners.withLock { $0 } }

    func snapshot() async -> JSONValue {
        let counts = registry.counts
        let uptime = ContinuousClock.now - started
        let seconds = Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18
        var result: [String: JSONValue] = [
            "server": ["name": "switchboard", "version": .string(BuildInfo.version)],
            "backend": settings.redis == nil ? "embedded" : "redis",
            "uptimeSeconds": .double((seconds * 1000).rounded() / 1000),
            "connections": ["open": .integer(Int64(counts.open)), "accepted": .integer(Int64(counts.accepted))],
            "inFlight": .integer(Int64(counts.inFlight)),
            "draining": .bool(registry.isDraining),
            "listeners": .array(boundListeners.withLock { $0 }.map(JSONValue.string)),
            "limits": [
                "maxMessageBytes": .integer(Int64(settings.limits.maximumMessageBytes)),
                "maxNestingDepth": .integer(Int64(settings.limits.maximumNestingDepth)),
                "maxInFlightPerConnection": .integer(Int64(settings.limits.maximumInFlightPerConnection)),
                "maxBatchSize": .integer(Int64(settings.limits.maximumBatchSize)),
                "maxConnectionsPerListener": .integer(Int64(settings.limits.maximumConnectionsPerListener)),
                "maxConnectionsPerPeer": .integer(Int64(settings.limits.maximumConnectionsPerPeer)),
                "idleTimeoutSeconds": Self.seconds(settings.limits.connectionTimeouts.idle),
                "partialLineTimeoutSeconds": Self.seconds(settings.limits.connectionTimeouts.partialLine),
                "firstMessageTimeoutSeconds": Self.seconds(settings.limits.connectionTimeouts.firstMessage),
            ],
        ]
        for section in sections.withLock({ $0 }) { result[section.name] = await section.snapshot() }
        return .object(result)
    }

    /// A timeout in seconds as configured; 0 when it is off.
    private static func seconds(_ timeout: TimeAmount?) -> JSONValue {
        guard let timeout else { return .integer(0) }
        let seconds = Double(timeout.nanoseconds) / 1e9
        return seconds == seconds.rounded() ? .integer(Int64(seconds)) : .double(seconds)
    }
}
