import Access
import Agents
import FoundationEssentials
import JSONRPC
import NIOCore
import Router

/// `tasks/submit`, the MCP task methods (`tasks/get`, `tasks/result`, `tasks/list`,
/// `tasks/cancel`) and task-augmented `tools/call` (MCP 2025-11-25's `params.task`).
enum TaskMethods {
    /// How often MCP clients are told to poll a task.
    static let pollIntervalMilliseconds: Int64 = 1_000

    static func register(
        in table: inout MethodTable, engine: any TaskService, egress: EgressPolicy = EgressPolicy(), quotas: QuotaKeeper? = nil,
        agents: AgentRegistry? = nil
    ) {
        table.register("tasks/submit") { request, context in
            switch submission(from: request.params, egress: egress) {
            case .failure(let error): return .error(error)
            case .success(var owned):
                // Another tenant's agents do not run this tenant's tasks.
                if let tenant = context.tenant, let agents, !agents.serves(.tool, owned.taskType, tenant: tenant) {
                    return .error(AgentCallRouter.notFound(.tool, owned.taskType))
                }
                owned.ownerTenant = context.tenant
                owned.traceparent = GatewayObservability.traceContext(of: request)?.traceparent
                if context.tenant != nil { owned.submittedBy = context.principal.name }
                return submit(owned, on: context, engine: engine, quotas: quotas, answer: status)
            }
        }
        table.register("tasks/get") { request, context in
            guard let id = request.params?.member("taskId")?.stringValue else { return .error(.invalidParams("tasks/get needs \"taskId\"")) }
            let tenant = context.tenant
            return answer(on: context, engine: engine, now: { status(try owned($0.getNow(id), by: tenant)) }) {
                status(try owned(await engine.get(id), by: tenant))
            }
        }
        table.register("tasks/result") { request, context in
            guard let id = request.params?.member("taskId")?.stringValue else { return .error(.invalidParams("tasks/result needs \"taskId\"")) }
            let tenant = context.tenant
            if let tenant {
                // Another tenant's task is not found, before anything waits on it.
                return later(on: context) {
                    _ = try owned(await engine.get(id), by: tenant)
                    let task = try await engine.result(id)
                    guard task.state == .completed, let result = task.result else { throw TaskEnded(task: task) }
                    return .raw(result)
                }
            }
            if let local = engine as? TaskEngine {
                // The embedded engine's future, on the connection's event loop: no task hop.
                return .later(local.result(id, on: context.eventLoop).flatMapThrowing { task -> JSONValue in
                    guard task.state == .completed, let result = task.result else { throw TaskEnded(task: task) }
                    return .raw(result)
                }.flatMapErrorThrowing { error -> JSONValue in
                    if case TaskLookupError.unknownTask? = error as? TaskLookupError { throw unknownTask(id) }
                    throw error
                })
            }
            return later(on: context) {
                let task = try await engine.result(id)
                guard task.state == .completed, let result = task.result else { throw TaskEnded(task: task) }
                return .raw(result)
            }
        }
        table.register("tasks/list") { request, context in
            var wanted: TaskState?
            var cursor = 0
            if let params = request.params {
                guard params.kind == .object else { return .error(.invalidParams("tasks/list takes an object")) }
                if let text = params.member("state")?.stringValue {
                    guard let parsed = TaskState(rawValue: text.uppercased()) else {
                        return .error(.invalidParams("unknown state \"\(text)\" (one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", ")))"))
                    }
                    wanted = parsed
                }
                if let value = params.member("cursor"), value.kind != .null {
                    guard let text = value.stringValue, let position = Int(text), position >= 0 else {
                        return .error(.invalidParams("unknown cursor", extra: ["cursor": .raw(value)]))
                    }
                    cursor = position
                }
            }
            let taskType = request.params?.member("taskType")?.stringValue
            let (state, after, tenant) = (wanted, cursor, context.tenant)
            return answer(on: context, engine: engine, now: { listed($0.listNow(state: state, taskType: taskType, cursor: after, limit: 100), tenant) }) {
                listed(try await engine.list(state: state, taskType: taskType, cursor: after, limit: 100), tenant)
            }
        }
        table.register("tasks/cancel") { request, context in
            guard let id = request.params?.member("taskId")?.stringValue else { return .error(.invalidParams("tasks/cancel needs \"taskId\"")) }
            let tenant = context.tenant
            return answer(on: context, engine: engine, now: { engine in
                _ = try owned(engine.getNow(id), by: tenant)
                return status(try engine.cancelNow(id))
            }) {
                _ = try owned(await engine.get(id), by: tenant)
                return status(try await engine.cancel(id))
            }
        }
    }

