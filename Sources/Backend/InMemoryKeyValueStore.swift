import NIOCore
import Synchronization

/// The embedded key-value store: one process, one lock, nothing on disk.
///
/// Expiry needs no timer per key. A read of an expired key removes it (lazy expiry), and
/// `sweepExpired()` removes the expired keys nobody reads, cheapest first: expiries sit in a
/// min-heap ordered by time, so a sweep costs O(k log n) for k expired keys. `runExpirySweeper`
/// calls it periodically in production; tests call it after advancing a `ManualClock`.
///
/// Keys of each namespace are also kept sorted (by UTF-8 bytes), so a page of `list` costs
/// O(log n + page) and only a key's first write pays for the ordered insert.
public final class InMemoryKeyValueStore: AccountedKeyValueStore {
    private struct Entry {
        var value: ByteBuffer
        var version: Int64
        var expiresAt: Timestamp?
        /// Whose usage it counts towards (see `AccountedKeyValueStore`), and how much: its
        /// name's bytes and its value's.
        var owner: String?
        var size: Int
    }

    private struct Namespace {
        var entries: [ByteString: Entry] = [:]
        var sortedKeys: [ByteString] = []
    }

    /// A pending expiry. Stale once its key has been rewritten or deleted (the version differs).
    private struct Expiry: Comparable {
        var at: Timestamp
        var namespace: ByteString
        var key: ByteString
        var version: Int64

        static func < (lhs: Expiry, rhs: Expiry) -> Bool { lhs.at < rhs.at }
        static func == (lhs: Expiry, rhs: Expiry) -> Bool { lhs.at == rhs.at && lhs.version == rhs.version }
    }

    private struct State {
        var namespaces: [ByteString: Namespace] = [:]
        /// One counter for the whole store: a version is never reused for a key, even after the
        /// key was deleted or expired and written again (no ABA for compare-and-set).
        var lastVersion: Int64 = 0
        var expiries = MinimumHeap<Expiry>()
        /// Live entries that have an expiry, to know when the heap is mostly stale.
        var expiringEntries = 0
        var entryCount = 0
        /// By owner, kept by `store` and `remove`, which every write, delete, expiry and sweep
        /// goes through.
        var usage: [String: MemoryUsage] = [:]
    }

    private let state = Mutex(State())
    public let clock: any BackendClock

    public init(clock: any BackendClock = SystemClock()) {
        self.clock = clock
    }

    // MARK: KeyValueStore

    public func get(_ key: String, namespace: String) async throws -> KeyValueEntry? {
        getNow(key, namespace: namespace)
    }

    public func getNow(_ key: String, namespace: String) -> KeyValueEntry? {
        let now = clock.now()
        let (space, name) = (ByteString(namespace), ByteString(key))
        return state.withLock { state in
            guard let entry = Self.liveEntry(&state, space, name, now: now) else { return nil }
            return KeyValueEntry(key: key, value: entry.value, version: entry.version, expiresAt: entry.expiresAt)
        }
    }

    public func set(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String) async throws -> KeyValueWrite {
        setNow(key, to: value, ttl: ttl, namespace: namespace)
    }

    public func setNow(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String) -> KeyValueWrite {
        let now = clock.now()
        let (space, name) = (ByteString(namespace), ByteString(key))
        let expiresAt = ttl.map { now.advanced(by: $0) }
        return state.withLock { state in
            Self.store(&state, space, name, value: value, expiresAt: expiresAt, owner: nil)
        }
    }

    // MARK: AccountedKeyValueStore

    public func set(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String, account: MemoryAccount) async throws -> KeyValueWrite {
        try setNow(key, to: value, ttl: ttl, namespace: namespace, account: account)
    }

    public func setNow(
        _ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String, account: MemoryAccount
    ) throws(MemoryQuotaExceeded) -> KeyValueWrite {
        let now = clock.now()
        let (space, name) = (ByteString(namespace), ByteString(key))
        let expiresAt = ttl.map { now.advanced(by: $0) }
        let outcome: Result<KeyValueWrite, MemoryQuotaExceeded> = state.withLock { state in
            if let refusal = Self.refusal(&state, space, name, size: name.bytes.count + value.readableBytes, account: account, now: now) {
                return .failure(refusal)
            }
            return .success(Self.store(&state, space, name, value: value, expiresAt: expiresAt, owner: account.owner))
        }
        return try outcome.get()
    }

