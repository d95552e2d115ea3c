import Agents
import Testing

@Suite("Tool naming")
struct ToolNamingTests {
    @Test func keepsUniqueNamesAndNamespacesSharedOnes() {
        let names = ToolNaming.exposedNames(offeredBy: ["time": ["get_time", "convert"], "clock": ["get_time"], "echo": ["echo"]])
        #expect(names["convert"] == .init(template: "time", name: "convert"))
        #expect(names["echo"] == .init(template: "echo", name: "echo"))
        #expect(names["get_time"] == nil)
        #expect(names["time__get_time"] == .init(template: "time", name: "get_time"))
        #expect(names["clock__get_time"] == .init(template: "clock", name: "get_time"))
    }

    @Test func instancesOfOneTemplateCountOnce() {
        let names = ToolNaming.exposedNames(offeredBy: ["time": ["now", "now"]])
        #expect(Array(names.keys) == ["now"])
    }

    @Test func everyExposedNameMatchesTheMCPPattern() {
        let long = String(repeating: "x", count: 80)
        let names = ToolNaming.exposedNames(offeredBy: ["a.b": ["tool with spaces/and:colons", long], "c": [long + "y"]])
        for name in names.keys {
            #expect(name.count <= 64)
            #expect(name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
        }
        #expect(names.count == 3)
    }
}

@Suite("Tool naming: stable catalogs")
struct StableToolNamingTests {
    @Test func pinnedNamesStayAndNewcomersAreNamespaced() {
        let pinned = ["sleepy": ToolNaming.Origin(template: "fast", name: "sleepy")]
        let catalog = ToolNaming.catalog(offeredBy: ["fast": ["sleepy"], "slow": ["sleepy"]], pinned: pinned)
        #expect(catalog.names["sleepy"] == .init(template: "fast", name: "sleepy"))
        #expect(catalog.names["slow__sleepy"] == .init(template: "slow", name: "sleepy"))
        #expect(catalog.ambiguous.isEmpty)
    }

    @Test func aBareNameOfferedTwiceIsAmbiguousWithItsCandidates() {
        let catalog = ToolNaming.catalog(offeredBy: ["fast": ["sleepy"], "slow": ["sleepy"]])
        #expect(catalog.names["sleepy"] == nil)
        #expect(catalog.ambiguous["sleepy"] == ["fast__sleepy", "slow__sleepy"])
    }

    @Test func prefixesAreSanitizedAndStayWithinTheLimit() {
        let catalog = ToolNaming.catalog(offeredBy: ["t": [String(repeating: "n", count: 70)]], prefixes: ["t": "p-"])
        for name in catalog.names.keys {
            #expect(ToolNaming.isValidExposedName(name))
            #expect(name.hasPrefix("p-"))
        }
    }
}
