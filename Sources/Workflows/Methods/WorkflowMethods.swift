import JSONRPC

/// The `workflows/*` JSON-RPC methods over an executor (and its catalog): params in, a result
/// or a `JSONRPCError` out. The gateway registers each name in `methodNames` and forwards.
public struct WorkflowMethods: Sendable {
    public static let methodNames = [
        "workflows/create", "workflows/list", "workflows/get", "workflows/execute", "workflows/status", "workflows/approve",
        "workflows/cancel", "workflows/validate", "workflows/executions",
    ]

    public let executor: WorkflowExecutor

    public init(executor: WorkflowExecutor) {
        self.executor = executor
    }

    /// Who is asking, as the gateway established it.
    public struct Caller: Sendable {
        public var name: String?
        public var roles: [String]
        /// The name was proved (an authenticated principal): it is the approver, and a `by` that
        /// names someone else is refused rather than believed.
        public var isAuthenticated: Bool
        /// With access control, the caller's tenant: its executions are its own, another
        /// tenant's are not found.
        public var tenant: String?

        /// The W3C trace context of the request, for an execution it starts.
        public var traceparent: String?

        public init(name: String?, roles: [String] = [], isAuthenticated: Bool = false, tenant: String? = nil, traceparent: String? = nil) {
            self.traceparent = traceparent
            self.name = name
            self.roles = roles
            self.isAuthenticated = isAuthenticated
            self.tenant = tenant
        }

        /// Where an execution records its tenant, in its `executionContext`.
        static let tenantKey = "tenant"
    }

    /// Serves one request. `caller` names the peer; it is recorded as `createdBy`, and is the
    /// approver of `workflows/approve` (without authentication, `by` may name another).
    public func handle(method: String, params: JSONValue?, caller: Caller = Caller(name: nil)) async throws(JSONRPCError) -> JSONValue {
        let params = try Params(method: method, value: params)
        do {
            switch method {
            case "workflows/create":
                let createdBy = caller.isAuthenticated ? caller.name : try params.optionalString("createdBy") ?? caller.name
                let entry: WorkflowCatalogEntry
                if let source = try params.optionalString("source") {
                    entry = try await executor.catalog.create(source: source, createdBy: createdBy)
                } else {
                    var document = params.members
                    document["createdBy"] = nil
                    entry = try await executor.catalog.create(document: .object(document), createdBy: createdBy)
                }
                var result = entry.jsonValue.objectValue ?? [:]
                result["created"] = .bool(entry.created)
                return .object(result)
            case "workflows/list":
                let summaries = try await executor.catalog.list(name: try params.optionalString("workflowName"))
                return ["workflows": .array(summaries.map(\.jsonValue))]
            case "workflows/get":
                return try await executor.catalog.get(name: try params.string("workflowName"), version: try params.optionalString("version")).jsonValue
            case "workflows/execute":
                var request = WorkflowExecutionRequest(workflowName: try params.string("workflowName"), version: try params.optionalString("version"))
                request.inputs = try params.optionalObject("inputs") ?? [:]
                request.triggerType = try params.optionalString("triggerType") ?? "manual"
                request.triggerData = .object(try params.optionalObject("triggerData") ?? [:])
                var context = try params.optionalObject("executionContext") ?? [:]
                // The tenant is the caller's, whatever the params say.
                if let tenant = caller.tenant { context[Caller.tenantKey] = .string(tenant) }
                // The trace is the request's (the gateway's span of it), not one the params name.
                context[WorkflowExecution.traceparentKey] = caller.traceparent.map(JSONValue.string)
                request.executionContext = .object(context)
                return try await executor.execute(request).jsonValue
            case "workflows/status":
                let executionID = try params.string("executionId")
                try await checkVisible(executionID, to: caller)
                return try await executor.status(executionID: executionID).jsonValue
            case "workflows/approve":
                let claimed = try params.optionalString("by")
                if caller.isAuthenticated, let claimed, claimed != caller.name {
                    throw JSONRPCError(
                        code: JSONRPCError.Code.forbidden,
                        message: "Forbidden: \(caller.name ?? "the caller") may not approve as \(claimed): the approver is the authenticated principal",
                        data: ["principal": .string(caller.name ?? ""), "refused": "workflows/approve", "by": .string(claimed),
                               "reason": "the approver is the authenticated principal; \"by\" may only name it"])
                }
                guard let by = caller.isAuthenticated ? caller.name : claimed ?? caller.name else {
                    throw Params.invalid("workflows/approve needs \"by\": who decides")
                }
                guard case .bool(let approved)? = params.members["approved"] else {
                    throw Params.invalid("workflows/approve needs \"approved\": true or false")
                }
                try await checkVisible(try params.string("executionId"), to: caller)
                return try await executor.approve(
                    executionID: try params.string("executionId"), stepID: try params.string("stepId"), approved: approved, by: by,
                    roles: caller.isAuthenticated ? caller.roles : [], comment: try params.optionalString("comment")
                ).jsonValue
            case "workflows/cancel":
                try await checkVisible(try params.string("executionId"), to: caller)
                return try await executor.cancel(executionID: try params.string("executionId")).jsonValue
            case "workflows/validate":
                return try Self.validate(params)
            case "workflows/executions":
                return try await executions(params, caller: caller)
            default:
                throw JSONRPCError(code: JSONRPCError.Code.methodNotFound, message: "Method not found", data: ["method": .string(method)])
            }
        } catch let error as WorkflowError {
            throw error.jsonRPCError
        } catch let error as JSONRPCError {
            throw error
        } catch {
            throw JSONRPCError(code: JSONRPCError.Code.internalError, message: "Internal error", data: ["reason": .string("\(error)")])
        }
    }
}

