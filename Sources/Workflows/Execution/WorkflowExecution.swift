import Backend
import JSONRPC

/// Where an execution is, after the seed's workflow_executions.status.
public enum WorkflowExecutionStatus: String, Sendable, CaseIterable {
    case pending = "PENDING"
    case running = "RUNNING"
    case waitingApproval = "WAITING_APPROVAL"
    case completed = "COMPLETED"
    case failed = "FAILED"
    case cancelled = "CANCELLED"
    case timedOut = "TIMED_OUT"

    public var isFinal: Bool {
        switch self {
        case .completed, .failed, .cancelled, .timedOut: true
        default: false
        }
    }
}

/// Where a step is.
public enum WorkflowStepStatus: String, Sendable, CaseIterable {
    case pending = "PENDING"
    case running = "RUNNING"
    case waitingApproval = "WAITING_APPROVAL"
    case completed = "COMPLETED"
    case failed = "FAILED"
    /// Not run: its branch was not taken, every step it depends on was skipped, or it failed
    /// with `errorHandling: skip` (then `error` says why).
    case skipped = "SKIPPED"
    case cancelled = "CANCELLED"

    var isFinal: Bool { self == .completed || self == .failed || self == .skipped || self == .cancelled }
}

/// A human approval's request and decision.
public struct WorkflowApprovalState: Sendable, Hashable {
    public var message: String
    public var approvers: [String]
    public var requestedAt: Timestamp
    public var deadline: Timestamp?
    public var approved: Bool?
    public var decidedBy: String?
    public var comment: String?
    public var decidedAt: Timestamp?
    public var timedOut: Bool = false
}

/// One step's record: status, attempts, timings, result or error. Steps in a loop body hold
/// their latest iteration.
public struct WorkflowStepState: Sendable, Hashable {
    public var stepID: String
    public var status: WorkflowStepStatus
    public var attempts: Int = 0
    public var startedAt: Timestamp?
    public var completedAt: Timestamp?
    public var result: JSONValue?
    public var error: String?
    public var timedOut: Bool = false
    /// A condition's branch: "then" or "else".
    public var branch: String?
    /// A loop's completed iterations.
    public var iterations: Int?
    public var approval: WorkflowApprovalState?
    /// Why a step was skipped.
    public var skipReason: String?
    /// The loop iterations the record belongs to ("" at the top level); a record of another
    /// round is stale for the current one.
    var round = ""
    var loopResults: [JSONValue] = []

    public init(stepID: String, status: WorkflowStepStatus) {
        self.stepID = stepID
        self.status = status
    }

    /// What expressions see as `steps.<id>`.
    /// Ended, and not a compensation: it counts in `finishedSteps`.
    var countsAsFinished: Bool { status.isFinal && round != "compensation" }

    var expressionValue: JSONValue {
        var members: [String: JSONValue] = ["status": .string(status.rawValue), "attempts": .integer(Int64(attempts))]
        if let result { members["result"] = result }
        if let error { members["error"] = .string(error) }
        if let branch { members["branch"] = .string(branch) }
        if let iterations { members["iterations"] = .integer(Int64(iterations)) }
        return .object(members)
    }
}

/// An execution of one version of a workflow, after the seed's workflow_executions.
public struct WorkflowExecution: Sendable {
    /// Where an execution's `executionContext` keeps the W3C trace context of the request that
    /// started it: its steps' calls and its events carry it on.
    public static let traceparentKey = "traceparent"

    public var executionID: String
    public var workflowName: String
    public var version: String
    public var status: WorkflowExecutionStatus
    public var triggerType: String
    public var triggerData: JSONValue
    public var executionContext: JSONValue
    /// The inputs as given, with the defaults of those not given.
    public var inputs: JSONValue
    public var outputs: JSONValue?
    public var startedAt: Timestamp
    public var completedAt: Timestamp?
    /// Why it failed, timed out or was cancelled: `{stepId?, message, timedOut, compensations?}`.
    public var errorDetails: JSONValue?
    /// Every step that has a record, by id.
    public var steps: [String: WorkflowStepState]
    /// How many steps the definition has (nested ones included, compensations not).
    public var totalSteps: Int

