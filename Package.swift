// swift-tools-version:6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Switchboard",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "switchboard", targets: ["switchboard"]),
        .executable(name: "switchboard-bench", targets: ["SwitchboardBenchmarks"]),
        .executable(name: "framing-fuzz", targets: ["FramingFuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/apple/swift-service-context.git", from: "1.5.1"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        // OTLP over HTTP only: the gRPC exporter's dependencies are not built.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // System libraries: OpenSSL 3 (TLS) and hiredis (Redis RESP codec).
        .systemLibrary(name: "CSwitchboardOpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSwitchboardHiredis", providers: [.apt(["libhiredis-dev"])]),

        // The wire: JSON-RPC 2.0 messages and a codec that keeps payloads as raw bytes.
        .target(
            name: "JSONRPC",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // MCP eras, version negotiation and the lifecycle state machine; no I/O.
        .target(
            name: "MCPProtocol",
            dependencies: ["JSONRPC"],
            swiftSettings: strictSettings
        ),
        // Line framing, listen addresses, stdio, and TLS on system OpenSSL.
        .target(
            name: "Transport",
            dependencies: [
                "CSwitchboardOpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // Agents: templates, the registry of instances and what they offer, tool naming, selection.
        .target(
            name: "Agents",
            dependencies: [
                "JSONRPC", "Fleet",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The router: tasks, the priority queue, dispatch, retries.
        .target(
            name: "Router",
            dependencies: [
                "Agents", "JSONRPC", "Backend",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strictSettings
        ),
        // Backends: shared memory (key-value with TTL and compare-and-set) and publish-subscribe,
        // as protocols with an in-memory and a Redis implementation.
        .target(
            name: "Backend",
            dependencies: ["Redis", "Access", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // Redis over SwiftNIO with hiredis as the RESP codec: pipelining, a pool, pub-sub, scripts.
        .target(
            name: "Redis",
            dependencies: [
                "CSwitchboardHiredis", "Transport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // Workflows: YAML definitions, validation, the expression language, schedules, the
        // durable executor.
        .target(
            name: "Workflows",
            dependencies: [
                "JSONRPC", "Backend",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSettings
        ),
        // The HTTP face: MCP's Streamable HTTP, the REST API, WebSockets, health; it reaches the
        // gateway through the same JSON-RPC face every socket client uses.
        .target(
            name: "HTTPFace",
            dependencies: [
                "Console", "JSONRPC", "MCPProtocol", "Transport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        // The console's files (HTML, CSS, JavaScript modules written here, no build step),
        // embedded in the binary at build time by the plugin below.
        .target(
            name: "Console",
            exclude: ["Assets"],
            swiftSettings: strictSettings,
            plugins: ["EmbedConsoleAssets"]
        ),
        .plugin(name: "EmbedConsoleAssets", capability: .buildTool(), dependencies: ["ConsoleAssetsGenerator"]),
        .executableTarget(name: "ConsoleAssetsGenerator", swiftSettings: strictSettings),
        .testTarget(
            name: "HTTPFaceTests",
            dependencies: [
                "HTTPFace", "Console", "JSONRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        // What operators watch: Prometheus metrics, trace context and spans, JSON logs, the
        // per-agent history and alert rules over it. No I/O of its own but the OTLP exporter.
        .target(
            name: "Telemetry",
            dependencies: [
                "JSONRPC", "Backend",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "TelemetryTests",
            dependencies: ["Telemetry", "JSONRPC", "Backend", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // The history the seed keeps (agent_performance by minute, hour and day) and the alert
        // rules judged over it.
        .target(
            name: "Monitoring",
            dependencies: ["JSONRPC", "Backend", .product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        // The fleet: autoscaling decisions (reactive and predictive), resources and their ledger,
        // cgroups, sandboxes and how an agent is launched inside them. Decisions are values the
        // gateway's supervisor carries out.
        .target(
            name: "Fleet",
            dependencies: [],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "FleetTests", dependencies: ["Fleet"], swiftSettings: strictSettings),
        .testTarget(
            name: "MonitoringTests",
            dependencies: ["Monitoring", "JSONRPC", "Backend", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // The composition root: sessions, method table, configuration, the server service.
        .target(
            name: "Gateway",
            dependencies: [
                "HTTPFace", "Telemetry", "Monitoring", "Fleet", "Access", "JSONRPC", "MCPProtocol", "Transport", "Agents", "Router", "Backend", "Workflows", "Redis",
                "CSwitchboardOpenSSL", "CSwitchboardHiredis",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "switchboard",
            dependencies: [
                "Gateway", "Console", "Workflows", "JSONRPC", "Transport", "Access",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "SwitchboardBenchmarks",
            dependencies: [
                "JSONRPC", "Transport", "Backend", "Redis", "Agents", "Router", "Fleet",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strictSettings
        ),

        // Who a request is and what it may do: principals and credentials, roles and rules,
        // tenants, rate limits, egress, the audit log. Pure logic plus the audit sink.
        .target(
            name: "Access",
            dependencies: [
                "JSONRPC", "Transport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AccessTests",
            dependencies: [
                "Access", "JSONRPC", "Transport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),

        // The framing and JSON path under a coverage-guided fuzzer (scripts/fuzz.sh builds it with
        // libFuzzer); an ordinary build replays the inputs it is given.
        .executableTarget(
            name: "FramingFuzz",
            dependencies: [
                "JSONRPC", "Transport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),

        .testTarget(name: "JSONRPCTests", dependencies: ["JSONRPC"], swiftSettings: strictSettings),
        .testTarget(
            name: "AgentsTests",
            dependencies: ["Agents", "JSONRPC", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RouterTests",
            dependencies: ["Router", "Agents", "JSONRPC", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BackendTests",
            dependencies: [
                "Backend", "Redis", "RedisTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "WorkflowsTests",
            dependencies: ["Workflows", "JSONRPC", "Backend", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "MCPProtocolTests", dependencies: ["MCPProtocol", "JSONRPC"], swiftSettings: strictSettings),
        .testTarget(
            name: "TransportTests",
            dependencies: [
                "Transport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "JSONRPC", "Transport", "Access",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // A real redis-server on a free loopback port, for the tests that need one.
        .target(
            name: "RedisTestSupport",
            dependencies: ["Redis", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            path: "Tests/RedisTestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RedisTests",
            dependencies: [
                "Redis", "RedisTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "SystemLibraryTests",
            dependencies: ["CSwitchboardOpenSSL", "CSwitchboardHiredis"],
            swiftSettings: strictSettings
        ),
    ]
)