extension WorkflowMethods {
    /// Throws when the caller's tenant may not see the execution: another tenant's execution is
    /// not found, exactly as one that does not exist. Without tenancy nothing is looked up.
    func checkVisible(_ executionID: String, to caller: Caller) async throws(WorkflowError) {
        guard let tenant = caller.tenant else { return }
        let execution = try await executor.status(executionID: executionID)
        guard execution.executionContext[Caller.tenantKey]?.stringValue != tenant else { return }
        throw WorkflowError(.unknownExecution, "no workflow execution \"\(executionID)\"", data: ["executionId": .string(executionID)])
    }
}

extension WorkflowMethods {
    /// `workflows/validate`: the checks of `workflows/create` (and `switchboard workflow check`),
    /// nothing stored. The definition as JSON comes back whenever the text parsed, problems or
    /// not, so that an editor can hold it and show each problem where it belongs.
    fileprivate static func validate(_ params: Params) throws(JSONRPCError) -> JSONValue {
        let text: String
        if let source = try params.optionalString("source") {
            text = source
        } else if let document = try params.optionalObject("definition") {
            do {
                text = try WorkflowLoader.text(of: ExpressionEvaluator.plain(.object(document)))
            } catch {
                return ["valid": false, "problems": .array(error.diagnostics.map(\.jsonValue))]
            }
        } else {
            throw Params.invalid("workflows/validate needs \"source\" (YAML or JSON text) or \"definition\" (an object)")
        }
        let (definition, problems) = WorkflowLoader.analyse(text)
        var result: [String: JSONValue] = ["valid": .bool(definition != nil && problems.isEmpty), "problems": .array(problems.map(\.jsonValue))]
        if let definition {
            if case .object = definition.document { result["definition"] = definition.document }
            // The name and version as read (a YAML `version: 1.10` is "1.10"), problems or not:
            // an editor writes them back as they were.
            if !definition.name.isEmpty { result["workflowName"] = .string(definition.name) }
            if !definition.version.isEmpty { result["version"] = .string(definition.version) }
            if problems.isEmpty { result["stepCount"] = .integer(Int64(definition.stepCount)) }
        }
        return .object(result)
    }

