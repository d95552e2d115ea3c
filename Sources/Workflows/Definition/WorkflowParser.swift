import JSONRPC

/// Reads a definition out of a YAML or JSON document, reporting every problem of form: unknown
/// or missing keys, values of the wrong kind, bad durations, cron lines and expressions. The
/// graph (dependencies, cycles, reachability, references) is `WorkflowValidator`'s job.
struct WorkflowParser {
    private(set) var problems: [WorkflowDiagnostic] = []

    static let stepTypes = ["agent_task", "condition", "parallel", "loop", "human_approval"]
    static let topLevelKeys = [
        "workflowName", "name", "version", "description", "inputs", "steps", "compensations", "errorHandling",
        "triggers", "outputs", "timeout", "definition",
    ]
    static let commonStepKeys = [
        "id", "stepId", "type", "stepType", "description", "dependencies", "dependsOn", "timeout", "retryPolicy",
        "errorHandling", "configuration",
    ]
    static let stepKeysByType: [String: [String]] = [
        // The seed's words (taskType, taskData) and MCP's (tool, arguments) are accepted too.
        "agent_task": ["tool", "input", "taskType", "arguments", "taskData"],
        "condition": ["if", "condition", "then", "else"],
        "parallel": ["branches"],
        "loop": ["steps", "while", "until", "forEach", "maxIterations", "onLimit"],
        "human_approval": ["message", "approvers", "onTimeout"],
    ]

    private enum StepPlace { case topLevel, nested, compensation }

    mutating func parse(_ root: SourceNode, source: String) -> WorkflowDefinition {
        var definition = WorkflowDefinition(
            name: "", version: "", description: nil, inputs: [], steps: [], compensations: [], errorHandling: .fail,
            triggers: [], outputs: [], timeout: nil, source: source, document: root.json)
        guard var entries = mapping(root, "a workflow definition") else { return definition }
        if let wrapper = entries.first(where: { $0.name == "definition" }) {
            // The seed's shape: {workflowName, version, definition: {steps, errorHandling, triggers}}.
            if let inner = mapping(wrapper.value, "definition") {
                for entry in inner where !["steps", "errorHandling", "triggers", "inputs", "outputs", "compensations", "timeout", "description"].contains(entry.name) {
                    report(entry.key, "unknown key \"\(entry.name)\" in definition\(Suggestion.hint(for: entry.name, among: ["steps", "errorHandling", "triggers", "inputs", "outputs", "compensations", "timeout"]))")
                }
                for entry in inner where entries.contains(where: { $0.name == entry.name }) {
                    report(entry.key, "\"\(entry.name)\" is given both at the top and inside definition; keep one")
                }
                entries = entries.filter { $0.name != "definition" } + inner.filter { entry in !entries.contains { $0.name == entry.name } }
            }
        }
        checkKeys(entries, known: Self.topLevelKeys, context: "at the top level")
        definition.name = requiredAlias(entries, "workflowName", "name", in: root, what: "the workflow's name (workflowName: trade-approval)")
            .flatMap { identifierText($0, what: "workflowName", pattern: .name) } ?? ""
        if let node = requiredAlias(entries, "version", nil, in: root, what: "a version (version: \"1.0.0\")") {
            definition.version = identifierText(node, what: "version", pattern: .version) ?? ""
        }
        if let node = entries.first(where: { $0.name == "description" })?.value { definition.description = string(node, "description") }
        if let node = entries.first(where: { $0.name == "inputs" })?.value { definition.inputs = inputs(node) }
        if let node = entries.first(where: { $0.name == "timeout" })?.value { definition.timeout = duration(node, "timeout") }
        if let node = entries.first(where: { $0.name == "errorHandling" })?.value {
            definition.errorHandling = errorHandling(node) ?? .fail
        }
        if let node = entries.first(where: { $0.name == "triggers" })?.value { definition.triggers = triggers(node) }
        if let node = requiredAlias(entries, "steps", nil, in: root, what: "steps (a list of steps)") {
            definition.steps = stepList(node, place: .topLevel, what: "steps")
            if case .sequence(let items) = node.value, items.isEmpty { report(node, "steps is empty: a workflow needs at least one step") }
        }
        if let node = entries.first(where: { $0.name == "compensations" })?.value {
            definition.compensations = stepList(node, place: .compensation, what: "compensations")
        }
        if let node = entries.first(where: { $0.name == "outputs" })?.value { definition.outputs = outputs(node) }
        return definition
    }