    /// The steps running or waiting for a decision now.
    public var currentSteps: [String] {
        status.isFinal ? [] : steps.values.filter { $0.status == .running || $0.status == .waitingApproval }.map(\.stepID).sorted()
    }

    /// How many steps have ended (compensations not counted).
    public var finishedSteps: Int {
        steps.values.filter(\.countsAsFinished).count
    }

    /// The approvals waiting for a decision.
    public var pendingApprovals: [(stepID: String, approval: WorkflowApprovalState)] {
        steps.values.filter { $0.status == .waitingApproval }.compactMap { step in step.approval.map { (step.stepID, $0) } }
            .sorted { $0.stepID < $1.stepID }
    }
}

// MARK: - JSON for clients

extension WorkflowExecution {
    /// The execution as `workflows/status` returns it.
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = [
            "executionId": .string(executionID), "workflowName": .string(workflowName), "version": .string(version),
            "status": .string(status.rawValue), "triggerType": .string(triggerType), "triggerData": triggerData,
            "executionContext": executionContext, "inputs": inputs,
            "currentSteps": .array(currentSteps.map(JSONValue.string)),
            "stepResults": .object(steps.mapValues(\.jsonValue)),
            "startedAt": .string(startedAt.iso8601),
            "progress": ["finishedSteps": .integer(Int64(finishedSteps)), "totalSteps": .integer(Int64(totalSteps))],
        ]
        if let outputs { members["outputs"] = outputs }
        if let completedAt {
            members["completedAt"] = .string(completedAt.iso8601)
            members["totalDurationMs"] = .integer(completedAt.millisecondsSinceEpoch - startedAt.millisecondsSinceEpoch)
        }
        if let errorDetails { members["errorDetails"] = errorDetails }
        let approvals = pendingApprovals
        if !approvals.isEmpty {
            members["pendingApprovals"] = .array(approvals.map { stepID, approval in
                var entry: [String: JSONValue] = [
                    "stepId": .string(stepID), "message": .string(approval.message),
                    "approvers": .array(approval.approvers.map(JSONValue.string)), "requestedAt": .string(approval.requestedAt.iso8601),
                ]
                if let deadline = approval.deadline { entry["deadline"] = .string(deadline.iso8601) }
                return .object(entry)
            })
        }
        return .object(members)
    }
}

extension WorkflowStepState {
    /// The step as `stepResults` shows it.
    public var jsonValue: JSONValue {
        var members = self.members { .string($0.iso8601) }
        if let startedAt, let completedAt { members["durationMs"] = .integer(completedAt.millisecondsSinceEpoch - startedAt.millisecondsSinceEpoch) }
        return .object(members)
    }

    /// What clients and storage both keep of a step, with times written by `time`.
    fileprivate func members(time: (Timestamp) -> JSONValue) -> [String: JSONValue] {
        var members: [String: JSONValue] = ["stepId": .string(stepID), "status": .string(status.rawValue), "attempts": .integer(Int64(attempts))]
        if let startedAt { members["startedAt"] = time(startedAt) }
        if let completedAt { members["completedAt"] = time(completedAt) }
        if let result { members["result"] = result }
        if let error { members["error"] = .string(error) }
        if timedOut { members["timedOut"] = true }
        if let branch { members["branch"] = .string(branch) }
        if let iterations { members["iterations"] = .integer(Int64(iterations)) }
        if let skipReason { members["skipReason"] = .string(skipReason) }
        if let approval {
            var entry: [String: JSONValue] = [
                "message": .string(approval.message), "approvers": .array(approval.approvers.map(JSONValue.string)),
                "requestedAt": time(approval.requestedAt),
            ]
            if let deadline = approval.deadline { entry["deadline"] = time(deadline) }
            if let approved = approval.approved { entry["approved"] = .bool(approved) }
            if let by = approval.decidedBy { entry["decidedBy"] = .string(by) }
            if let comment = approval.comment { entry["comment"] = .string(comment) }
            if let at = approval.decidedAt { entry["decidedAt"] = time(at) }
            if approval.timedOut { entry["timedOut"] = true }
            members["approval"] = .object(entry)
        }
        return members
    }
}

