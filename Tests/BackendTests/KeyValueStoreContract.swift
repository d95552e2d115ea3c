import Backend
import NIOCore
import Testing

/// The behaviour every `KeyValueStore` must have, whatever keeps the keys.
enum KeyValueStoreContract {
    static let cases: [ContractCase<KeyValueStoreSubject>] = [
        ContractCase("a missing key reads as nil") { subject in
            let entry = try await subject.store.get("nothing", namespace: subject.namespace("a"))
            #expect(entry == nil)
        },

        ContractCase("get returns the bytes set stored, with the version set returned") { subject in
            let space = subject.namespace("a")
            let bytes = #"{"price": 42.50, "tags":["x"] }"#
            let write = try await subject.store.set("quote", to: .json(bytes), ttl: nil, namespace: space)
            #expect(write.version > 0)
            #expect(write.expiresAt == nil)
            let entry = try #require(try await subject.store.get("quote", namespace: space))
            #expect(entry.key == "quote")
            #expect(entry.value.text == bytes)
            #expect(entry.version == write.version)
            #expect(entry.expiresAt == nil)
        },

        ContractCase("every write gives the key a greater version") { subject in
            let space = subject.namespace("a")
            let first = try await subject.store.set("k", to: .json("1"), ttl: nil, namespace: space)
            let second = try await subject.store.set("k", to: .json("2"), ttl: nil, namespace: space)
            #expect(second.version > first.version)
            let entry = try #require(try await subject.store.get("k", namespace: space))
            #expect(entry.value.text == "2")
            #expect(entry.version == second.version)
        },

        ContractCase("a version is never reused for a key, even after it was deleted") { subject in
            let space = subject.namespace("a")
            var last: Int64 = 0
            for round in 0..<3 {
                let write = try await subject.store.set("lock", to: .json("\(round)"), ttl: nil, namespace: space)
                #expect(write.version > last)
                last = write.version
                #expect(try await subject.store.delete("lock", namespace: space))
            }
            // Compare-and-set with the version of a deleted incarnation must not succeed.
            let created = try await subject.store.compareAndSet("lock", expectedVersion: 0, to: .json("new"), ttl: nil, namespace: space)
            guard case .stored(let write) = created else {
                Issue.record("creating the key failed: \(created)")
                return
            }
            #expect(write.version > last)
            let stale = try await subject.store.compareAndSet("lock", expectedVersion: last, to: .json("x"), ttl: nil, namespace: space)
            #expect(stale == .conflict(currentVersion: write.version))
        },

        ContractCase("namespaces never see each other's keys") { subject in
            let (tenantA, tenantB) = (subject.namespace("tenant-a"), subject.namespace("tenant-b"))
            _ = try await subject.store.set("secret", to: .json(#""a's""#), ttl: nil, namespace: tenantA)
            #expect(try await subject.store.get("secret", namespace: tenantB) == nil)
            #expect(try await subject.store.list(namespace: tenantB, prefix: "", after: nil, limit: 100).entries.isEmpty)
            #expect(try await subject.store.delete("secret", namespace: tenantB) == false)
            let cas = try await subject.store.compareAndSet("secret", expectedVersion: 0, to: .json(#""b's""#), ttl: nil, namespace: tenantB)
            guard case .stored = cas else {
                Issue.record("tenant b could not create its own key: \(cas)")
                return
            }
            #expect(try await subject.store.get("secret", namespace: tenantA)?.value.text == #""a's""#)
            #expect(try await subject.store.get("secret", namespace: tenantB)?.value.text == #""b's""#)
        },

        ContractCase("keys are compared byte for byte, not by Unicode equivalence") { subject in
            let space = subject.namespace("a")
            let composed = "caf\u{E9}"
            let decomposed = "cafe\u{301}"
            _ = try await subject.store.set(composed, to: .json("1"), ttl: nil, namespace: space)
            #expect(try await subject.store.get(decomposed, namespace: space) == nil)
            _ = try await subject.store.set(decomposed, to: .json("2"), ttl: nil, namespace: space)
            let keys = try await subject.store.list(namespace: space, prefix: "caf", after: nil, limit: 10).entries.map(\.key)
            #expect(keys.map { Array($0.utf8) } == [Array(decomposed.utf8), Array(composed.utf8)])
        },

        ContractCase("delete removes a key and says whether there was one") { subject in
            let space = subject.namespace("a")
            _ = try await subject.store.set("k", to: .json("1"), ttl: nil, namespace: space)
            #expect(try await subject.store.delete("k", namespace: space))
            #expect(try await subject.store.get("k", namespace: space) == nil)
            #expect(try await subject.store.delete("k", namespace: space) == false)
        },

        ContractCase("compare-and-set with version 0 creates a key only if it does not exist") { subject in
            let space = subject.namespace("a")
            let first = try await subject.store.compareAndSet("leader", expectedVersion: 0, to: .json(#""me""#), ttl: nil, namespace: space)
            guard case .stored(let write) = first else {
                Issue.record("expected the key to be created, got \(first)")
                return
            }
            let second = try await subject.store.compareAndSet("leader", expectedVersion: 0, to: .json(#""you""#), ttl: nil, namespace: space)
            #expect(second == .conflict(currentVersion: write.version))
            #expect(try await subject.store.get("leader", namespace: space)?.value.text == #""me""#)
        },

        ContractCase("compare-and-set succeeds with the current version and fails with any other") { subject in
            let space = subject.namespace("a")
            let initial = try await subject.store.set("counter", to: .json("1"), ttl: nil, namespace: space)
            let updated = try await subject.store.compareAndSet("counter", expectedVersion: initial.version, to: .json("2"), ttl: nil, namespace: space)
            guard case .stored(let write) = updated else {
                Issue.record("expected the update to succeed, got \(updated)")
                return
            }
            #expect(write.version > initial.version)
            let stale = try await subject.store.compareAndSet("counter", expectedVersion: initial.version, to: .json("3"), ttl: nil, namespace: space)
            #expect(stale == .conflict(currentVersion: write.version))
            #expect(try await subject.store.get("counter", namespace: space)?.value.text == "2")
            let missing = try await subject.store.compareAndSet("absent", expectedVersion: 7, to: .json("1"), ttl: nil, namespace: space)
            #expect(missing == .conflict(currentVersion: 0))
            #expect(try await subject.store.get("absent", namespace: space) == nil)
        },

        ContractCase("of concurrent compare-and-sets on one version exactly one wins") { subject in
            let space = subject.namespace("a")
            let initial = try await subject.store.set("slot", to: .json("0"), ttl: nil, namespace: space)
            let store = subject.store
            let outcomes = try await withThrowingTaskGroup(of: CompareAndSetOutcome.self) { group in
                for contender in 1...32 {
                    group.addTask {
                        try await store.compareAndSet("slot", expectedVersion: initial.version, to: .json("\(contender)"), ttl: nil, namespace: space)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let winners = outcomes.compactMap { outcome -> KeyValueWrite? in
                if case .stored(let write) = outcome { return write }
                return nil
            }
            #expect(winners.count == 1)
            #expect(outcomes.filter { $0 == .conflict(currentVersion: winners.first?.version ?? -1) }.count == 31)
        },

        ContractCase("a key is gone once its time to live has passed") { subject in
            let space = subject.namespace("a")
            let write = try await subject.store.set("session", to: .json("1"), ttl: .minutes(120), namespace: space)
            let expiresAt = try #require(write.expiresAt)
            let entry = try #require(try await subject.store.get("session", namespace: space))
            #expect(entry.expiresAt == expiresAt)
            #expect(try await subject.store.list(namespace: space, prefix: "", after: nil, limit: 10).entries.map(\.expiresAt) == [expiresAt])

            try await subject.advanceTime(.minutes(121))
            #expect(try await subject.store.get("session", namespace: space) == nil)
            #expect(try await subject.store.list(namespace: space, prefix: "", after: nil, limit: 10).entries.isEmpty)
            #expect(try await subject.store.delete("session", namespace: space) == false)
            let recreated = try await subject.store.compareAndSet("session", expectedVersion: 0, to: .json("2"), ttl: nil, namespace: space)
            guard case .stored(let second) = recreated else {
                Issue.record("an expired key must count as absent for compare-and-set: \(recreated)")
                return
            }
            #expect(second.version > write.version)
        },

        ContractCase("a key keeps living until its time to live has passed") { subject in
            let space = subject.namespace("a")
            _ = try await subject.store.set("short", to: .json("1"), ttl: .minutes(60), namespace: space)
            _ = try await subject.store.set("long", to: .json("1"), ttl: .minutes(600), namespace: space)
            try await subject.advanceTime(.minutes(61))
            #expect(try await subject.store.get("short", namespace: space) == nil)
            #expect(try await subject.store.get("long", namespace: space) != nil)
        },

        ContractCase("a write without a time to live removes the previous one") { subject in
            let space = subject.namespace("a")
            _ = try await subject.store.set("k", to: .json("1"), ttl: .minutes(60), namespace: space)
            let write = try await subject.store.set("k", to: .json("2"), ttl: nil, namespace: space)
            #expect(write.expiresAt == nil)
            try await subject.advanceTime(.minutes(61))
            let entry = try #require(try await subject.store.get("k", namespace: space))
            #expect(entry.value.text == "2")
            #expect(entry.expiresAt == nil)
        },

        ContractCase("compare-and-set can give the key a time to live") { subject in
            let space = subject.namespace("a")
            let outcome = try await subject.store.compareAndSet("lease", expectedVersion: 0, to: .json("1"), ttl: .minutes(60), namespace: space)
            guard case .stored(let write) = outcome, let expiresAt = write.expiresAt else {
                Issue.record("expected a stored key with an expiry, got \(outcome)")
                return
            }
            #expect(try await subject.store.get("lease", namespace: space)?.expiresAt == expiresAt)
            try await subject.advanceTime(.minutes(61))
            #expect(try await subject.store.get("lease", namespace: space) == nil)
        },

        ContractCase("list returns the keys with the prefix in byte order, a page at a time") { subject in
            let space = subject.namespace("a")
            let names = ["agent.7", "agent.10", "agent.2", "agents", "agent.", "other", "Agent.1", "agent.\u{E9}"]
            var versions: [String: Int64] = [:]
            for name in names {
                versions[name] = try await subject.store.set(name, to: .json("0"), ttl: nil, namespace: space).version
            }
            var seen: [KeyValueListing] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await subject.store.list(namespace: space, prefix: "agent.", after: cursor, limit: 2)
                #expect(page.entries.count <= 2)
                seen += page.entries
                cursor = page.nextCursor
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen.map(\.key) == ["agent.", "agent.10", "agent.2", "agent.7", "agent.\u{E9}"])
            #expect(seen.allSatisfy { $0.version == versions[$0.key] && $0.expiresAt == nil })
            #expect(pages == 3)
        },

        ContractCase("a full page is not followed by an empty one") { subject in
            let space = subject.namespace("a")
            for name in ["a", "b"] { _ = try await subject.store.set(name, to: .json("0"), ttl: nil, namespace: space) }
            let page = try await subject.store.list(namespace: space, prefix: "", after: nil, limit: 2)
            #expect(page.entries.map(\.key) == ["a", "b"])
            #expect(page.nextCursor == nil)
        },

        ContractCase("listing goes on after the key at the cursor was deleted") { subject in
            let space = subject.namespace("a")
            for name in ["k1", "k2", "k3", "k4"] { _ = try await subject.store.set(name, to: .json("0"), ttl: nil, namespace: space) }
            let first = try await subject.store.list(namespace: space, prefix: "k", after: nil, limit: 2)
            #expect(first.entries.map(\.key) == ["k1", "k2"])
            let cursor = try #require(first.nextCursor)
            #expect(try await subject.store.delete("k2", namespace: space))
            let second = try await subject.store.list(namespace: space, prefix: "k", after: cursor, limit: 2)
            #expect(second.entries.map(\.key) == ["k3", "k4"])
            #expect(second.nextCursor == nil)
        },

        ContractCase("listing an empty or unknown namespace returns no keys and no cursor") { subject in
            let page = try await subject.store.list(namespace: subject.namespace("never-used"), prefix: "", after: nil, limit: 5)
            #expect(page == KeyValuePage(entries: [], nextCursor: nil))
        },

        ContractCase("concurrent writes of one key get distinct versions, and the last one read wins") { subject in
            let space = subject.namespace("a")
            let store = subject.store
            let versions = try await withThrowingTaskGroup(of: Int64.self) { group in
                for writer in 0..<32 {
                    group.addTask { try await store.set("hot", to: .json("\(writer)"), ttl: nil, namespace: space).version }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(versions).count == 32)
            #expect(try await store.get("hot", namespace: space)?.version == versions.max())
        },
    ]
}
