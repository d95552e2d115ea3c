import Agents
import JSONRPC
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

/// An endpoint that records what it is asked and never answers: selection is what is tested.
final class RecordingEndpoint: AgentEndpoint, Sendable {
    let eventLoop: EmbeddedEventLoop
    init(eventLoop: EmbeddedEventLoop) { self.eventLoop = eventLoop }
    func call(_ method: String, params: JSONValue?, timeout: TimeAmount) -> PendingCall {
        PendingCall(id: .string("x"), result: eventLoop.makeSucceededFuture(RawJSON.emptyObject))
    }
    func cancel(_ id: JSONRPCID, reason: String) {}
    func notify(_ method: String, params: JSONValue?) {}
    func close() {}
}

@Suite("Agent registry")
struct AgentRegistryTests {
    let loop = EmbeddedEventLoop()

    private func offer(_ tools: String...) -> AgentOffer {
        var offer = AgentOffer()
        offer.tools = tools.map { ToolDefinition(name: $0, definition: try! RawJSON(validating: #"{"name":"\#($0)","inputSchema":{"type":"object"}}"#)) }
        return offer
    }

    private func addReady(_ registry: AgentRegistry, _ id: String, template: String, version: String = "1", capacity: Int = 2, tools: String...) {
        let registration = AgentRegistry.Registration(name: id, template: template, version: version, kind: .attached, maximumConcurrency: capacity)
        registry.add(.init(id), registration)
        var offer = AgentOffer()
        offer.tools = tools.map { ToolDefinition(name: $0, definition: try! RawJSON(validating: #"{"name":"\#($0)","inputSchema":{"type":"object"}}"#)) }
        registry.ready(.init(id), endpoint: RecordingEndpoint(eventLoop: loop), offer: offer)
    }

    private func acquire(_ registry: AgentRegistry, _ tool: String) throws -> AgentRegistry.Lease? {
        let future = registry.acquire(.tool, tool, on: loop, timeout: .seconds(5))
        loop.run()
        var lease: AgentRegistry.Lease?
        future.assumeIsolated().whenSuccess { lease = $0 }
        loop.run()
        return lease
    }

    @Test func picksTheLeastLoadedInstanceAndNeverExceedsCapacity() throws {
        let registry = AgentRegistry()
        addReady(registry, "a", template: "echo", capacity: 2, tools: "echo")
        addReady(registry, "b", template: "echo", capacity: 2, tools: "echo")
        let leases = try (0..<4).map { _ in try #require(try acquire(registry, "echo")) }
        #expect(leases.filter { $0.instance.rawValue == "a" }.count == 2)
        #expect(leases.filter { $0.instance.rawValue == "b" }.count == 2)
        #expect(registry.status(.init("a"))?["currentState"] == "OVERLOADED")
        // A fifth call waits until a slot frees up.
        let waiting = registry.acquire(.tool, "echo", on: loop, timeout: .seconds(5))
        var granted: AgentRegistry.Lease?
        waiting.assumeIsolated().whenSuccess { granted = $0 }
        loop.run()
        #expect(granted == nil)
        leases[0].finish(succeeded: true)
        loop.run()
        #expect(granted?.instance == leases[0].instance)
    }

    @Test func aWaitingCallTimesOut() {
        let registry = AgentRegistry()
        addReady(registry, "a", template: "echo", capacity: 1, tools: "echo")
        _ = registry.acquire(.tool, "echo", on: loop, timeout: .seconds(5))
        let waiting = registry.acquire(.tool, "echo", on: loop, timeout: .seconds(1))
        var failure: (any Error)?
        waiting.assumeIsolated().whenFailure { failure = $0 }
        loop.advanceTime(by: .seconds(2))
        guard case .timedOut? = failure as? AgentRegistry.AcquireError else {
            Issue.record("expected a timeout, got \(String(describing: failure))")
            return
        }
    }

    @Test func unknownToolsAndOfflineTemplatesAreRefused() {
        let registry = AgentRegistry()
        var failure: (any Error)?
        registry.acquire(.tool, "nope", on: loop, timeout: .seconds(1)).assumeIsolated().whenFailure { failure = $0 }
        loop.run()
        guard case .unknownTool? = failure as? AgentRegistry.AcquireError else {
            Issue.record("expected unknownTool")
            return
        }
        addReady(registry, "a", template: "echo", tools: "echo")
        registry.down(.init("a"), .offline("gone"))
        #expect(registry.toolDefinitions().isEmpty)
        #expect(registry.status(.init("a"))?["currentState"] == "OFFLINE")
    }

    @Test func maintenanceTakesAnInstanceOutOfRotation() throws {
        let registry = AgentRegistry()
        addReady(registry, "a", template: "echo", tools: "echo")
        addReady(registry, "b", template: "echo", tools: "echo")
        try registry.setMaintenance(.init("a"), true)
        #expect(registry.status(.init("a"))?["currentState"] == "MAINTENANCE")
        for _ in 0..<2 {
            #expect(try acquire(registry, "echo")?.instance.rawValue == "b")
        }
        try registry.setMaintenance(.init("a"), false)
        #expect(try acquire(registry, "echo")?.instance.rawValue == "a")
    }

    @Test func drainingFinishesInFlightCallsThenReports() throws {
        let registry = AgentRegistry()
        let drained = Mutex<[String]>([])
        registry.onDrained { id in drained.withLock { $0.append(id.rawValue) } }
        addReady(registry, "a", template: "echo", tools: "echo")
        let lease = try #require(try acquire(registry, "echo"))
        try registry.drain(.init("a"))
        #expect(drained.withLock { $0 }.isEmpty)
        lease.finish(succeeded: true)
        #expect(drained.withLock { $0 } == ["a"])
    }

    @Test func aNewVersionBecomesActiveAndRollbackRestoresThePrevious() throws {
        let registry = AgentRegistry()
        addReady(registry, "v1", template: "echo", version: "1.0", tools: "echo")
        addReady(registry, "v2", template: "echo", version: "2.0", tools: "echo")
        #expect(try acquire(registry, "echo")?.instance.rawValue == "v2")
        let rollback = try registry.rollback(template: "echo")
        #expect(rollback.from == "2.0")
        #expect(rollback.to == "1.0")
        #expect(rollback.instances.map(\.rawValue) == ["v2"])
        #expect(try acquire(registry, "echo")?.instance.rawValue == "v1")
        #expect(throws: AgentRegistry.StateChangeError.self) { try registry.rollback(template: "echo") }
    }

    @Test func theCatalogNamespacesLaterCollisionsAndAnnouncesChanges() {
        let registry = AgentRegistry()
        let changes = Mutex(0)
        registry.onCatalogChange { _ in changes.withLock { $0 += 1 } }
        addReady(registry, "t1", template: "time", tools: "now", "convert")
        // "now" already names time's tool: clock's comes under its own name.
        addReady(registry, "c1", template: "clock", tools: "now")
        #expect(registry.toolDefinitions().map(\.name) == ["clock__now", "convert", "now"])
        #expect(changes.withLock { $0 } >= 2)
    }

    @Test func theCatalogFollowsEveryInstanceThroughItsLife() throws {
        let registry = AgentRegistry()
        let announced = Mutex(0)
        registry.onCatalogChange { _ in announced.withLock { $0 += 1 } }
        addReady(registry, "a1", template: "a", tools: "x", "y")
        addReady(registry, "a2", template: "a", tools: "x")
        addReady(registry, "b1", template: "b", tools: "z")
        #expect(registry.toolDefinitions().map(\.name) == ["x", "y", "z"])
        let afterJoining = announced.withLock { $0 }

        // Another instance offering names already exposed changes nothing, and says nothing.
        addReady(registry, "a3", template: "a", tools: "y")
        #expect(announced.withLock { $0 } == afterJoining)

        // "y" stays while an instance still offers it, and goes with the last one.
        registry.down(.init("a1"), .offline("gone"))
        #expect(registry.toolDefinitions().map(\.name) == ["x", "y", "z"])
        registry.remove(.init("a3"))
        #expect(registry.toolDefinitions().map(\.name) == ["x", "z"])
        #expect(announced.withLock { $0 } == afterJoining + 1)

        // A name another template offers too keeps naming the first one's tool; the newcomer's
        // is namespaced, and goes when it stops offering it.
        registry.updateOffer(.init("b1"), offer("z", "x"))
        #expect(registry.toolDefinitions().map(\.name) == ["b__x", "x", "z"])
        #expect(try acquire(registry, "b__x")?.instance.rawValue == "b1")
        #expect(try acquire(registry, "x")?.instance.rawValue == "a2")
        registry.updateOffer(.init("b1"), offer("z"))
        #expect(registry.toolDefinitions().map(\.name) == ["x", "z"])

        // An instance that comes back counts again; the last of a template takes its names along.
        registry.ready(.init("a1"), endpoint: RecordingEndpoint(eventLoop: loop), offer: offer("x", "y"))
        #expect(registry.toolDefinitions().map(\.name) == ["x", "y", "z"])
        for id in ["a1", "a2"] { registry.remove(.init(id)) }
        #expect(registry.toolDefinitions().map(\.name) == ["z"])
        #expect(registry.instances(ofTemplate: "a").isEmpty)
    }

    @Test func aNewVersionsOffersReplaceTheOldOnesInTheCatalog() {
        let registry = AgentRegistry()
        addReady(registry, "v1", template: "t", version: "1", tools: "old", "kept")
        #expect(registry.toolDefinitions().map(\.name) == ["kept", "old"])
        addReady(registry, "v2", template: "t", version: "2", tools: "kept", "new")
        #expect(registry.toolDefinitions().map(\.name) == ["kept", "new"])
        _ = try? registry.rollback(template: "t")
        #expect(registry.toolDefinitions().map(\.name) == ["kept", "old"])
    }

    @Test func tenThousandInstancesOfOneTemplateShareOneCatalogEntry() throws {
        let registry = AgentRegistry()
        for index in 0..<10_000 { addReady(registry, "w\(index)", template: "worker", capacity: 1, tools: "work") }
        #expect(registry.toolDefinitions().map(\.name) == ["work"])
        #expect(registry.instances(ofTemplate: "worker").count == 10_000)
        // Each call goes to an instance still free (capacity 1 each).
        var served = Set<String>()
        for _ in 0..<100 { served.insert(try #require(try acquire(registry, "work")).instance.rawValue) }
        #expect(served.count == 100)
        registry.remove(.init("w0"))
        #expect(registry.instances(ofTemplate: "worker").count == 9_999)
        #expect(registry.toolDefinitions().map(\.name) == ["work"])
    }
}
