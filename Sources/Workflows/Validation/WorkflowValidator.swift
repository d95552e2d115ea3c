/// Checks the graph of a parsed definition: unique ids, dependencies and branch names that
/// exist, no cycles, every step reachable, expressions that read only what exists.
///
/// **Reachability.** A top-level step runs when its dependencies have finished, unless all of
/// them were skipped. A condition's `then` and `else` name the steps it controls; a step named
/// in a branch depends on the condition implicitly and is skipped when the other branch is
/// taken. A dependency on a condition that names the step in neither branch is an edge that is
/// never taken. So a step is *unreachable* — it could never run, whatever the data — when it
/// has dependencies and none of them is a reachable step whose edge to it can be taken; for
/// example a step that depends only on a condition that does not name it.
struct WorkflowValidator {
    private(set) var problems: [WorkflowDiagnostic] = []
    private let definition: WorkflowDefinition

    private struct Placement {
        var step: WorkflowStep
        /// nil: top level; else the steps of the same list (a branch or a loop body), in order.
        var sequence: [String]?
        /// The parallel or loop step it is in.
        var parent: String?
        var isCompensation: Bool
    }

    private var placements: [String: Placement] = [:]

    init(definition: WorkflowDefinition) {
        self.definition = definition
    }

    mutating func validate(compensationReferences: [(String, SourceLocation, String)]) {
        index(definition.steps, sequence: nil, parent: nil, isCompensation: false)
        index(definition.compensations, sequence: nil, parent: nil, isCompensation: true)
        checkDependencies()
        checkBranches(definition.steps, sequence: nil)
        let acyclic = checkCycles()
        if acyclic { checkReachability() }
        for (target, location, path) in compensationReferences where !target.isEmpty {
            if !definition.compensations.contains(where: { $0.id == target }) {
                let hint = Suggestion.hint(for: target, among: definition.compensations.map(\.id))
                let extra = placements[target] != nil ? "; \"\(target)\" is a step of the workflow, declare the compensation under compensations:" : ""
                report(location, path, "compensate names \"\(target)\", which is not a compensation step\(hint)\(extra)")
            }
        }
        checkExpressions()
    }

    // MARK: - Ids

    private mutating func index(_ steps: [WorkflowStep], sequence: [String]?, parent: String?, isCompensation: Bool) {
        for step in steps where !step.id.isEmpty {
            if let first = placements[step.id] {
                report(step.location, step.sourcePath, "step id \"\(step.id)\" is used twice (first at \(first.step.location.map(\.description) ?? "?")); ids must be unique in the whole workflow")
                continue
            }
            placements[step.id] = Placement(step: step, sequence: sequence, parent: parent, isCompensation: isCompensation)
            switch step.kind {
            case .parallel(let parallel):
                for branch in parallel.branches { index(branch, sequence: branch.map(\.id), parent: step.id, isCompensation: isCompensation) }
            case .loop(let loop):
                index(loop.body, sequence: loop.body.map(\.id), parent: step.id, isCompensation: isCompensation)
            default: break
            }
        }
    }

    // MARK: - Dependencies and branches

    private mutating func checkDependencies() {
        for step in definition.steps {
            for (offset, dependency) in step.dependencies.enumerated() {
                let location = step.dependencyLocations.indices.contains(offset) ? step.dependencyLocations[offset] : step.location
                guard let target = placements[dependency] else {
                    let hint = Suggestion.hint(for: dependency, among: definition.steps.map(\.id))
                    report(location, step.sourcePath + ".dependencies", "step \"\(step.id)\" depends on unknown step \"\(dependency)\"\(hint)")
                    continue
                }
                if target.isCompensation {
                    report(location, step.sourcePath + ".dependencies", "step \"\(step.id)\" depends on \"\(dependency)\", a compensation step; compensation steps run only when a compensate handler names them")
                } else if let parent = target.parent {
                    report(location, step.sourcePath + ".dependencies", "step \"\(step.id)\" depends on \"\(dependency)\", which is inside \"\(parent)\"; depend on \"\(parent)\" instead")
                }
            }
            if Set(step.dependencies).count != step.dependencies.count {
                report(step.location, step.sourcePath, "step \"\(step.id)\" lists the same dependency twice")
            }
        }
    }