    /// The most executions one `workflows/executions` page holds.
    static let maximumExecutionsPage = 500

    /// `workflows/executions`: the caller's executions, newest first, a page at a time.
    fileprivate func executions(_ params: Params, caller: Caller) async throws -> JSONValue {
        let name = try params.optionalString("workflowName")
        var status: WorkflowExecutionStatus?
        if let text = try params.optionalString("status") {
            guard let chosen = WorkflowExecutionStatus(rawValue: text.uppercased()) else {
                throw Params.invalid("unknown status \"\(text)\" (one of \(WorkflowExecutionStatus.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            status = chosen
        }
        let limit = try params.optionalInteger("limit", in: 1...Self.maximumExecutionsPage) ?? 50
        let cursor = try params.optionalString("cursor")
        if let cursor, !cursor.hasPrefix("started/") {
            throw Params.invalid("\"cursor\" must be the nextCursor of an earlier page")
        }
        let tenant = caller.tenant
        let wanted = status
        let page = try await executor.executions(after: cursor, limit: limit, unfinishedOnly: status.map { !$0.isFinal } ?? false) { execution in
            (name == nil || execution.workflowName == name) && (wanted == nil || execution.status == wanted)
                && (tenant == nil || execution.executionContext[Caller.tenantKey]?.stringValue == tenant)
        }
        var result: [String: JSONValue] = ["executions": .array(page.executions.map(\.summaryJSON))]
        if let next = page.nextCursor { result["nextCursor"] = .string(next) }
        return .object(result)
    }
}

extension WorkflowExecution {
    /// What a list shows of an execution: the object of 11.6 without its step records, data
    /// and outputs (`workflows/status` has them).
    var summaryJSON: JSONValue {
        guard case .object(var members) = jsonValue else { return jsonValue }
        for heavy in ["stepResults", "triggerData", "executionContext", "inputs", "outputs"] { members[heavy] = nil }
        return .object(members)
    }
}

/// Reads members of a method's params, refusing wrong ones with -32602.
private struct Params {
    let method: String
    let members: [String: JSONValue]

    init(method: String, value: JSONValue?) throws(JSONRPCError) {
        self.method = method
        switch value.map(ExpressionEvaluator.plain) {
        case nil, .null?: members = [:]
        case .object(let object)?: members = object
        default: throw Self.invalid("\(method) takes an object as params")
        }
    }

    static func invalid(_ reason: String) -> JSONRPCError {
        JSONRPCError(code: JSONRPCError.Code.invalidParams, message: "Invalid params: \(reason)", data: ["reason": .string(reason)])
    }

    func string(_ name: String) throws(JSONRPCError) -> String {
        guard let value = try optionalString(name), !value.isEmpty else { throw Self.invalid("\(method) needs \"\(name)\", a string") }
        return value
    }

    func optionalString(_ name: String) throws(JSONRPCError) -> String? {
        switch members[name].map(ExpressionEvaluator.plain) {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw Self.invalid("\"\(name)\" must be a string")
        }
    }

    func optionalInteger(_ name: String, in range: ClosedRange<Int>) throws(JSONRPCError) -> Int? {
        switch members[name].map(ExpressionEvaluator.plain) {
        case nil, .null?: return nil
        case .integer(let value)? where range.contains(Int(value)): return Int(value)
        case .double(let value)? where value.rounded() == value && value >= Double(range.lowerBound) && value <= Double(range.upperBound):
            return Int(value)
        default: throw Self.invalid("\"\(name)\" must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
    }

    func optionalObject(_ name: String) throws(JSONRPCError) -> [String: JSONValue]? {
        switch members[name].map(ExpressionEvaluator.plain) {
        case nil, .null?: return nil
        case .object(let object)?: return object
        default: throw Self.invalid("\"\(name)\" must be an object")
        }
    }
}
