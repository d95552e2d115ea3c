import Gateway
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A configuration file past a document bound is refused with the bound named, before its
/// aliases are expanded.
@Suite("Configuration files within bounds")
struct ConfigurationBoundsTests {
    /// Writes `text` to a file of its own, loads it, and removes it.
    func load(_ text: String) throws -> GatewaySettings {
        let file = "\(FileManager.default.temporaryDirectory.path)/switchboard-bounds-\(UInt64.random(in: 0...UInt64.max)).yaml"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        return try ConfigurationFile(path: file, environment: [:]).load(into: GatewaySettings())
    }

    func problems(_ text: String) throws -> [ConfigurationFile.Problem] {
        do {
            _ = try load(text)
            Issue.record("the file was accepted")
            return []
        } catch let error as ConfigurationFile.Problems {
            return error.all
        }
    }

    @Test func aBillionLaughsFileIsRefusedByItsExpandedSize() throws {
        var text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for (name, previous) in zip("bcdefghi", "abcdefgh") {
            text += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ", ") + "]\n"
        }
        let problems = try problems(text)
        #expect(problems.count == 1)
        #expect(problems.first?.message == "the document expands to more than 100000 nodes through its aliases (the limit of expanded size)")
        #expect(problems.first?.line == 6)
        #expect(problems.first?.file.hasSuffix(".yaml") == true)
    }

    @Test func aFileLargerThanFourMebibytesIsRefused() throws {
        let text = "# " + String(repeating: "x", count: 4 << 20) + "\nlogLevel: debug\n"
        #expect(try problems(text).map(\.message) == ["the document is larger than 4194304 bytes (the limit of document size)"])
    }

    @Test func aFileNestedDeeperThan64LevelsIsRefused() throws {
        let text = "limits: " + String(repeating: "{a: ", count: 70) + "1" + String(repeating: "}", count: 70) + "\n"
        #expect(try problems(text).map(\.message) == ["the document nests deeper than 64 levels (the limit of depth)"])
    }

    @Test func templatesSharedThroughAnAliasStillLoad() throws {
        let settings = try load(
            """
            agents:
              first: &python {command: python3, args: [agent.py]}
              second: *python
            """)
        #expect(settings.agentTemplates.map(\.name).sorted() == ["first", "second"])
    }
}