    public func compareAndSet(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String, account: MemoryAccount
    ) async throws -> CompareAndSetOutcome {
        try compareAndSetNow(key, expectedVersion: expectedVersion, to: value, ttl: ttl, namespace: namespace, account: account)
    }

    public func compareAndSetNow(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String, account: MemoryAccount
    ) throws(MemoryQuotaExceeded) -> CompareAndSetOutcome {
        let now = clock.now()
        let (space, name) = (ByteString(namespace), ByteString(key))
        let expiresAt = ttl.map { now.advanced(by: $0) }
        let outcome: Result<CompareAndSetOutcome, MemoryQuotaExceeded> = state.withLock { state in
            let current = Self.liveEntry(&state, space, name, now: now)?.version ?? 0
            guard current == expectedVersion else { return .success(.conflict(currentVersion: current)) }
            if let refusal = Self.refusal(&state, space, name, size: name.bytes.count + value.readableBytes, account: account, now: now) {
                return .failure(refusal)
            }
            return .success(.stored(Self.store(&state, space, name, value: value, expiresAt: expiresAt, owner: account.owner)))
        }
        return try outcome.get()
    }

    public func delete(_ key: String, namespace: String, account: MemoryAccount) async throws -> Bool {
        deleteNow(key, namespace: namespace)
    }

    public func usage(of owner: String) async throws -> MemoryUsage {
        usageNow(of: owner)
    }

    /// What `owner` holds, expired keys not yet swept included (swept every second by
    /// `runExpirySweeper`).
    public func usageNow(of owner: String) -> MemoryUsage {
        state.withLock { $0.usage[owner] ?? MemoryUsage() }
    }

    /// Whether writing `size` bytes under the key would take the account past a limit.
    private static func refusal(
        _ state: inout State, _ space: ByteString, _ name: ByteString, size: Int, account: MemoryAccount, now: Timestamp
    ) -> MemoryQuotaExceeded? {
        guard account.maximumKeys != nil || account.maximumBytes != nil else { return nil }
        let previous = liveEntry(&state, space, name, now: now)
        let before = state.usage[account.owner] ?? MemoryUsage()
        var after = before
        if let previous, previous.owner == account.owner {
            after.bytes -= previous.size
        } else {
            after.keys += 1
        }
        after.bytes += size
        return account.refusal(before: before, after: after)
    }

    public func delete(_ key: String, namespace: String) async throws -> Bool {
        deleteNow(key, namespace: namespace)
    }

    public func deleteNow(_ key: String, namespace: String) -> Bool {
        let now = clock.now()
        let (space, name) = (ByteString(namespace), ByteString(key))
        return state.withLock { state in
            guard Self.liveEntry(&state, space, name, now: now) != nil else { return false }
            Self.remove(&state, space, name)
            return true
        }
    }

    public func compareAndSet(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String
    ) async throws -> CompareAndSetOutcome {
        compareAndSetNow(key, expectedVersion: expectedVersion, to: value, ttl: ttl, namespace: namespace)
    }

    public func compareAndSetNow(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String
    ) -> CompareAndSetOutcome {
        let now = clock.now()
        let (space, name) = (ByteString(namespace), ByteString(key))
        let expiresAt = ttl.map { now.advanced(by: $0) }
        return state.withLock { state in
            let current = Self.liveEntry(&state, space, name, now: now)?.version ?? 0
            guard current == expectedVersion else { return .conflict(currentVersion: current) }
            return .stored(Self.store(&state, space, name, value: value, expiresAt: expiresAt, owner: nil))
        }
    }

    public func list(namespace: String, prefix: String, after cursor: String?, limit: Int) async throws -> KeyValuePage {
        listNow(namespace: namespace, prefix: prefix, after: cursor, limit: limit)
    }

    public func listNow(namespace: String, prefix: String, after cursor: String?, limit: Int) -> KeyValuePage {
        precondition(limit > 0, "a page holds at least one key")
        let now = clock.now()
        let space = ByteString(namespace)
        let prefixBytes = ByteString(prefix)
        return state.withLock { state in
            let (page, expired) = Self.scan(state.namespaces[space], prefix: prefixBytes, after: cursor.map(ByteString.init), limit: limit, now: now)
            for name in expired { Self.remove(&state, space, name) }
            return page
        }
    }

