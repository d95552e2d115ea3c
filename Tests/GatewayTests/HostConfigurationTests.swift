import Agents
import Gateway
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A directory of its own for one test's files, removed at the end.
private final class ScratchDirectory {
    let path: String

    init() throws {
        path = "\(FileManager.default.temporaryDirectory.path)/switchboard-config-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = "\(path)/\(name)"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}

/// Loads `text` as a configuration file named `name` with `environment`.
private func load(
    _ text: String, name: String = "mcp.json", environment: [String: String] = [:], in directory: ScratchDirectory? = nil
) throws -> GatewaySettings {
    let scratch = try directory ?? ScratchDirectory()
    let file = try scratch.write(name, text)
    return try ConfigurationFile(path: file, environment: environment).load(into: GatewaySettings())
}

/// The problems of a file the reader refuses.
private func problems(_ text: String, name: String = "gateway.json", environment: [String: String] = [:]) throws -> [String] {
    do {
        _ = try load(text, name: name, environment: environment)
        Issue.record("the file was accepted")
        return []
    } catch let error as ConfigurationFile.Problems {
        return error.all.map(\.message)
    }
}

private func template(_ settings: GatewaySettings, _ name: String) throws -> AgentTemplate {
    try #require(settings.agentTemplates.first { $0.name == name }, "no template \(name) in \(settings.agentTemplates.map(\.name))")
}

private func warnings(_ settings: GatewaySettings) -> [String] { settings.configurationWarnings.map(\.message) }

@Suite("Configuration files as MCP hosts write them")
struct HostConfigurationTests {
    // MARK: Variables

    @Test func expandsVariablesInEveryPlaceAServerTakesText() throws {
        let settings = try load(
            #"""
            {"mcpServers": {"api": {
              "command": "${TOOLS}/bin/api-server",
              "args": ["--token", "${env:TOKEN}", "--region=${REGION:-eu-west-1}", "$HOME", "${TOKEN:-unused}"],
              "env": {"API_KEY": "${TOKEN}", "PLAIN": "a $ stays"},
              "cwd": "${workspaceFolder}/run"
            }}}
            """#, environment: ["TOOLS": "/opt/tools", "TOKEN": "s3cret", "HOME": "/home/me"])
        let api = try template(settings, "api")
        #expect(api.command == "/opt/tools/bin/api-server")
        #expect(api.arguments == ["--token", "s3cret", "--region=eu-west-1", "$HOME", "s3cret"])
        #expect(api.environment == ["API_KEY": "s3cret", "PLAIN": "a $ stays"])
        #expect(api.workingDirectory?.hasSuffix("/run") == true)
        #expect(api.workingDirectory?.hasPrefix("/") == true)
        #expect(warnings(settings).isEmpty)
    }

    @Test func aDefaultAppliesWhenTheVariableIsUnsetOrEmptyAndMayItselfHoldAVariable() throws {
        let settings = try load(
            #"{"mcpServers": {"s": {"command": "run", "args": ["${EMPTY:-fallback}", "${MISSING:-${OTHER}}", "${MISSING:-}"]}}}"#,
            environment: ["EMPTY": "", "OTHER": "nested"])
        #expect(try template(settings, "s").arguments == ["fallback", "nested", ""])
    }

    @Test func anUnsetVariableSkipsOnlyItsServerWithAWarningNamingBoth() throws {
        let settings = try load(
            #"""
            {"mcpServers": {
              "github": {"command": "github-mcp", "env": {"GITHUB_TOKEN": "${GITHUB_TOKEN}"}},
              "time": {"command": "mcp-server-time"}
            }}
            """#)
        #expect(settings.agentTemplates.map(\.name) == ["time"])
        #expect(warnings(settings) == [#"server "github" is skipped: environment variable GITHUB_TOKEN is not set"#])
        let warning = try #require(settings.configurationWarnings.first)
        #expect(warning.line == 2)
        #expect(warning.description.hasPrefix(warning.file + ":2:"))
    }

    @Test func aReferenceNoHostDefinesIsReportedNotGuessed() throws {
        let settings = try load(#"{"servers": {"s": {"command": "run", "args": ["${command:pickFile}"]}}}"#)
        #expect(settings.agentTemplates.isEmpty)
        #expect(warnings(settings) == [#"server "s" is skipped: ${command:pickFile} is not a variable the gateway can resolve"#])
    }

    // MARK: VS Code

    @Test func readsVSCodesServersWithInputsFromTheEnvironment() throws {
        let scratch = try ScratchDirectory()
        let settings = try load(
            #"""
            {
              "servers": {
                "search": {"type": "stdio", "command": "search-mcp", "env": {"KEY": "${input:search-key}", "REGION": "${input:region}"}},
                "notes": {"type": "stdio", "command": "notes-mcp", "args": ["${workspaceFolder}/notes"], "env": {"TOKEN": "${input:notes-token}"}}
              },
              "inputs": [
                {"type": "promptString", "id": "search-key", "description": "Search API key", "password": true},
                {"type": "promptString", "id": "region", "description": "Region", "default": "eu"},
                {"type": "promptString", "id": "notes-token", "description": "Notes token", "password": true}
              ]
            }
            """#, environment: ["SEARCH_KEY": "k-123"], in: scratch)
        #expect(try template(settings, "search").environment == ["KEY": "k-123", "REGION": "eu"])
        #expect(settings.agentTemplates.map(\.name) == ["search"])
        #expect(
            warnings(settings) == [
                #"server "notes" is skipped: input "notes-token" has no value (a gateway cannot prompt: set the environment variable NOTES_TOKEN)"#
            ])
    }

    @Test func anInputIsReadUnderItsOwnIdFirst() throws {
        let settings = try load(
            #"{"servers": {"s": {"command": "run", "args": ["${input:token}"]}}, "inputs": [{"type": "promptString", "id": "token"}]}"#,
            environment: ["token": "lower", "TOKEN": "upper"])
        #expect(try template(settings, "s").arguments == ["lower"])
    }

    @Test func workspaceFolderIsTheConfigurationFilesDirectory() throws {
        let scratch = try ScratchDirectory()
        let settings = try load(#"{"servers": {"s": {"command": "${workspaceFolder}/bin/s"}}}"#, in: scratch)
        #expect(try template(settings, "s").command == "\(scratch.path)/bin/s")
    }

    // MARK: envFile

    @Test func envFileValuesJoinTheEnvironmentAndEnvEntriesOverrideThem() throws {
        let scratch = try ScratchDirectory()
        try scratch.write(
            ".env",
            """
            # a comment
            export API_KEY=from-file
            SHARED=file
            QUOTED="two words # not a comment"
            SINGLE='${NOT_EXPANDED}'
            ESCAPED="line\\nbreak"
            TRAILING=value # a comment

            not an assignment
            """)
        let settings = try load(
            #"{"servers": {"s": {"type": "stdio", "command": "run", "envFile": "${workspaceFolder}/.env", "env": {"SHARED": "env"}}}}"#,
            in: scratch)
        #expect(
            try template(settings, "s").environment == [
                "API_KEY": "from-file", "SHARED": "env", "QUOTED": "two words # not a comment", "SINGLE": "${NOT_EXPANDED}",
                "ESCAPED": "line\nbreak", "TRAILING": "value",
            ])
        let warning = try #require(settings.configurationWarnings.first)
        #expect(warning.file == "\(scratch.path)/.env")
        #expect(warning.line == 9)
        #expect(warning.message == "expected KEY=VALUE; the line is ignored")
    }

    @Test func aRelativeEnvFileIsRelativeToTheConfigurationFile() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("secrets.env", "TOKEN=t\n")
        let settings = try load(#"{"mcpServers": {"s": {"command": "run", "envFile": "secrets.env"}}}"#, in: scratch)
        #expect(try template(settings, "s").environment == ["TOKEN": "t"])
    }

    @Test func aMissingEnvFileSkipsItsServerWithAWarning() throws {
        let scratch = try ScratchDirectory()
        let settings = try load(#"{"mcpServers": {"s": {"command": "run", "envFile": "absent.env"}}}"#, in: scratch)
        #expect(settings.agentTemplates.isEmpty)
        #expect(warnings(settings) == [#"server "s" is skipped: its envFile \#(scratch.path)/absent.env does not exist"#])
    }

    // MARK: type, disabled, remote servers

    @Test func aDisabledEntryIsNeverAnErrorWhateverItHolds() throws {
        let settings = try load(
            #"""
            {"mcpServers": {
              "remote": {"type": "sse", "url": "https://example.com/sse", "disabled": true},
              "broken": {"disabled": true, "args": 42, "whatever": {"x": 1}},
              "off": {"enabled": false, "command": "run", "env": {"K": "${UNSET}"}},
              "on": {"disabled": false, "command": "run"}
            }}
            """#)
        #expect(settings.agentTemplates.map(\.name) == ["on"])
        #expect(settings.remoteServers.isEmpty)
        #expect(warnings(settings).isEmpty)
    }

    @Test func remoteServersAreHTTPAgentsAndTheOlderSSETransportIsNamedInAWarning() throws {
        let settings = try load(
            #"""
            {"mcpServers": {
              "docs": {"type": "http", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
              "legacy": {"url": "https://old.example.com/sse"},
              "cline": {"type": "streamableHttp", "url": "https://c.example.com/mcp"},
              "local": {"type": "stdio", "command": "run"}
            }}
            """#, environment: ["TOKEN": "t0k"])
        #expect(settings.agentTemplates.map(\.name) == ["docs", "cline", "local"])
        let docs = try #require(settings.agentTemplates.first)
        // Expanded for the requests, as written for what the gateway shows.
        #expect(docs.remote == AgentTemplate.RemoteAddress(url: "https://mcp.example.com/mcp", urlAsWritten: "https://mcp.example.com/mcp", headers: ["Authorization": "Bearer t0k"]))
        #expect(settings.agentTemplates.last?.remote == nil)
        #expect(
            settings.remoteServers == [
                RemoteServerEntry(
                    name: "docs", transport: .streamableHTTP, url: "https://mcp.example.com/mcp", headers: ["Authorization": "Bearer t0k"]),
                RemoteServerEntry(name: "legacy", transport: .sse, url: "https://old.example.com/sse", headers: [:]),
                RemoteServerEntry(name: "cline", transport: .streamableHTTP, url: "https://c.example.com/mcp", headers: [:]),
            ])
        #expect(
            warnings(settings) == [
                #"remote server "legacy" (https://old.example.com/sse) is not served yet: the older HTTP+SSE transport is not built (Streamable HTTP is)"#
            ])
    }

    @Test func aRemoteURLIsShownAsWrittenNotExpanded() throws {
        let settings = try load(#"{"mcpServers": {"r": {"type": "sse", "url": "https://x.example.com/sse?key=${KEY}"}}}"#, environment: ["KEY": "secret"])
        #expect(settings.remoteServers.first?.url == "https://x.example.com/sse?key=secret")
        #expect(warnings(settings).allSatisfy { !$0.contains("secret") })
    }

    @Test func anUnknownTypeSkipsItsServerWithAWarning() throws {
        let settings = try load(#"{"mcpServers": {"w": {"type": "websocket", "url": "wss://x"}, "s": {"command": "run"}}}"#)
        #expect(settings.agentTemplates.map(\.name) == ["s"])
        #expect(warnings(settings) == [#"server "w" is skipped: type "websocket" is none of stdio, http, streamable-http, sse"#])
    }

    // MARK: Host keys

    @Test func disabledToolsAreCarriedIntoTheTemplate() throws {
        let settings = try load(
            #"{"mcpServers": {"git": {"command": "mcp-server-git", "disabledTools": ["git_commit", "git_reset"], "alwaysAllow": ["git_status"], "autoApprove": []}}}"#)
        #expect(try template(settings, "git").disabledTools == ["git_commit", "git_reset"])
        #expect(warnings(settings).isEmpty)
    }

    @Test func timeoutIsSecondsAndAValueAboveAnHourIsTakenAsMilliseconds() throws {
        let settings = try load(
            #"{"mcpServers": {"cline": {"command": "a", "timeout": 60}, "gemini": {"command": "b", "timeout": 600000}}}"#)
        #expect(try template(settings, "cline").callTimeout == .seconds(60))
        #expect(try template(settings, "gemini").callTimeout == .seconds(600))
        #expect(warnings(settings) == ["mcpServers.gemini.timeout 600000 is taken as milliseconds (600.0 s): more than 3600 is not a number of seconds"])
    }

    @Test func unknownKeysOfHostsAreWarningsWithTheirLine() throws {
        let settings = try load(
            #"""
            {
              "globalShortcut": "Ctrl+Space",
              "mcpServers": {
                "time": {"command": "mcp-server-time", "dev": {"watch": "src/**"}}
              }
            }
            """#)
        #expect(settings.agentTemplates.map(\.name) == ["time"])
        #expect(
            settings.configurationWarnings.map(\.description).map { String($0.split(separator: ":", maxSplits: 3).dropFirst().joined(separator: ":")) } == [
                #"2:3: key "globalShortcut" is ignored: it is the MCP host's setting, not the gateway's"#,
                #"4:44: unknown key "dev" in mcpServers.time is ignored"#,
            ])
    }

    @Test func ourOwnSectionsStayStrict() throws {
        #expect(try problems(#"{"agents": {"a": {"command": "run", "timeout": 60}}}"#) == [#"unknown key "timeout" in agents.a"#])
        #expect(try problems(#"{"agents": {"a": {"command": "run", "args": ["${UNSET}"]}}}"#) == ["agents.a: environment variable UNSET is not set"])
        // An agent reached over HTTP needs its url, in our section as in a host's.
        #expect(try problems(#"{"agents": {"a": {"type": "http", "command": "run"}}}"#) == [#"remote server "a" needs a "url""#])
        #expect(try load(#"{"agents": {"a": {"url": "https://x"}}}"#, name: "gateway.json").agentTemplates.first?.remote?.url == "https://x")
        #expect(try problems(#"{"agents": {"a": {"url": "ftp://x"}}}"#) == [#"remote server "a": ftp://x is not an http:// or https:// URL"#])
        // A file without a host's section is ours: an unknown top-level key is an error.
        #expect(try problems(#"{"listen": [], "globalShortcut": "x"}"#).first?.hasPrefix(#"unknown key "globalShortcut""#) == true)
    }

    @Test func theHTTPSectionSetsTheFaceAndRefusesWhatItDoesNotKnow() throws {
        let settings = try load(
            #"{"http": {"allowedOrigins": ["https://c.example"], "maxSessions": 5, "idleSeconds": 30, "bodySeconds": 5, "maxUnreadBytes": 1048576, "sessionKey": "0123456789abcdef0123456789abcdef!"}}"#,
            name: "gateway.json")
        #expect(settings.http.allowedOrigins == ["https://c.example"] && settings.http.maximumSessions == 5)
        #expect(settings.http.idleTimeout == .seconds(30) && settings.http.bodyTimeout == .seconds(5) && settings.http.maximumUnreadBytes == 1_048_576)
        #expect(try problems(#"{"http": {"sessionKey": "short"}}"#) == ["http.sessionKey must be at least 32 characters (it signs session ids)"])
        #expect(try problems(#"{"http": {"nope": 1}}"#).first?.hasPrefix("http.nope: unknown key") == true)
    }

    @Test func ourSectionsAcceptEnvFileAndDisabledTools() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("agent.env", "A=1\n")
        let settings = try load(
            #"{"agents": {"a": {"command": "run", "envFile": "agent.env", "disabledTools": ["drop"], "env": {"B": "${B:-2}"}}}}"#,
            name: "gateway.json", in: scratch)
        let agent = try template(settings, "a")
        #expect(agent.environment == ["A": "1", "B": "2"])
        #expect(agent.disabledTools == ["drop"])
    }

    @Test func ourSettingsInAHostFileAreStillChecked() throws {
        #expect(try problems(#"{"mcpServers": {}, "logLevel": "loud"}"#).first?.hasPrefix("logLevel must be one of") == true)
        #expect(try problems(#"{"mcpServers": {"s": {"command": "run", "args": "not a list"}}}"#) == ["mcpServers.s.args must be a list"])
    }

    @Test func aServerDeclaredInTwoSectionsIsAnError() throws {
        #expect(
            try problems(#"{"agents": {"a": {"command": "x"}}, "mcpServers": {"a": {"command": "y"}}}"#) == [#"agent "a" is declared twice"#])
    }
}

extension HostConfigurationTests {
    @Test func workspaceFolderOfAVSCodeOrCursorFileIsTheProjectAroundIt() throws {
        let scratch = try ScratchDirectory()
        try FileManager.default.createDirectory(atPath: "\(scratch.path)/.vscode", withIntermediateDirectories: true)
        let settings = try load(#"{"servers": {"s": {"command": "${workspaceFolder}/bin/s"}}}"#, name: ".vscode/mcp.json", in: scratch)
        #expect(try template(settings, "s").command == "\(scratch.path)/bin/s")
    }
}
