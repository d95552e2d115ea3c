/// Theoretical arrival times by key, for one shard of `LocalRateLimiter`.
///
/// An open-addressed table (linear probing, deletion by backward shift) rather than a
/// `Dictionary`, for two reasons: the key's hash is computed once by the limiter (it also picks
/// the shard) and kept with the entry, so neither a lookup nor a resize hashes the string again;
/// and the slots can be walked by a cursor, which is how expired entries are swept a few at a
/// time without a second index.
///
/// An entry whose TAT is not after now is the same as no entry (GCRA treats both as a fresh
/// key), so it may be dropped at any time. Each insertion first sweeps `sweepBudget` (8) slots
/// ahead of the cursor, so the cursor goes round the table every capacity / 8 insertions: stale
/// entries stay under an eighth of the slots, the table grows only for live keys, and a stream
/// of distinct keys does not accumulate. Lookups of known keys do no sweeping. At
/// `maximumCount` an insertion evicts: an expired entry near the cursor if there is one, else
/// the live one there (that key then starts afresh — at the cap the table errs on letting a
/// forgotten key through rather than refusing new keys).
struct ArrivalTable {
    struct Slot {
        var key: String
        var hash: Int
        /// `Int64.min` marks an empty slot; a stored TAT is always after some `now`.
        var tat: Int64

        static let empty = Slot(key: "", hash: 0, tat: .min)
        var isOccupied: Bool { tat != .min }
    }

    private(set) var slots: [Slot]
    private(set) var count = 0
    private var mask: Int
    private var cursor = 0
    let maximumCount: Int
    let minimumCapacity: Int

    /// Slots examined by each insertion.
    static let sweepBudget = 8
    /// Slots an insertion at the cap looks through for an expired entry before evicting a live one.
    static let evictionSearch = 64

    init(maximumCount: Int, minimumCapacity: Int = 16) {
        precondition(maximumCount > 0, "a table holds at least one key")
        precondition(minimumCapacity > 0 && minimumCapacity & (minimumCapacity - 1) == 0, "capacity is a power of two")
        self.maximumCount = maximumCount
        self.minimumCapacity = minimumCapacity
        slots = Array(repeating: .empty, count: minimumCapacity)
        mask = minimumCapacity - 1
    }

    var capacity: Int { slots.count }

    /// The slot holding `key`, nil when absent.
    @inline(__always)
    func find(_ key: String, hash: Int) -> Int? {
        var index = hash & mask
        // Field by field rather than a copy of the slot, which would retain its key.
        while slots[index].isOccupied {
            if slots[index].hash == hash && slots[index].key == key { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    @inline(__always)
    func tat(at index: Int) -> Int64 { slots[index].tat }

    @inline(__always)
    mutating func setTAT(_ tat: Int64, at index: Int) { slots[index].tat = tat }

    /// Adds `key`, known to be absent, sweeping and making room first.
    mutating func insert(_ key: String, hash: Int, tat: Int64, now: Int64) {
        sweep(budget: Self.sweepBudget, now: now)
        if count >= maximumCount { evictOne(now: now) }
        if (count + 1) * 4 > capacity * 3 { resize(to: capacity * 2) }
        var index = hash & mask
        while slots[index].isOccupied { index = (index + 1) & mask }
        slots[index] = Slot(key: key, hash: hash, tat: tat)
        count += 1
    }

    /// Examines `budget` slots from the cursor and removes those that have expired; shrinks the
    /// table when it has become mostly empty.
    mutating func sweep(budget: Int, now: Int64) {
        for _ in 0..<budget {
            if slots[cursor].isOccupied && slots[cursor].tat <= now {
                // Not advancing: the backward shift may have moved an entry into this slot.
                remove(at: cursor)
            } else {
                cursor = (cursor + 1) & mask
            }
        }
        if count * 8 < capacity && capacity > minimumCapacity { resize(to: capacity / 2) }
    }

    /// Removes every expired entry, then shrinks the table to fit what is left.
    mutating func removeExpired(now: Int64) {
        var index = 0
        while index < capacity {
            if slots[index].isOccupied && slots[index].tat <= now { remove(at: index) } else { index += 1 }
        }
        var fitted = minimumCapacity
        while (count + 1) * 4 > fitted * 3 { fitted *= 2 }
        if fitted < capacity { resize(to: fitted) }
    }

    /// Makes room for one entry at the cap: an expired entry near the cursor goes first, else
    /// the first live one from the cursor.
    private mutating func evictOne(now: Int64) {
        var firstLive: Int?
        var index = cursor
        for _ in 0..<min(Self.evictionSearch, capacity) {
            if slots[index].isOccupied {
                if slots[index].tat <= now {
                    remove(at: index)
                    return
                }
                if firstLive == nil { firstLive = index }
            }
            index = (index + 1) & mask
        }
        if let firstLive {
            remove(at: firstLive)
            return
        }
        // Nothing within the search (a sparse stretch): the next occupied slot anywhere.
        index = cursor
        while !slots[index].isOccupied { index = (index + 1) & mask }
        remove(at: index)
    }

    /// Deletes by backward shift: later entries of the probe run move up, so lookups never
    /// need tombstones. The removed entry is swapped along to the last hole and cleared there.
    private mutating func remove(at index: Int) {
        var hole = index
        var next = (index + 1) & mask
        while slots[next].isOccupied {
            let home = slots[next].hash & mask
            // The entry at `next` may fill the hole if its home is not between hole and next.
            if (next &- home) & mask >= (next &- hole) & mask {
                slots.swapAt(hole, next)
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = .empty
        count -= 1
    }

    private mutating func resize(to newCapacity: Int) {
        let old = slots
        slots = Array(repeating: .empty, count: newCapacity)
        mask = newCapacity - 1
        cursor = 0
        for slot in old where slot.isOccupied {
            var index = slot.hash & mask
            while slots[index].isOccupied { index = (index + 1) & mask }
            slots[index] = slot
        }
    }
}
