import Access
import Agents
import Yams

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A remote MCP server from a host's file (`url`, or `type` `http`, `streamable-http`, `sse`):
/// read and kept, so that an HTTP client transport can serve it; not run today.
public struct RemoteServerEntry: Sendable, Equatable {
    public enum Transport: String, Sendable {
        case streamableHTTP = "streamable-http"
        case sse
    }

    public var name: String
    public var transport: Transport
    /// Expanded: may hold secrets, like `headers`.
    public var url: String
    public var headers: [String: String]

    public init(name: String, transport: Transport, url: String, headers: [String: String] = [:]) {
        self.name = name
        self.transport = transport
        self.url = url
        self.headers = headers
    }
}

/// The sections that declare servers. Ours is read strictly; a host's is read as the host
/// wrote it: what the gateway does not use is a warning, never a reason to refuse the file.
enum ServerSection: String {
    case agents
    /// Claude Desktop, Claude Code, Cursor, Cline, Windsurf, Gemini CLI.
    case mcpServers
    /// VS Code.
    case servers

    var isStrict: Bool { self == .agents }
}

/// One server entry's keys with their nodes, in the file's order.
struct HostServerEntry {
    let name: String
    let path: String
    let section: ServerSection
    let body: Node
    let fields: [(key: Node, value: Node)]

    subscript(key: String) -> Node? { fields.first { $0.key.string == key }?.value }

    /// Hosts keep servers they do not run in their file (`disabled: true` in Cline and Claude
    /// Code, `enabled: false` elsewhere), whatever else those hold.
    var isSwitchedOff: Bool { flag("disabled") == true || flag("enabled") == false }

    private func flag(_ key: String) -> Bool? {
        guard case .scalar(let scalar)? = self[key] else { return nil }
        return Bool(scalar.string)
    }

    /// The key naming a remote server's address: `url`; Windsurf's `serverUrl`; Gemini CLI's `httpUrl`.
    var addressKey: String? { ["url", "serverUrl", "httpUrl"].first { self[$0] != nil } }
}

/// How an entry is reached.
enum ServerTransport: Equatable {
    case stdio
    case remote(RemoteServerEntry.Transport)
}

/// A reference found unresolved, and where.
struct UnresolvedReference {
    var node: Node
    var reason: VariableExpansion.Unresolved
}

extension ConfigurationReader {
    mutating func readServers(_ node: Node, section: ServerSection) {
        guard let entries = mapping(node, section.rawValue) else { return }
        for (nameNode, body) in entries {
            guard let name = nameNode.string, !name.isEmpty else {
                report(nameNode, "an agent name must be a non-empty string")
                continue
            }
            guard let fields = mapping(body, "agent \"\(name)\"") else { continue }
            let entry = HostServerEntry(name: name, path: "\(section.rawValue).\(name)", section: section, body: body, fields: fields.map { ($0, $1) })
            if entry.isSwitchedOff { continue }
            if settings.agentTemplates.contains(where: { $0.name == name }) || settings.remoteServers.contains(where: { $0.name == name }) {
                report(nameNode, "agent \"\(name)\" is declared twice")
                continue
            }
            switch transport(of: entry) {
            case .stdio: readLocalServer(entry)
            case .remote(let transport): readRemoteServer(entry, transport: transport)
            case nil: break
            }
        }
    }

    /// `type` (Cline's older `transportType`) when given, else what the keys imply.
    private mutating func transport(of entry: HostServerEntry) -> ServerTransport? {
        guard let typeNode = entry["type"] ?? entry["transportType"] else {
            if entry["command"] != nil { return .stdio }
            if let key = entry.addressKey {
                let url = entry[key]?.string ?? ""
                return .remote(key != "httpUrl" && url.hasSuffix("/sse") ? .sse : .streamableHTTP)
            }
            report(
                entry.body,
                entry.section.isStrict
                    ? "agent \"\(entry.name)\" needs a \"command\" (the program to run)"
                    : "server \"\(entry.name)\" needs a \"command\" (the program to run) or a \"url\"")
            return nil
        }
        let type = typeNode.string ?? ""
        let transport: ServerTransport? =
            switch type {
            case "stdio": .stdio
            case "http", "streamable-http", "streamableHttp": .remote(.streamableHTTP)
            case "sse": .remote(.sse)
            default: nil
            }
        switch transport {
        case .stdio?: return .stdio
        case .remote?:
            return transport
        case nil:
            complain(
                typeNode, "server \"\(entry.name)\" is skipped: type \"\(type)\" is none of stdio, http, streamable-http, sse",
                strictly: entry.section.isStrict)
            return nil
        }
    }

