import NIOCore

/// Shared memory: keys holding opaque bytes, in namespaces that never see each other's keys,
/// with an optional time to live and a version for compare-and-set.
///
/// Semantics every implementation keeps (the contract tests in `BackendTests` check them):
/// - A namespace and a key are compared byte for byte (their UTF-8), never by Unicode
///   equivalence. The same key in two namespaces is two keys.
/// - Every write (`set`, a successful `compareAndSet`) gives the key a new version, greater than
///   any version the key had before, even across a delete or an expiry. Versions are positive
///   and are not consecutive: clients compare them, never count them.
/// - A key whose time to live has passed is gone: no read, list or compare-and-set sees it,
///   whether or not its memory has been reclaimed yet.
/// - `set` and `compareAndSet` without a TTL store a key that never expires (a previous TTL is
///   dropped, as Redis `SET` does).
public protocol KeyValueStore: Sendable {
    /// The key's value, version and expiry, or nil when it does not exist (or has expired).
    func get(_ key: String, namespace: String) async throws -> KeyValueEntry?

    /// Stores `value` under `key`, replacing any previous value; returns the new version.
    func set(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String) async throws -> KeyValueWrite

    /// Removes the key; false when there was nothing to remove.
    func delete(_ key: String, namespace: String) async throws -> Bool

    /// Stores `value` only if the key's current version is `expectedVersion` (0: only if the key
    /// does not exist).
    func compareAndSet(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String
    ) async throws -> CompareAndSetOutcome

    /// Up to `limit` keys that start with `prefix`, in ascending order of their UTF-8 bytes,
    /// after `cursor` (a `nextCursor` of an earlier page). `nextCursor` is nil on the last page.
    func list(namespace: String, prefix: String, after cursor: String?, limit: Int) async throws -> KeyValuePage
}

/// One stored key.
public struct KeyValueEntry: Sendable, Equatable {
    public var key: String
    /// The bytes as they were stored.
    public var value: ByteBuffer
    public var version: Int64
    public var expiresAt: Timestamp?

    public init(key: String, value: ByteBuffer, version: Int64, expiresAt: Timestamp?) {
        self.key = key
        self.value = value
        self.version = version
        self.expiresAt = expiresAt
    }
}

/// What a write produced.
public struct KeyValueWrite: Sendable, Equatable {
    public var version: Int64
    public var expiresAt: Timestamp?

    public init(version: Int64, expiresAt: Timestamp?) {
        self.version = version
        self.expiresAt = expiresAt
    }
}

public enum CompareAndSetOutcome: Sendable, Equatable {
    case stored(KeyValueWrite)
    /// The key's version was not the expected one; 0 when the key does not exist.
    case conflict(currentVersion: Int64)
}

/// A key in a listing: everything but the value.
public struct KeyValueListing: Sendable, Equatable {
    public var key: String
    public var version: Int64
    public var expiresAt: Timestamp?

    public init(key: String, version: Int64, expiresAt: Timestamp?) {
        self.key = key
        self.version = version
        self.expiresAt = expiresAt
    }
}

public struct KeyValuePage: Sendable, Equatable {
    public var entries: [KeyValueListing]
    /// Pass it as `cursor` to get the next page; nil when this page is the last.
    public var nextCursor: String?

    public init(entries: [KeyValueListing], nextCursor: String?) {
        self.entries = entries
        self.nextCursor = nextCursor
    }
}

/// A backend that could not do what was asked (its server is unreachable, say). The embedded
/// backend never throws it.
public struct BackendUnavailable: Error, Sendable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { reason }
}

/// A string compared by its UTF-8 bytes, as Redis compares keys (Swift's `String` equality is
/// Unicode canonical equivalence: "é" and "e\u{301}" would be one key).
struct ByteString: Hashable, Comparable, Sendable {
    var bytes: [UInt8]

    init(_ string: String) {
        bytes = Array(string.utf8)
    }

    var string: String { String(decoding: bytes, as: UTF8.self) }

    static func < (lhs: ByteString, rhs: ByteString) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    func hasPrefix(_ prefix: ByteString) -> Bool {
        bytes.count >= prefix.bytes.count && bytes[..<prefix.bytes.count].elementsEqual(prefix.bytes)
    }
}

/// A key-value store that answers without waiting (it lives in this process): the gateway runs
/// its operations on the request's event loop rather than from a task, a hop saved per request.
/// Each does what the `KeyValueStore` operation of the same name does, before returning.
public protocol ImmediateKeyValueStore: KeyValueStore {
    func getNow(_ key: String, namespace: String) -> KeyValueEntry?
    func setNow(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String) -> KeyValueWrite
    func deleteNow(_ key: String, namespace: String) -> Bool
    func compareAndSetNow(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String
    ) -> CompareAndSetOutcome
    func listNow(namespace: String, prefix: String, after cursor: String?, limit: Int) -> KeyValuePage
}

extension InMemoryKeyValueStore: ImmediateKeyValueStore {}