    // MARK: - Steps

    private mutating func stepList(_ node: SourceNode, place: StepPlace, what: String) -> [WorkflowStep] {
        guard let items = sequence(node, what) else { return [] }
        return items.compactMap { step($0, place: place) }
    }

    private mutating func step(_ node: SourceNode, place: StepPlace) -> WorkflowStep? {
        guard var entries = mapping(node, "a step") else { return nil }
        if let configuration = entries.first(where: { $0.name == "configuration" }) {
            // The seed keeps a step's settings under `configuration`.
            if let inner = mapping(configuration.value, "configuration") {
                for entry in inner where entries.contains(where: { $0.name == entry.name }) {
                    report(entry.key, "\"\(entry.name)\" is given both in the step and in its configuration; keep one")
                }
                entries = entries.filter { $0.name != "configuration" } + inner
            }
        }
        let idNode = requiredAlias(entries, "id", "stepId", in: node, what: "an id (id: fetch_prices)")
        let id = idNode.flatMap { identifierText($0, what: "a step id", pattern: .stepID) } ?? ""
        let label = id.isEmpty ? "a step" : "step \"\(id)\""
        // A step whose type is unusable stays in the graph, so that steps naming it are not
        // reported too.
        var placeholder = WorkflowStep(id: id, kind: .agentTask(AgentTaskStep(tool: "", input: .literal([:]))), dependencies: [], location: node.location)
        placeholder.sourcePath = node.path
        let fallback = id.isEmpty ? nil : placeholder
        guard let typeNode = requiredAlias(entries, "type", "stepType", in: node, what: "a type (one of \(Self.stepTypes.joined(separator: ", ")))") else {
            return fallback
        }
        guard let type = string(typeNode, "type") else { return fallback }
        guard Self.stepTypes.contains(type) else {
            report(typeNode, "unknown step type \"\(type)\"\(Suggestion.hint(for: type, among: Self.stepTypes)); known: \(Self.stepTypes.joined(separator: ", "))")
            return fallback
        }
        let ownKeys = Self.stepKeysByType[type]!
        for entry in entries where !Self.commonStepKeys.contains(entry.name) && !ownKeys.contains(entry.name) {
            if let owner = Self.stepKeysByType.first(where: { $0.value.contains(entry.name) })?.key {
                report(entry.key, "\"\(entry.name)\" belongs to \(owner) steps, not to \(type) steps (\(label))")
            } else {
                report(entry.key, "unknown key \"\(entry.name)\" in \(label)\(Suggestion.hint(for: entry.name, among: Self.commonStepKeys + ownKeys))")
            }
        }
        func value(_ name: String) -> SourceNode? { entries.first { $0.name == name }?.value }

        var step = placeholder
        if let text = value("description") { step.description = string(text, "description") }
        if let timeout = value("timeout") { step.timeout = duration(timeout, "timeout") }
        if let handling = value("errorHandling") { step.errorHandling = errorHandling(handling) }
        if let policy = value("retryPolicy") {
            if type == "condition" || type == "human_approval" {
                report(entries.first { $0.name == "retryPolicy" }!.key, "\(type) steps are not retried: remove retryPolicy from \(label)")
            } else {
                step.retryPolicy = retryPolicy(policy)
            }
        }
        let dependencyEntry = entries.first { $0.name == "dependencies" } ?? entries.first { $0.name == "dependsOn" }
        if entries.contains(where: { $0.name == "dependencies" }) && entries.contains(where: { $0.name == "dependsOn" }) {
            report(entries.first { $0.name == "dependsOn" }!.key, "give dependencies or dependsOn, not both")
        }
        if let dependencyEntry {
            if place == .nested {
                report(dependencyEntry.key, "dependencies are only for top-level steps: the steps of a parallel branch or of a loop body run in the order written")
            } else if place == .compensation {
                report(dependencyEntry.key, "compensation steps take no dependencies: they run when a compensate handler names them")
            } else {
                let list = idList(dependencyEntry.value, "dependencies")
                step.dependencies = list.map(\.0)
                step.dependencyLocations = list.map(\.1)
            }
        }

        switch type {
        case "agent_task":
            let toolNames = ["tool", "taskType"].filter { value($0) != nil }
            let inputNames = ["input", "arguments", "taskData"].filter { value($0) != nil }
            for names in [toolNames, inputNames] where names.count > 1 {
                report(entries.first { $0.name == names[1] }!.key, "give \(names.joined(separator: " or ")), not several: they are the same thing")
            }
            let toolNode = value("tool") ?? value("taskType")
            let tool = required(toolNode, in: node, what: "a tool to call (tool: market_signal) in \(label)").flatMap { string($0, "tool") } ?? ""
            let inputNode = value("input") ?? value("arguments") ?? value("taskData")
            let input = inputNode.map { template($0) } ?? .literal([:])
            if let inputNode {
                switch inputNode.value {
                case .mapping: break
                case .scalar(let scalar) where scalar.kind == .null: break
                case .scalar where TemplateScanner.hasHole(inputNode.scalarText ?? ""): break
                default: report(inputNode, "input must be a mapping of the tool's arguments, or one ${expression} that gives them, not \(inputNode.kindName)")
                }
            }
            step.kind = .agentTask(AgentTaskStep(tool: tool, input: input))
        case "condition":
            if value("if") != nil && value("condition") != nil {
                report(entries.first { $0.name == "condition" }!.key, "give if or condition, not both")
            }
            let conditionNode = value("if") ?? value("condition")
            let condition = required(conditionNode, in: node, what: "a condition (if: steps.check.result.score > 0.7) in \(label)")
                .flatMap { expression($0, "if") }
            let thenList = value("then").map { idList($0, "then") } ?? []
            let elseList = value("else").map { idList($0, "else") } ?? []
            if value("then") == nil && value("else") == nil {
                report(node, "\(label) needs then or else: the ids of the steps each outcome runs")
            }
            if let condition {
                var conditionStep = ConditionStep(condition: condition, thenSteps: thenList.map(\.0), elseSteps: elseList.map(\.0))
                conditionStep.thenLocations = thenList.map(\.1)
                conditionStep.elseLocations = elseList.map(\.1)
                step.kind = .condition(conditionStep)
            } else {
                step.kind = .condition(ConditionStep(condition: try! WorkflowExpression(parsing: "false"), thenSteps: thenList.map(\.0), elseSteps: elseList.map(\.0)))
            }
        case "parallel":
            var branches: [[WorkflowStep]] = []
            if let branchesNode = required(value("branches"), in: node, what: "branches (a list of steps, or of lists of steps) in \(label)"),
                let items = sequence(branchesNode, "branches")
            {
                if items.isEmpty { report(branchesNode, "branches is empty: \(label) needs at least one branch") }
                for item in items {
                    if case .sequence(let inner) = item.value {
                        if inner.isEmpty { report(item, "a branch is empty") }
                        branches.append(inner.compactMap { self.step($0, place: .nested) })
                    } else if let branchStep = self.step(item, place: .nested) {
                        branches.append([branchStep])
                    }
                }
            }
            step.kind = .parallel(ParallelStep(branches: branches))
        case "loop":
            var body: [WorkflowStep] = []
            if let bodyNode = required(value("steps"), in: node, what: "steps (the loop's body) in \(label)") {
                body = stepList(bodyNode, place: .nested, what: "steps")
                if case .sequence(let items) = bodyNode.value, items.isEmpty { report(bodyNode, "the body of \(label) is empty") }
            }
            let whileCondition = value("while").flatMap { expression($0, "while") }
            let untilCondition = value("until").flatMap { expression($0, "until") }
            if value("while") != nil && value("until") != nil {
                report(entries.first { $0.name == "until" }!.key, "give while or until, not both: while is checked before each iteration, until after it")
            }
            let forEach = value("forEach").flatMap { expression($0, "forEach") }
            var maxIterations = 0
            if let limit = value("maxIterations") {
                maxIterations = integer(limit, "maxIterations", range: 1...1_000_000) ?? 0
            } else {
                report(node, "\(label) needs maxIterations: every loop has a limit (maxIterations: 10)")
            }
            var onLimit = LoopStep.LimitAction.fail
            if let limitNode = value("onLimit") {
                onLimit = choice(limitNode, "onLimit", LoopStep.LimitAction.self) ?? .fail
            }
            step.kind = .loop(LoopStep(body: body, whileCondition: whileCondition, untilCondition: untilCondition, forEach: forEach, maxIterations: maxIterations, onLimit: onLimit))
        default:  // human_approval
            let message = value("message").map { template($0) } ?? .literal(.string("Approve step \(id)?"))
            var approvers: [String] = []
            if let approversNode = value("approvers"), let items = sequence(approversNode, "approvers") {
                approvers = items.compactMap { string($0, "an approver") }
            }
            var onTimeout = ApprovalStep.TimeoutDecision.reject
            if let decisionNode = value("onTimeout") {
                onTimeout = choice(decisionNode, "onTimeout", ApprovalStep.TimeoutDecision.self) ?? .reject
                if value("timeout") == nil { report(decisionNode, "onTimeout needs a timeout (timeout: 1h) in \(label)") }
            }
            step.kind = .humanApproval(ApprovalStep(message: message, approvers: approvers, onTimeout: onTimeout))
        }
        return step
    }