    /// Answers an engine call: `now` on the embedded engine — at once, on the connection's event
    /// loop, so that pipelined requests are served (and submissions numbered) in the order they
    /// arrived — else `later`, in a task. Either way errors come out in JSON-RPC terms.
    static func answer(
        on context: MethodContext, engine: any TaskService, now: (TaskEngine) throws -> JSONValue,
        later: @escaping @Sendable () async throws -> JSONValue
    ) -> MethodReply {
        if let local = engine as? TaskEngine {
            do {
                return .result(try now(local))
            } catch {
                return .error(rpcError(error) as? JSONRPCError ?? .internalError("\(error)"))
            }
        }
        return self.later(on: context, later)
    }

    /// Runs an engine call in a task and answers with its result or its error in JSON-RPC terms.
    static func later(on context: MethodContext, _ body: @escaping @Sendable () async throws -> JSONValue) -> MethodReply {
        .later(context.eventLoop.makeFutureWithTask {
            do {
                return try await body()
            } catch {
                throw rpcError(error)
            }
        })
    }

    /// An engine's error in JSON-RPC terms (a task that ended otherwise than completed is
    /// answered by its own conversion).
    private static func rpcError(_ error: any Error) -> any Error {
        switch error {
        case TaskLookupError.unknownTask(let id): unknownTask(id)
        case let error as TaskSubmitError: JSONRPCError.invalidParams("\(error)")
        case is JSONRPCError, is TaskEnded: error
        default: JSONRPCError.backendUnavailable("\(error)")
        }
    }

    /// `task` when `tenant` may see it; another tenant's task is not found, exactly as a task
    /// that does not exist.
    static func owned(_ task: TaskRecord, by tenant: String?) throws -> TaskRecord {
        guard let tenant, task.submission.ownerTenant != tenant else { return task }
        throw TaskLookupError.unknownTask(task.id)
    }

    /// A page of tasks, less those of other tenants (a page may then hold fewer than the limit;
    /// the cursor still goes on).
    private static func listed(_ page: TaskPage, _ tenant: String?) -> JSONValue {
        let tasks = tenant.map { tenant in page.tasks.filter { $0.submission.ownerTenant == tenant } } ?? page.tasks
        var result: [String: JSONValue] = ["tasks": .array(tasks.map(status))]
        if let next = page.nextCursor { result["nextCursor"] = .string(next) }
        return .object(result)
    }

    /// A `tools/call` carrying `params.task` becomes a task; the reply is MCP's CreateTaskResult.
    static func callAsTask(
        _ request: JSONRPCRequest, params: RawJSON, engine: any TaskService, quotas: QuotaKeeper?, context: MethodContext
    ) -> MethodReply {
        guard let name = params.member("name")?.stringValue else {
            return .error(.invalidParams("\"name\" must be a string naming the tool"))
        }
        var submission = TaskSubmission(taskType: name, taskData: params.member("arguments") ?? RawJSON.emptyObject)
        submission.traceparent = GatewayObservability.traceContext(of: request)?.traceparent
        submission.ownerTenant = context.tenant
        if context.tenant != nil { submission.submittedBy = context.principal.name }
        if let ttl = params.member("task")?.member("ttl")?.decoded().integerValue, ttl > 0 {
            submission.retention = .milliseconds(ttl)
        }
        return submit(submission, on: context, engine: engine, quotas: quotas) { ["task": mcpTask($0)] }
    }

