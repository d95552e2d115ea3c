import Router
import Testing

@Suite("Priority task queue")
struct PriorityTaskQueueTests {
    @Test func ordersByPriorityThenArrival() {
        var queue = PriorityTaskQueue()
        let now = ContinuousClock.now
        queue.push("low", priority: 9, at: now)
        queue.push("high-1", priority: 1, at: now)
        queue.push("mid", priority: 5, at: now)
        queue.push("high-2", priority: 1, at: now)
        #expect(queue.ordered(limit: 10, at: now).map(\.taskID) == ["high-1", "high-2", "mid", "low"])
    }

    @Test func agingLetsOldLowPrioritiesOvertakeNewHighOnes() {
        var queue = PriorityTaskQueue(agingStep: .seconds(10))
        let start = ContinuousClock.now
        queue.push("old-low", priority: 8, at: start)
        let later = start + .seconds(65)  // aged six levels: 8 → 2
        queue.push("new-mid", priority: 3, at: later)
        queue.push("new-high", priority: 1, at: later)
        #expect(queue.ordered(limit: 10, at: later).map(\.taskID) == ["new-high", "old-low", "new-mid"])
    }

    @Test func removalFromTheMiddleAndRequeueKeepOneEntryPerTask() {
        var queue = PriorityTaskQueue()
        for index in 0..<5 { queue.push("t\(index)", priority: 5) }
        queue.remove("t2")
        queue.remove("t2")
        #expect(queue.count == 4)
        #expect(!queue.contains("t2"))
        queue.push("t2", priority: 5)
        queue.push("t0", priority: 5)  // requeued: its old entry is gone
        #expect(queue.ordered(limit: 10).map(\.taskID) == ["t1", "t3", "t4", "t2", "t0"])
        #expect(queue.count == 5)
    }

    @Test func staysCompactUnderChurn() {
        var queue = PriorityTaskQueue()
        for round in 0..<20_000 {
            queue.push("t\(round)", priority: round % 10 + 1)
            if round >= 10 { queue.remove("t\(round - 10)") }
        }
        #expect(queue.count == 10)
        #expect(queue.ordered(limit: 100).count == 10)
    }

    @Test func aVisitPassesOverBusyGroupsAndEndsWhenEveryGroupIsBusy() {
        var queue = PriorityTaskQueue()
        let now = ContinuousClock.now
        for index in 0..<10_000 { queue.push("a\(index)", priority: 5, group: "a", at: now) }
        queue.push("b0", priority: 9, group: "b", at: now)
        queue.push("b1", priority: 9, group: "b", at: now)
        #expect(queue.groupCount == 2)

        // Group a has one free agent: its first task is taken, its second finds none free; the
        // rest of a is passed over, b's first is taken, and b's second ends the pass.
        var looked: [String] = []
        var freeAgents = ["a": 1, "b": 1]
        queue.visit(limit: 20_000, at: now) { entry in
            looked.append(entry.taskID)
            guard freeAgents[entry.group, default: 0] > 0 else { return .skipGroup }
            freeAgents[entry.group]! -= 1
            return .take
        }
        #expect(looked == ["a0", "a1", "b0", "b1"])
        #expect(queue.count == 10_000)
        #expect(!queue.contains("a0") && !queue.contains("b0") && queue.contains("b1"))

        // The last task of a group takes the group with it.
        queue.remove("b1")
        #expect(queue.groupCount == 1)
        looked = []
        queue.visit(limit: 20_000, at: now) { entry in
            looked.append(entry.taskID)
            return .skipGroup
        }
        #expect(looked == ["a1"])
    }
}