    private mutating func retryPolicy(_ node: SourceNode) -> RetryPolicy? {
        guard let entries = mapping(node, "retryPolicy") else { return nil }
        checkKeys(entries, known: ["maxRetries", "backoff", "backoffStrategy", "backoffDelay"], context: "in retryPolicy")
        var policy = RetryPolicy(maxRetries: 0)
        if let count = required(entries.first { $0.name == "maxRetries" }?.value, in: node, what: "maxRetries (maxRetries: 3) in retryPolicy") {
            policy.maxRetries = integer(count, "maxRetries", range: 0...100) ?? 0
        }
        if let backoff = (entries.first { $0.name == "backoff" } ?? entries.first { $0.name == "backoffStrategy" })?.value {
            policy.backoff = choice(backoff, "backoff", RetryPolicy.Backoff.self) ?? .exponential
        }
        if let delay = entries.first(where: { $0.name == "backoffDelay" })?.value {
            policy.backoffDelay = duration(delay, "backoffDelay", allowZero: true) ?? .seconds(1)
        }
        return policy
    }

    private mutating func errorHandling(_ node: SourceNode) -> WorkflowErrorHandling? {
        let known = ["fail", "skip", "retry", "compensate"]
        switch node.value {
        case .scalar:
            guard let text = string(node, "errorHandling") else { return nil }
            switch text {
            case "fail": return .fail
            case "skip": return .skip
            case "retry": return .retry
            case "compensate":
                report(node, "compensate names the step to run: write errorHandling: {compensate: undo_order}")
                return nil
            default:
                report(node, "unknown errorHandling \"\(text)\"\(Suggestion.hint(for: text, among: known)); use fail, skip, retry or {compensate: <step id>}")
                return nil
            }
        case .mapping(let entries):
            guard entries.count == 1, let entry = entries.first, entry.name == "compensate" else {
                let name = entries.first?.name ?? ""
                report(entries.first?.key ?? node, "errorHandling as a mapping is {compensate: <step id>}\(name == "compensate" ? "" : Suggestion.hint(for: name, among: ["compensate"]))")
                return nil
            }
            guard let target = identifierText(entry.value, what: "the compensation step's id", pattern: .stepID) else { return nil }
            var handling = WorkflowErrorHandling.compensate(target)
            compensationReferences.append((target, entry.value.location, entry.value.path))
            if target.isEmpty { handling = .fail }
            return handling
        case .sequence:
            report(node, "errorHandling is one of fail, skip, retry or {compensate: <step id>}, not a list")
            return nil
        }
    }

