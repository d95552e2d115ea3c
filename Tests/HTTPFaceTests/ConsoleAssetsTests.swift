import Console
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

@Suite("The console's files")
struct ConsoleAssetsTests {
    @Test func theBinaryCarriesTheConsoleWithItsTypesAndValidators() throws {
        let console = ConsoleAssets.embedded
        #expect(console.embeddedCount > 0)
        let script = try #require(console.asset(at: "js/rpc.js"))
        #expect(script.contentType == "text/javascript; charset=utf-8")
        #expect(String(decoding: script.body, as: UTF8.self).contains("auth/authenticate"))
        #expect(script.etag.hasPrefix("\"") && script.etag.hasSuffix("\""))
        // The same leading slash or doubled slashes find the same file.
        #expect(console.asset(at: "/js//rpc.js")?.etag == script.etag)
        #expect(console.asset(at: "js/missing.js") == nil)
    }

    @Test func aPathThatWouldLeaveTheFolderIsNeverFound() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("console-\(UInt64.random(in: 0 ... .max))")
        let inside = root.appendingPathComponent("site")
        try FileManager.default.createDirectory(at: inside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        try Data("secret".utf8).write(to: root.appendingPathComponent("secret.txt"))
        try Data("<p>hi</p>".utf8).write(to: inside.appendingPathComponent("index.html"))
        try Data("x".utf8).write(to: inside.appendingPathComponent(".env"))

        let console = ConsoleAssets(directory: inside.path)
        #expect(console.asset(at: "index.html")?.contentType == "text/html; charset=utf-8")
        #expect(console.asset(at: "../secret.txt") == nil)
        #expect(console.asset(at: "a/../../secret.txt") == nil)
        #expect(console.asset(at: "./index.html") == nil)
        #expect(console.asset(at: ".env") == nil)
        #expect(console.asset(at: "") == nil)
    }

    @Test func anEditedFileGetsAnotherValidator() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("console-\(UInt64.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let file = root.appendingPathComponent("app.css")
        try Data("a{}".utf8).write(to: file)
        let console = ConsoleAssets(directory: root.path)
        let before = try #require(console.asset(at: "app.css"))
        try Data("b{}".utf8).write(to: file)
        let after = try #require(console.asset(at: "app.css"))
        #expect(before.etag != after.etag)
        #expect(after.contentType == "text/css; charset=utf-8")
    }
}
