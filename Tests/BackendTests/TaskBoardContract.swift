import Backend
import NIOCore
import Testing

/// The behaviour every `TaskBoard` must have, whatever keeps the tasks. Each case gets a fresh
/// board; time moves only when the case says so.
enum TaskBoardContract {
    static let lease = Duration.minutes(30)

    static let cases: [ContractCase<TaskBoardSubject>] = [
        ContractCase("ids are task-N counting up from the time in microseconds, and a task reads back as submitted") { subject in
            let before = TaskNumbers.floor()
            let first = try await subject.submit("q", priority: 3, record: #"{"n":1}"#)
            let second = try await subject.submit("other", priority: 7, record: #"{"n":2}"#, maximumClaims: 4)
            #expect(first.id == "task-\(first.number)")
            // Never a number given before this board existed: not after a restart, nor after the
            // store lost its counter (the clocks of this process and of Redis agree closely).
            #expect(first.number >= before - 1_000_000)
            #expect(second.number > first.number)
            #expect(second.id == "task-\(second.number)")
            #expect(first.state == "PENDING")
            #expect(first.owner == nil && first.claims == 0 && first.note == nil)
            let read = try #require(try await subject.board.get(second.id))
            #expect(read == second)
            #expect(read.queue == "other" && read.priority == 7 && read.maximumClaims == 4)
            #expect(read.record.text == #"{"n":2}"#)
            #expect(try await subject.board.get("task-999") == nil)
            #expect(try await subject.board.get("nonsense") == nil)
        },

        ContractCase("a queue hands out by priority, then in submission order") { subject in
            let low = try await subject.submit(priority: 10)
            let middle = try await subject.submit(priority: 2)
            let high = try await subject.submit(priority: 1)
            let middleToo = try await subject.submit(priority: 2)
            let elsewhere = try await subject.submit("other", priority: 1)
            var order: [String] = []
            while let task = try await subject.board.claim(from: "q", owner: "a", lease: lease) { order.append(task.id) }
            #expect(order == [high.id, middle.id, middleToo.id, low.id])
            #expect(try await subject.board.claim(from: "other", owner: "a", lease: lease)?.id == elsewhere.id)
        },

        ContractCase("a claim leases the task to its owner and counts the claim") { subject in
            let task = try await subject.submit(record: #"{"job":"x"}"#)
            let claimed = try #require(try await subject.board.claim(from: "q", owner: "replica-a", lease: lease))
            #expect(claimed.id == task.id)
            #expect(claimed.state == "ASSIGNED")
            #expect(claimed.owner == "replica-a")
            #expect(claimed.claims == 1)
            #expect(claimed.record.text == #"{"job":"x"}"#)
            #expect(try await subject.board.get(task.id) == claimed)
            #expect(try await subject.board.claim(from: "q", owner: "replica-b", lease: lease) == nil)
            #expect(try await subject.board.claim(from: "never-used", owner: "replica-b", lease: lease) == nil)
        },

        ContractCase("concurrent claimers never share a task") { subject in
            var submitted: Set<String> = []
            for index in 0..<20 { submitted.insert(try await subject.submit(record: #"{"n":\#(index)}"#).id) }
            let board = subject.board
            let claimed = try await withThrowingTaskGroup(of: String?.self) { group in
                for claimer in 0..<50 {
                    group.addTask { try await board.claim(from: "q", owner: "claimer-\(claimer)", lease: lease)?.id }
                }
                return try await group.reduce(into: [String?]()) { $0.append($1) }
            }
            let ids = claimed.compactMap { $0 }
            #expect(ids.count == 20)
            #expect(Set(ids) == submitted)
        },

        ContractCase("renewing keeps a lease; the ids not held are reported lost") { subject in
            let mine = try await subject.submit()
            let theirs = try await subject.submit()
            _ = try await subject.board.claim(from: "q", owner: "a", lease: .minutes(30))
            _ = try await subject.board.claim(from: "q", owner: "b", lease: .minutes(120))
            try await subject.advanceTime(.minutes(20))
            let lost = try await subject.board.renew([mine.id, theirs.id, "task-999"], owner: "a", lease: .minutes(30))
            #expect(lost == [theirs.id, "task-999"])
            try await subject.advanceTime(.minutes(20))
            #expect(try await subject.board.reap(owner: "reaper", lease: lease) == BoardReapOutcome(requeued: [], exhausted: []))
            #expect(try await subject.board.get(mine.id)?.owner == "a")
            try await subject.advanceTime(.minutes(11))
            #expect(try await subject.board.reap(owner: "reaper", lease: lease).requeued == [mine.id])
        },

        ContractCase("a lapsed lease is queued again at its old place, with a note, its claim counted") { subject in
            let first = try await subject.submit(maximumClaims: 3)
            let second = try await subject.submit()
            #expect(try await subject.board.claim(from: "q", owner: "a", lease: .minutes(5))?.id == first.id)
            try await subject.advanceTime(.minutes(6))
            #expect(try await subject.board.reap(owner: "reaper", lease: lease) == BoardReapOutcome(requeued: [first.id], exhausted: []))
            let lapsed = try #require(try await subject.board.get(first.id))
            #expect(lapsed.state == "PENDING")
            #expect(lapsed.owner == nil)
            #expect(lapsed.claims == 1)
            #expect(lapsed.note == "lease of a lapsed")
            #expect(try await subject.board.update(first.id, owner: "a", state: "RUNNING", record: .json("{}")) == false)
            let again = try #require(try await subject.board.claim(from: "q", owner: "b", lease: lease))
            #expect(again.id == first.id, "ahead of \(second.id), which was submitted later")
            #expect(again.claims == 2)
            #expect(again.note == "lease of a lapsed", "the next owner learns why")
        },

        ContractCase("a task claimed maximumClaims times is leased to the reaper when its lease lapses") { subject in
            let task = try await subject.submit(maximumClaims: 2)
            _ = try await subject.board.claim(from: "q", owner: "a", lease: .minutes(5))
            try await subject.advanceTime(.minutes(6))
            #expect(try await subject.board.reap(owner: "reaper-0", lease: lease).requeued == [task.id])
            _ = try await subject.board.claim(from: "q", owner: "b", lease: .minutes(5))
            try await subject.advanceTime(.minutes(6))

            let reaped = try await subject.board.reap(owner: "reaper-1", lease: .minutes(10))
            #expect(reaped.requeued.isEmpty)
            let exhausted = try #require(reaped.exhausted.first)
            #expect(reaped.exhausted.count == 1)
            #expect(exhausted.id == task.id)
            #expect(exhausted.owner == "reaper-1")
            #expect(exhausted.claims == 2)
            #expect(exhausted.note == "lease of b lapsed")
            #expect(try await subject.board.claim(from: "q", owner: "c", lease: lease) == nil)
            #expect(try await subject.board.update(task.id, owner: "b", state: "RUNNING", record: .json("{}")) == false)

            // The reaper died before finishing it: the next reap hands it to the next reaper.
            try await subject.advanceTime(.minutes(11))
            let next = try await subject.board.reap(owner: "reaper-2", lease: .minutes(10))
            #expect(next.exhausted.map(\.owner) == ["reaper-2"])
            #expect(next.exhausted.map(\.note) == ["lease of reaper-1 lapsed"])
            let finished = try await subject.board.finish(
                task.id, owner: "reaper-2", state: "TIMEOUT", record: .json("{}"), retention: .minutes(60), deadLetter: true)
            #expect(finished == BoardFinishOutcome(released: [], failed: []))
            #expect(try await subject.board.get(task.id)?.state == "TIMEOUT")
        },

        ContractCase("writes from an owner that does not hold the lease are refused") { subject in
            let task = try await subject.submit(record: #"{"v":0}"#)
            _ = try await subject.board.claim(from: "q", owner: "a", lease: lease)
            let board = subject.board
            #expect(try await board.update(task.id, owner: "b", state: "RUNNING", record: .json(#"{"v":1}"#)) == false)
            #expect(try await board.retry(task.id, owner: "b", record: .json(#"{"v":1}"#), after: .zero) == false)
            #expect(try await board.putBack(task.id, owner: "b") == false)
            #expect(try await board.finish(task.id, owner: "b", state: "COMPLETED", record: .json("{}"), retention: .minutes(60), deadLetter: false) == nil)
            #expect(try await board.finish(task.id, owner: nil, state: "FAILED", record: .json("{}"), retention: .minutes(60), deadLetter: false) == nil)
            #expect(try await board.update("task-999", owner: "a", state: "RUNNING", record: .json("{}")) == false)
            let unchanged = try #require(try await board.get(task.id))
            #expect(unchanged.state == "ASSIGNED" && unchanged.owner == "a" && unchanged.record.text == #"{"v":0}"#)

            #expect(try await board.update(task.id, owner: "a", state: "RUNNING", record: .json(#"{"v":2}"#)))
            let updated = try #require(try await board.get(task.id))
            #expect(updated.state == "RUNNING" && updated.owner == "a" && updated.record.text == #"{"v":2}"#)
        },

        ContractCase("a retry waits out its delay, then a reap queues it again") { subject in
            let task = try await subject.submit(record: #"{"attempt":1}"#)
            _ = try await subject.board.claim(from: "q", owner: "a", lease: lease)
            #expect(try await subject.board.retry(task.id, owner: "a", record: .json(#"{"attempt":2}"#), after: .minutes(30)))
            let waiting = try #require(try await subject.board.get(task.id))
            #expect(waiting.state == "PENDING" && waiting.owner == nil && waiting.claims == 1)
            #expect(waiting.record.text == #"{"attempt":2}"#)
            #expect(try await subject.board.claim(from: "q", owner: "b", lease: lease) == nil)
            #expect(try await subject.board.queueDepths() == [:])

            try await subject.advanceTime(.minutes(10))
            #expect(try await subject.board.reap(owner: "reaper", lease: lease).requeued.isEmpty)
            #expect(try await subject.board.claim(from: "q", owner: "b", lease: lease) == nil)

            try await subject.advanceTime(.minutes(25))
            #expect(try await subject.board.reap(owner: "reaper", lease: lease).requeued == [task.id])
            let again = try #require(try await subject.board.claim(from: "q", owner: "b", lease: lease))
            #expect(again.id == task.id && again.claims == 2 && again.owner == "b")
        },

        ContractCase("a retry without delay is queued at once, at its old place") { subject in
            let first = try await subject.submit()
            _ = try await subject.submit()
            _ = try await subject.board.claim(from: "q", owner: "a", lease: lease)
            #expect(try await subject.board.retry(first.id, owner: "a", record: .json("{}"), after: .zero))
            #expect(try await subject.board.claim(from: "q", owner: "b", lease: lease)?.id == first.id)
        },

        ContractCase("a put-back task returns to its old place without counting the claim") { subject in
            let first = try await subject.submit()
            _ = try await subject.submit()
            #expect(try await subject.board.claim(from: "q", owner: "a", lease: lease)?.claims == 1)
            #expect(try await subject.board.putBack(first.id, owner: "a"))
            let back = try #require(try await subject.board.get(first.id))
            #expect(back.state == "PENDING" && back.owner == nil && back.claims == 0)
            #expect(try await subject.board.putBack(first.id, owner: "a") == false, "it is no longer held")
            let again = try #require(try await subject.board.claim(from: "q", owner: "b", lease: lease))
            #expect(again.id == first.id && again.claims == 1)
        },

        ContractCase("a seen idempotency key returns the earlier task, as it is now") { subject in
            let first = try await subject.submit(record: #"{"n":1}"#, key: "order-7")
            _ = try await subject.board.claim(from: "q", owner: "a", lease: lease)
            let again = try await subject.board.submit(
                BoardSubmission(queue: "q", priority: 1, idempotencyKey: "order-7", maximumClaims: 3, record: .json(#"{"n":2}"#)))
            guard case .duplicate(let earlier) = again else {
                Issue.record("expected the earlier task, got \(again)")
                return
            }
            #expect(earlier.id == first.id)
            #expect(earlier.record.text == #"{"n":1}"#)
            #expect(earlier.state == "ASSIGNED" && earlier.owner == "a")
            let other = try await subject.submit(key: "order-8")
            #expect(other.id != first.id)
            #expect(try await subject.board.list(after: 0, limit: 10).map(\.id) == [first.id, other.id])
        },

        ContractCase("an idempotency key is remembered while its task is kept, then freed") { subject in
            let first = try await subject.submit(key: "k", keyTTL: .minutes(10))
            _ = try await subject.board.claim(from: "q", owner: "a", lease: lease)
            _ = try await subject.board.finish(first.id, owner: "a", state: "COMPLETED", record: .json("{}"), retention: .minutes(60), deadLetter: false)
            try await subject.advanceTime(.minutes(30))
            let duplicate = try await subject.board.submit(BoardSubmission(queue: "q", priority: 5, idempotencyKey: "k", maximumClaims: 1, record: .json("{}")))
            guard case .duplicate(let earlier) = duplicate else {
                Issue.record("past the key's own TTL but within the task's retention, expected the earlier task, got \(duplicate)")
                return
            }
            #expect(earlier.id == first.id && earlier.state == "COMPLETED")
            try await subject.advanceTime(.minutes(31))
            let fresh = try await subject.submit(key: "k")
            #expect(fresh.id != first.id)
        },

        ContractCase("a task waiting for others is queued once all of them completed") { subject in
            let a = try await subject.submit()
            let b = try await subject.submit()
            let c = try await subject.submit(waitingFor: [a.id, b.id, a.id])
            #expect(c.state == "WAITING")
            _ = try await subject.board.claim(from: "q", owner: "x", lease: lease)
            _ = try await subject.board.claim(from: "q", owner: "y", lease: lease)
            #expect(try await subject.board.claim(from: "q", owner: "z", lease: lease) == nil, "\(c.id) waits")

            let afterA = try await subject.board.finish(a.id, owner: "x", state: "COMPLETED", record: .json("{}"), retention: .minutes(60), deadLetter: false)
            #expect(afterA == BoardFinishOutcome(released: [], failed: []))
            #expect(try await subject.board.get(c.id)?.state == "WAITING")
            let afterB = try await subject.board.finish(b.id, owner: "y", state: "COMPLETED", record: .json("{}"), retention: .minutes(60), deadLetter: false)
            #expect(afterB == BoardFinishOutcome(released: [c.id], failed: []))
            #expect(try await subject.board.get(c.id)?.state == "PENDING")
            #expect(try await subject.board.claim(from: "q", owner: "z", lease: lease)?.id == c.id)

            let later = try await subject.submit(waitingFor: [a.id])
            #expect(later.state == "PENDING", "its dependency has completed already")
        },

        ContractCase("when a dependency ends otherwise its dependents fail, and theirs in turn") { subject in
            let a = try await subject.submit()
            let b = try await subject.submit(waitingFor: [a.id])
            let c = try await subject.submit(waitingFor: [b.id])
            _ = try await subject.board.claim(from: "q", owner: "x", lease: lease)
            let outcome = try await subject.board.finish(a.id, owner: "x", state: "FAILED", record: .json("{}"), retention: .minutes(60), deadLetter: false)
            #expect(outcome == BoardFinishOutcome(released: [], failed: [b.id, c.id]))
            let failedB = try #require(try await subject.board.get(b.id))
            #expect(failedB.state == "FAILED")
            #expect(failedB.note == "dependency \(a.id) ended FAILED")
            let failedC = try #require(try await subject.board.get(c.id))
            #expect(failedC.state == "FAILED")
            #expect(failedC.note == "dependency \(b.id) ended FAILED")
            #expect(try await subject.board.finish(b.id, owner: nil, state: "FAILED", record: .json("{}"), retention: .minutes(60), deadLetter: false) == nil)
            #expect(try await subject.board.cancel(c.id, record: .json("{}"), retention: .minutes(60)) == .alreadyFinished(failedC))
            #expect(try await subject.board.claim(from: "q", owner: "x", lease: lease) == nil)
        },

        ContractCase("a submission waiting for a task that ended otherwise fails at once; an unknown one is refused") { subject in
            let a = try await subject.submit()
            _ = try await subject.board.claim(from: "q", owner: "x", lease: lease)
            _ = try await subject.board.finish(a.id, owner: "x", state: "TIMEOUT", record: .json("{}"), retention: .minutes(60), deadLetter: false)
            let doomed = try await subject.submit(waitingFor: [a.id])
            #expect(doomed.state == "FAILED")
            #expect(doomed.note == "dependency \(a.id) ended TIMEOUT")
            #expect(try await subject.board.claim(from: "q", owner: "x", lease: lease) == nil)

            let unknown = try await subject.board.submit(
                BoardSubmission(queue: "q", priority: 5, waitingFor: [a.id, "task-999"], maximumClaims: 1, record: .json("{}")))
            guard case .unknownDependency(let id) = unknown else {
                Issue.record("expected an unknown dependency, got \(unknown)")
                return
            }
            #expect(id == "task-999")
            #expect(try await subject.board.list(after: 0, limit: 10).map(\.id) == [a.id, doomed.id])
        },

        ContractCase("cancelling a task fails the tasks waiting for it") { subject in
            let a = try await subject.submit()
            let b = try await subject.submit(waitingFor: [a.id])
            #expect(try await subject.board.cancel(a.id, record: .json("{}"), retention: .minutes(60)) == .cancelled(owner: nil))
            let failed = try #require(try await subject.board.get(b.id))
            #expect(failed.state == "FAILED")
            #expect(failed.note == "dependency \(a.id) ended CANCELLED")
        },

        ContractCase("cancel ends a queued task, which is never handed out") { subject in
            let task = try await subject.submit()
            #expect(try await subject.board.cancel(task.id, record: .json(#"{"by":"user"}"#), retention: .minutes(60)) == .cancelled(owner: nil))
            #expect(try await subject.board.claim(from: "q", owner: "a", lease: lease) == nil)
            #expect(try await subject.board.queueDepths() == [:])
            let cancelled = try #require(try await subject.board.get(task.id))
            #expect(cancelled.state == "CANCELLED")
            #expect(cancelled.record.text == #"{"by":"user"}"#)
            #expect(try await subject.board.cancel(task.id, record: .json("{}"), retention: .minutes(60)) == .alreadyFinished(cancelled))
            #expect(try await subject.board.cancel("task-999", record: .json("{}"), retention: .minutes(60)) == nil)
        },

        ContractCase("cancel of a leased task voids the lease and names its holder") { subject in
            let task = try await subject.submit()
            _ = try await subject.board.claim(from: "q", owner: "a", lease: .minutes(5))
            #expect(try await subject.board.cancel(task.id, record: .json("{}"), retention: .minutes(60)) == .cancelled(owner: "a"))
            #expect(try await subject.board.update(task.id, owner: "a", state: "RUNNING", record: .json("{}")) == false)
            #expect(try await subject.board.renew([task.id], owner: "a", lease: lease) == [task.id])
            try await subject.advanceTime(.minutes(10))
            #expect(try await subject.board.reap(owner: "reaper", lease: lease) == BoardReapOutcome(requeued: [], exhausted: []))
            let cancelled = try #require(try await subject.board.get(task.id))
            #expect(cancelled.state == "CANCELLED" && cancelled.owner == nil)
        },

        ContractCase("cancel of a delayed retry keeps it from coming back") { subject in
            let task = try await subject.submit()
            _ = try await subject.board.claim(from: "q", owner: "a", lease: lease)
            #expect(try await subject.board.retry(task.id, owner: "a", record: .json("{}"), after: .minutes(30)))
            #expect(try await subject.board.cancel(task.id, record: .json("{}"), retention: .minutes(600)) == .cancelled(owner: nil))
            try await subject.advanceTime(.minutes(31))
            #expect(try await subject.board.reap(owner: "reaper", lease: lease).requeued.isEmpty)
            #expect(try await subject.board.claim(from: "q", owner: "b", lease: lease) == nil)
        },

        ContractCase("a task nobody holds can be finished without an owner, once") { subject in
            let task = try await subject.submit()
            let outcome = try await subject.board.finish(
                task.id, owner: nil, state: "FAILED", record: .json(#"{"error":"no agent"}"#), retention: .minutes(60), deadLetter: true)
            #expect(outcome == BoardFinishOutcome(released: [], failed: []))
            #expect(try await subject.board.claim(from: "q", owner: "a", lease: lease) == nil)
            let finished = try #require(try await subject.board.get(task.id))
            #expect(finished.state == "FAILED" && finished.record.text == #"{"error":"no agent"}"#)
            #expect(try await subject.board.finish(task.id, owner: nil, state: "FAILED", record: .json("{}"), retention: .minutes(60), deadLetter: true) == nil)
            #expect(try await subject.board.deadLetters(limit: 10) == [task.id])
        },

        ContractCase("a finished task is never queued again") { subject in
            let task = try await subject.submit()
            _ = try await subject.board.claim(from: "q", owner: "a", lease: .minutes(5))
            _ = try await subject.board.finish(task.id, owner: "a", state: "COMPLETED", record: .json("{}"), retention: .minutes(600), deadLetter: false)
            #expect(try await subject.board.putBack(task.id, owner: "a") == false)
            #expect(try await subject.board.retry(task.id, owner: "a", record: .json("{}"), after: .zero) == false)
            #expect(try await subject.board.renew([task.id], owner: "a", lease: lease) == [task.id])
            try await subject.advanceTime(.minutes(10))
            #expect(try await subject.board.reap(owner: "reaper", lease: lease) == BoardReapOutcome(requeued: [], exhausted: []))
            #expect(try await subject.board.claim(from: "q", owner: "b", lease: lease) == nil)
            #expect(try await subject.board.get(task.id)?.state == "COMPLETED")
        },

        ContractCase("list pages through tasks by number") { subject in
            var ids: [String] = []
            for index in 0..<5 { ids.append(try await subject.submit(index % 2 == 0 ? "q" : "other", priority: 10 - index).id) }
            let first = try await subject.board.list(after: 0, limit: 2)
            #expect(first.map(\.id) == Array(ids[0..<2]))
            let second = try await subject.board.list(after: try #require(first.last).number, limit: 2)
            #expect(second.map(\.id) == Array(ids[2..<4]))
            let third = try await subject.board.list(after: try #require(second.last).number, limit: 2)
            #expect(third.map(\.id) == [ids[4]])
            #expect(try await subject.board.list(after: try #require(third.last).number, limit: 2).isEmpty)
        },

        ContractCase("a finished task is forgotten once its retention has passed") { subject in
            let done = try await subject.submit()
            let kept = try await subject.submit()
            _ = try await subject.board.claim(from: "q", owner: "a", lease: lease)
            _ = try await subject.board.finish(done.id, owner: "a", state: "COMPLETED", record: .json("{}"), retention: .minutes(60), deadLetter: false)
            try await subject.advanceTime(.minutes(30))
            #expect(try await subject.board.get(done.id)?.state == "COMPLETED")
            #expect(try await subject.board.list(after: 0, limit: 10).map(\.id) == [done.id, kept.id])
            try await subject.advanceTime(.minutes(31))
            #expect(try await subject.board.get(done.id) == nil)
            #expect(try await subject.board.list(after: 0, limit: 10).map(\.id) == [kept.id])
            #expect(try await subject.board.cancel(done.id, record: .json("{}"), retention: .minutes(60)) == nil)
        },

        ContractCase("dead letters come newest first") { subject in
            var ids: [String] = []
            for index in 0..<3 {
                let task = try await subject.submit()
                _ = try await subject.board.claim(from: "q", owner: "a", lease: lease)
                _ = try await subject.board.finish(task.id, owner: "a", state: "FAILED", record: .json("{}"), retention: .minutes(60), deadLetter: index != 1)
                ids.append(task.id)
            }
            #expect(try await subject.board.deadLetters(limit: 10) == [ids[2], ids[0]])
            #expect(try await subject.board.deadLetters(limit: 1) == [ids[2]])
        },

        ContractCase("queue depths count the queued tasks of each non-empty queue") { subject in
            #expect(try await subject.board.queueDepths() == [:])
            _ = try await subject.submit("a")
            _ = try await subject.submit("a")
            let b = try await subject.submit("b")
            _ = try await subject.submit("a", waitingFor: [b.id])
            _ = try await subject.submit("c")
            _ = try await subject.board.claim(from: "c", owner: "x", lease: lease)
            #expect(try await subject.board.queueDepths() == ["a": 2, "b": 1])
            _ = try await subject.board.claim(from: "b", owner: "x", lease: lease)
            #expect(try await subject.board.retry(b.id, owner: "x", record: .json("{}"), after: .minutes(30)))
            #expect(try await subject.board.queueDepths() == ["a": 2], "a delayed retry is not counted")
        },
    ]
}

extension TaskBoardSubject {
    /// Submits a task the board must create, and returns it.
    func submit(
        _ queue: String = "q", priority: Int = 5, record: String = "{}", key: String? = nil, keyTTL: Duration = .minutes(3600),
        waitingFor: [String] = [], maximumClaims: Int = 3
    ) async throws -> BoardTask {
        let outcome = try await board.submit(
            BoardSubmission(
                queue: queue, priority: priority, idempotencyKey: key, idempotencyTTL: keyTTL, waitingFor: waitingFor,
                maximumClaims: maximumClaims, record: .json(record)))
        guard case .created(let task) = outcome else { throw UnexpectedOutcome(description: "expected a new task, got \(outcome)") }
        return task
    }
}

/// A board answered a step the case depends on in a way that makes the rest meaningless.
struct UnexpectedOutcome: Error, CustomStringConvertible {
    var description: String
}