    /// Every `compensate:` target with its place, for the validator.
    var compensationReferences: [(String, SourceLocation, String)] = []

    // MARK: - Inputs, outputs, triggers

    private mutating func inputs(_ node: SourceNode) -> [WorkflowInput] {
        guard let entries = mapping(node, "inputs") else { return [] }
        var result: [WorkflowInput] = []
        for entry in entries {
            guard identifierText(entry.key, what: "an input name", pattern: .stepID) != nil else { continue }
            var input = WorkflowInput(name: entry.name, type: .any, defaultValue: nil, required: true, description: nil)
            switch entry.value.value {
            case .scalar(let scalar) where scalar.kind == .null: break
            case .mapping(let fields):
                checkKeys(fields, known: ["type", "default", "required", "description"], context: "in input \"\(entry.name)\"")
                if let type = fields.first(where: { $0.name == "type" })?.value {
                    input.type = choice(type, "type", WorkflowInput.ValueType.self) ?? .any
                }
                if let value = fields.first(where: { $0.name == "default" }) {
                    input.defaultValue = value.value.json
                    input.required = false
                    if !input.accepts(value.value.json) {
                        report(value.value, "the default of input \"\(entry.name)\" is \(value.value.kindName), not of its type \(input.type.rawValue)")
                    }
                }
                if let flag = fields.first(where: { $0.name == "required" })?.value {
                    if case .scalar(let scalar) = flag.value, case .bool(let value) = scalar.kind {
                        input.required = value
                        if value, input.defaultValue != nil { report(flag, "input \"\(entry.name)\" has a default, so it cannot be required") }
                    } else {
                        report(flag, "required is true or false, not \(flag.kindName)")
                    }
                }
                if let text = fields.first(where: { $0.name == "description" })?.value { input.description = string(text, "description") }
            default:
                report(entry.value, "input \"\(entry.name)\" is declared with a mapping ({type: string, default: \"AAPL\"}) or nothing, not \(entry.value.kindName)")
            }
            result.append(input)
        }
        return result
    }

