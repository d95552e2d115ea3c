import ArgumentParser
import JSONRPC

/// `switchboard fleet …`: what a running gateway's fleet holds and costs, why it grew or shrank,
/// its rollouts, and vertical scaling (protocol-spec 16).
struct FleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Show a running gateway's fleet, its autoscaling decisions, allocations and rollouts; resize a template.",
        subcommands: [Status.self, Decisions.self, Allocations.self, Rollouts.self, Resize.self],
        defaultSubcommand: Status.self
    )

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Capacity against what is allocated, cost, enforcement, templates and grants (fleet/status).")

        @OptionGroup var options: OperatorOptions

        func run() async throws {
            try await options.run({ session in try await session.call("fleet/status") }, render: FleetViews.status)
        }
    }

    struct Decisions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The autoscaler's decisions, newest first, each with its reason (fleet/decisions).")

        @OptionGroup var options: OperatorOptions

        @Option(help: "Only this template's decisions.")
        var template: String?

        @Option(help: "At most this many (1 to 1000; the gateway's default is 100).")
        var limit: Int?

        func run() async throws {
            var params: [String: JSONValue] = [:]
            if let template { params["template"] = .string(template) }
            if let limit { params["limit"] = .integer(Int64(limit)) }
            try await options.run({ [params] session in try await session.call("fleet/decisions", params: params) }, render: FleetViews.decisions)
        }
    }

    struct Allocations: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The resource_allocations rows: one per resource each grant holds (fleet/allocations).")

        @OptionGroup var options: OperatorOptions

        @Option(help: "Only this template's rows.")
        var template: String?

        @Flag(help: "Also the released rows, newest first, after the current ones.")
        var released = false

        @Option(help: "At most this many (1 to 1000; the gateway's default is 500).")
        var limit: Int?

        func run() async throws {
            var params: [String: JSONValue] = [:]
            if let template { params["template"] = .string(template) }
            if released { params["includeReleased"] = true }
            if let limit { params["limit"] = .integer(Int64(limit)) }
            try await options.run({ [params] session in try await session.call("fleet/allocations", params: params) }, render: FleetViews.allocations)
        }
    }

    struct Rollouts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The rollouts of spawned templates, newest first, with their steps (fleet/rollouts).")

        @OptionGroup var options: OperatorOptions

        @Option(help: "Only this template's rollouts.")
        var template: String?

        func run() async throws {
            var params: [String: JSONValue] = [:]
            if let template { params["template"] = .string(template) }
            try await options.run({ [params] session in try await session.call("fleet/rollouts", params: params) }, render: FleetViews.rollouts)
        }
    }

    struct Resize: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change the calls each instance of a template takes at once, or its resources, while it runs (agents/resize).",
            discussion: """
                The resources given change; those left out keep their current values (read from \
                fleet/status first). With --replace the resources given replace the template's whole, \
                as agents/resize does: a resource left out is then no longer reserved or limited.
                """)

        @OptionGroup var options: OperatorOptions

        @Argument(help: "A spawned template of the configuration.")
        var template: String

        @Option(help: ArgumentHelp("Calls each instance takes at once.", valueName: "n"))
        var maxConcurrency: Int?

        @Option(help: ArgumentHelp("Cores for each instance: 0.5, 2, or thousandths as 500m.", valueName: "cores"))
        var cpu: String?

        @Option(help: ArgumentHelp("Memory for each instance: 256Mi, 1.5Gi, 512M, or bytes.", valueName: "size"))
        var memory: String?

        @Option(help: ArgumentHelp("Processes and threads each instance may run.", valueName: "n"))
        var processes: Int?

        @Flag(help: "Replace the template's resources with those given instead of changing only those.")
        var replace = false

        func validate() throws {
            guard maxConcurrency != nil || cpu != nil || memory != nil || processes != nil else {
                throw ValidationError("give at least one of --max-concurrency, --cpu, --memory and --processes")
            }
            if replace && cpu == nil && memory == nil && processes == nil {
                throw ValidationError("--replace needs --cpu, --memory or --processes (the resources that replace the template's)")
            }
        }

        func run() async throws {
            var params: [String: JSONValue] = ["template": .string(template)]
            if let maxConcurrency { params["maxConcurrency"] = .integer(Int64(maxConcurrency)) }
            var given: [String: JSONValue] = [:]
            // As written: the gateway reads "500m" and "256Mi" itself.
            if let cpu { given["cpu"] = Double(cpu).map(JSONValue.double) ?? .string(cpu) }
            if let memory { given["memory"] = .string(memory) }
            if let processes { given["processes"] = .integer(Int64(processes)) }
            let template = template
            let keepsOthers = !given.isEmpty && !replace
            try await options.run({ [params, given] session in
                var params = params
                if keepsOthers {
                    let fleet = try await session.call("fleet/status")
                    let current = fleet.at("templates")?.arrayValue?.first { $0.at("template")?.stringValue == template }?.at("resources")
                    params["resources"] = .object(Self.resources(current).merging(given) { _, new in new })
                } else if !given.isEmpty {
                    params["resources"] = .object(given)
                }
                return try await session.call("agents/resize", params: params)
            }, render: FleetViews.resize)
        }

        /// A template's resources as `fleet/status` shows them, as `agents/resize` takes them.
        private static func resources(_ current: JSONValue?) -> [String: JSONValue] {
            var members: [String: JSONValue] = [:]
            if let cpu = current?.at("cpu") { members["cpu"] = cpu }
            if let bytes = current?.at("memoryBytes") { members["memory"] = bytes }
            // The GPUs cannot change while the template runs: left out, they would count as a change to none.
            if let gpus = current?.at("gpu") { members["gpu"] = gpus }
            if let processes = current?.at("processes") { members["processes"] = processes }
            return members
        }
    }
}

/// `switchboard reload`: the configuration file read again (`gateway/reload`, as SIGHUP does).
struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make a running gateway read its configuration's agents again (gateway/reload).",
        discussion: """
            Templates added start, templates removed drain and stop, a template whose command \
            changed rolls out instance by instance (`switchboard fleet rollouts` follows it), and \
            one whose count, concurrency or resources changed is changed in place.
            """)

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        try await options.run({ session in try await session.call("gateway/reload") }, render: FleetViews.reload)
    }
}
