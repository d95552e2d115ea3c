import Foundation
import JSONRPC

/// `switchboard status`: the sections of `gateway/status` (protocol-spec 05, 5.5), one line each.
enum StatusView {
    static func text(_ status: JSONValue, address: String) -> String {
        var lines = DetailList()
        lines.add("gateway", "\(status.text("server.name")) \(status.text("server.version")) at \(address), \(status.text("backend")) backend")
        lines.add("uptime", status.at("uptimeSeconds")?.doubleValue.map { TimeText.span(seconds: $0) })
        lines.add("draining", status.at("draining")?.boolValue == true ? "yes: new requests are refused" : "no")
        lines.add("connections", "\(status.text("connections.open")) open, \(status.text("connections.accepted")) accepted, \(counted(status.at("inFlight"), "request")) in flight")
        lines.add("listeners", status.list("listeners") ?? "none (stdio only)")
        if let agents = status.at("agents") {
            lines.add("agents", "\(agents.text("count"))" + counts(agents.at("byState")).map { " (\($0))" }.orEmpty)
        }
        if let tasks = status.at("tasks") {
            var text = "\(tasks.text("queued")) queued"
            if let states = counts(tasks.at("byState")) { text += "; \(states)" }
            if let latency = tasks.at("assignmentLatencyMs") {
                text += "; assigned in \(latency.text("p50")) ms (p50), \(latency.text("p99")) ms (p99)"
            }
            if let dead = tasks.at("deadLettered") { text += "; \(dead.displayText) dead-lettered" }
            lines.add("tasks", text)
        }
        if let coordination = status.at("coordination") {
            lines.add(
                "events",
                "\(coordination.text("subscriptions")) subscriptions, \(coordination.text("eventsPublished")) published, \(coordination.text("eventsDropped")) dropped; \(coordination.text("messagesSent")) messages sent")
        }
        if let replicas = status.at("replicas")?.arrayValue {
            lines.add("replicas", replicas.map { replica in
                "\(replica.text("replicaId"))\(replica.at("self")?.boolValue == true ? " (this one)" : "") with \(replica.text("agents")) agents"
            }.joined(separator: ", "))
        }
        if let limits = status.at("limits") {
            lines.add("limits", "messages up to \(limits.text("maxMessageBytes")) bytes, \(limits.text("maxInFlightPerConnection")) requests in flight per connection")
        }
        return lines.text
    }

    /// `1 request`, `3 requests`.
    static func counted(_ value: JSONValue?, _ noun: String) -> String {
        guard let count = value?.integerValue else { return "- \(noun)s" }
        return "\(count) \(noun)\(count == 1 ? "" : "s")"
    }

    /// `IDLE 2, BUSY 1` from `{"IDLE": 2, "BUSY": 1}`, by name; nil when there are none.
    static func counts(_ byState: JSONValue?) -> String? {
        guard let members = byState?.objectValue, !members.isEmpty else { return nil }
        return members.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.displayText)" }.joined(separator: ", ")
    }
}

/// `switchboard agents [ID]`: AgentStatus objects (protocol-spec 07, 7.4; 10, 10.7.4).
enum AgentViews {
    static func table(_ result: JSONValue) -> String {
        let agents = result.at("agents")?.arrayValue ?? []
        guard !agents.isEmpty else { return "no agents" }
        let withReplicas = agents.contains { $0.at("replica") != nil }
        var table = TextTable("AGENT", "TEMPLATE", "STATE", "HEALTH", "LOAD", "LATENCY", "SUCCESS", "VERSION", "CIRCUIT")
        if withReplicas { table.columns.insert("REPLICA", at: 2) }
        for agent in agents {
            var row = [agent.text("agentId"), agent.text("template"), state(agent), agent.text("healthStatus"), load(agent), latency(agent), successRate(agent), version(agent), circuit(agent)]
            if withReplicas { row.insert(agent.text("replica"), at: 2) }
            table.append(row)
        }
        return table.text
    }

