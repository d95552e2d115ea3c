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
            ],
        ]
        for section in sections.withLock({ $0 }) { result[section.name] = await section.snapshot() }
        return .object(result)
    }
}