    private mutating func outputs(_ node: SourceNode) -> [WorkflowOutput] {
        guard let entries = mapping(node, "outputs") else { return [] }
        return entries.compactMap { entry in
            expression(entry.value, "output \"\(entry.name)\"").map { WorkflowOutput(name: entry.name, expression: $0) }
        }
    }

    private mutating func triggers(_ node: SourceNode) -> [WorkflowTrigger] {
        guard let items = sequence(node, "triggers") else { return [] }
        var result: [WorkflowTrigger] = []
        for item in items {
            switch item.value {
            case .scalar:
                if item.scalarText == "manual" {
                    result.append(.manual)
                } else {
                    report(item, "a trigger is manual, {event: <topic>} or {schedule: {cron: \"0 17 * * MON-FRI\", timezone: Europe/London}}")
                }
            case .mapping(let entries):
                guard let first = entries.first else {
                    report(item, "an empty trigger")
                    continue
                }
                switch first.name {
                case "event":
                    checkKeys(entries, known: ["event"], context: "in an event trigger")
                    guard let topic = string(first.value, "event") else { continue }
                    if topic.isEmpty || topic.utf8.count > 256 || topic.utf8.contains(where: { $0 < 0x21 || $0 > 0x7E }) {
                        report(first.value, "an event topic is 1 to 256 printable ASCII characters without spaces, such as market.close")
                    } else {
                        result.append(.event(topic))
                    }
                case "schedule":
                    checkKeys(entries, known: ["schedule", "timezone"], context: "in a schedule trigger")
                    if let schedule = schedule(first.value, siblingZone: entries.first { $0.name == "timezone" }?.value) {
                        result.append(.schedule(schedule))
                    }
                case "manual":
                    result.append(.manual)
                default:
                    report(first.key, "unknown trigger \"\(first.name)\"\(Suggestion.hint(for: first.name, among: ["manual", "event", "schedule"])); use manual, event or schedule")
                }
            case .sequence:
                report(item, "a trigger is manual, {event: <topic>} or {schedule: {cron: …, timezone: …}}, not a list")
            }
        }
        return result
    }

    private mutating func schedule(_ node: SourceNode, siblingZone: SourceNode?) -> CronSchedule? {
        var cronNode = node
        var zoneNode = siblingZone
        if case .mapping(let entries) = node.value {
            checkKeys(entries, known: ["cron", "timezone"], context: "in schedule")
            guard let cron = required(entries.first { $0.name == "cron" }?.value, in: node, what: "cron (cron: \"0 17 * * MON-FRI\")") else { return nil }
            cronNode = cron
            zoneNode = entries.first { $0.name == "timezone" }?.value ?? siblingZone
        }
        guard let line = string(cronNode, "cron") else { return nil }
        var zone: String?
        if let zoneNode {
            zone = string(zoneNode, "timezone")
            if let name = zone, TimeZoneNames.zone(named: name) == nil {
                report(zoneNode, "unknown time zone \"\(name)\"\(Suggestion.hint(for: name, among: TimeZoneNames.all)): use an IANA name such as Europe/London or America/New_York")
                return nil
            }
        }
        do {
            return try CronSchedule(cron: line, timeZone: zone)
        } catch {
            report(at: cronNode.location(ofOffset: error.column - 1), path: cronNode.path, "bad cron line: \(error.message)")
            return nil
        }
    }