    static func details(_ agent: JSONValue) -> String {
        var lines = DetailList()
        lines.add("agent", agent.text("agentId"))
        lines.add("name", agent.text("agentName"))
        lines.add("template", agent.text("template"))
        lines.add("kind", "\(agent.text("kind")), type \(agent.text("agentType"))")
        lines.add("replica", agent.at("replica")?.displayText)
        lines.add("version", version(agent))
        lines.add("state", state(agent))
        lines.add("error", agent.at("error")?.displayText)
        lines.add("health", agent.text("healthStatus"))
        lines.add("load", "\(load(agent)) in flight (\(percent(agent.at("performanceMetrics.currentLoad"))))")
        lines.add("calls", "\(agent.text("performanceMetrics.tasksCompleted")) completed, \(agent.text("performanceMetrics.tasksFailed")) failed")
        lines.add("latency", latency(agent))
        lines.add("success rate", successRate(agent))
        lines.add("circuit", circuit(agent) + (agent.at("circuit.consecutiveFailures").map { ", \($0.displayText) failures in a row" } ?? ""))
        lines.add("capabilities", agent.list("capabilities"))
        lines.add("tools", agent.list("tools"))
        lines.add("resources", resourceUsage(agent.at("resourceUsage")))
        lines.add("process", agent.at("processId")?.displayText)
        lines.add("command", command(agent.at("configuration")))
        lines.add("server", agent.at("serverInfo").map { "\($0.text("name")) \($0.text("version"))" })
        lines.add("identity", agent.at("identity.subject")?.displayText)
        lines.add("registered", agent.at("registeredAt").map { "\($0.displayText) (\(TimeText.age(since: $0.stringValue)) ago)" })
        lines.add("last heartbeat", agent.at("lastHeartbeat").map { "\($0.displayText) (\(TimeText.age(since: $0.stringValue)) ago)" })
        var text = lines.text
        if let learned = agent.at("learned")?.objectValue, !learned.isEmpty {
            var table = TextTable("TOOL", "CALLS", "LATENCY", "SUCCESS")
            for (tool, figures) in learned.sorted(by: { $0.key < $1.key }) {
                table.append([
                    tool, figures.text("calls"), figures.at("averageLatencyMs")?.doubleValue.map { "\($0.text(decimals: 1))ms" } ?? "-",
                    percent(figures.at("successRate")),
                ])
            }
            text += "\n\nlearned per tool:\n" + table.text
        }
        return text
    }

    private static func state(_ agent: JSONValue) -> String {
        agent.text("currentState") + (agent.at("draining")?.boolValue == true ? " (draining)" : "")
    }

    private static func load(_ agent: JSONValue) -> String {
        "\(agent.text("inFlight"))/\(agent.text("maxConcurrency"))"
    }

    private static func hasCalls(_ agent: JSONValue) -> Bool {
        let completed = agent.at("performanceMetrics.tasksCompleted")?.integerValue ?? 0
        let failed = agent.at("performanceMetrics.tasksFailed")?.integerValue ?? 0
        return completed + failed > 0
    }

    private static func latency(_ agent: JSONValue) -> String {
        guard hasCalls(agent), let milliseconds = agent.at("performanceMetrics.averageResponseTime")?.doubleValue else { return "-" }
        return "\(milliseconds.text(decimals: 1))ms"
    }

    private static func successRate(_ agent: JSONValue) -> String {
        hasCalls(agent) ? percent(agent.at("performanceMetrics.successRate")) : "-"
    }

    private static func version(_ agent: JSONValue) -> String {
        agent.text("version") + (agent.at("activeVersion")?.boolValue == false ? " (not active)" : "")
    }

    private static func circuit(_ agent: JSONValue) -> String {
        guard let state = agent.at("circuit.state")?.stringValue else { return "-" }
        guard let retry = agent.at("circuit.retryInSeconds")?.doubleValue else { return state }
        return "\(state), retry in \(retry.text(decimals: 1))s"
    }

    private static func percent(_ value: JSONValue?) -> String {
        guard let fraction = value?.doubleValue else { return "-" }
        return "\((fraction * 100).text(decimals: 1))%"
    }

    private static func resourceUsage(_ usage: JSONValue?) -> String? {
        guard let usage else { return nil }
        var parts: [String] = []
        if let cpu = usage.at("cpu")?.doubleValue { parts.append("cpu \(cpu.text(decimals: 1))%") }
        if let memory = usage.at("memory")?.doubleValue { parts.append("memory \((memory / 1_048_576).text(decimals: 1)) MiB") }
        if let seconds = usage.at("cpuSeconds")?.doubleValue { parts.append("\(seconds.text(decimals: 2)) CPU seconds") }
        return parts.joined(separator: ", ")
    }

    private static func command(_ configuration: JSONValue?) -> String? {
        guard let command = configuration?.at("command")?.stringValue else { return nil }
        return ([command] + (configuration?.at("args")?.arrayValue ?? []).map(\.displayText)).joined(separator: " ")
    }
}

