import FoundationEssentials
import JSONRPC
import NIOCore

/// A task record as bytes on a shared board, and back. The task's data and result stay raw: they
/// are copied into the record, never decoded. The id is not in the bytes (the board holds it).
enum TaskRecordCodec {
    static func encode(_ task: TaskRecord) -> ByteBuffer {
        let submission = task.submission
        var object: [String: JSONValue] = [
            "taskType": .string(submission.taskType),
            "taskData": .raw(submission.taskData),
            "priority": .integer(Int64(submission.priority)),
            "timeoutMs": .integer(milliseconds(submission.timeout)),
            "maxRetries": .integer(Int64(submission.maximumRetries)),
            "retryOn": .array(submission.retryOn.map { .string($0.rawValue) }.sorted { $0.stringValue! < $1.stringValue! }),
            "backoff": ["kind": .string(submission.backoff.kind.rawValue), "delayMs": .integer(milliseconds(submission.backoff.delay))],
            "retentionMs": .integer(milliseconds(submission.retention)),
            "minimumMatch": .double(submission.minimumMatch),
            "state": .string(task.state.rawValue),
            "createdAt": time(task.createdAt),
            "lastUpdatedAt": time(task.lastUpdatedAt),
            "attempts": .array(task.attempts.map { attempt in
                var value: [String: JSONValue] = [
                    "agent": .string(attempt.agent), "match": .double(attempt.matchConfidence), "started": time(attempt.started),
                ]
                if let ended = attempt.ended { value["ended"] = time(ended) }
                if let error = attempt.error { value["error"] = .string(error) }
                if let replica = attempt.replica { value["replica"] = .string(replica) }
                return .object(value)
            }),
        ]
        if !submission.requiredCapabilities.isEmpty { object["requiredCapabilities"] = .array(submission.requiredCapabilities.map(JSONValue.string)) }
        if let key = submission.idempotencyKey { object["idempotencyKey"] = .string(key) }
        if !submission.dependsOn.isEmpty { object["dependsOn"] = .array(submission.dependsOn.map(JSONValue.string)) }
        if let callback = submission.callback { object["callback"] = .string(callback) }
        if let traceparent = submission.traceparent { object["traceparent"] = .string(traceparent) }
        if let sticky = submission.routing.stickyKey { object["stickyKey"] = .string(sticky) }
        if let tenant = submission.routing.tenant { object["tenant"] = .string(tenant) }
        if let owner = submission.ownerTenant { object["ownerTenant"] = .string(owner) }
        if let principal = submission.submittedBy { object["submittedBy"] = .string(principal) }
        if !submission.heldQuotas.isEmpty { object["heldQuotas"] = .array(submission.heldQuotas.map(JSONValue.string)) }
        if let token = submission.quotaToken { object["quotaToken"] = .string(token) }
        if let startTime = task.startTime { object["startTime"] = time(startTime) }
        if let completionTime = task.completionTime { object["completionTime"] = time(completionTime) }
        if let agent = task.assignedAgent { object["assignedAgent"] = ["id": .string(agent.id), "name": .string(agent.name)] }
        if let result = task.result { object["result"] = .raw(result) }
        if let message = task.errorMessage { object["errorMessage"] = .string(message) }
        if let waiting = task.waitingFor { object["waitingFor"] = .string(waiting) }
        var buffer = ByteBuffer()
        JSONValue.object(object).write(to: &buffer)
        return buffer
    }

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    static func decode(id: String, _ bytes: ByteBuffer) throws -> TaskRecord {
        let raw: RawJSON
        do { raw = try RawJSON(validating: bytes) } catch { throw Malformed(description: "task \(id): the stored record is not JSON: \(error)") }
        // One scan of the record's members; `member(_:)` would rescan the object for each.
        var fields: [String: RawJSON] = [:]
        for (name, value) in raw.members() { fields[name] = value }
        guard let taskType = fields["taskType"]?.stringValue else { throw Malformed(description: "task \(id): the stored record has no taskType") }
        var submission = TaskSubmission(taskType: taskType, taskData: fields["taskData"] ?? .emptyObject)
        func integer(_ key: String) -> Int64? { fields[key]?.decoded().integerValue }
        func strings(_ key: String) -> [String] {
            guard case .array(let items)? = fields[key]?.decoded() else { return [] }
            return items.compactMap(\.stringValue)
        }
        submission.priority = Int(integer("priority") ?? 5)
        submission.timeout = .milliseconds(integer("timeoutMs") ?? 300_000)
        submission.maximumRetries = Int(integer("maxRetries") ?? 0)
        if fields["retryOn"] != nil { submission.retryOn = Set(strings("retryOn").compactMap(FailureKind.init(rawValue:))) }
        submission.retention = .milliseconds(integer("retentionMs") ?? 3_600_000)
        if case .double(let share)? = fields["minimumMatch"]?.decoded() { submission.minimumMatch = share }
        if let backoff = fields["backoff"] {
            submission.backoff = BackoffPolicy(
                kind: BackoffPolicy.Kind(rawValue: backoff.member("kind")?.stringValue ?? "") ?? .exponential,
                delay: .milliseconds(backoff.member("delayMs")?.decoded().integerValue ?? 500))
        }
        submission.requiredCapabilities = strings("requiredCapabilities")
        submission.idempotencyKey = fields["idempotencyKey"]?.stringValue
        submission.dependsOn = strings("dependsOn")
        submission.callback = fields["callback"]?.stringValue
        submission.traceparent = fields["traceparent"]?.stringValue
        submission.routing = RoutingHints(stickyKey: fields["stickyKey"]?.stringValue, tenant: fields["tenant"]?.stringValue)
        submission.ownerTenant = fields["ownerTenant"]?.stringValue
        submission.submittedBy = fields["submittedBy"]?.stringValue
        submission.heldQuotas = strings("heldQuotas")
        submission.quotaToken = fields["quotaToken"]?.stringValue

        var task = TaskRecord(id: id, submission: submission)
        task.state = TaskState(rawValue: fields["state"]?.stringValue ?? "") ?? .pending
        task.createdAt = date(fields["createdAt"]) ?? task.createdAt
        task.lastUpdatedAt = date(fields["lastUpdatedAt"]) ?? task.lastUpdatedAt
        task.startTime = date(fields["startTime"])
        task.completionTime = date(fields["completionTime"])
        if let agent = fields["assignedAgent"], let agentID = agent.member("id")?.stringValue {
            task.assignedAgent = (agentID, agent.member("name")?.stringValue ?? agentID)
        }
        if case .array(let attempts)? = fields["attempts"]?.decoded() {
            for attempt in attempts {
                var value = TaskAttempt(agent: attempt["agent"]?.stringValue ?? "?", started: date(attempt["started"]) ?? task.createdAt)
                if case .double(let match)? = attempt["match"] { value.matchConfidence = match }
                value.ended = date(attempt["ended"])
                value.error = attempt["error"]?.stringValue
                value.replica = attempt["replica"]?.stringValue
                task.attempts.append(value)
            }
        }
        task.result = fields["result"]
        task.errorMessage = fields["errorMessage"]?.stringValue
        task.waitingFor = fields["waitingFor"]?.stringValue
        return task
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    private static func time(_ date: Date) -> JSONValue {
        .double((date.timeIntervalSince1970 * 1000).rounded() / 1000)
    }

    private static func date(_ raw: RawJSON?) -> Date? {
        date(raw?.decoded())
    }

    private static func date(_ value: JSONValue?) -> Date? {
        switch value {
        case .double(let seconds)?: Date(timeIntervalSince1970: seconds)
        case .integer(let seconds)?: Date(timeIntervalSince1970: Double(seconds))
        default: nil
        }
    }
}
