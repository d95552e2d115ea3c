import NIOCore

/// Whose memory a write counts towards, and what that owner may hold: a tenant's keys and bytes
/// (`auth.quotas.tenants.NAME.memoryKeys|memoryBytes`). A key's bytes are its name's UTF-8 and
/// its value's.
public struct MemoryAccount: Sendable, Hashable {
    public var owner: String
    public var maximumKeys: Int?
    public var maximumBytes: Int?

    public init(owner: String, maximumKeys: Int? = nil, maximumBytes: Int? = nil) {
        self.owner = owner
        self.maximumKeys = maximumKeys
        self.maximumBytes = maximumBytes
    }
}

/// What an owner holds.
public struct MemoryUsage: Sendable, Hashable {
    public var keys: Int
    public var bytes: Int

    public init(keys: Int = 0, bytes: Int = 0) {
        self.keys = keys
        self.bytes = bytes
    }
}

/// A write refused: it would take its owner past `limit` of `resource` (it holds `held`).
public struct MemoryQuotaExceeded: Error, Sendable, Hashable {
    public enum Resource: String, Sendable, Hashable {
        case keys
        case bytes
    }

    public var owner: String
    public var resource: Resource
    public var limit: Int
    public var held: Int

    public init(owner: String, resource: Resource, limit: Int, held: Int) {
        self.owner = owner
        self.resource = resource
        self.limit = limit
        self.held = held
    }
}

/// A store that keeps each owner's usage itself, in the same step as each write, delete and
/// expiry, and refuses a write past the owner's limits in that step: no count to drift from the
/// data, whatever expires or whichever replica writes.
///
/// Usage is counted for writes and deletes that name an account; an owner's keys must always be
/// written with one.
public protocol AccountedKeyValueStore: KeyValueStore {
    func set(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String, account: MemoryAccount) async throws -> KeyValueWrite
    func compareAndSet(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String, account: MemoryAccount
    ) async throws -> CompareAndSetOutcome
    func delete(_ key: String, namespace: String, account: MemoryAccount) async throws -> Bool
    /// What `owner` holds now (expired keys given back first).
    func usage(of owner: String) async throws -> MemoryUsage
}

extension MemoryAccount {
    /// The refusal of a write whose usage would become `after` from `before`, if any: a limit
    /// only refuses what grows its resource.
    func refusal(before: MemoryUsage, after: MemoryUsage) -> MemoryQuotaExceeded? {
        if let maximumKeys, after.keys > before.keys, after.keys > maximumKeys {
            return MemoryQuotaExceeded(owner: owner, resource: .keys, limit: maximumKeys, held: before.keys)
        }
        if let maximumBytes, after.bytes > before.bytes, after.bytes > maximumBytes {
            return MemoryQuotaExceeded(owner: owner, resource: .bytes, limit: maximumBytes, held: before.bytes)
        }
        return nil
    }
}
