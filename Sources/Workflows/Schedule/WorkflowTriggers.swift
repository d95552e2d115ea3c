import Backend
import JSONRPC
import Logging

/// Starts executions from the triggers of the latest version of each workflow: `schedule`
/// triggers from `run()`, `event` triggers from `eventPublished(topic:data:)`.
///
/// Several replicas sharing one store each fire every schedule: run the trigger service on one
/// replica only (a lease is the gateway's choice).
public struct WorkflowTriggers: Sendable {
    public let executor: WorkflowExecutor
    let clock: any WorkflowClock
    let rescanInterval: Duration
    let logger: Logger

    /// `rescanInterval`: how often the catalog is read again for new or changed schedules.
    public init(executor: WorkflowExecutor, rescanInterval: Duration = .seconds(60), logger: Logger = Logger(label: "switchboard.workflows")) {
        self.executor = executor
        clock = executor.clock
        self.rescanInterval = rescanInterval
        self.logger = logger
    }

    /// Fires schedules until the calling task is cancelled. A fire time missed while the
    /// service was not running is not made up; several missed in one sleep fire once.
    public func run() async {
        var last = clock.now()
        while !Task.isCancelled {
            let schedules = await currentSchedules()
            let horizon = last.advanced(by: rescanInterval)
            let next = schedules.compactMap { $0.schedule.nextFire(after: last) }.min() ?? horizon
            do {
                try await clock.sleep(until: min(next, horizon))
            } catch {
                return
            }
            let now = clock.now()
            for entry in schedules {
                guard let due = entry.schedule.nextFire(after: last), due <= now else { continue }
                let request = WorkflowExecutionRequest(
                    workflowName: entry.name, version: entry.version, triggerType: "schedule",
                    triggerData: [
                        "cron": .string(entry.schedule.expression.text), "timezone": .string(entry.schedule.timeZone.identifier),
                        "scheduledAt": .string(due.iso8601),
                    ])
                do {
                    _ = try await executor.execute(request)
                } catch {
                    logger.error("scheduled run of workflow \(entry.name) \(entry.version) refused: \(error.message)")
                }
            }
            last = now
        }
    }

    /// Starts the latest version of every workflow with an `event` trigger on `topic`, with
    /// `data` as `trigger.payload`; returns the new executions' ids.
    @discardableResult
    public func eventPublished(topic: String, data: JSONValue) async -> [String] {
        guard let summaries = try? await executor.catalog.list() else { return [] }
        var started: [String] = []
        for summary in summaries where summary.latest.eventTopics.contains(topic) {
            let request = WorkflowExecutionRequest(
                workflowName: summary.name, version: summary.latest.version, triggerType: "event",
                triggerData: ["topic": .string(topic), "data": data])
            do {
                started.append(try await executor.execute(request).executionID)
            } catch {
                logger.error("event \(topic) could not start workflow \(summary.name): \(error.message)")
            }
        }
        return started
    }

    private func currentSchedules() async -> [(name: String, version: String, schedule: CronSchedule)] {
        guard let summaries = try? await executor.catalog.list() else { return [] }
        return summaries.flatMap { summary in summary.latest.schedules.map { (summary.name, summary.latest.version, $0) } }
    }
}
