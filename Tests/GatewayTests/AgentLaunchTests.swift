import Agents
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Gateway

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a spawned agent inherits, and the files it must run.
@Suite("Launching spawned agents")
struct AgentLaunchTests {
    private let gateway = ["PATH": "/usr/bin:/bin", "HOME": "/home/op", "LANG": "C.UTF-8", "AWS_SECRET_ACCESS_KEY": "hunter2", "REDIS_PASSWORD": "x"]

    @Test func anAgentGetsTheBaseAndWhatItsTemplateLists() {
        var template = AgentTemplate(name: "a", command: "python3")
        template.environment = ["API_URL": "https://api.example.com", "LANG": "en_GB.UTF-8"]
        #expect(
            ChildEnvironment.of(template, gateway: gateway)
                == ["PATH": "/usr/bin:/bin", "HOME": "/home/op", "LANG": "en_GB.UTF-8", "API_URL": "https://api.example.com"])
    }

    @Test func inheritEnvironmentPassesEverythingOn() {
        var template = AgentTemplate(name: "a", command: "python3")
        template.inheritEnvironment = true
        template.environment = ["EXTRA": "1"]
        #expect(ChildEnvironment.of(template, gateway: gateway) == gateway.merging(["EXTRA": "1"]) { $1 })
    }

    // MARK: Pinning

    private static let helloSHA256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

    private func scratchFile(_ contents: String) throws -> String {
        let path = "\(FileManager.default.temporaryDirectory.path)/switchboard-pin-\(UInt64.random(in: 0...UInt64.max))"
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func aMatchingExecutableIsAccepted() throws {
        let file = try scratchFile("hello")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(try ExecutablePin.sha256(ofFile: file) == Self.helloSHA256)
        var template = AgentTemplate(name: "a", command: file)
        template.executableSHA256 = Self.helloSHA256
        try ExecutablePin.verify(template, executable: file)
    }

    @Test func aDifferentExecutableIsRefusedNamingBothHashes() throws {
        let file = try scratchFile("hello")
        defer { try? FileManager.default.removeItem(atPath: file) }
        var template = AgentTemplate(name: "a", command: file)
        template.executableSHA256 = String(repeating: "9f86", count: 16)
        let error = #expect(throws: ExecutablePin.Mismatch.self) { try ExecutablePin.verify(template, executable: file) }
        #expect(error?.description == "executable \(file) has sha256 \(Self.helloSHA256), the template pins \(String(repeating: "9f86", count: 16))")
    }

    @Test func aScriptPinChecksTheFirstArgumentThatIsAFile() throws {
        let script = try scratchFile("hello")
        defer { try? FileManager.default.removeItem(atPath: script) }
        var template = AgentTemplate(name: "a", command: "/bin/sh")
        template.arguments = ["-u", script, "--flag"]
        template.scriptSHA256 = Self.helloSHA256
        #expect(ExecutablePin.script(of: template) == script)
        try ExecutablePin.verify(template, executable: "/bin/sh")

        template.scriptSHA256 = String(repeating: "0", count: 64)
        let error = #expect(throws: ExecutablePin.Mismatch.self) { try ExecutablePin.verify(template, executable: "/bin/sh") }
        #expect(error?.description.hasPrefix("script \(script) has sha256 \(Self.helloSHA256)") == true)

        template.arguments = ["-c", "exit 0"]
        let missing = #expect(throws: ExecutablePin.Mismatch.self) { try ExecutablePin.verify(template, executable: "/bin/sh") }
        #expect(missing?.description == "the template pins scriptSha256 but none of its arguments names a file")
    }

    // MARK: Configuration

    private func load(_ text: String) throws -> GatewaySettings {
        let file = try scratchFile(text)
        defer { try? FileManager.default.removeItem(atPath: file) }
        return try ConfigurationFile(path: file, environment: [:]).load(into: GatewaySettings())
    }

    @Test func theKeysAreReadInEverySection() throws {
        let upper = Self.helloSHA256.uppercased()
        let settings = try load(
            """
            agents:
              pinned: {command: python3, args: [agent.py], inheritEnvironment: true, sha256: "\(upper)", scriptSha256: "\(Self.helloSHA256)"}
            mcpServers:
              plain: {command: node, inheritEnvironment: false}
            """)
        let pinned = try #require(settings.agentTemplates.first { $0.name == "pinned" })
        #expect(pinned.inheritEnvironment)
        #expect(pinned.executableSHA256 == Self.helloSHA256)
        #expect(pinned.scriptSHA256 == Self.helloSHA256)
        let plain = try #require(settings.agentTemplates.first { $0.name == "plain" })
        #expect(!plain.inheritEnvironment && plain.executableSHA256 == nil)
    }

    @Test func badValuesAreProblems() throws {
        do {
            _ = try load("agents:\n  a: {command: x, sha256: abc, inheritEnvironment: sometimes}\n")
            Issue.record("the file was accepted")
        } catch let problems as ConfigurationFile.Problems {
            #expect(
                problems.all.map(\.message) == [
                    "agents.a.sha256 must be 64 hexadecimal digits (a SHA-256, as sha256sum prints it)",
                    "agents.a.inheritEnvironment must be true or false",
                ])
        }
    }
}

/// Many agents started at once must each be seen to exit: a process's exit is reported through a
/// descriptor that a sibling started at the same moment must not inherit.
@Suite("Agents started together")
struct ConcurrentLaunchTests {
    @Test func everyKilledSiblingIsSeenToExitWhileTheOthersRun() async throws {
        let template = {
            var template = AgentTemplate(name: "sleeper", command: "sleep")
            template.arguments = ["60"]
            return template
        }()
        for _ in 0..<4 {
            let children = try await withThrowingTaskGroup(of: ChildProcess.self) { group in
                for _ in 0..<12 { group.addTask { try ChildProcess.launch(template) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let (survivors, stopped) = (children.prefix(2), children.dropFirst(2))
            // Exits as they are reported; the stream ends when all are in, or after 10 s.
            let (exits, reported) = AsyncStream.makeStream(of: Int32.self)
            for child in stopped { child.onExit { _ in reported.yield(child.processID) } }
            let deadline = Task {
                try? await Task.sleep(for: .seconds(10))
                reported.finish()
            }
            for child in stopped { kill(child.processID, SIGKILL) }
            var unreported = Set(stopped.map(\.processID))
            for await pid in exits {
                unreported.remove(pid)
                if unreported.isEmpty { break }
            }
            deadline.cancel()
            for child in survivors { kill(child.processID, SIGKILL) }
            for child in survivors { _ = await child.waitForExit() }
            #expect(unreported.isEmpty, "killed, never reported as exited: \(unreported.sorted())")
        }
    }
}
