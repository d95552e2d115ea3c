import Agents
import JSONRPC
import NIOEmbedded
import Testing

@Suite("Tools a template disables")
struct HiddenToolsTests {
    let loop = EmbeddedEventLoop()

    private func offer(_ tools: String...) -> AgentOffer {
        var offer = AgentOffer()
        offer.tools = tools.map { ToolDefinition(name: $0, definition: try! RawJSON(validating: #"{"name":"\#($0)","inputSchema":{"type":"object"}}"#)) }
        return offer
    }

    private func startedInstance(hiding hidden: Set<String>, offering offer: AgentOffer) -> AgentRegistry {
        let registry = AgentRegistry()
        _ = registry.add(.init("git#1"), .init(name: "git#1", template: "git", version: "1", kind: .spawned, maximumConcurrency: 1))
        registry.ready(.init("git#1"), endpoint: RecordingEndpoint(eventLoop: loop), offer: offer, hidingTools: hidden)
        return registry
    }

    @Test func areNeitherListedNorCallable() {
        let registry = startedInstance(hiding: ["git_commit"], offering: offer("git_status", "git_commit"))
        #expect(registry.toolDefinitions().map(\.name) == ["git_status"])
        let call = registry.acquire(.tool, "git_commit", on: loop, timeout: .seconds(1))
        var failed = false
        call.assumeIsolated().whenFailure { _ in failed = true }
        loop.run()
        #expect(failed)
    }

    @Test func stayHiddenWhenTheServerListsItsToolsAgain() {
        let registry = startedInstance(hiding: ["git_commit"], offering: offer("git_status"))
        registry.updateOffer(.init("git#1"), offer("git_status", "git_commit", "git_log"))
        #expect(registry.toolDefinitions().map(\.name) == ["git_log", "git_status"])
        registry.updateOfferIfChanged(.init("git#1"), offer("git_commit", "git_diff"))
        #expect(registry.toolDefinitions().map(\.name) == ["git_diff"])
    }
}
