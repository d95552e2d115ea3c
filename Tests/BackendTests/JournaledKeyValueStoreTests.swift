import Backend
import Foundation
import NIOCore
import Testing

/// The journaled store keeps the key-value contract, and keeps its keys across a reopen.
@Suite("Journaled key-value store", .timeLimit(.minutes(1)))
struct JournaledKeyValueStoreTests {
    private static func journalPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("sb-journal-\(UUID().uuidString)").path
    }

    @Test(arguments: KeyValueStoreContract.cases)
    func keyValueStore(_ contract: ContractCase<KeyValueStoreSubject>) async throws {
        let path = Self.journalPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let clock = ManualClock()
        let store = try JournaledKeyValueStore(path: path, clock: clock)
        try await contract.run(KeyValueStoreSubject(store: store, isolation: "", advanceTime: { clock.advance(by: $0) }))
    }

    @Test func writesAndDeletesSurviveAReopen() async throws {
        let path = Self.journalPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let store = try JournaledKeyValueStore(path: path)
            _ = try await store.set("kept", to: ByteBuffer(string: "{\"a\":1}"), ttl: nil, namespace: "workflows")
            _ = try await store.set("replaced", to: ByteBuffer(string: "old"), ttl: nil, namespace: "workflows")
            _ = try await store.set("replaced", to: ByteBuffer(string: "new"), ttl: nil, namespace: "workflows")
            _ = try await store.set("gone", to: ByteBuffer(string: "x"), ttl: nil, namespace: "workflows")
            #expect(try await store.delete("gone", namespace: "workflows"))
            _ = try await store.compareAndSet("created", expectedVersion: 0, to: ByteBuffer(bytes: [0, 10, 255]), ttl: nil, namespace: "other ns")
        }
        let reopened = try JournaledKeyValueStore(path: path)
        #expect(try await reopened.get("kept", namespace: "workflows")?.value == ByteBuffer(string: "{\"a\":1}"))
        #expect(try await reopened.get("replaced", namespace: "workflows")?.value == ByteBuffer(string: "new"))
        #expect(try await reopened.get("gone", namespace: "workflows") == nil)
        #expect(try await reopened.get("created", namespace: "other ns")?.value == ByteBuffer(bytes: [0, 10, 255]))
        let page = try await reopened.list(namespace: "workflows", prefix: "", after: nil, limit: 10)
        #expect(page.entries.map(\.key) == ["kept", "replaced"])
    }

    @Test func aKeyThatExpiredWhileClosedIsGoneAfterTheReopen() async throws {
        let path = Self.journalPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let clock = ManualClock()
        do {
            let store = try JournaledKeyValueStore(path: path, clock: clock)
            _ = try await store.set("short", to: ByteBuffer(string: "1"), ttl: .seconds(5), namespace: "n")
            _ = try await store.set("long", to: ByteBuffer(string: "1"), ttl: .seconds(60), namespace: "n")
        }
        clock.advance(by: .seconds(10))
        let reopened = try JournaledKeyValueStore(path: path, clock: clock)
        #expect(try await reopened.get("short", namespace: "n") == nil)
        #expect(try await reopened.get("long", namespace: "n") != nil)
    }
}
