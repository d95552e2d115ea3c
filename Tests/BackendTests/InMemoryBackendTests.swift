import Backend
import NIOCore
import Synchronization
import Testing

/// The contract suites run against the embedded backend, each case on a fresh store whose
/// clock only moves when the case says so.
@Suite("Backend contract: in-memory", .timeLimit(.minutes(1)))
struct InMemoryContractTests {
    @Test(arguments: KeyValueStoreContract.cases)
    func keyValueStore(_ contract: ContractCase<KeyValueStoreSubject>) async throws {
        let clock = ManualClock()
        let store = InMemoryKeyValueStore(clock: clock)
        try await contract.run(KeyValueStoreSubject(store: store, isolation: "", advanceTime: { clock.advance(by: $0) }))
    }

    @Test(arguments: PubSubContract.cases)
    func pubSub(_ contract: ContractCase<PubSubSubject>) async throws {
        try await contract.run(PubSubSubject(pubsub: InMemoryPubSub(), isolation: ""))
    }

    @Test(arguments: TaskBoardContract.cases)
    func taskBoard(_ contract: ContractCase<TaskBoardSubject>) async throws {
        let clock = ManualClock()
        let board = InMemoryTaskBoard(clock: clock)
        try await contract.run(TaskBoardSubject(board: board, advanceTime: { clock.advance(by: $0) }))
    }

    @Test(arguments: ReplicaDirectoryContract.cases)
    func replicaDirectory(_ contract: ContractCase<ReplicaDirectorySubject>) async throws {
        let clock = ManualClock()
        let directory = InMemoryReplicaDirectory(clock: clock)
        try await contract.run(ReplicaDirectorySubject(directory: directory, advanceTime: { clock.advance(by: $0) }))
    }
}

@Suite("In-memory task board: scale", .timeLimit(.minutes(1)))
struct InMemoryTaskBoardScaleTests {
    @Test func aHundredThousandQueuedTasksComeOutByPriorityThenNumber() async throws {
        let board = InMemoryTaskBoard(clock: ManualClock())
        let count = 100_000
        var ids: [String] = []
        for index in 0..<count {
            let submission = BoardSubmission(queue: "q", priority: index * 7 % 10 + 1, maximumClaims: 1, record: .json("{}"))
            guard case .created(let task) = try await board.submit(submission) else {
                Issue.record("submission \(index) was not created")
                return
            }
            ids.append(task.id)
        }
        // Cancelling from the middle of the queue must not disturb the order of the rest.
        for index in stride(from: 4, to: count, by: 100) {
            _ = try await board.cancel(ids[index], record: .json("{}"), retention: .zero)
        }
        let expected = count - count / 100
        #expect(try await board.queueDepths() == ["q": expected])

        var claimed = 0
        var outOfOrder = 0
        var previous = (priority: 0, number: Int64(0))
        while let task = try await board.claim(from: "q", owner: "a", lease: .seconds(30)) {
            if (task.priority, task.number) <= previous { outOfOrder += 1 }
            previous = (task.priority, task.number)
            claimed += 1
        }
        #expect(claimed == expected)
        #expect(outOfOrder == 0)
    }
}

@Suite("In-memory key-value store: expiry", .timeLimit(.minutes(1)))
struct InMemoryExpiryTests {
    let clock = ManualClock()
    var store: InMemoryKeyValueStore { InMemoryKeyValueStore(clock: clock) }

    @Test func aSweepReclaimsExpiredKeysThatNobodyReads() async throws {
        let store = self.store
        _ = try await store.set("a", to: .json("1"), ttl: .seconds(1), namespace: "n")
        _ = try await store.set("b", to: .json("1"), ttl: .seconds(1), namespace: "other")
        _ = try await store.set("c", to: .json("1"), ttl: nil, namespace: "n")
        clock.advance(by: .seconds(2))
        #expect(store.storedKeyCount == 3, "nothing is reclaimed before a sweep or a read")
        #expect(store.sweepExpired() == 2)
        #expect(store.storedKeyCount == 1)
        #expect(try await store.get("c", namespace: "n") != nil)
    }

