import Agents
import Logging
import NIOCore
import Transport
import Workflows
import Yams

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Reads a YAML or JSON configuration file into `GatewaySettings`, reporting every problem with
/// the file, the line and what is wrong.
public struct ConfigurationFile: Sendable {
    public struct Problem: Error, Sendable, CustomStringConvertible {
        public var file: String
        public var line: Int?
        public var column: Int?
        public var message: String

        public var description: String {
            guard let line else { return "\(file): \(message)" }
            return "\(file):\(line):\(column ?? 1): \(message)"
        }
    }

    public struct Problems: Error, Sendable, CustomStringConvertible {
        public var all: [Problem]
        public var description: String { all.map(\.description).joined(separator: "\n") }
    }

    public let path: String
    /// What `${VAR}` references resolve against.
    public let environment: [String: String]

    public init(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.path = path
        self.environment = environment
    }

    /// Applies the file's settings on top of `settings`.
    public func load(into settings: GatewaySettings) throws(Problems) -> GatewaySettings {
        let text: String
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let decoded = String(data: data, encoding: .utf8) else {
                throw Problems(all: [Problem(file: path, message: "the file is not UTF-8 text")])
            }
            text = decoded
        } catch let problems as Problems {
            throw problems
        } catch {
            throw Problems(all: [Problem(file: path, message: "cannot read the file: \(error)")])
        }
        let root: Node?
        do {
            root = try BoundedDocument.compose(text, within: .configurationFile)
        } catch let bound as DocumentBoundExceeded {
            throw Problems(all: [Problem(file: path, line: bound.line, column: bound.column, message: bound.message)])
        } catch let error as YamlError {
            throw Problems(all: [Self.problem(from: error, file: path)])
        } catch {
            throw Problems(all: [Problem(file: path, message: "cannot parse: \(error)")])
        }
        var reader = ConfigurationReader(file: path, settings: settings, environment: environment)
        if let root { reader.readRoot(root) }
        reader.checkFleetCapacity()
        if !reader.problems.isEmpty { throw Problems(all: reader.problems) }
        reader.settings.configurationWarnings += reader.warnings
        return reader.settings
    }

    private static func problem(from error: YamlError, file: String) -> Problem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return Problem(file: file, line: mark.line, column: mark.column, message: "syntax error: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, _):
            return Problem(file: file, message: "duplicate keys: \(duplicates.joined(separator: ", "))")
        default:
            return Problem(file: file, message: "syntax error: \(error)")
        }
    }
}

/// Walks the document, collecting every problem rather than stopping at the first, and every
/// warning: what the gateway ignores or skips without refusing the file.
struct ConfigurationReader {
    let file: String
    /// The configuration file's directory, absolute: `envFile` paths are relative to it.
    let directory: String
    var settings: GatewaySettings
    var expansion: VariableExpansion
    var problems: [ConfigurationFile.Problem] = []
    var warnings: [ConfigurationFile.Problem] = []
    /// Templates (by path) whose `autoscale` names its own `max`: the others take `maxInstances`.
    var explicitAutoscaleMaximum: Set<String> = []

    init(file: String, settings: GatewaySettings, environment: [String: String]) {
        self.file = file
        self.settings = settings
        let relativeDirectory = file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : "."
        let absoluteDirectory =
            relativeDirectory.hasPrefix("/") ? relativeDirectory : "\(FileManager.default.currentDirectoryPath)/\(relativeDirectory)"
        self.directory = absoluteDirectory.hasSuffix("/.") ? String(absoluteDirectory.dropLast(2)) : absoluteDirectory
        // `.vscode/mcp.json` and `.cursor/mcp.json` belong to the project around them.
        let workspaceFolder =
            directory.hasSuffix("/.vscode") || directory.hasSuffix("/.cursor") ? String(directory[..<directory.lastIndex(of: "/")!]) : directory
        self.expansion = VariableExpansion(environment: environment, workspaceFolder: workspaceFolder)
    }

