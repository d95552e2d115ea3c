import Agents
import Dispatch
import Histogram
import JSONRPC
import Logging
import NIOCore
import NIOPosix
import Router
import Synchronization

/// The gateway's own share of a task assignment, without sockets: the task engine and agent
/// registry of `switchboard serve`, in this process, on one event loop, with `queued` tasks waiting
/// behind one agent instance of maxConcurrency 1. The instance's endpoint answers every call on
/// the event loop; the gap runs from that answer to the engine's next call reaching the endpoint
/// — the verdict on the attempt, the slot freed, the dispatch pass that picks the next task from
/// the queue, and the call made. What the socket measurement adds to this is two trips through
/// the kernel.
enum EngineAssignment {
    struct Outcome {
        var gaps: Histogram<UInt64>
        var assignments: Int
        var seconds: Double
        var queuedAtStart: Int
        var queuedAtEnd: Int

        func micros(_ percentile: Double) -> Double { Double(gaps.valueAtPercentile(percentile)) / 1000 }
    }

    static func measure(queued: Int, warmup: Int, assignments: Int) async throws -> Outcome {
        // The engine's repeating pass keeps a task scheduled on the loop: the group lives as long
        // as the process, like the gateway's.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        var logger = Logger(label: "bench.engine")
        logger.logLevel = .critical
        let registry = AgentRegistry()
        let endpoint = AnsweringEndpoint(eventLoop: loop, warmup: warmup, recorded: assignments)
        let instance = AgentRegistry.InstanceID("worker")
        registry.add(instance, AgentRegistry.Registration(name: "worker", template: "worker", version: "1", kind: .attached, maximumConcurrency: 1))
        var offer = AgentOffer()
        offer.tools = [ToolDefinition(name: "work", definition: try RawJSON(validating: #"{"name":"work","inputSchema":{"type":"object"}}"#))]
        let engine = TaskEngine(agents: registry, group: group, logger: logger)

        // Everything queues while the instance is in maintenance; its first call starts the chain.
        registry.ready(instance, endpoint: endpoint, offer: offer)
        try registry.setMaintenance(instance, true)
        let arguments = try RawJSON(validating: "{}")
        for _ in 0..<(queued + warmup + assignments + 1) {
            _ = try engine.submitNow(TaskSubmission(taskType: "work", taskData: arguments))
        }
        let queuedAtStart = engine.statisticsNow().queued
        let started = DispatchTime.now().uptimeNanoseconds
        try registry.setMaintenance(instance, false)
        let gaps = try await endpoint.finished.get()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return Outcome(
            gaps: gaps, assignments: assignments, seconds: seconds, queuedAtStart: queuedAtStart, queuedAtEnd: engine.statisticsNow().queued)
    }

    /// An agent instance that answers each call on the event loop as soon as the call is made,
    /// and records how long the engine took to make the next one. After `warmup + recorded`
    /// answers it holds the next call, so that the engine stops.
    private final class AnsweringEndpoint: AgentEndpoint, Sendable {
        private struct State {
            var answered = 0
            var answeredAt: UInt64 = 0
            var gaps = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
            var nextID = 0
        }

        let eventLoop: any EventLoop
        private let warmup: Int
        private let recorded: Int
        private let state = Mutex(State())
        private let done: EventLoopPromise<Histogram<UInt64>>
        var finished: EventLoopFuture<Histogram<UInt64>> { done.futureResult }
        private static let result = try! RawJSON(validating: #"{"content":[{"type":"text","text":"ok"}]}"#)

        init(eventLoop: any EventLoop, warmup: Int, recorded: Int) {
            self.eventLoop = eventLoop
            self.warmup = warmup
            self.recorded = recorded
            self.done = eventLoop.makePromise()
        }

        func call(_ method: String, params: JSONValue?, timeout: TimeAmount) -> PendingCall {
            let arrived = DispatchTime.now().uptimeNanoseconds
            let promise = eventLoop.makePromise(of: RawJSON.self)
            let (id, answer, finishedGaps) = state.withLock { state -> (Int, Bool, Histogram<UInt64>?) in
                state.nextID += 1
                if state.answered > warmup { _ = state.gaps.record(arrived - state.answeredAt) }
                if state.answered == warmup + recorded { return (state.nextID, false, state.gaps) }
                return (state.nextID, true, nil)
            }
            if let finishedGaps { done.succeed(finishedGaps) }
            if answer {
                // Answered from the event loop, as a reply read from the agent's connection is.
                eventLoop.execute { [self] in
                    state.withLock { state in
                        state.answered += 1
                        state.answeredAt = DispatchTime.now().uptimeNanoseconds
                    }
                    promise.succeed(Self.result)
                }
            }
            return PendingCall(id: .string("engine-\(id)"), result: promise.futureResult)
        }

        func cancel(_ id: JSONRPCID, reason: String) {}
        func notify(_ method: String, params: JSONValue?) {}
        func close() {}
    }
}