    @Test func readingAnExpiredKeyReclaimsItWithoutASweep() async throws {
        let store = self.store
        _ = try await store.set("a", to: .json("1"), ttl: .seconds(1), namespace: "n")
        clock.advance(by: .seconds(1))
        #expect(try await store.get("a", namespace: "n") == nil, "a key expires at exactly its expiry time")
        #expect(store.storedKeyCount == 0)
        #expect(store.sweepExpired() == 0)
    }

    @Test func listingReclaimsTheExpiredKeysItPasses() async throws {
        let store = self.store
        for name in ["k1", "k2", "k3"] { _ = try await store.set(name, to: .json("1"), ttl: .seconds(1), namespace: "n") }
        _ = try await store.set("k4", to: .json("1"), ttl: nil, namespace: "n")
        clock.advance(by: .seconds(5))
        #expect(try await store.list(namespace: "n", prefix: "k", after: nil, limit: 10).entries.map(\.key) == ["k4"])
        #expect(store.storedKeyCount == 1)
    }

    @Test func aSweepRemovesOnlyKeysWhoseTimeHasComeInExpiryOrder() async throws {
        let store = self.store
        for seconds in 1...5 {
            _ = try await store.set("k\(seconds)", to: .json("1"), ttl: .seconds(Int64(seconds)), namespace: "n")
        }
        clock.advance(by: .milliseconds(3_500))
        #expect(store.sweepExpired(limit: 2) == 2)
        #expect(store.storedKeyCount == 3)
        #expect(try await store.get("k3", namespace: "n") == nil, "k3 expired: a read must not see it, swept or not")
        #expect(store.storedKeyCount == 2)
        #expect(store.sweepExpired() == 0)
        #expect(try await store.list(namespace: "n", prefix: "", after: nil, limit: 10).entries.map(\.key) == ["k4", "k5"])
    }

    @Test func aKeyRewrittenWithALongerLifeSurvivesItsFirstExpiry() async throws {
        let store = self.store
        _ = try await store.set("lease", to: .json("1"), ttl: .seconds(1), namespace: "n")
        let renewed = try await store.set("lease", to: .json("2"), ttl: .seconds(10), namespace: "n")
        clock.advance(by: .seconds(2))
        #expect(store.sweepExpired() == 0)
        #expect(try await store.get("lease", namespace: "n")?.version == renewed.version)
        clock.advance(by: .seconds(9))
        #expect(store.sweepExpired() == 1)
        #expect(store.storedKeyCount == 0)
    }

    @Test func aKeyDeletedBeforeItsExpiryIsNotSweptTwice() async throws {
        let store = self.store
        _ = try await store.set("k", to: .json("1"), ttl: .seconds(1), namespace: "n")
        #expect(try await store.delete("k", namespace: "n"))
        _ = try await store.set("k", to: .json("2"), ttl: nil, namespace: "n")
        clock.advance(by: .seconds(2))
        #expect(store.sweepExpired() == 0)
        #expect(try await store.get("k", namespace: "n")?.value.text == "2")
    }

    @Test func expiryTimesAreRoundedUpToTheMillisecond() async throws {
        let store = self.store
        let start = clock.now()
        let write = try await store.set("k", to: .json("1"), ttl: .microseconds(1_500), namespace: "n")
        #expect(write.expiresAt == Timestamp(millisecondsSinceEpoch: start.millisecondsSinceEpoch + 2))
    }

    @Test func storedValuesDoNotKeepTheBufferTheyWereSlicedFrom() async throws {
        let store = self.store
        var line = ByteBuffer(string: #"{"jsonrpc":"2.0","params":{"value":[1,2,3]}}"#)
        let slice = line.getSlice(at: 35, length: 7)!
        _ = try await store.set("k", to: slice, ttl: nil, namespace: "n")
        line.clear()
        let stored = try #require(try await store.get("k", namespace: "n")).value
        #expect(stored.text == "[1,2,3]")
        #expect(stored.capacity < 64)
    }
}

@Suite("In-memory pub-sub: event-loop consumers")
struct SubscriptionPollingTests {
    @Test func pollCallsBackOnceWhenTheNextMessageArrives() async throws {
        let pubsub = InMemoryPubSub()
        let subscription = try await pubsub.subscribe(.topic("t"))
        let calls = Atomic<Int>(0)
        #expect(subscription.poll(orWhenAvailable: { calls.add(1, ordering: .relaxed) }) == nil)
        try await pubsub.publish(message("t", "1"))
        try await pubsub.publish(message("t", "2"))
        #expect(calls.load(ordering: .relaxed) == 1, "armed once, called once")
        #expect(subscription.poll(orWhenAvailable: {})?.text == "1")
        #expect(subscription.poll(orWhenAvailable: {})?.text == "2")
    }

