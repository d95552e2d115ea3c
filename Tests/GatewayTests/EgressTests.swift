import Access
import Gateway
import JSONRPC
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The egress policy at `tasks/submit` and in the configuration file.
@Suite("Egress of task callbacks", .timeLimit(.minutes(1)))
struct EgressTests {
    private func submit(_ client: LineClient, callback: String) async throws -> JSONValue? {
        try await client.call(1, "tasks/submit", #"{"taskType":"work","taskData":{},"callback":"\#(callback)"}"#)
    }

    @Test(arguments: [
        ("http://127.0.0.1:9/hook", "callback to 127.0.0.1 refused: loopback addresses are not allowed (egress.allow does not list it)"),
        ("http://127.1:9/hook", "callback to 127.1 (127.0.0.1) refused: loopback addresses are not allowed (egress.allow does not list it)"),
        ("https://169.254.169.254/latest", "callback to 169.254.169.254 refused: cloud metadata addresses are not allowed (egress.allow does not list it)"),
        (
            "http://[::ffff:10.0.0.1]/hook",
            "callback to ::ffff:10.0.0.1 refused: private addresses are not allowed (::ffff:10.0.0.1 is the IPv4-mapped form of 10.0.0.1; egress.allow does not list it)"
        ),
        ("http://localhost:9/hook", "callback to localhost (127.0.0.1) refused: loopback addresses are not allowed (egress.allow does not list it)"),
    ])
    func aCallbackToAnInternalAddressIsRefusedAtSubmit(_ callback: String, _ reason: String) async throws {
        try await withGateway { gateway in
            let client = try await gateway.connect()
            let reply = try await submit(client, callback: callback)
            #expect(reply?["error"]?["code"] == -32005)
            #expect(reply?["error"]?["data"]?["reason"] == .string(reason))
            #expect(reply?["error"]?["data"]?["callback"] == .string(callback))
            #expect(try await client.call(2, "tasks/list", nil)?["result"]?["tasks"] == [])
            await client.close()
        }
    }

    @Test func aListedAddressAndAPublicOneAreAccepted() async throws {
        try await withGateway(configure: { $0.egress = EgressPolicy(allow: [EgressRule("127.0.0.1")!]) }) { gateway in
            let client = try await gateway.connect()
            #expect(try await submit(client, callback: "http://127.0.0.1:9/hook")?["result"]?["taskId"] != nil)
            // A documentation address (TEST-NET-1): public, and nothing answers there.
            #expect(try await submit(client, callback: "http://192.0.2.1/hook")?["result"]?["taskId"] != nil)
            await client.close()
        }
    }

    @Test func denyPublicRefusesAPublicAddressAtSubmit() async throws {
        try await withGateway(configure: { $0.egress = EgressPolicy(denyPublic: true) }) { gateway in
            let client = try await gateway.connect()
            let reply = try await submit(client, callback: "http://192.0.2.1/hook")
            #expect(reply?["error"]?["code"] == -32005)
            await client.close()
        }
    }
}

@Suite("The egress section of the configuration file")
struct EgressConfigurationFileTests {
    private func load(_ text: String) throws -> GatewaySettings {
        let file = "\(FileManager.default.temporaryDirectory.path)/switchboard-egress-\(UInt64.random(in: 0...UInt64.max)).yaml"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        return try ConfigurationFile(path: file, environment: [:]).load(into: GatewaySettings())
    }

    @Test func theSectionIsRead() throws {
        let settings = try load(
            """
            egress:
              allow: ["hooks.example.com", "10.20.0.0/16", "*.internal.example.com", "127.0.0.1"]
              denyPublic: false
            """)
        #expect(settings.egress.allow.map(\.description) == ["hooks.example.com", "10.20.0.0/16", "*.internal.example.com", "127.0.0.1"])
        #expect(!settings.egress.denyPublic)
        #expect(try load("egress:\n  denyPublic: true\n").egress.denyPublic)
    }

    @Test func aBadEntryIsReportedAtItsLine() throws {
        do {
            _ = try load("egress:\n  allow:\n    - hooks.example.com\n    - not a host\n")
            Issue.record("the file was accepted")
        } catch let problems as ConfigurationFile.Problems {
            #expect(problems.all.map(\.message) == [#"egress.allow[1]: not a host, address or CIDR range ("not a host")"#])
            #expect(problems.all.first?.line == 4)
        }
    }
}