    /// One page of keys, and the expired keys met on the way (removed by the caller).
    private static func scan(
        _ table: Namespace?, prefix: ByteString, after cursor: ByteString?, limit: Int, now: Timestamp
    ) -> (KeyValuePage, [ByteString]) {
        guard let table else { return (KeyValuePage(entries: [], nextCursor: nil), []) }
        var index = firstIndex(in: table.sortedKeys, notBelow: prefix)
        if let cursor, !(cursor < prefix) {
            index = firstIndex(in: table.sortedKeys, notBelow: cursor)
            if index < table.sortedKeys.count && table.sortedKeys[index] == cursor { index += 1 }
        }
        var entries: [KeyValueListing] = []
        var expired: [ByteString] = []
        var more = false
        while index < table.sortedKeys.count {
            let name = table.sortedKeys[index]
            guard name.hasPrefix(prefix) else { break }
            index += 1
            let entry = table.entries[name]!
            if let at = entry.expiresAt, at <= now {
                expired.append(name)
                continue
            }
            if entries.count == limit {
                more = true
                break
            }
            entries.append(KeyValueListing(key: name.string, version: entry.version, expiresAt: entry.expiresAt))
        }
        return (KeyValuePage(entries: entries, nextCursor: more ? entries.last?.key : nil), expired)
    }

    // MARK: Expiry

    /// Removes up to `limit` expired keys that nobody has read since they expired; returns how
    /// many it removed.
    @discardableResult
    public func sweepExpired(limit: Int = .max) -> Int {
        let now = clock.now()
        return state.withLock { state in
            var removed = 0
            while removed < limit, let next = state.expiries.minimum, next.at <= now {
                state.expiries.removeMinimum()
                guard let entry = state.namespaces[next.namespace]?.entries[next.key],
                    entry.version == next.version, entry.expiresAt == next.at
                else { continue }  // rewritten or deleted since: a stale heap entry
                Self.remove(&state, next.namespace, next.key)
                removed += 1
            }
            Self.compactExpiriesIfMostlyStale(&state)
            return removed
        }
    }

    /// Sweeps every `interval` until the task is cancelled, in batches so that no sweep holds
    /// the lock for long however many keys expire at once.
    public func runExpirySweeper(every interval: Duration, batch: Int = 1_000) async {
        while true {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            while sweepExpired(limit: batch) == batch, !Task.isCancelled {
                await Task.yield()
            }
        }
    }

    /// Keys held in memory, expired or not (an expired key is held until read or swept).
    /// Writes a key as it was (a journal's replay): its value and its expiry instant.
    func restore(_ key: String, value: ByteBuffer, expiresAt: Timestamp?, namespace: String) {
        let (space, name) = (ByteString(namespace), ByteString(key))
        state.withLock { state in _ = Self.store(&state, space, name, value: value, expiresAt: expiresAt, owner: nil) }
    }

    /// Removes a key whatever its state (a journal's replay).
    func forget(_ key: String, namespace: String) {
        let (space, name) = (ByteString(namespace), ByteString(key))
        state.withLock { state in
            guard state.namespaces[space]?.entries[name] != nil else { return }
            Self.remove(&state, space, name)
        }
    }

    /// Every live key, by namespace (for a journal's compaction).
    func snapshot() -> [String: [KeyValueEntry]] {
        let now = clock.now()
        return state.withLock { state in
            var result: [String: [KeyValueEntry]] = [:]
            for (space, namespace) in state.namespaces {
                let live = namespace.entries.compactMap { name, entry -> KeyValueEntry? in
                    if let at = entry.expiresAt, at <= now { return nil }
                    return KeyValueEntry(key: name.string, value: entry.value, version: entry.version, expiresAt: entry.expiresAt)
                }
                if !live.isEmpty { result[space.string] = live }
            }
            return result
        }
    }

    public var storedKeyCount: Int {
        state.withLock { $0.entryCount }
    }

    // MARK: State changes (under the lock)

    /// The entry if it exists and has not expired; an expired one is removed on the way.
    private static func liveEntry(_ state: inout State, _ space: ByteString, _ name: ByteString, now: Timestamp) -> Entry? {
        guard let entry = state.namespaces[space]?.entries[name] else { return nil }
        if let at = entry.expiresAt, at <= now {
            remove(&state, space, name)
            return nil
        }
        return entry
    }

