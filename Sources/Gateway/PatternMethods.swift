import Agents
import FoundationEssentials
import JSONRPC
import NIOCore
import Synchronization

/// Scatter-gather (`tasks/scatter`) and pipelines (`tasks/pipeline`) over the agents' tools.
enum PatternMethods {
    static func register(in table: inout MethodTable, agents: AgentRegistry, readinessWait: Duration = .seconds(30)) {
        table.register("tasks/scatter") { request, context in
            scatter(request, context, agents: agents, readinessWait: readinessWait)
        }
        table.register("tasks/pipeline") { request, context in pipeline(request, context, agents: agents) }
    }

    // MARK: Scatter-gather

    enum Aggregation: String {
        case all, first, majority
    }

    /// One tool on several agents at once: `targets` ("all" or a count), a `quorum` of successes,
    /// a `timeout` after which partial results are returned, and an `aggregation`.
    private static func scatter(_ request: JSONRPCRequest, _ context: MethodContext, agents: AgentRegistry, readinessWait: Duration) -> MethodReply {
        guard let params = request.params, params.kind == .object else {
            return .error(.invalidParams("tasks/scatter needs \"tool\" (or \"taskType\"), and arguments, targets, quorum, timeout, aggregation"))
        }
        let named: ToolInvocation
        switch ToolInvocation.read(params) {
        case .success(let invocation): named = invocation
        case .failure(let error): return .error(error)
        }
        let (tool, arguments) = (named.tool, named.arguments)
        var targets = Int.max
        if let value = params.member("targets"), value.stringValue != "all" {
            guard let count = value.decoded().integerValue, count >= 1, count <= 1_000 else {
                return .error(.invalidParams("\"targets\" must be \"all\" or a number from 1 to 1000"))
            }
            targets = Int(count)
        }
        let aggregationName = params.member("aggregation")?.stringValue ?? "all"
        guard let aggregation = Aggregation(rawValue: aggregationName) else {
            return .error(.invalidParams("\"aggregation\" must be all, first or majority"))
        }
        var timeout = Duration.seconds(30)
        if let value = params.member("timeout") {
            guard let seconds = value.decoded().numberValue, seconds > 0, seconds <= 3_600 else {
                return .error(.invalidParams("\"timeout\" must be a number of seconds from 0 to 3600"))
            }
            timeout = .milliseconds(Int64(seconds * 1000))
        }
        // Checked before any lease is taken: a refusal must leave no instance reserved.
        var askedQuorum: Int?
        if let value = params.member("quorum") {
            guard let count = value.decoded().integerValue, count >= 1 else { return .error(.invalidParams("\"quorum\" must be a positive integer")) }
            askedQuorum = Int(count)
        }
        // A tool that no one offers yet may come with an agent still starting.
        guard agents.offersTool(tool) else {
            return AgentMethods.afterStartup(agents, context, within: readinessWait) { [targets, timeout, askedQuorum] in
                gather(tool: tool, arguments: arguments, targets: targets, aggregation: aggregation, quorum: askedQuorum, timeout: timeout, context, agents: agents)
            }
        }
        return gather(tool: tool, arguments: arguments, targets: targets, aggregation: aggregation, quorum: askedQuorum, timeout: timeout, context, agents: agents)
    }

