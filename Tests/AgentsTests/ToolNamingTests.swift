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
