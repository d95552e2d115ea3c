import ArgumentParser
import JSONRPC
import Transport

/// Where the operator commands find the gateway, and how they print its answer.
struct OperatorOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The gateway: tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH.", valueName: "url"))
    var connect = "tcp://127.0.0.1:7400"

    @Option(help: ArgumentHelp("Seconds to wait for the whole answer, connecting included.", valueName: "seconds"))
    var timeout: Double = 10

    @Flag(help: "Print the gateway's result as one pretty-printed JSON document instead of a table.")
    var json = false

    @Option(help: ArgumentHelp("tls://: PEM CA bundle the gateway's certificate must chain to (default: the system's trust store).", valueName: "file"))
    var tlsCa: String?

    @Option(help: ArgumentHelp("tls://: PEM client certificate, for a gateway that asks for one.", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("tls://: PEM private key of --tls-cert.", valueName: "file"))
    var tlsKey: String?

    func validate() throws {
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    private func makeClient() throws -> GatewayClient {
        let address: ListenAddress
        do {
            address = try ListenAddress(parsing: connect)
        } catch {
            throw ValidationError("--connect \(connect): \(error.reason)")
        }
        if address.isHTTP {
            throw ValidationError("--connect \(connect): the operator commands speak JSON-RPC over tcp://, tls:// or unix://; give one of those listeners")
        }
        guard case .tls(let host, _) = address else {
            if tlsCa != nil || tlsCert != nil { throw ValidationError("--tls-ca, --tls-cert and --tls-key apply to a tls:// address only") }
            return GatewayClient(address: address, tls: nil, timeout: timeout)
        }
        let configuration = TLSConfiguration.client(
            trustRootsPath: tlsCa, serverHostname: host, certificateChainPath: tlsCert, privateKeyPath: tlsKey)
        do {
            return GatewayClient(address: address, tls: try TLSContext(client: configuration), timeout: timeout)
        } catch {
            printError("switchboard: TLS: \(error)")
            throw ExitCode(2)
        }
    }

    /// Asks the gateway with `exchange`, then prints the result: as JSON with `--json`, else as
    /// `render` writes it. A JSON-RPC error exits 1; no answer at all exits 2.
    func run(
        _ exchange: @Sendable @escaping (inout GatewaySession) async throws -> JSONValue,
        render: (JSONValue) -> String
    ) async throws {
        let client = try makeClient()
        let result: JSONValue
        do {
            result = try await client.withSession(exchange)
        } catch let error as GatewayClientError {
            printError("switchboard: \(error)")
            throw ExitCode(error.exitCode)
        }
        print(json ? PrettyJSON.text(result) : render(result))
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a running gateway's status: connections, agents, tasks, replicas (gateway/status).")

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let address = options.connect
        try await options.run({ session in try await session.call("gateway/status") }, render: { StatusView.text($0, address: address) })
    }
}

struct AgentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agents",
        abstract: "List the agent instances of a running gateway, or show one (agents/list, agents/get).",
        discussion: "AGENT-ID is an agentId from the list (TEMPLATE#N or NAME@CONNECTION), or an attached agent's name.")

    @OptionGroup var options: OperatorOptions

    @Argument(help: "Show this instance in detail.")
    var agentID: String?

    @Option(help: "Only instances in this state: STARTING, IDLE, BUSY, OVERLOADED, ERROR, MAINTENANCE or OFFLINE.")
    var state: String?

    @Option(help: "Only instances of this template.")
    var template: String?

    @Option(help: "Only instances with this capability tag or tool.")
    var capability: String?

    func validate() throws {
        if agentID != nil && (state != nil || template != nil || capability != nil) {
            throw ValidationError("--state, --template and --capability filter the list; leave them out to show one agent")
        }
    }

    func run() async throws {
        if let agentID {
            try await options.run({ session in try await session.call("agents/get", params: ["agentId": .string(agentID)]) }, render: AgentViews.details)
            return
        }
        var filters: [String: JSONValue] = [:]
        if let state { filters["state"] = .string(state) }
        if let template { filters["template"] = .string(template) }
        if let capability { filters["capability"] = .string(capability) }
        try await options.run({ [filters] session in try await session.call("agents/list", params: filters) }, render: AgentViews.table)
    }
}

struct TasksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "List the tasks of a running gateway, or show one (tasks/list, tasks/get).")

    @OptionGroup var options: OperatorOptions

    @Argument(help: "Show this task in detail.")
    var taskID: String?

    @Option(help: "Only tasks in this state: PENDING, ASSIGNED, RUNNING, COMPLETED, FAILED, TIMEOUT or CANCELLED.")
    var state: String?

    @Option(help: "Only tasks of this tool (their taskType).")
    var tool: String?

    func validate() throws {
        if taskID != nil && (state != nil || tool != nil) {
            throw ValidationError("--state and --tool filter the list; leave them out to show one task")
        }
    }

    func run() async throws {
        if let taskID {
            try await options.run({ session in try await session.call("tasks/get", params: ["taskId": .string(taskID)]) }, render: TaskViews.details)
            return
        }
        var filters: [String: JSONValue] = [:]
        if let state { filters["state"] = .string(state) }
        if let tool { filters["taskType"] = .string(tool) }
        try await options.run({ [filters] session in
            // Every page, so that the table (and --json) holds every task that matches.
            var tasks: [JSONValue] = []
            var params = filters
            while true {
                let page = try await session.call("tasks/list", params: params)
                tasks += page["tasks"]?.arrayValue ?? []
                guard let cursor = page["nextCursor"]?.stringValue else { break }
                params["cursor"] = .string(cursor)
            }
            return ["tasks": .array(tasks)]
        }, render: TaskViews.table)
    }
}

struct WorkflowsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflows",
        abstract: "List the workflow definitions of a running gateway, or show one definition or execution.",
        discussion: """
            ID is a workflow's name (workflows/get) or an execution's id (workflows/status). \
            The gateway has no method that lists executions: their ids come from workflows/execute \
            and from the workflow events.
            """)

    @OptionGroup var options: OperatorOptions

    @Argument(help: "A workflow name or an execution id.")
    var id: String?

    @Option(help: "With a workflow name: this version instead of the latest.")
    var version: String?

    func run() async throws {
        guard let id else {
            try await options.run({ session in try await session.call("workflows/list") }, render: WorkflowViews.table)
            return
        }
        let version = version
        try await options.run({ session in
            // Execution ids are the gateway's ("wf-…"); names are the user's. Ask the likelier
            // first and the other when the first does not know the id (-32002).
            let asExecution = version == nil && id.hasPrefix("wf-")
            do {
                return asExecution ? try await Self.execution(id, &session) : try await Self.definition(id, version, &session)
            } catch GatewayClientError.rpc(let code, _, _) where code == -32002 && version == nil {
                do {
                    return asExecution ? try await Self.definition(id, nil, &session) : try await Self.execution(id, &session)
                } catch GatewayClientError.rpc(let code, _, _) where code == -32002 {
                    throw GatewayClientError.rpc(code: code, message: "no workflow and no workflow execution \"\(id)\"", data: nil)
                }
            }
        }, render: WorkflowViews.details)
    }

    private static func definition(_ name: String, _ version: String?, _ session: inout GatewaySession) async throws -> JSONValue {
        var params: [String: JSONValue] = ["workflowName": .string(name)]
        if let version { params["version"] = .string(version) }
        return try await session.call("workflows/get", params: params)
    }

    private static func execution(_ id: String, _ session: inout GatewaySession) async throws -> JSONValue {
        try await session.call("workflows/status", params: ["executionId": .string(id)])
    }
}