    /// `quorum`: as asked, or nil for the default (1 for `first`, else every target).
    private static func gather(
        tool: String, arguments: RawJSON, targets: Int, aggregation: Aggregation, quorum askedQuorum: Int?, timeout: Duration, _ context: MethodContext,
        agents: AgentRegistry
    ) -> MethodReply {
        // One lease per distinct instance, taken now: scatter goes to the agents that can run it.
        var leases: [AgentRegistry.Lease] = []
        var avoiding: Set<AgentRegistry.InstanceID> = []
        while leases.count < targets {
            guard case .leased(let lease) = agents.tryAcquire(.tool, tool, constraints: .init(avoiding: avoiding)) else { break }
            guard !avoiding.contains(lease.instance) else {
                // Every other instance is taken: the registry offered one we already have.
                lease.release()
                break
            }
            avoiding.insert(lease.instance)
            leases.append(lease)
        }
        let quorum = askedQuorum ?? (aggregation == .first ? 1 : leases.count)
        guard !leases.isEmpty else {
            if case .refused(let error) = agents.tryAcquire(.tool, tool, constraints: .init()) {
                return .error(AgentCallError(error, name: tool).jsonRPCError)
            }
            if !agents.offersTool(tool) {
                // The wait for the agents still starting ran out without anyone offering it.
                return .error(AgentCallError(AgentRegistry.AcquireError.unknownTool(tool), name: tool).jsonRPCError)
            }
            return .error(JSONRPCError(
                code: JSONRPCError.Code.agentBusy, message: "No agent offering \"\(tool)\" has free capacity",
                data: ["tool": .string(tool), "reason": "every instance is busy"]))
        }

        let gather = Gather(count: leases.count, aggregation: aggregation, quorum: quorum, promise: context.eventLoop.makePromise(of: JSONValue.self))
        let started = ContinuousClock.now
        for (index, lease) in leases.enumerated() {
            // The scatter's deadline decides; the call's own timeout is only a backstop.
            let call = lease.endpoint.call(
                "tools/call", params: ["name": .string(lease.originalName), "arguments": .raw(arguments)],
                timeout: TimeAmount(timeout) + .seconds(5))
            gather.started(index, agent: lease.instance.rawValue, call: call, endpoint: lease.endpoint)
            call.result.whenComplete { outcome in
                switch outcome {
                case .failure(is AgentCallCancelled):
                    // Cancelled because another answered first or time ran out: no verdict.
                    lease.release()
                case .success(let result):
                    lease.finish(succeeded: result.member("isError")?.decoded() != .bool(true))
                case .failure(let error):
                    lease.finish(succeeded: error is JSONRPCError)
                }
                gather.ended(index, outcome: outcome, after: ContinuousClock.now - started)
            }
        }
        context.eventLoop.scheduleTask(in: TimeAmount(timeout)) { gather.timeUp() }
        return .cancellable(gather.promise.futureResult) { gather.cancelAll(reason: "cancelled by the client") }
    }

    /// Collects the outcomes of one scatter, and answers once: when all are in, when the first
    /// success arrives (`first`), or when time is up (with what has arrived).
    final class Gather: Sendable {
        struct Outcome {
            var agent: String
            var status = "pending"
            var result: RawJSON?
            var error: String?
            var milliseconds: Double?
        }

        private struct State {
            var outcomes: [Outcome]
            var calls: [(PendingCall, any AgentEndpoint)?]
            var answered = false
            var ended = 0
        }

        let promise: EventLoopPromise<JSONValue>
        private let aggregation: Aggregation
        private let quorum: Int
        private let state: Mutex<State>

        init(count: Int, aggregation: Aggregation, quorum: Int, promise: EventLoopPromise<JSONValue>) {
            self.aggregation = aggregation
            self.quorum = quorum
            self.promise = promise
            self.state = Mutex(State(outcomes: Array(repeating: Outcome(agent: ""), count: count), calls: Array(repeating: nil, count: count)))
        }

        func started(_ index: Int, agent: String, call: PendingCall, endpoint: any AgentEndpoint) {
            state.withLock {
                $0.outcomes[index].agent = agent
                $0.calls[index] = (call, endpoint)
            }
        }

        func ended(_ index: Int, outcome: Result<RawJSON, any Error>, after elapsed: Duration) {
            let answer: JSONValue? = state.withLock { state in
                guard state.outcomes[index].status == "pending" else { return nil }
                state.ended += 1
                state.calls[index] = nil
                state.outcomes[index].milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                switch outcome {
                case .success(let result) where result.member("isError")?.decoded() == .bool(true):
                    state.outcomes[index].status = "error"
                    state.outcomes[index].result = result
                case .success(let result):
                    state.outcomes[index].status = "ok"
                    state.outcomes[index].result = result
                case .failure(let error as AgentCallTimedOut):
                    state.outcomes[index].status = "timeout"
                    state.outcomes[index].error = error.description
                case .failure(let error):
                    state.outcomes[index].status = "error"
                    state.outcomes[index].error = AgentCallError(error, name: "", agent: state.outcomes[index].agent).jsonRPCError.message
                }
                guard !state.answered else { return nil }
                let firstSuccess = aggregation == .first && state.outcomes[index].status == "ok"
                guard firstSuccess || state.ended == state.outcomes.count else { return nil }
                state.answered = true
                return summary(state.outcomes)
            }
            guard let answer else { return }
            if aggregation == .first { cancelAll(reason: "another agent answered first") }
            promise.succeed(answer)
        }