    /// Submits a task that holds one of its principal's and tenant's `queuedTasks` quota until
    /// it ends; the quota refuses it (`-32008`) when full.
    static func submit(
        _ submission: TaskSubmission, on context: MethodContext, engine: any TaskService, quotas: QuotaKeeper?,
        answer shape: @escaping @Sendable (TaskRecord) -> JSONValue
    ) -> MethodReply {
        // Its attempts join the request's trace: the gateway's span of it when tracing is on.
        let submission = {
            var traced = submission
            if let traceparent = context.trace?.context?.traceparent { traced.traceparent = traceparent }
            return traced
        }()
        guard let quotas, quotas.counts(.queuedTasks) else {
            return answer(on: context, engine: engine, now: { shape(try $0.submitNow(submission)) }) { shape(try await engine.submit(submission)) }
        }
        let principal = context.principal
        let token = String(UInt64.random(in: 1...UInt64.max), radix: 36)
        @Sendable func holding(_ hold: QuotaHold) -> TaskSubmission {
            var held = submission
            held.heldQuotas = hold.keys
            held.quotaToken = hold.keys.isEmpty ? nil : token
            return held
        }
        /// An earlier task answered (its idempotency key): this submission's hold goes back.
        @Sendable func settle(_ task: TaskRecord, _ hold: QuotaHold) {
            if !hold.keys.isEmpty, task.submission.quotaToken != token { quotas.release(hold) }
        }
        /// Submits holding `hold`, which goes back if the submission fails.
        @Sendable func submit(holding hold: QuotaHold) async throws -> JSONValue {
            do {
                let task = try await engine.submit(holding(hold))
                settle(task, hold)
                return shape(task)
            } catch {
                quotas.release(hold)
                throw error
            }
        }
        if let decided = quotas.acquireNow(.queuedTasks, for: principal) {
            let hold: QuotaHold
            switch decided {
            case .success(let taken):
                hold = taken
            case .failure(let refusal):
                // A submission sent again (its reply lost) is answered its task, quota or not.
                if let key = submission.idempotencyKey, let earlier = (engine as? TaskEngine)?.taskNow(withIdempotencyKey: key) {
                    return .result(shape(earlier))
                }
                return .error(refusal)
            }
            return answer(on: context, engine: engine, now: { local in
                do {
                    let task = try local.submitNow(holding(hold))
                    settle(task, hold)
                    return shape(task)
                } catch {
                    quotas.release(hold)
                    throw error
                }
            }) {
                try await submit(holding: hold)
            }
        }
        return later(on: context) {
            let hold: QuotaHold
            do {
                hold = try await quotas.acquire(.queuedTasks, for: principal)
            } catch {
                if let key = submission.idempotencyKey, let earlier = try await engine.task(withIdempotencyKey: key) { return shape(earlier) }
                throw error
            }
            return try await submit(holding: hold)
        }
    }

    // MARK: Shapes

    /// The seed's TaskStatus, with MCP's Task fields beside it.
    static func status(_ task: TaskRecord) -> JSONValue {
        guard case .object(var object) = task.jsonValue, case .object(let mcp) = mcpTask(task) else { return task.jsonValue }
        for (key, value) in mcp where object[key] == nil { object[key] = value }
        return .object(object)
    }

    static func mcpTask(_ task: TaskRecord) -> JSONValue {
        var object: [String: JSONValue] = [
            "taskId": .string(task.id),
            "status": .string(task.state.mcpStatus),
            "createdAt": .string(task.createdAt.formatted(.iso8601)),
            "lastUpdatedAt": .string(task.lastUpdatedAt.formatted(.iso8601)),
            "ttl": .integer(task.submission.retention.components.seconds * 1000 + task.submission.retention.components.attoseconds / 1_000_000_000_000_000),
            "pollInterval": .integer(pollIntervalMilliseconds),
        ]
        if let message = task.errorMessage ?? task.waitingFor { object["statusMessage"] = .string(message) }
        return .object(object)
    }

    // MARK: Parsing