/// `switchboard tasks [ID]`: TaskStatus objects (protocol-spec 10, 10.4).
enum TaskViews {
    static func table(_ result: JSONValue) -> String {
        let tasks = result.at("tasks")?.arrayValue ?? []
        guard !tasks.isEmpty else { return "no tasks" }
        let now = Date()
        var table = TextTable("TASK", "TOOL", "STATE", "PRIO", "AGENT", "ATTEMPTS", "AGE", "DURATION", "ERROR")
        for task in tasks {
            table.append([
                task.text("taskId"), task.text("taskType"), task.text("state"), task.text("priority"),
                task.text("assignedAgent.agentId"), attempts(task), TimeText.age(since: task.at("createdAt")?.stringValue, now: now),
                duration(task), (task.at("errorMessage") ?? task.at("statusMessage"))?.displayText.shortened(to: 60) ?? "",
            ])
        }
        return table.text
    }

    static func details(_ task: JSONValue) -> String {
        var lines = DetailList()
        lines.add("task", task.text("taskId"))
        lines.add("tool", task.text("taskType"))
        lines.add("state", "\(task.text("state")) (MCP status \(task.text("status")))")
        lines.add("priority", task.text("priority"))
        lines.add("retries", "\(task.text("retryCount")) of \(task.text("maxRetries"))")
        lines.add("agent", task.at("assignedAgent").map { agent in
            agent.text("agentId") + (agent.at("replica").map { " on replica \($0.displayText)" } ?? "")
        })
        lines.add("created", timeWithAge(task.at("createdAt")))
        lines.add("started", task.at("startTime")?.displayText)
        lines.add("completed", task.at("completionTime")?.displayText)
        lines.add("duration", task.at("duration") == nil ? nil : duration(task))
        lines.add("depends on", task.list("dependsOn"))
        lines.add("idempotency key", task.at("idempotencyKey")?.displayText)
        lines.add("error", task.at("errorMessage")?.displayText)
        if task.at("errorMessage") == nil { lines.add("status", task.at("statusMessage")?.displayText) }
        lines.add("result", task.at("result").map { result in
            let text = result.encoded
            return text.count > 1000 ? text.shortened(to: 1000) + " (\(text.utf8.count) bytes; --json shows all)" : text
        })
        var text = lines.text
        if let attempts = task.at("attempts")?.arrayValue, !attempts.isEmpty {
            var table = TextTable("#", "AGENT", "START", "END", "ERROR")
            for (index, attempt) in attempts.enumerated() {
                table.append([String(index + 1), attempt.text("agentId"), attempt.text("startTime"), attempt.text("endTime"), attempt.at("error")?.displayText ?? ""])
            }
            text += "\n\nattempts:\n" + table.text
        }
        return text
    }

    private static func attempts(_ task: JSONValue) -> String {
        let made = task.at("attempts")?.arrayValue?.count ?? 0
        guard let maxRetries = task.at("maxRetries")?.integerValue else { return String(made) }
        return "\(made)/\(maxRetries + 1)"
    }

    private static func duration(_ task: JSONValue) -> String {
        guard let seconds = task.at("duration")?.doubleValue else { return "-" }
        return TimeText.span(seconds: seconds)
    }

    private static func timeWithAge(_ time: JSONValue?) -> String? {
        time.map { "\($0.displayText) (\(TimeText.age(since: $0.stringValue)) ago)" }
    }
}

/// `switchboard workflows [ID]`: workflow summaries and definitions, and executions (protocol-spec 11).
enum WorkflowViews {
    static func table(_ result: JSONValue) -> String {
        let workflows = result.at("workflows")?.arrayValue ?? []
        guard !workflows.isEmpty else { return "no workflows" }
        var table = TextTable("WORKFLOW", "LATEST", "VERSIONS", "STEPS", "UPDATED", "TRIGGERS")
        for workflow in workflows {
            table.append([
                workflow.text("workflowName"), workflow.text("latestVersion"), workflow.list("versions") ?? "-", workflow.text("stepCount"),
                workflow.text("updatedAt"), triggers(workflow.at("triggers")),
            ])
        }
        return table.text
    }

    /// A definition (`workflows/get`) or an execution (`workflows/status`), by its members.
    static func details(_ result: JSONValue) -> String {
        result.at("executionId") == nil ? definition(result) : execution(result)
    }