    // MARK: - Values

    private mutating func expression(_ node: SourceNode, _ what: String) -> WorkflowExpression? {
        var text: String
        var offset = 0
        switch node.value {
        case .scalar(let scalar):
            switch scalar.kind {
            case .bool, .integer, .double: text = scalar.text
            case .null:
                report(node, "\(what) is empty: write an expression")
                return nil
            case .string: text = scalar.text
            }
        default:
            report(node, "\(what) must be an expression (a string), not \(node.kindName)")
            return nil
        }
        // `${expr}` around a whole expression is allowed, for symmetry with templates.
        if let pieces = try? TemplateScanner.pieces(of: text), pieces.count == 1, case .hole(let hole) = pieces[0] {
            text = hole.expression
            offset = hole.offset
        }
        do {
            var parsed = try WorkflowExpression(parsing: text, location: node.location(ofOffset: offset))
            parsed.path = node.path
            return parsed
        } catch {
            report(at: node.location(ofOffset: offset + error.column - 1), path: node.path, "bad expression in \(what): \(error.message)")
            return nil
        }
    }

    private mutating func template(_ node: SourceNode) -> ValueTemplate {
        switch node.value {
        case .mapping(let entries):
            return .object(entries.map { ValueTemplate.Member(name: $0.name, value: template($0.value)) })
        case .sequence(let items):
            return .array(items.map { template($0) })
        case .scalar(let scalar):
            guard case .string = scalar.kind, scalar.text.contains("${") else { return .literal(node.json) }
            let pieces: [TemplateScanner.Piece]
            do {
                pieces = try TemplateScanner.pieces(of: scalar.text)
            } catch {
                report(at: node.location(ofOffset: error.offset), path: node.path, "\"${\" is not closed: add \"}\" (or write $${ for a literal ${)")
                return .literal(node.json)
            }
            var parts: [ValueTemplate.TextPart] = []
            for piece in pieces {
                switch piece {
                case .text(let text): parts.append(.text(text))
                case .hole(let hole):
                    do {
                        var parsed = try WorkflowExpression(parsing: hole.expression, location: node.location(ofOffset: hole.offset))
                        parsed.path = node.path
                        parts.append(.expression(parsed))
                    } catch {
                        report(at: node.location(ofOffset: hole.offset + error.column - 1), path: node.path, "bad expression: \(error.message)")
                        return .literal(node.json)
                    }
                }
            }
            if parts.count == 1, case .expression(let expression) = parts[0] { return .expression(expression) }
            if parts.allSatisfy({ if case .text = $0 { true } else { false } }) {
                return .literal(.string(parts.map { if case .text(let text) = $0 { text } else { "" } }.joined()))
            }
            return .text(parts)
        }
    }

    private mutating func idList(_ node: SourceNode, _ what: String) -> [(String, SourceLocation?)] {
        if case .scalar = node.value, let single = identifierText(node, what: "a step id in \(what)", pattern: .stepID) {
            return [(single, node.location)]
        }
        guard let items = sequence(node, what) else { return [] }
        return items.compactMap { item in identifierText(item, what: "a step id in \(what)", pattern: .stepID).map { ($0, item.location) } }
    }

    private mutating func duration(_ node: SourceNode, _ what: String, allowZero: Bool = false) -> Duration? {
        guard case .scalar(let scalar) = node.value, scalar.kind != .null, scalar.kind != .bool(true), scalar.kind != .bool(false) else {
            report(node, "\(what) must be a duration (\"30s\", \"5m\", \"1h\" or seconds), not \(node.kindName)")
            return nil
        }
        guard let duration = WorkflowDuration.parse(scalar.text) else {
            report(node, "bad \(what): \(WorkflowDuration.advice(for: scalar.text))")
            return nil
        }
        if duration == .zero && !allowZero {
            report(node, "\(what) must be longer than 0")
            return nil
        }
        return duration
    }