    static func submission(from params: RawJSON?, egress: EgressPolicy = EgressPolicy()) -> Result<TaskSubmission, JSONRPCError> {
        guard let params, params.kind == .object else {
            return .failure(.invalidParams("tasks/submit takes an object: taskType (or tool), taskData (or arguments), priority, timeout, maxRetries, …"))
        }
        let invocation: ToolInvocation
        switch ToolInvocation.read(params) {
        case .success(let read): invocation = read
        case .failure(let error): return .failure(error)
        }
        var submission = TaskSubmission(taskType: invocation.tool, taskData: invocation.arguments)
        func integer(_ key: String, in range: ClosedRange<Int64>) -> Result<Int64?, JSONRPCError> {
            guard let value = params.member(key) else { return .success(nil) }
            guard let number = value.decoded().integerValue, range.contains(number) else {
                return .failure(.invalidParams("\"\(key)\" must be an integer from \(range.lowerBound) to \(range.upperBound)"))
            }
            return .success(number)
        }
        func strings(_ key: String) -> Result<[String], JSONRPCError> {
            guard let value = params.member(key) else { return .success([]) }
            guard case .array(let items) = value.decoded(), items.allSatisfy({ $0.stringValue != nil }) else {
                return .failure(.invalidParams("\"\(key)\" must be an array of strings"))
            }
            return .success(items.compactMap(\.stringValue))
        }
        do {
            if let priority = try integer("priority", in: 1...10).get() { submission.priority = Int(priority) }
            if let retries = try integer("maxRetries", in: 0...100).get() { submission.maximumRetries = Int(retries) }
            if params.member("retryOn") != nil {
                let kinds = try strings("retryOn").get()
                var retryOn = Set<FailureKind>()
                for kind in kinds {
                    guard let parsed = FailureKind(rawValue: kind), parsed != .invalidRequest else {
                        throw JSONRPCError.invalidParams(
                            "\"retryOn\" takes agentFailure, timeout and toolError (invalid requests are never retried), not \"\(kind)\"")
                    }
                    retryOn.insert(parsed)
                }
                submission.retryOn = retryOn
            }
            if let timeout = params.member("timeout") {
                guard case let seconds? = timeout.decoded().numberValue, seconds > 0, seconds <= 86_400 else {
                    throw JSONRPCError.invalidParams("\"timeout\" must be a number of seconds from 0 to 86400")
                }
                submission.timeout = .milliseconds(Int64(seconds * 1000))
            }
            submission.requiredCapabilities = try strings("requiredCapabilities").get()
            if let value = params.member("minimumMatch") {
                guard let share = value.decoded().numberValue, share > 0, share <= 1 else {
                    throw JSONRPCError.invalidParams("\"minimumMatch\" must be a number above 0 and at most 1")
                }
                submission.minimumMatch = share
            }
            submission.dependsOn = try strings("dependsOn").get()
            if let value = params.member("idempotencyKey"), value.kind != .null {
                // A key of another type would silently deduplicate nothing.
                guard let key = value.stringValue, !key.isEmpty else {
                    throw JSONRPCError.invalidParams("\"idempotencyKey\" must be a non-empty string", extra: ["idempotencyKey": .raw(value)])
                }
                submission.idempotencyKey = key
            }
            if let callback = params.member("callback") {
                guard let url = callback.stringValue, url.hasPrefix("http://") || url.hasPrefix("https://") else {
                    throw JSONRPCError.invalidParams("\"callback\" must be an http:// or https:// URL")
                }
                if let refused = CallbackEgress.refusal(of: url, policy: egress) { throw refused }
                submission.callback = url
            }
            if let backoff = params.member("backoff") {
                submission.backoff = try parseBackoff(backoff, delay: params.member("backoffDelay"))
            }
            if let routing = params.member("routing") {
                submission.routing = RoutingHints(stickyKey: routing.member("stickyKey")?.stringValue, tenant: routing.member("tenant")?.stringValue)
            }
        } catch let error as JSONRPCError {
            return .failure(error)
        } catch {
            return .failure(.invalidParams("\(error)"))
        }
        return .success(submission)
    }

    /// `"backoff": "fixed" | "exponential"` with `backoffDelay` seconds, or
    /// `"backoff": {"strategy": …, "delaySeconds": …}`.
    private static func parseBackoff(_ value: RawJSON, delay: RawJSON?) throws -> BackoffPolicy {
        var policy = BackoffPolicy()
        let strategy = value.stringValue ?? value.member("strategy")?.stringValue
        let delaySeconds = delay?.decoded().numberValue ?? value.member("delaySeconds")?.decoded().numberValue
        if let strategy {
            guard let kind = BackoffPolicy.Kind(rawValue: strategy) else {
                throw JSONRPCError.invalidParams("backoff must be fixed or exponential")
            }
            policy.kind = kind
        }
        if let delaySeconds {
            guard delaySeconds >= 0, delaySeconds <= 3600 else { throw JSONRPCError.invalidParams("the backoff delay must be from 0 to 3600 seconds") }
            policy.delay = .milliseconds(Int64(delaySeconds * 1000))
        }
        return policy
    }

    static func unknownTask(_ id: String) -> JSONRPCError {
        .invalidParams("no task \"\(id)\"", extra: ["taskId": .string(id)])
    }
}

/// `tasks/result` of a task that did not complete: its error, with the whole task as data.
struct TaskEnded: GatewayErrorConvertible {
    var task: TaskRecord
    var jsonRPCError: JSONRPCError {
        JSONRPCError(
            code: task.state == .timeout ? JSONRPCError.Code.callTimedOut : JSONRPCError.Code.taskFailed,
            message: "Task \(task.id) ended \(task.state.rawValue): \(task.errorMessage ?? "no reason given")",
            data: TaskMethods.status(task))
    }
}

extension JSONValue {
    var numberValue: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }
}