        func timeUp() {
            let answer: JSONValue? = state.withLock { state in
                guard !state.answered else { return nil }
                state.answered = true
                for index in state.outcomes.indices where state.outcomes[index].status == "pending" {
                    state.outcomes[index].status = "timeout"
                    state.outcomes[index].error = "no answer before the scatter's timeout"
                }
                return summary(state.outcomes)
            }
            guard let answer else { return }
            cancelAll(reason: "the scatter timed out")
            promise.succeed(answer)
        }

        func cancelAll(reason: String) {
            let calls = state.withLock { state in
                defer { state.calls = state.calls.map { _ in nil } }
                return state.calls.compactMap { $0 }
            }
            for (call, endpoint) in calls { endpoint.cancel(call.id, reason: reason) }
            // Unanswered cancelled scatters still get their reply (from what arrived).
            timeUp()
        }

        /// `complete` when every target answered (with a result or an error) in time.
        private func summary(_ outcomes: [Outcome]) -> JSONValue {
            let complete = outcomes.allSatisfy { $0.status == "ok" || $0.status == "error" }
            let successes = outcomes.filter { $0.status == "ok" }
            var result: [String: JSONValue] = [
                "results": .array(outcomes.map { outcome in
                    var object: [String: JSONValue] = ["agentId": .string(outcome.agent), "status": .string(outcome.status)]
                    if let result = outcome.result { object["result"] = .raw(result) }
                    if let error = outcome.error { object["error"] = .string(error) }
                    if let milliseconds = outcome.milliseconds { object["durationMs"] = .double((milliseconds * 1000).rounded() / 1000) }
                    return .object(object)
                }),
                "succeeded": .integer(Int64(successes.count)),
                "targets": .integer(Int64(outcomes.count)),
                "quorum": .integer(Int64(quorum)),
                "quorumMet": .bool(successes.count >= quorum),
                "complete": .bool(complete),
                "aggregation": .string(aggregation.rawValue),
            ]
            switch aggregation {
            case .all:
                break
            case .first:
                if let first = successes.min(by: { ($0.milliseconds ?? 0) < ($1.milliseconds ?? 0) }), let value = first.result {
                    result["result"] = .raw(value)
                    result["agentId"] = .string(first.agent)
                }
            case .majority:
                // Results agree when their content is the same, byte for byte.
                var votes: [String: (count: Int, result: RawJSON)] = [:]
                for success in successes {
                    guard let value = success.result else { continue }
                    let key = (value.member("structuredContent") ?? value.member("content") ?? value).description
                    votes[key, default: (0, value)].count += 1
                }
                if let winner = votes.values.max(by: { $0.count < $1.count }) {
                    result["result"] = .raw(winner.result)
                    result["votes"] = .integer(Int64(winner.count))
                    result["majority"] = .bool(winner.count * 2 > outcomes.count)
                }
            }
            return .object(result)
        }
    }

    // MARK: Pipeline

    /// Stages run one after another; a stage's arguments may use the previous stage's output:
    /// `"${previous}"` or `"${previous.text}"` (inside any string) becomes its text content, and a
    /// value that is exactly `"${previous.structured}"` becomes its `structuredContent`.
    private static func pipeline(_ request: JSONRPCRequest, _ context: MethodContext, agents: AgentRegistry) -> MethodReply {
        guard let stagesRaw = request.params?.member("stages"), stagesRaw.kind == .array else {
            return .error(.invalidParams("tasks/pipeline needs \"stages\": 1 to 64 objects with \"tool\" and \"arguments\" (or \"taskType\" and \"taskData\")"))
        }
        let stages = stagesRaw.elements()
        guard !stages.isEmpty, stages.count <= 64 else {
            return .error(.invalidParams("tasks/pipeline needs \"stages\": 1 to 64 objects with \"tool\" and \"arguments\" (or \"taskType\" and \"taskData\")"))
        }
        var parsed: [(tool: String, arguments: JSONValue)] = []
        for (index, stage) in stages.enumerated() {
            guard stage.kind == .object else {
                return .error(.invalidParams("stage \(index) must be an object with \"tool\" and \"arguments\"", extra: ["stage": .integer(Int64(index))]))
            }
            switch ToolInvocation.read(stage) {
            case .success(let invocation): parsed.append((invocation.tool, invocation.arguments.decoded()))
            case .failure(let error):
                return .error(.invalidParams("stage \(index): \(error.message)", extra: ["stage": .integer(Int64(index))]))
            }
        }
        var timeout = Duration.seconds(300)
        if let value = request.params?.member("timeout") {
            guard let seconds = value.decoded().numberValue, seconds > 0, seconds <= 86_400 else {
                return .error(.invalidParams("\"timeout\" must be a number of seconds from 0 to 86400 (per stage)"))
            }
            timeout = .milliseconds(Int64(seconds * 1000))
        }
        let promise = context.eventLoop.makePromise(of: JSONValue.self)
        runStage(0, parsed, previous: nil, done: [], agents: agents, eventLoop: context.eventLoop, timeout: timeout, promise: promise)
        return .later(promise.futureResult)
    }