    private mutating func checkBranches(_ steps: [WorkflowStep], sequence: [String]?) {
        for step in steps {
            switch step.kind {
            case .condition(let condition):
                let named = zip(condition.thenSteps, padded(condition.thenLocations, condition.thenSteps.count, step.location)).map { ($0, $1, "then") }
                    + zip(condition.elseSteps, padded(condition.elseLocations, condition.elseSteps.count, step.location)).map { ($0, $1, "else") }
                for (name, location, branch) in named {
                    guard let target = placements[name] else {
                        let pool = sequence ?? definition.steps.map(\.id)
                        report(location, step.sourcePath + "." + branch, "the \(branch) of condition \"\(step.id)\" names unknown step \"\(name)\"\(Suggestion.hint(for: name, among: pool))")
                        continue
                    }
                    if name == step.id {
                        report(location, step.sourcePath + "." + branch, "condition \"\(step.id)\" names itself in its \(branch)")
                    } else if target.isCompensation {
                        report(location, step.sourcePath + "." + branch, "the \(branch) of condition \"\(step.id)\" names compensation step \"\(name)\"; compensation steps run only from compensate handlers")
                    } else if let sequence {
                        let mine = sequence.firstIndex(of: step.id) ?? 0
                        if target.sequence != sequence || (sequence.firstIndex(of: name) ?? 0) <= mine {
                            report(location, step.sourcePath + "." + branch, "the \(branch) of condition \"\(step.id)\" names \"\(name)\"; in a branch or loop body a condition names only steps after it in the same list")
                        }
                    } else if target.sequence != nil {
                        report(location, step.sourcePath + "." + branch, "the \(branch) of condition \"\(step.id)\" names \"\(name)\", which is inside \"\(target.parent ?? "")\"; name top-level steps only")
                    }
                }
                for both in Set(condition.thenSteps).intersection(condition.elseSteps).sorted() {
                    report(step.location, step.sourcePath, "condition \"\(step.id)\" names \"\(both)\" in both then and else; a step that always runs needs neither")
                }
            case .parallel(let parallel):
                for branch in parallel.branches { checkBranches(branch, sequence: branch.map(\.id)) }
            case .loop(let loop):
                checkBranches(loop.body, sequence: loop.body.map(\.id))
            default: break
            }
        }
        if sequence == nil { checkBranches(definition.compensations, sequence: []) }
    }

    private func padded(_ locations: [SourceLocation?], _ count: Int, _ fallback: SourceLocation?) -> [SourceLocation?] {
        locations.count >= count ? locations : locations + Array(repeating: fallback, count: count - locations.count)
    }

    // MARK: - Graph

    /// Top-level edges, dependency → dependent, explicit and from condition branches.
    private var topLevelDependencies: [String: [String]] {
        let topLevel = Set(definition.steps.map(\.id))
        var dependencies: [String: [String]] = [:]
        for step in definition.steps {
            dependencies[step.id, default: []].append(contentsOf: step.dependencies.filter { topLevel.contains($0) })
            if case .condition(let condition) = step.kind {
                for name in condition.thenSteps + condition.elseSteps where topLevel.contains(name) && name != step.id {
                    if !(dependencies[name]?.contains(step.id) ?? false) { dependencies[name, default: []].append(step.id) }
                }
            }
        }
        return dependencies
    }

    /// Reports each cycle once, naming its steps in order; true when there is none.
    private mutating func checkCycles() -> Bool {
        let dependencies = topLevelDependencies
        var state: [String: Int] = [:]  // 1 on the path, 2 done
        var acyclic = true
        for start in definition.steps.map(\.id) where state[start] == nil {
            // Iterative depth-first search: a workflow may have thousands of steps.
            var stack: [(String, Int)] = [(start, 0)]
            var path: [String] = [start]
            state[start] = 1
            while let (node, next) = stack.last {
                let edges = dependencies[node] ?? []
                if next < edges.count {
                    stack[stack.count - 1].1 += 1
                    let target = edges[next]
                    switch state[target] {
                    case nil:
                        state[target] = 1
                        stack.append((target, 0))
                        path.append(target)
                    case 1:
                        acyclic = false
                        let cycle = Array(path[path.lastIndex(of: target)!...]) + [target]
                        let step = placements[target]?.step
                        report(step?.location, step?.sourcePath ?? "", "dependency cycle: \(cycle.joined(separator: " → ")) (each step waits for the one after it); remove one of these dependencies")
                    default: break
                    }
                } else {
                    state[node] = 2
                    stack.removeLast()
                    path.removeLast()
                }
            }
        }
        return acyclic
    }