    static func definition(_ workflow: JSONValue) -> String {
        var lines = DetailList()
        lines.add("workflow", workflow.text("workflowName"))
        lines.add("version", workflow.text("version"))
        lines.add("versions", workflow.list("versions"))
        lines.add("description", workflow.at("description")?.displayText)
        lines.add("created", workflow.text("createdAt") + (workflow.at("createdBy").map { " by \($0.displayText)" } ?? ""))
        lines.add("triggers", triggers(workflow.at("triggers")))
        lines.add("steps", workflow.text("stepCount"))
        var text = lines.text
        if let steps = workflow.at("definition.steps")?.arrayValue ?? workflow.at("definition.definition.steps")?.arrayValue, !steps.isEmpty {
            var table = TextTable("STEP", "TYPE", "TOOL", "AFTER")
            for step in steps {
                table.append([
                    (step.at("id") ?? step.at("stepId"))?.displayText ?? "-", (step.at("type") ?? step.at("stepType"))?.displayText ?? "-",
                    (step.at("tool") ?? step.at("configuration.tool"))?.displayText ?? "-", step.list("dependencies") ?? "",
                ])
            }
            text += "\n\n" + table.text
        }
        return text
    }

    static func execution(_ execution: JSONValue) -> String {
        var lines = DetailList()
        lines.add("execution", execution.text("executionId"))
        lines.add("workflow", "\(execution.text("workflowName")) \(execution.text("version"))")
        lines.add("status", execution.text("status"))
        lines.add("progress", "\(execution.text("progress.finishedSteps")) of \(execution.text("progress.totalSteps")) steps")
        lines.add("current steps", execution.list("currentSteps"))
        lines.add("trigger", execution.text("triggerType"))
        lines.add("started", execution.text("startedAt"))
        lines.add("completed", execution.at("completedAt")?.displayText)
        lines.add("duration", execution.at("totalDurationMs")?.doubleValue.map { TimeText.span(seconds: $0 / 1000) })
        lines.add("error", execution.at("errorDetails").map { error in
            error.text("message") + (error.at("stepId").map { " (step \($0.displayText))" } ?? "")
        })
        for approval in execution.at("pendingApprovals")?.arrayValue ?? [] {
            lines.add("awaits approval", "\(approval.text("stepId")): \(approval.text("message")) (approvers: \(approval.list("approvers") ?? "anyone"))")
        }
        lines.add("outputs", execution.at("outputs")?.encoded)
        var text = lines.text
        if let steps = execution.at("stepResults")?.objectValue, !steps.isEmpty {
            var table = TextTable("STEP", "STATUS", "ATTEMPTS", "DURATION", "NOTE")
            let ordered = steps.values.sorted { ($0.at("startedAt")?.stringValue ?? "~", $0.text("stepId")) < ($1.at("startedAt")?.stringValue ?? "~", $1.text("stepId")) }
            for step in ordered {
                table.append([
                    step.text("stepId"), step.text("status"), step.text("attempts"),
                    step.at("durationMs")?.doubleValue.map { TimeText.span(seconds: $0 / 1000) } ?? "-", note(step),
                ])
            }
            text += "\n\n" + table.text
        }
        return text
    }

    private static func note(_ step: JSONValue) -> String {
        if let error = step.at("error")?.displayText { return error.shortened(to: 60) }
        if let reason = step.at("skipReason")?.displayText { return reason.shortened(to: 60) }
        if let branch = step.at("branch")?.displayText { return "branch \(branch)" }
        if let iterations = step.at("iterations")?.displayText { return "\(iterations) iterations" }
        return ""
    }

    /// `manual`, `event orders.*`, `cron 45 16 * * MON-FRI (Europe/London)`; anything else as JSON.
    private static func triggers(_ triggers: JSONValue?) -> String {
        guard let triggers = triggers?.arrayValue, !triggers.isEmpty else { return "-" }
        return triggers.map { trigger in
            if let cron = trigger.at("schedule.cron")?.displayText {
                return "cron \(cron)" + (trigger.at("schedule.timezone").map { " (\($0.displayText))" } ?? "")
            }
            if let topic = (trigger.at("event.topic") ?? trigger.at("event"))?.stringValue { return "event \(topic)" }
            if let kind = trigger.stringValue { return kind }
            return trigger.encoded
        }.joined(separator: "; ")
    }
}

extension Optional<String> {
    var orEmpty: String { self ?? "" }
}