    private mutating func integer(_ node: SourceNode, _ what: String, range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let scalar) = node.value, case .integer(let value) = scalar.kind else {
            report(node, "\(what) must be a whole number from \(range.lowerBound) to \(range.upperBound), not \(node.kindName)")
            return nil
        }
        guard value >= range.lowerBound, value <= range.upperBound else {
            report(node, "\(what) must be from \(range.lowerBound) to \(range.upperBound), not \(value)")
            return nil
        }
        return Int(value)
    }

    private mutating func choice<Choice: RawRepresentable<String> & CaseIterable>(_ node: SourceNode, _ what: String, _ type: Choice.Type) -> Choice? {
        guard let text = string(node, what) else { return nil }
        if let value = Choice(rawValue: text) { return value }
        let known = Choice.allCases.map(\.rawValue)
        report(node, "unknown \(what) \"\(text)\"\(Suggestion.hint(for: text, among: known)); use \(known.joined(separator: " or "))")
        return nil
    }

    private mutating func string(_ node: SourceNode, _ what: String) -> String? {
        guard case .scalar(let scalar) = node.value, scalar.kind != .null else {
            report(node, "\(what) must be a string, not \(node.kindName)")
            return nil
        }
        return scalar.text
    }

    enum IdentifierPattern { case stepID, name, version }

    private mutating func identifierText(_ node: SourceNode, what: String, pattern: IdentifierPattern) -> String? {
        guard let text = string(node, what) else { return nil }
        let valid: Bool
        let rule: String
        switch pattern {
        case .stepID:
            valid = text.unicodeScalars.first.map(\.isIdentifierStart) == true && text.unicodeScalars.allSatisfy(\.isIdentifierPart) && text.count <= 128
            rule = "letters, digits and _, starting with a letter or _ (it is read in expressions as steps.<id>)"
        case .name:
            valid = !text.isEmpty && text.count <= 128 && text.unicodeScalars.allSatisfy { $0.isIdentifierPart || $0 == "-" || $0 == "." }
            rule = "letters, digits, _, - and ., at most 128"
        case .version:
            valid = !text.isEmpty && text.count <= 64 && text.unicodeScalars.allSatisfy { $0.isIdentifierPart || "-.+".unicodeScalars.contains($0) }
            rule = "letters, digits, _, -, + and ., at most 64 (\"1.2.0\")"
        }
        if !valid {
            report(node, "\"\(text)\" is not a valid \(what): use \(rule)")
            return nil
        }
        return text
    }

    // MARK: - Shapes

    private mutating func mapping(_ node: SourceNode, _ what: String) -> [SourceNode.Entry]? {
        if case .mapping(let entries) = node.value { return entries }
        report(node, "\(what) must be a mapping, not \(node.kindName)")
        return nil
    }

    private mutating func sequence(_ node: SourceNode, _ what: String) -> [SourceNode]? {
        if case .sequence(let items) = node.value { return items }
        report(node, "\(what) must be a list, not \(node.kindName)")
        return nil
    }

    private mutating func required(_ node: SourceNode?, in parent: SourceNode, what: String) -> SourceNode? {
        if node == nil { report(parent, "missing \(what)") }
        return node
    }

    private mutating func requiredAlias(_ entries: [SourceNode.Entry], _ name: String, _ alias: String?, in parent: SourceNode, what: String) -> SourceNode? {
        let primary = entries.first { $0.name == name }
        let secondary = alias.flatMap { alias in entries.first { $0.name == alias } }
        if let primary, let secondary {
            report(secondary.key, "give \(name) or \(alias!), not both")
            return primary.value
        }
        return required(primary?.value ?? secondary?.value, in: parent, what: what)
    }

    private mutating func checkKeys(_ entries: [SourceNode.Entry], known: [String], context: String) {
        for entry in entries where !known.contains(entry.name) {
            report(entry.key, "unknown key \"\(entry.name)\" \(context)\(Suggestion.hint(for: entry.name, among: known))")
        }
    }

    private mutating func report(_ node: SourceNode, _ message: String) {
        problems.append(WorkflowDiagnostic(location: node.location, path: node.path, message: message))
    }

    private mutating func report(at location: SourceLocation, path: String, _ message: String) {
        problems.append(WorkflowDiagnostic(location: location, path: path, message: message))
    }
}
