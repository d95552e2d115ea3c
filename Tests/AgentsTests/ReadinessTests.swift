import Agents
import JSONRPC
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

/// A client's first look at a gateway whose agents are still starting: lists and calls wait for
/// them, and the names they get stay.
@Suite("Readiness and stable names")
struct ReadinessTests {
    let loop = EmbeddedEventLoop()

    private func offer(_ tools: [String]) -> AgentOffer {
        var offer = AgentOffer()
        offer.tools = tools.map { ToolDefinition(name: $0, definition: try! RawJSON(validating: #"{"name":"\#($0)","inputSchema":{"type":"object"}}"#)) }
        return offer
    }

    private func registration(_ id: String, template: String) -> AgentRegistry.Registration {
        AgentRegistry.Registration(name: id, template: template, version: "1", kind: .spawned, maximumConcurrency: 4)
    }

    /// A spawned instance as the supervisor adds it: starting, its offer unknown.
    private func addStarting(_ registry: AgentRegistry, _ id: String, template: String) {
        registry.add(.init(id), registration(id, template: template), startingUp: true)
    }

    private func ready(_ registry: AgentRegistry, _ id: String, tools: [String]) {
        registry.ready(.init(id), endpoint: RecordingEndpoint(eventLoop: loop), offer: offer(tools))
    }

    private func exposedTools(_ registry: AgentRegistry) -> [String] {
        registry.toolDefinitions().map(\.name)
    }

    @Test func aStartingInstanceIsNotIdle() {
        let registry = AgentRegistry()
        addStarting(registry, "time#1", template: "time")
        #expect(registry.status(.init("time#1"))?["currentState"] == "STARTING")
        #expect(registry.status(.init("time#1"))?["healthStatus"] != "HEALTHY")
        ready(registry, "time#1", tools: ["now"])
        #expect(registry.status(.init("time#1"))?["currentState"] == "IDLE")
        #expect(registry.status(.init("time#1"))?["healthStatus"] == "HEALTHY")
    }

    @Test func failedAndOfflineInstancesAreNeverHealthy() {
        let registry = AgentRegistry()
        addStarting(registry, "a#1", template: "a")
        ready(registry, "a#1", tools: ["x"])
        registry.down(.init("a#1"), .failed("exited with status 1"))
        #expect(registry.status(.init("a#1"))?["currentState"] == "ERROR")
        #expect(registry.status(.init("a#1"))?["healthStatus"] == "UNHEALTHY")
        registry.down(.init("a#1"), .offline("stopped"))
        #expect(registry.status(.init("a#1"))?["healthStatus"] == "UNHEALTHY")
    }

    @Test func aListWaitsUntilEveryStartingTemplateHasAnswered() {
        let registry = AgentRegistry()
        addStarting(registry, "time#1", template: "time")
        addStarting(registry, "git#1", template: "git")
        #expect(registry.startingTemplates == ["git", "time"])
        let listed = Mutex<[String]?>(nil)
        registry.afterStartup(on: loop, within: .seconds(30)) { listed.withLock { $0 = self.exposedTools(registry) } }
        ready(registry, "time#1", tools: ["now"])
        #expect(listed.withLock { $0 } == nil)
        ready(registry, "git#1", tools: ["git_log"])
        loop.run()  // the list is answered on its own loop
        #expect(listed.withLock { $0 } == ["git_log", "now"])
        #expect(!registry.isStarting)
    }

    @Test func aTemplateThatFailsItsHandshakeEndsTheWait() {
        let registry = AgentRegistry()
        addStarting(registry, "broken#1", template: "broken")
        let answered = Mutex(false)
        registry.afterStartup(on: loop, within: .seconds(30)) { answered.withLock { $0 = true } }
        registry.down(.init("broken#1"), .failed("failed its MCP handshake"))
        loop.run()
        #expect(answered.withLock { $0 })
    }

    @Test func theWaitIsBounded() {
        let registry = AgentRegistry()
        addStarting(registry, "slow#1", template: "slow")
        let answered = Mutex(false)
        registry.afterStartup(on: loop, within: .seconds(2)) { answered.withLock { $0 = true } }
        loop.advanceTime(by: .seconds(1))
        #expect(!answered.withLock { $0 })
        loop.advanceTime(by: .seconds(1))
        #expect(answered.withLock { $0 })
        // The supervisor ends the instance's window at the readiness limit: nothing waits then.
        registry.endStartupWindow(.init("slow#1"))
        #expect(!registry.isStarting)
    }

    @Test func anotherInstanceStartingDoesNotHoldUpAKnownTemplate() {
        let registry = AgentRegistry()
        addStarting(registry, "time#1", template: "time")
        ready(registry, "time#1", tools: ["now"])
        addStarting(registry, "time#2", template: "time")  // scaled up: its tools are known
        #expect(!registry.isStarting)
    }

    @Test func aCallForAToolNoOneOffersYetWaitsForTheStartingTemplate() throws {
        let registry = AgentRegistry()
        addStarting(registry, "time#1", template: "time")
        var lease: AgentRegistry.Lease?
        registry.acquire(.tool, "now", on: loop, timeout: .seconds(60)).assumeIsolated().whenSuccess { lease = $0 }
        loop.run()
        #expect(lease == nil)
        ready(registry, "time#1", tools: ["now"])
        loop.run()
        #expect(lease?.instance.rawValue == "time#1")
    }

    @Test func aCallForAToolNoStartingTemplateOffersFailsOnceTheyAreUp() {
        let registry = AgentRegistry()
        addStarting(registry, "time#1", template: "time")
        var failure: (any Error)?
        registry.acquire(.tool, "nope", on: loop, timeout: .seconds(60)).assumeIsolated().whenFailure { failure = $0 }
        loop.run()
        #expect(failure == nil)
        ready(registry, "time#1", tools: ["now"])
        loop.run()
        guard case .unknownTool("nope")? = failure as? AgentRegistry.AcquireError else {
            Issue.record("expected unknown tool, got \(String(describing: failure))")
            return
        }
    }

    @Test func aTaskForAToolNoOneOffersYetStaysQueued() {
        let registry = AgentRegistry()
        addStarting(registry, "time#1", template: "time")
        guard case .busy = registry.tryAcquire(.tool, "now", constraints: .init()) else {
            Issue.record("a task must wait while a template that may offer its tool starts")
            return
        }
        #expect(registry.refusal(.tool, "now", constraints: .init()) == nil)
        ready(registry, "time#1", tools: ["now"])
        guard case .leased = registry.tryAcquire(.tool, "now", constraints: .init()) else {
            Issue.record("the task runs once the tool is offered")
            return
        }
    }

    // MARK: Names

    @Test func aNameOnceListedKeepsNamingTheSameTool() {
        let registry = AgentRegistry()
        registry.add(.init("fast#1"), registration("fast#1", template: "fast"))
        ready(registry, "fast#1", tools: ["sleepy"])
        #expect(exposedTools(registry) == ["sleepy"])
        // A second template offering the same name comes up later: it gets the prefixed name.
        registry.add(.init("slow#1"), registration("slow#1", template: "slow"))
        ready(registry, "slow#1", tools: ["sleepy"])
        #expect(exposedTools(registry) == ["sleepy", "slow__sleepy"])
        guard case .leased(let lease) = registry.tryAcquire(.tool, "sleepy", constraints: .init()) else {
            Issue.record("sleepy must still name fast's tool")
            return
        }
        #expect(lease.template == "fast")
    }

    @Test func namesSettledWhenStartUpEndsStayWithoutAList() {
        let registry = AgentRegistry()
        addStarting(registry, "fast#1", template: "fast")
        ready(registry, "fast#1", tools: ["sleepy"])
        addStarting(registry, "slow#1", template: "slow")
        ready(registry, "slow#1", tools: ["sleepy"])
        #expect(registry.toolDefinitions().map(\.name) == ["sleepy", "slow__sleepy"])
    }

    @Test func templatesThatComeUpTogetherAreBothPrefixedAndTheBareNameIsAmbiguous() {
        let registry = AgentRegistry()
        addStarting(registry, "fast#1", template: "fast")
        addStarting(registry, "slow#1", template: "slow")
        ready(registry, "fast#1", tools: ["sleepy"])
        ready(registry, "slow#1", tools: ["sleepy"])
        #expect(exposedTools(registry) == ["fast__sleepy", "slow__sleepy"])
        guard case .refused(.ambiguous("sleepy", let candidates)) = registry.tryAcquire(.tool, "sleepy", constraints: .init()) else {
            Issue.record("a bare name two templates offer is ambiguous")
            return
        }
        #expect(candidates == ["fast__sleepy", "slow__sleepy"])
    }

    @Test func aPinnedNameWhoseToolIsGoneIsNotGivenToAnother() {
        let registry = AgentRegistry()
        registry.add(.init("a#1"), registration("a#1", template: "a"))
        ready(registry, "a#1", tools: ["search"])
        #expect(exposedTools(registry) == ["search"])
        registry.remove(.init("a#1"))
        registry.add(.init("b#1"), registration("b#1", template: "b"))
        ready(registry, "b#1", tools: ["search"])
        #expect(exposedTools(registry) == ["b__search"])
        // The first template comes back: its name is waiting for it.
        registry.add(.init("a#2"), registration("a#2", template: "a"))
        ready(registry, "a#2", tools: ["search"])
        #expect(exposedTools(registry) == ["b__search", "search"])
    }

    @Test func aPrefixSetUpFrontNamesEveryToolOfItsTemplate() {
        let registry = AgentRegistry()
        registry.setPrefix("gh_", forTemplate: "github")
        addStarting(registry, "github#1", template: "github")
        ready(registry, "github#1", tools: ["create_issue", "search"])
        registry.add(.init("web#1"), registration("web#1", template: "web"))
        ready(registry, "web#1", tools: ["search"])
        #expect(exposedTools(registry) == ["gh_create_issue", "gh_search", "search"])
    }

    @Test func anInstanceStillStartingIsNotAnnouncedToOtherReplicas() {
        let registry = AgentRegistry()
        addStarting(registry, "time#1", template: "time")
        #expect(registry.localSnapshots().isEmpty)
        ready(registry, "time#1", tools: ["now"])
        #expect(registry.localSnapshots().map(\.id.rawValue) == ["time#1"])
    }

    @Test func aPrefixedNameIsNeverTakenByABareNameThatLooksTheSame() {
        let registry = AgentRegistry()
        registry.setPrefix("gh_", forTemplate: "github")
        // "aaa" sorts first and offers a tool literally named gh_search.
        addStarting(registry, "aaa#1", template: "aaa")
        addStarting(registry, "github#1", template: "github")
        ready(registry, "aaa#1", tools: ["gh_search"])
        ready(registry, "github#1", tools: ["search"])
        guard case .leased(let lease) = registry.tryAcquire(.tool, "gh_search", constraints: .init()) else {
            Issue.record("gh_search must name a tool")
            return
        }
        #expect(lease.template == "github")
        #expect(exposedTools(registry) == ["aaa__gh_search", "gh_search"])
    }
}