    private mutating func readRemoteServer(_ entry: HostServerEntry, transport: RemoteServerEntry.Transport) {
        guard let key = entry.addressKey, let urlNode = entry[key] else {
            report(entry.body, "remote server \"\(entry.name)\" needs a \"url\"")
            return
        }
        guard let writtenURL = string(urlNode, "\(entry.path).\(key)") else { return }
        var unresolved: [UnresolvedReference] = []
        let url = expanded(writtenURL, at: urlNode, into: &unresolved)
        var headers: [String: String] = [:]
        if let headersNode = entry["headers"], let pairs = mapping(headersNode, "\(entry.path).headers") {
            for (name, value) in pairs {
                guard let header = name.string, let text = string(value, "\(entry.path).headers.\(name.string ?? "?")") else { continue }
                headers[header] = expanded(text, at: value, into: &unresolved)
            }
        }
        guard unresolved.isEmpty else { return skip(entry, for: unresolved) }
        settings.remoteServers.append(RemoteServerEntry(name: entry.name, transport: transport, url: url, headers: headers))
        guard transport == .streamableHTTP else {
            // The URL as written: its expansion may carry a key.
            warn(urlNode, "remote server \"\(entry.name)\" (\(writtenURL)) is not served yet: the older HTTP+SSE transport is not built (Streamable HTTP is)")
            return
        }
        guard RemoteAgentBridge.Endpoint(url: url, urlAsWritten: writtenURL, headers: headers) != nil else {
            report(urlNode, "remote server \"\(entry.name)\": \(writtenURL) is not an http:// or https:// URL")
            return
        }
        var template = AgentTemplate(name: entry.name, command: "")
        // Shown as written, but never with a password written into it.
        template.remote = AgentTemplate.RemoteAddress(url: url, urlAsWritten: RemoteAgentRegistration.withoutCredentials(writtenURL), headers: headers)
        if let prefixNode = entry["toolPrefix"], let prefix = string(prefixNode, "\(entry.path).toolPrefix") { template.toolPrefix = prefix }
        if let versionNode = entry["version"], let version = string(versionNode, "\(entry.path).version") { template.version = version }
        settings.agentTemplates.append(template)
    }

    private mutating func readLocalServer(_ entry: HostServerEntry) {
        let path = entry.path
        let strict = entry.section.isStrict
        guard let commandNode = entry["command"] else {
            report(entry.body, "agent \"\(entry.name)\" needs a \"command\" (the program to run)")
            return
        }
        guard let command = string(commandNode, "\(path).command") else { return }
        guard !command.isEmpty else {
            report(commandNode, "\(path).command must not be empty")
            return
        }
        var unresolved: [UnresolvedReference] = []
        var template = AgentTemplate(name: entry.name, command: expanded(command, at: commandNode, into: &unresolved))
        template.commandAsWritten = command
        var environment: [String: String] = [:]
        var environmentFile: (node: Node, path: String)?
        for (keyNode, value) in entry.fields {
            let key = keyNode.string ?? ""
            switch key {
            case "args":
                guard let items = sequence(value, "\(path).args") else { continue }
                var arguments: [String] = []
                var written: [String] = []
                for item in items {
                    guard let text = string(item, "each entry of \(path).args") else { continue }
                    arguments.append(expanded(text, at: item, into: &unresolved))
                    written.append(text)
                }
                template.arguments = arguments
                template.argumentsAsWritten = written
            case "env":
                guard let pairs = mapping(value, "\(path).env") else { continue }
                for (name, text) in pairs {
                    guard let variable = name.string, let written = string(text, "\(path).env.\(name.string ?? "?")") else { continue }
                    environment[variable] = expanded(written, at: text, into: &unresolved)
                }
            case "cwd":
                if let directory = string(value, "\(path).cwd") { template.workingDirectory = expanded(directory, at: value, into: &unresolved) }
            case "envFile":
                if let file = string(value, "\(path).envFile") { environmentFile = (value, expanded(file, at: value, into: &unresolved)) }
            case "disabledTools", "excludeTools":
                if let tools = strings(value, "\(path).\(key)") { template.disabledTools.formUnion(tools) }
            case "timeout" where !strict:
                if let timeout = hostTimeout(value, "\(path).timeout") { template.callTimeout = timeout }
            case "instances": if let n = integer(value, "\(path).instances", minimum: 0) { template.instances = n }
            case "maxInstances": if let n = integer(value, "\(path).maxInstances", minimum: 1) { template.maximumInstances = n }
            case "tenants":
                if let tenants = strings(value, "\(path).tenants") {
                    if let bad = tenants.first(where: { !Principal.isValidTenant($0) }) {
                        report(value, "\(path).tenants: \"\(bad)\" is not a tenant name (1 to 128 letters, digits and _ - . : @)")
                    } else {
                        template.tenants = tenants
                    }
                }
            case "maxConcurrency": if let n = integer(value, "\(path).maxConcurrency", minimum: 1) { template.maximumConcurrency = n }
            case "version": template.version = string(value, "\(path).version")
            case "capabilities": if let tags = strings(value, "\(path).capabilities") { template.capabilities = tags }
            case "startupTimeoutSeconds":
                if let seconds = number(value, "\(path).startupTimeoutSeconds", minimum: 0.001) { template.startupTimeout = .seconds(seconds) }
            case "callTimeoutSeconds":
                if let seconds = number(value, "\(path).callTimeoutSeconds", minimum: 0.001) { template.callTimeout = .seconds(seconds) }
            case "restart":
                if let policy = restartPolicy(value, "\(path).restart") { template.restart = policy }
            case "toolPrefix":
                if let prefix = string(value, "\(path).toolPrefix") {
                    if prefix.isEmpty || !ToolNaming.isValidExposedName(prefix) || prefix.utf8.count > 32 {
                        report(value, "\(path).toolPrefix must be 1 to 32 letters, digits, '_' or '-' (it goes in front of tool names)")
                    } else {
                        template.toolPrefix = prefix
                    }
                }
            case "maxMessageBytes":
                if let bytes = integer(value, "\(path).maxMessageBytes", minimum: 1024) { template.maximumMessageBytes = bytes }
            case "inheritEnvironment", "sha256", "scriptSha256": readLaunchKey(key, value, path: path, into: &template)
            case "resources", "priorityClass", "sandbox", "autoscale", "rollout", "zones": readFleetKey(key, value, path: path, into: &template)
            // Read above, or about the host's own interface (approval prompts, descriptions).
            case "command", "type", "disabled", "enabled", "autoApprove", "alwaysAllow", "description": break
            default:
                // Cline keeps a remote address on a stdio entry; it does not use it either.
                if !strict && ["transportType", "url", "serverUrl", "httpUrl", "headers"].contains(key) { continue }
                complain(keyNode, strict ? "unknown key \"\(key)\" in \(path)" : "unknown key \"\(key)\" in \(path) is ignored", strictly: strict)
            }
        }
        guard unresolved.isEmpty else { return skip(entry, for: unresolved) }
        if let environmentFile {
            guard let values = readEnvironmentFile(environmentFile.path, at: environmentFile.node, for: entry) else { return }
            environment = values.merging(environment) { _, explicit in explicit }
        }
        template.environment = environment
        checkFleetKeys(of: &template, path: path, at: entry.body)
        settings.agentTemplates.append(template)
    }