    @Test func anEndedSubscriptionNeverCallsBack() async throws {
        let pubsub = InMemoryPubSub()
        let subscription = try await pubsub.subscribe(.topic("t"))
        let calls = Atomic<Int>(0)
        _ = subscription.poll(orWhenAvailable: { calls.add(1, ordering: .relaxed) })
        subscription.cancel()
        #expect(try await pubsub.publish(message("t", "1")) == 0)
        #expect(calls.load(ordering: .relaxed) == 0)
        #expect(subscription.poll(orWhenAvailable: {}) == nil)
    }

    @Test func theBackendCountsDropsOverAllSubscriptions() async throws {
        let pubsub = InMemoryPubSub()
        let first = try await pubsub.subscribe(.topic("t"), limits: SubscriptionLimits(messages: 1))
        let second = try await pubsub.subscribe(try .pattern(TopicPattern("*")), limits: SubscriptionLimits(messages: 2))
        for index in 1...5 { try await pubsub.publish(message("t", "\(index)")) }
        #expect(pubsub.statistics == InMemoryPubSub.Statistics(subscriptions: 2, published: 5, dropped: 4 + 3))
        first.cancel()
        second.cancel()
        #expect(pubsub.statistics.subscriptions == 0)
    }

    private func message(_ topic: String, _ text: String) -> PubSubMessage {
        PubSubMessage(topic: topic, payload: ByteBuffer(string: text), publishedAt: Timestamp(millisecondsSinceEpoch: 0))
    }
}

@Suite("Topic patterns")
struct TopicPatternTests {
    @Test(arguments: [
        ("market.*", "market.btc", true),
        ("market.*", "market.btc.usd", true),
        ("market.*", "market.", true),
        ("market.*", "market", false),
        ("market.*", "markets.btc", false),
        ("*.usd", "market.btc.usd", true),
        ("a*b*c", "aXXbYYbZZc", true),
        ("a*b*c", "aXXbYYbZZ", false),
        ("*", "", true),
        ("alerts.?pu", "alerts.cpu", true),
        ("alerts.?pu", "alerts.pu", false),
        ("[ab]x", "bx", true),
        ("[ab]x", "cx", false),
        ("[^ab]x", "cx", true),
        ("[^ab]x", "ax", false),
        ("v[0-9]", "v7", true),
        ("v[0-9]", "vx", false),
        ("literal\\*", "literal*", true),
        ("literal\\*", "literalX", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ])
    func matching(_ pattern: String, _ topic: String, _ expected: Bool) throws {
        #expect(try TopicPattern(pattern).matches(topic) == expected)
    }

    @Test(arguments: ["[abc", "trailing\\", "[]", "x[^]"])
    func malformedPatternsAreRefused(_ pattern: String) {
        #expect(throws: TopicPattern.SyntaxError.self) { try TopicPattern(pattern) }
    }

    @Test func manyStarsDoNotBacktrackExponentially() throws {
        let pattern = try TopicPattern(String(repeating: "*a", count: 30) + "b")
        #expect(pattern.matches(String(repeating: "a", count: 5_000)) == false)
    }
}

@Suite("Timestamps")
struct TimestampTests {
    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"),
        (1_767_225_600_000, "2026-01-01T00:00:00.000Z"),
        (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (253_402_300_800_000, "10000-01-01T00:00:00.000Z"),
    ])
    func iso8601(_ milliseconds: Int64, _ text: String) {
        #expect(Timestamp(millisecondsSinceEpoch: milliseconds).iso8601 == text)
    }
}
