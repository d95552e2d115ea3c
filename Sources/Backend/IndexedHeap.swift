/// A binary min-heap of distinct keys ordered by a priority, that also finds any key: insert,
/// reprioritise, remove any key and remove the minimum all cost O(log n).
///
/// A plain heap with lazy deletion would leave cancelled tasks behind and miscount a queue's
/// depth; the position table lets a task leave its queue (or a lease its heap) at once.
struct IndexedHeap<Key: Hashable, Priority: Comparable> {
    private var storage: [(key: Key, priority: Priority)] = []
    private var positions: [Key: Int] = [:]

    var count: Int { storage.count }
    var isEmpty: Bool { storage.isEmpty }
    var minimum: (key: Key, priority: Priority)? { storage.first }

    func contains(_ key: Key) -> Bool { positions[key] != nil }

    /// Inserts `key`, or moves it to `priority` if it is already held.
    mutating func set(_ key: Key, _ priority: Priority) {
        if let index = positions[key] {
            let previous = storage[index].priority
            storage[index].priority = priority
            if priority < previous { siftUp(index) } else { siftDown(index) }
            return
        }
        storage.append((key, priority))
        positions[key] = storage.count - 1
        siftUp(storage.count - 1)
    }

    @discardableResult
    mutating func remove(_ key: Key) -> Priority? {
        guard let index = positions[key] else { return nil }
        return removeElement(at: index).priority
    }

    @discardableResult
    mutating func removeMinimum() -> (key: Key, priority: Priority)? {
        storage.isEmpty ? nil : removeElement(at: 0)
    }

    private mutating func removeElement(at index: Int) -> (key: Key, priority: Priority) {
        let last = storage.count - 1
        if index != last { swapElements(index, last) }
        let removed = storage.removeLast()
        positions[removed.key] = nil
        if index < storage.count {
            siftDown(index)
            siftUp(index)
        }
        return removed
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard storage[child].priority < storage[parent].priority else { return }
            swapElements(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < storage.count && storage[left].priority < storage[smallest].priority { smallest = left }
            if right < storage.count && storage[right].priority < storage[smallest].priority { smallest = right }
            guard smallest != parent else { return }
            swapElements(parent, smallest)
            parent = smallest
        }
    }

    private mutating func swapElements(_ a: Int, _ b: Int) {
        storage.swapAt(a, b)
        positions[storage[a].key] = a
        positions[storage[b].key] = b
    }
}