    /// Cline and Roo Code count `timeout` in seconds (Cline's default is 60); Gemini CLI in
    /// milliseconds. Hosts cap seconds at an hour, so a larger value is taken as milliseconds.
    private mutating func hostTimeout(_ node: Node, _ what: String) -> Duration? {
        guard let value = number(node, what, minimum: 0.001) else { return nil }
        guard value > 3600 else { return .seconds(value) }
        let written = value == value.rounded() && value < 1e15 ? String(Int(value)) : String(value)
        warn(node, "\(what) \(written) is taken as milliseconds (\(value / 1000) s): more than 3600 is not a number of seconds")
        return .milliseconds(value)
    }

    /// The dotenv file's values; nil when it cannot be read (the server is skipped, or in our
    /// own section the file refused). Malformed lines are warnings.
    private mutating func readEnvironmentFile(_ written: String, at node: Node, for entry: HostServerEntry) -> [String: String]? {
        let path = written.hasPrefix("/") ? written : "\(directory)/\(written)"
        let text: String
        do {
            text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            complain(
                node, entry.section.isStrict ? "\(entry.path).envFile \(path) \(reason)" : "server \"\(entry.name)\" is skipped: its envFile \(path) \(reason)",
                strictly: entry.section.isStrict)
            return nil
        }
        let file = DotEnvFile(parsing: text)
        for problem in file.problems {
            warnings.append(.init(file: path, line: problem.line, column: 1, message: "\(problem.message); the line is ignored"))
        }
        return file.values
    }

    private mutating func skip(_ entry: HostServerEntry, for unresolved: [UnresolvedReference]) {
        var reasons: [String] = []
        for reference in unresolved where !reasons.contains(reference.reason.description) { reasons.append(reference.reason.description) }
        let because = reasons.joined(separator: "; ")
        complain(
            unresolved[0].node, entry.section.isStrict ? "\(entry.path): \(because)" : "server \"\(entry.name)\" is skipped: \(because)",
            strictly: entry.section.isStrict)
    }

    private func expanded(_ text: String, at node: Node, into unresolved: inout [UnresolvedReference]) -> String {
        let result = expansion.expand(text)
        unresolved += result.unresolved.map { UnresolvedReference(node: node, reason: $0) }
        return result.text
    }

    /// VS Code's `inputs`: `[{"type": "promptString", "id": …, "description": …, "password": true, "default": …}]`.
    /// Only `id` and `default` matter here; the rest is for a host's prompt.
    mutating func readInputs(_ node: Node) {
        guard let items = sequence(node, "inputs") else { return }
        for item in items {
            guard let fields = mapping(item, "each entry of inputs") else { continue }
            let id = fields.first { $0.0.string == "id" }?.1.string
            guard let id, !id.isEmpty else {
                warn(item, "an input without an \"id\" is ignored")
                continue
            }
            let defaultValue = fields.first { $0.0.string == "default" }?.1.string
            expansion.inputs[id] = VariableExpansion.Input(id: id, defaultValue: defaultValue)
        }
    }
}
