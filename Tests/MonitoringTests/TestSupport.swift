import Backend
import NIOCore
import Synchronization

@testable import Monitoring

/// 2026-12-07T18:00:00Z: on the hour, so that minutes, hours and days are easy to tell.
let startOfTheHour: Int64 = 1_796_666_400

/// The instant `minutes` and `seconds` after 18:00.
func at(_ minutes: Int64, _ seconds: Int64 = 0) -> Timestamp {
    Timestamp(millisecondsSinceEpoch: (startOfTheHour + minutes * 60 + seconds) * 1_000)
}

/// The start of the day holding 18:00, in seconds.
let startOfTheDay = startOfTheHour - 18 * 3_600

/// A store that fails every operation while it is down, as Redis does when it is unreachable.
final class FlakyStore: KeyValueStore {
    let inner: InMemoryKeyValueStore
    private let down = Mutex(false)
    private let writes = Mutex(0)

    init(clock: any BackendClock = ManualClock(at(0))) {
        inner = InMemoryKeyValueStore(clock: clock)
    }

    var isDown: Bool {
        get { down.withLock { $0 } }
        set { down.withLock { $0 = newValue } }
    }

    /// Successful `set`s so far.
    var writeCount: Int { writes.withLock { $0 } }

    private func check() throws {
        if isDown { throw BackendUnavailable(reason: "the test store is down") }
    }

    func get(_ key: String, namespace: String) async throws -> KeyValueEntry? {
        try check()
        return try await inner.get(key, namespace: namespace)
    }

    func set(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String) async throws -> KeyValueWrite {
        try check()
        writes.withLock { $0 += 1 }
        return try await inner.set(key, to: value, ttl: ttl, namespace: namespace)
    }

    func delete(_ key: String, namespace: String) async throws -> Bool {
        try check()
        return try await inner.delete(key, namespace: namespace)
    }

    func compareAndSet(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String
    ) async throws -> CompareAndSetOutcome {
        try check()
        return try await inner.compareAndSet(key, expectedVersion: expectedVersion, to: value, ttl: ttl, namespace: namespace)
    }

    func list(namespace: String, prefix: String, after cursor: String?, limit: Int) async throws -> KeyValuePage {
        try check()
        return try await inner.list(namespace: namespace, prefix: prefix, after: cursor, limit: limit)
    }
}

extension InMemoryKeyValueStore {
    /// Every key of the namespace, in order.
    func allKeys(namespace: String = "switchboard.history") -> [String] {
        var keys: [String] = []
        var cursor: String?
        repeat {
            let page = listNow(namespace: namespace, prefix: "", after: cursor, limit: 100)
            keys += page.entries.map(\.key)
            cursor = page.nextCursor
        } while cursor != nil
        return keys
    }

    /// The stored bucket under `key`, decoded.
    func bucket(_ key: String, namespace: String = "switchboard.history") -> BucketFigures? {
        getNow(key, namespace: namespace).flatMap { BucketCoding.decode($0.value) }
    }
}

/// A deterministic stream of numbers in [0, 1) (a linear congruential generator), so that
/// "random" samples are the same at every run.
struct SeededNumbers {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> Double {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Double(state >> 11) / Double(1 << 53)
    }
}