    private mutating func checkReachability() {
        let dependencies = topLevelDependencies
        let steps = Dictionary(definition.steps.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var reachable: [String: Bool] = [:]
        // Kahn's order: every step after its dependencies.
        var remaining = dependencies.mapValues { Set($0).count }
        var dependents: [String: [String]] = [:]
        for (step, edges) in dependencies { for edge in Set(edges) { dependents[edge, default: []].append(step) } }
        var ready = definition.steps.map(\.id).filter { (remaining[$0] ?? 0) == 0 }
        while let id = ready.popLast() {
            let edges = Set(dependencies[id] ?? [])
            if edges.isEmpty {
                reachable[id] = true
            } else {
                reachable[id] = edges.contains { edge in
                    guard reachable[edge] == true else { return false }
                    if case .condition(let condition) = steps[edge]?.kind { return condition.branch(naming: id) != nil }
                    return true
                }
            }
            if reachable[id] == false, let step = steps[id] {
                let silent = edges.filter { edge in
                    if case .condition(let condition) = steps[edge]?.kind { return condition.branch(naming: id) == nil && reachable[edge] == true }
                    return false
                }.sorted()
                if !silent.isEmpty {
                    let names = silent.map { "\"\($0)\"" }.joined(separator: ", ")
                    report(step.location, step.sourcePath, "step \"\(id)\" can never run: it depends on condition \(names), which names it in neither then nor else; add it to a branch, or depend on a step that always runs")
                } else {
                    report(step.location, step.sourcePath, "step \"\(id)\" can never run: none of the steps it depends on (\(edges.sorted().joined(separator: ", "))) can run")
                }
            }
            for dependent in dependents[id] ?? [] {
                remaining[dependent, default: 0] -= 1
                if remaining[dependent] == 0 { ready.append(dependent) }
            }
        }
    }

    // MARK: - Expressions

    private struct LoopContext {
        var hasItem: Bool
    }

    private mutating func checkExpressions() {
        checkExpressions(in: definition.steps, loops: [])
        checkExpressions(in: definition.compensations, loops: [])
        for output in definition.outputs { check(output.expression, loops: [], what: "output \"\(output.name)\"") }
    }

    private mutating func checkExpressions(in steps: [WorkflowStep], loops: [LoopContext]) {
        for step in steps {
            let what = "step \"\(step.id)\""
            switch step.kind {
            case .agentTask(let task):
                for expression in task.input.expressions { check(expression, loops: loops, what: what) }
            case .condition(let condition):
                check(condition.condition, loops: loops, what: what)
            case .parallel(let parallel):
                for branch in parallel.branches { checkExpressions(in: branch, loops: loops) }
            case .loop(let loop):
                if let forEach = loop.forEach { check(forEach, loops: loops, what: what) }
                let inner = loops + [LoopContext(hasItem: loop.forEach != nil)]
                if let condition = loop.whileCondition { check(condition, loops: inner, what: what) }
                if let condition = loop.untilCondition { check(condition, loops: inner, what: what) }
                checkExpressions(in: loop.body, loops: inner)
            case .humanApproval(let approval):
                for expression in approval.message.expressions { check(expression, loops: loops, what: what) }
            }
        }
    }

    static let roots = ["inputs", "steps", "trigger", "context", "execution", "item", "iteration"]

    private mutating func check(_ expression: WorkflowExpression, loops: [LoopContext], what: String) {
        func at(_ column: Int) -> SourceLocation? {
            expression.location.map { SourceLocation(line: $0.line, column: $0.column + column - 1) }
        }
        for reference in expression.references {
            switch reference.root {
            case "inputs":
                if let member = reference.member, !definition.inputs.contains(where: { $0.name == member }) {
                    let hint = Suggestion.hint(for: member, among: definition.inputs.map(\.name))
                    report(at(reference.memberColumn ?? reference.column), expression.path, "\(what) reads inputs.\(member), which is not declared under inputs\(hint)")
                }
            case "steps":
                guard let member = reference.member else {
                    report(at(reference.column), expression.path, "\(what) reads steps on its own; name a step: steps.<id>.result")
                    continue
                }
                if placements[member] == nil {
                    report(at(reference.memberColumn ?? reference.column), expression.path, "\(what) reads steps.\(member), but there is no step \"\(member)\"\(Suggestion.hint(for: member, among: placements.keys.sorted()))")
                }
            case "trigger", "context", "execution":
                break
            case "iteration":
                if loops.isEmpty { report(at(reference.column), expression.path, "\(what) reads iteration outside a loop") }
            case "item":
                if !(loops.last?.hasItem ?? false) {
                    report(at(reference.column), expression.path, "\(what) reads item, which only a loop with forEach defines")
                }
            default:
                let hint = Suggestion.hint(for: reference.root, among: Self.roots)
                report(at(reference.column), expression.path, "\(what) reads unknown name \"\(reference.root)\"\(hint); expressions read inputs, steps, trigger, context, execution, and item or iteration in loops")
            }
        }
    }

    private mutating func report(_ location: SourceLocation?, _ path: String, _ message: String) {
        problems.append(WorkflowDiagnostic(location: location, path: path, message: message))
    }
}