    private static func store(
        _ state: inout State, _ space: ByteString, _ name: ByteString, value: ByteBuffer, expiresAt: Timestamp?, owner: String?
    ) -> KeyValueWrite {
        state.lastVersion += 1
        let version = state.lastVersion
        // A slice of a larger buffer (a request line, say) would keep all of it alive.
        let copy = ByteBuffer(bytes: value.readableBytesView)
        var table = state.namespaces.removeValue(forKey: space) ?? Namespace()
        let entry = Entry(value: copy, version: version, expiresAt: expiresAt, owner: owner, size: name.bytes.count + copy.readableBytes)
        let previous = table.entries.updateValue(entry, forKey: name)
        if let previous { uncount(previous, in: &state) }
        count(entry, in: &state)
        if previous == nil {
            table.sortedKeys.insert(name, at: firstIndex(in: table.sortedKeys, notBelow: name))
            state.entryCount += 1
        }
        state.namespaces[space] = table
        if previous?.expiresAt != nil { state.expiringEntries -= 1 }
        if let expiresAt {
            state.expiringEntries += 1
            state.expiries.insert(Expiry(at: expiresAt, namespace: space, key: name, version: version))
            compactExpiriesIfMostlyStale(&state)
        }
        return KeyValueWrite(version: version, expiresAt: expiresAt)
    }

    private static func remove(_ state: inout State, _ space: ByteString, _ name: ByteString) {
        guard var table = state.namespaces.removeValue(forKey: space) else { return }
        if let removed = table.entries.removeValue(forKey: name) {
            uncount(removed, in: &state)
            state.entryCount -= 1
            if removed.expiresAt != nil { state.expiringEntries -= 1 }
            let index = firstIndex(in: table.sortedKeys, notBelow: name)
            if index < table.sortedKeys.count && table.sortedKeys[index] == name { table.sortedKeys.remove(at: index) }
        }
        if !table.entries.isEmpty { state.namespaces[space] = table }
    }

    private static func count(_ entry: Entry, in state: inout State) {
        guard let owner = entry.owner else { return }
        state.usage[owner, default: MemoryUsage()].keys += 1
        state.usage[owner, default: MemoryUsage()].bytes += entry.size
    }

    private static func uncount(_ entry: Entry, in state: inout State) {
        guard let owner = entry.owner, var usage = state.usage[owner] else { return }
        usage.keys -= 1
        usage.bytes -= entry.size
        state.usage[owner] = usage.keys > 0 ? usage : nil
    }

    /// Keys rewritten again and again with a TTL leave stale heap entries behind; rebuild the
    /// heap from the live entries when stale ones outnumber them, so memory stays O(keys).
    private static func compactExpiriesIfMostlyStale(_ state: inout State) {
        guard state.expiries.count > 2 * state.expiringEntries + 64 else { return }
        var heap = MinimumHeap<Expiry>()
        for (space, table) in state.namespaces {
            for (name, entry) in table.entries {
                if let at = entry.expiresAt { heap.insert(Expiry(at: at, namespace: space, key: name, version: entry.version)) }
            }
        }
        state.expiries = heap
    }

    /// The index of the first key that is not below `key` (binary search).
    private static func firstIndex(in keys: [ByteString], notBelow key: ByteString) -> Int {
        var low = 0
        var high = keys.count
        while low < high {
            let middle = (low + high) / 2
            if keys[middle] < key { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

/// A binary min-heap.
struct MinimumHeap<Element: Comparable> {
    private var storage: [Element] = []

    var count: Int { storage.count }
    var minimum: Element? { storage.first }

    mutating func insert(_ element: Element) {
        storage.append(element)
        var child = storage.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard storage[child] < storage[parent] else { break }
            storage.swapAt(child, parent)
            child = parent
        }
    }

    @discardableResult
    mutating func removeMinimum() -> Element? {
        guard !storage.isEmpty else { return nil }
        storage.swapAt(0, storage.count - 1)
        let minimum = storage.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < storage.count && storage[left] < storage[smallest] { smallest = left }
            if right < storage.count && storage[right] < storage[smallest] { smallest = right }
            guard smallest != parent else { break }
            storage.swapAt(parent, smallest)
            parent = smallest
        }
        return minimum
    }
}