    mutating func report(_ node: Node?, _ message: String) {
        problems.append(.init(file: file, line: node?.mark?.line, column: node?.mark?.column, message: message))
    }

    mutating func warn(_ node: Node?, _ message: String) {
        warnings.append(.init(file: file, line: node?.mark?.line, column: node?.mark?.column, message: message))
    }

    /// A problem in our own sections, a warning in what a host wrote.
    mutating func complain(_ node: Node?, _ message: String, strictly: Bool) {
        if strictly { report(node, message) } else { warn(node, message) }
    }

    mutating func readRoot(_ root: Node) {
        guard let mapping = mapping(root, "the top level") else { return }
        // A host's file, pointed at unchanged, holds the host's own settings beside its servers.
        let isHostFile = mapping.contains { $0.0.string == "mcpServers" || $0.0.string == "servers" }
        // Inputs first: servers before them in the file refer to them.
        for (keyNode, value) in mapping where keyNode.string == "inputs" { readInputs(value) }
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? ""
            switch key {
            case "listen": readListen(value)
            case "logLevel": readLogLevel(value)
            case "threads": if let count = integer(value, "threads", minimum: 1) { settings.eventLoopThreads = count }
            case "limits": readLimits(value)
            case "keepalive": readKeepalive(value)
            case "agents": readServers(value, section: .agents)
            case "mcpServers": readServers(value, section: .mcpServers)
            case "servers": readServers(value, section: .servers)
            case "inputs": break
            case "tls": readTLS(value)
            case "health": readHealth(value)
            case "workflows": readWorkflows(value)
            case "readiness": readReadiness(value)
            case "auth": readAuth(value)
            case "audit": readAudit(value)
            case "egress": readEgress(value)
            case "http": readHTTP(value)
            case "metrics": readMetrics(value)
            case "tracing": readTracing(value)
            case "logging": readLogging(value)
            case "history": readHistory(value)
            case "alerts": readAlerts(value)
            case "fleet": readFleet(value)
            default:
                if isHostFile {
                    warn(keyNode, "key \"\(key)\" is ignored: it is the MCP host's setting, not the gateway's")
                } else {
                    report(
                        keyNode,
                        "unknown key \"\(key)\" (known: listen, logLevel, threads, limits, keepalive, health, readiness, tls, http, auth, audit, egress, metrics, tracing, logging, history, alerts, agents, mcpServers, servers, inputs, workflows)")
                }
            }
        }
    }

    /// Each entry a URL, or `{url, maxMessageBytes}` for a listener with its own limit.
    mutating func readListen(_ node: Node) {
        guard let items = sequence(node, "listen") else { return }
        for item in items {
            var urlNode = item
            var limit: Int?
            if case .mapping = item, let fields = mapping(item, "a listener") {
                guard let url = fields.first(where: { $0.0.string == "url" })?.1 else {
                    report(item, "a listener given as a mapping needs \"url\" (tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH)")
                    continue
                }
                urlNode = url
                for (keyNode, value) in fields where keyNode.string != "url" {
                    switch keyNode.string ?? "" {
                    case "maxMessageBytes": limit = integer(value, "listen.maxMessageBytes", minimum: 1024)
                    default: report(keyNode, "unknown key \"\(keyNode.string ?? "")\" in a listener (known: url, maxMessageBytes)")
                    }
                }
            }
            guard let text = string(urlNode, "a listen address") else { continue }
            do {
                let address = try ListenAddress(parsing: text)
                settings.listen.append(address)
                if let limit { settings.listenerMessageLimits[address] = limit }
            } catch {
                report(urlNode, error.description)
            }
        }
    }

    /// `readiness: {waitSeconds}`: how long lists and calls wait for agents still starting.
    mutating func readReadiness(_ node: Node) {
        guard let fields = mapping(node, "readiness") else { return }
        for (keyNode, value) in fields {
            switch keyNode.string ?? "" {
            case "waitSeconds":
                if let seconds = number(value, "readiness.waitSeconds", minimum: 0) {
                    if seconds > 3600 {
                        report(value, "readiness.waitSeconds must be at most 3600")
                    } else {
                        settings.readinessWait = .milliseconds(Int64(seconds * 1000))
                    }
                }
            default:
                report(keyNode, "unknown key \"\(keyNode.string ?? "")\" in readiness (known: waitSeconds)")
            }
        }
    }

    mutating func readLogLevel(_ node: Node) {
        guard let text = string(node, "logLevel") else { return }
        guard let level = Logger.Level(rawValue: text) else {
            report(node, "logLevel must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            return
        }
        settings.logLevel = level
    }

    mutating func readLimits(_ node: Node) {
        guard let mapping = mapping(node, "limits") else { return }
        for (keyNode, value) in mapping {
            switch keyNode.string ?? "" {
            case "maxMessageBytes":
                if let bytes = integer(value, "limits.maxMessageBytes", minimum: 1024) { settings.limits.maximumMessageBytes = bytes }
            case "maxInFlightPerConnection":
                if let count = integer(value, "limits.maxInFlightPerConnection", minimum: 1) {
                    settings.limits.maximumInFlightPerConnection = count
                }
            case "shutdownGraceSeconds":
                if let seconds = number(value, "limits.shutdownGraceSeconds", minimum: 0) { settings.limits.shutdownGrace = .seconds(seconds) }
            case "maxQueuedOutputBytes":
                if let bytes = integer(value, "limits.maxQueuedOutputBytes", minimum: 65536) { settings.limits.output.perConnectionBytes = bytes }
            case "maxQueuedOutputBytesTotal":
                if let bytes = integer(value, "limits.maxQueuedOutputBytesTotal", minimum: 65536) { settings.limits.output.totalBytes = bytes }
            case "outputStallSeconds":
                if let seconds = number(value, "limits.outputStallSeconds", minimum: 0.1) {
                    settings.limits.output.stall = .milliseconds(Int64(min(seconds, 86_400) * 1000))
                }
            case "maxBatchSize":
                if let count = integer(value, "limits.maxBatchSize", minimum: 1) { settings.limits.maximumBatchSize = count }
            case "maxConnectionsPerListener":
                if let count = integer(value, "limits.maxConnectionsPerListener", minimum: 1) { settings.limits.maximumConnectionsPerListener = count }
            case "maxSpawnedInstances":
                if let count = integer(value, "limits.maxSpawnedInstances", minimum: 1) { settings.limits.maximumSpawnedInstances = count }
            case "maxConnectionsPerPeer":
                if let count = integer(value, "limits.maxConnectionsPerPeer", minimum: 1) { settings.limits.maximumConnectionsPerPeer = count }
            case "idleTimeoutSeconds":
                if let seconds = number(value, "limits.idleTimeoutSeconds", minimum: 0) {
                    settings.limits.connectionTimeouts.idle = Self.timeout(seconds)
                }
            case "partialLineTimeoutSeconds":
                if let seconds = number(value, "limits.partialLineTimeoutSeconds", minimum: 0) {
                    settings.limits.connectionTimeouts.partialLine = Self.timeout(seconds)
                }
            case "firstMessageTimeoutSeconds":
                if let seconds = number(value, "limits.firstMessageTimeoutSeconds", minimum: 0) {
                    settings.limits.connectionTimeouts.firstMessage = Self.timeout(seconds)
                }
            default:
                report(
                    keyNode,
                    "unknown key \"\(keyNode.string ?? "")\" in limits (known: maxMessageBytes, maxInFlightPerConnection, shutdownGraceSeconds, maxBatchSize, maxConnectionsPerListener, maxConnectionsPerPeer, idleTimeoutSeconds, partialLineTimeoutSeconds, firstMessageTimeoutSeconds, maxQueuedOutputBytes, maxQueuedOutputBytesTotal, outputStallSeconds)")
            }
        }
    }

    /// Seconds from the file as a timeout; 0 turns it off.
    private static func timeout(_ seconds: Double) -> TimeAmount? {
        seconds == 0 ? nil : .nanoseconds(Int64(seconds * 1e9))
    }

    mutating func readKeepalive(_ node: Node) {
        guard let mapping = mapping(node, "keepalive") else { return }
        for (keyNode, value) in mapping {
            switch keyNode.string ?? "" {
            case "intervalSeconds":
                if let seconds = number(value, "keepalive.intervalSeconds", minimum: 0) {
                    settings.keepalive.interval = seconds > 0 ? .seconds(seconds) : nil
                }
            case "timeoutSeconds":
                if let seconds = number(value, "keepalive.timeoutSeconds", minimum: 0.001) { settings.keepalive.timeout = .seconds(seconds) }
            default:
                report(keyNode, "unknown key \"\(keyNode.string ?? "")\" in keepalive (known: intervalSeconds, timeoutSeconds)")
            }
        }
    }

    /// `workflows: {stateDirectory: DIR, definitions: [FILE, …]}`; relative paths are relative
    /// to the configuration file.
    mutating func readWorkflows(_ node: Node) {
        guard let fields = mapping(node, "workflows") else { return }
        let base = file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : "."
        func resolved(_ path: String) -> String { path.hasPrefix("/") ? path : "\(base)/\(path)" }
        for (keyNode, value) in fields {
            switch keyNode.string ?? "" {
            case "stateDirectory":
                if let directory = string(value, "workflows.stateDirectory") { settings.workflows.stateDirectory = resolved(directory) }
            case "definitions":
                if let files = strings(value, "workflows.definitions") { settings.workflows.definitionFiles = files.map(resolved) }
            default:
                report(keyNode, "unknown key \"\(keyNode.string ?? "")\" in workflows (known: stateDirectory, definitions)")
            }
        }
    }

    mutating func readHealth(_ node: Node) {
        guard let fields = mapping(node, "health") else { return }
        for (keyNode, value) in fields {
            switch keyNode.string ?? "" {
            case "intervalSeconds":
                if let seconds = number(value, "health.intervalSeconds", minimum: 0.01) { settings.healthProbeInterval = .seconds(seconds) }
            default:
                report(keyNode, "unknown key \"\(keyNode.string ?? "")\" in health (known: intervalSeconds)")
            }
        }
    }

    mutating func readTLS(_ node: Node) {
        guard let fields = mapping(node, "tls") else { return }
        var certificate: String?
        var key: String?
        var rest: [(Node, Node)] = []
        for (keyNode, value) in fields {
            switch keyNode.string ?? "" {
            case "certificate": certificate = string(value, "tls.certificate")
            case "key": key = string(value, "tls.key")
            default: rest.append((keyNode, value))
            }
        }
        guard let certificate, let key else {
            report(node, "tls needs \"certificate\" and \"key\" (PEM files)")
            return
        }
        var tls = TLSSettings(certificateChainPath: certificate, privateKeyPath: key)
        for (keyNode, value) in rest {
            switch keyNode.string ?? "" {
            case "ca": tls.trustRootsPath = string(value, "tls.ca")
            case "clientAuth":
                guard let text = string(value, "tls.clientAuth") else { continue }
                guard let mode = TLSConfiguration.ClientAuthentication(rawValue: text) else {
                    report(value, "tls.clientAuth must be none, optional or require")
                    continue
                }
                tls.clientAuthentication = mode
            case "handshakeTimeoutSeconds":
                if let seconds = number(value, "tls.handshakeTimeoutSeconds", minimum: 0.001) { tls.handshakeTimeout = .seconds(seconds) }
            case "requireAgentNameMatch":
                guard case .scalar(let scalar) = value, let flag = Bool(scalar.string) else {
                    report(value, "tls.requireAgentNameMatch must be true or false")
                    continue
                }
                tls.requireAgentNameMatch = flag
            default:
                report(keyNode, "unknown key \"\(keyNode.string ?? "")\" in tls (known: certificate, key, ca, clientAuth, handshakeTimeoutSeconds, requireAgentNameMatch)")
            }
        }
        if tls.clientAuthentication != .none && tls.trustRootsPath == nil {
            report(node, "tls.clientAuth \(tls.clientAuthentication.rawValue) needs tls.ca: the CA that client certificates must chain to")
        }
        if tls.requireAgentNameMatch && tls.clientAuthentication == .none {
            report(node, "tls.requireAgentNameMatch needs clientAuth optional or require: without client certificates no agent could register")
        }
        settings.tls = tls
    }

    /// `restart: always | never`, or `{policy, initialBackoffSeconds, maxBackoffSeconds}`.
    mutating func restartPolicy(_ node: Node, _ what: String) -> AgentTemplate.RestartPolicy? {
        var policy = AgentTemplate.RestartPolicy()
        func apply(_ word: Node) -> Bool {
            switch word.string {
            case "always", "on-failure": policy.enabled = true
            case "never": policy.enabled = false
            default:
                report(word, "\(what) must be always or never")
                return false
            }
            return true
        }
        if case .scalar = node { return apply(node) ? policy : nil }
        guard let fields = mapping(node, what) else { return nil }
        for (key, value) in fields {
            switch key.string ?? "" {
            case "policy": if !apply(value) { return nil }
            case "initialBackoffSeconds":
                if let seconds = number(value, "\(what).initialBackoffSeconds", minimum: 0.01) { policy.initialBackoff = .seconds(seconds) }
            case "maxBackoffSeconds":
                if let seconds = number(value, "\(what).maxBackoffSeconds", minimum: 0.01) { policy.maximumBackoff = .seconds(seconds) }
            default:
                report(key, "unknown key \"\(key.string ?? "")\" in \(what) (known: policy, initialBackoffSeconds, maxBackoffSeconds)")
            }
        }
        return policy
    }

    // MARK: Typed accessors that report what they expected

    mutating func mapping(_ node: Node, _ what: String) -> [(Node, Node)]? {
        guard case .mapping(let mapping) = node else {
            report(node, "\(what) must be a mapping (key: value)")
            return nil
        }
        return mapping.map { ($0.key, $0.value) }
    }

    mutating func sequence(_ node: Node, _ what: String) -> [Node]? {
        guard case .sequence(let sequence) = node else {
            report(node, "\(what) must be a list")
            return nil
        }
        return Array(sequence)
    }

    mutating func string(_ node: Node, _ what: String) -> String? {
        guard case .scalar(let scalar) = node else {
            report(node, "\(what) must be a string")
            return nil
        }
        return scalar.string
    }

    mutating func strings(_ node: Node, _ what: String) -> [String]? {
        guard let items = sequence(node, what) else { return nil }
        var result: [String] = []
        for item in items {
            guard let text = string(item, "each entry of \(what)") else { return nil }
            result.append(text)
        }
        return result
    }

    mutating func stringMap(_ node: Node, _ what: String) -> [String: String]? {
        guard let pairs = mapping(node, what) else { return nil }
        var result: [String: String] = [:]
        for (key, value) in pairs {
            guard let name = key.string, let text = string(value, "\(what).\(key.string ?? "?")") else { return nil }
            result[name] = text
        }
        return result
    }

    mutating func integer(_ node: Node, _ what: String, minimum: Int) -> Int? {
        guard case .scalar(let scalar) = node, let value = Int(scalar.string) else {
            report(node, "\(what) must be an integer")
            return nil
        }
        guard value >= minimum else {
            report(node, "\(what) must be at least \(minimum)")
            return nil
        }
        return value
    }

    mutating func number(_ node: Node, _ what: String, minimum: Double) -> Double? {
        guard case .scalar(let scalar) = node, let value = Double(scalar.string), value.isFinite else {
            report(node, "\(what) must be a number")
            return nil
        }
        guard value >= minimum else {
            report(node, "\(what) must be at least \(minimum)")
            return nil
        }
        return value
    }
}