// MARK: - JSON for storage (times as milliseconds)

extension WorkflowExecution {
    var storageJSON: JSONValue {
        var members: [String: JSONValue] = [
            "executionId": .string(executionID), "workflowName": .string(workflowName), "version": .string(version),
            "status": .string(status.rawValue), "triggerType": .string(triggerType), "triggerData": triggerData,
            "executionContext": executionContext, "inputs": inputs, "startedAt": .integer(startedAt.millisecondsSinceEpoch),
            "totalSteps": .integer(Int64(totalSteps)),
        ]
        if let outputs { members["outputs"] = outputs }
        if let completedAt { members["completedAt"] = .integer(completedAt.millisecondsSinceEpoch) }
        if let errorDetails { members["errorDetails"] = errorDetails }
        return .object(members)
    }

    init?(storage value: JSONValue, steps: [String: WorkflowStepState]) {
        guard let members = value.objectValue, let id = members["executionId"]?.stringValue,
            let name = members["workflowName"]?.stringValue, let version = members["version"]?.stringValue,
            let status = members["status"]?.stringValue.flatMap(WorkflowExecutionStatus.init(rawValue:)),
            let started = members["startedAt"]?.integerValue
        else { return nil }
        executionID = id
        workflowName = name
        self.version = version
        self.status = status
        triggerType = members["triggerType"]?.stringValue ?? "manual"
        triggerData = members["triggerData"] ?? [:]
        executionContext = members["executionContext"] ?? [:]
        inputs = members["inputs"] ?? [:]
        outputs = members["outputs"]
        startedAt = Timestamp(millisecondsSinceEpoch: started)
        completedAt = members["completedAt"]?.integerValue.map(Timestamp.init(millisecondsSinceEpoch:))
        errorDetails = members["errorDetails"]
        totalSteps = Int(members["totalSteps"]?.integerValue ?? 0)
        self.steps = steps
    }
}

extension WorkflowStepState {
    var storageJSON: JSONValue {
        var members = self.members { .integer($0.millisecondsSinceEpoch) }
        if !round.isEmpty { members["round"] = .string(round) }
        if !loopResults.isEmpty { members["loopResults"] = .array(loopResults) }
        return .object(members)
    }

    init?(storage value: JSONValue) {
        guard let members = value.objectValue, let id = members["stepId"]?.stringValue,
            let status = members["status"]?.stringValue.flatMap(WorkflowStepStatus.init(rawValue:))
        else { return nil }
        func time(_ value: JSONValue?) -> Timestamp? { value?.integerValue.map(Timestamp.init(millisecondsSinceEpoch:)) }
        self.init(stepID: id, status: status)
        attempts = Int(members["attempts"]?.integerValue ?? 0)
        startedAt = time(members["startedAt"])
        completedAt = time(members["completedAt"])
        result = members["result"]
        error = members["error"]?.stringValue
        timedOut = members["timedOut"] == true
        branch = members["branch"]?.stringValue
        iterations = members["iterations"]?.integerValue.map { Int($0) }
        skipReason = members["skipReason"]?.stringValue
        round = members["round"]?.stringValue ?? ""
        if case .array(let results) = members["loopResults"] { loopResults = results }
        if let entry = members["approval"]?.objectValue {
            var approvers: [String] = []
            if case .array(let names) = entry["approvers"] { approvers = names.compactMap(\.stringValue) }
            approval = WorkflowApprovalState(
                message: entry["message"]?.stringValue ?? "", approvers: approvers,
                requestedAt: time(entry["requestedAt"]) ?? Timestamp(millisecondsSinceEpoch: 0), deadline: time(entry["deadline"]),
                approved: { if case .bool(let flag) = entry["approved"] { return flag } else { return nil } }(),
                decidedBy: entry["decidedBy"]?.stringValue, comment: entry["comment"]?.stringValue, decidedAt: time(entry["decidedAt"]),
                timedOut: entry["timedOut"] == true)
        }
    }
}