    private static func runStage(
        _ index: Int, _ stages: [(tool: String, arguments: JSONValue)], previous: RawJSON?, done: [JSONValue],
        agents: AgentRegistry, eventLoop: any EventLoop, timeout: Duration, promise: EventLoopPromise<JSONValue>
    ) {
        guard index < stages.count else {
            promise.succeed(["stages": .array(done), "result": previous.map(JSONValue.raw) ?? .null])
            return
        }
        let stage = stages[index]
        let arguments = substitute(stage.arguments, previous: previous)
        let started = ContinuousClock.now
        @Sendable func fail(_ reason: String, _ error: JSONRPCError? = nil) {
            promise.fail(JSONRPCError(
                code: JSONRPCError.Code.taskFailed, message: "Pipeline stage \(index) (\(stage.tool)) failed: \(reason)",
                data: ["stage": .integer(Int64(index)), "tool": .string(stage.tool), "reason": .string(reason), "completed": .array(done),
                       "error": error?.jsonValue ?? .null]))
        }
        agents.acquire(.tool, stage.tool, on: eventLoop, timeout: .seconds(60)).whenComplete { acquired in
            guard case .success(let lease) = acquired else {
                if case .failure(let error) = acquired { fail(AgentCallError(error, name: stage.tool).jsonRPCError.message) }
                return
            }
            lease.endpoint.call("tools/call", params: ["name": .string(lease.originalName), "arguments": arguments], timeout: TimeAmount(timeout))
                .result.whenComplete { outcome in
                    switch outcome {
                    case .success(let result) where result.member("isError")?.decoded() == .bool(true):
                        lease.finish(succeeded: false)
                        fail("the tool reported an error: \(text(of: result))")
                    case .success(let result):
                        lease.finish(succeeded: true)
                        let elapsed = ContinuousClock.now - started
                        let record: JSONValue = [
                            "stage": .integer(Int64(index)), "tool": .string(stage.tool), "agentId": .string(lease.instance.rawValue),
                            "durationMs": .double(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15),
                            "result": .raw(result),
                        ]
                        runStage(index + 1, stages, previous: result, done: done + [record], agents: agents, eventLoop: eventLoop, timeout: timeout, promise: promise)
                    case .failure(let error):
                        lease.finish(succeeded: error is JSONRPCError)
                        let mapped = AgentCallError(error, name: stage.tool, agent: lease.instance.rawValue).jsonRPCError
                        fail(mapped.message, mapped)
                    }
                }
        }
    }

    private static func substitute(_ value: JSONValue, previous: RawJSON?) -> JSONValue {
        switch value {
        case .string(let text) where text == "${previous.structured}":
            return previous?.member("structuredContent").map(JSONValue.raw) ?? .null
        case .string(let text) where text.contains("${previous.text}") || text.contains("${previous}"):
            let previousText = previous.map(Self.text(of:)) ?? ""
            return .string(text.replacing("${previous.text}", with: previousText).replacing("${previous}", with: previousText))
        case .array(let items):
            return .array(items.map { substitute($0, previous: previous) })
        case .object(let members):
            return .object(members.mapValues { substitute($0, previous: previous) })
        default:
            return value
        }
    }

    static func text(of result: RawJSON) -> String {
        guard let content = result.member("content"), case .array(let blocks) = content.decoded() else { return "" }
        return blocks.compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
    }
}
