import Backend
import JSONRPC
import NIOCore
import Testing

@testable import Monitoring

@Suite("Performance history")
struct PerformanceHistoryTests {
    private let namespace = "switchboard.history"

    private func history(_ store: any KeyValueStore, replica: String = "r1", maximumSeries: Int = 10_000) -> PerformanceHistory {
        PerformanceHistory(store: store, replica: replica, maximumSeries: maximumSeries)
    }

    /// Three calls of "echo" in the minute of 18:00, one failed.
    private func recordThreeEchoes(_ history: PerformanceHistory, minute: Int64 = 0, agent: String = "a1") {
        history.recordCall(agent: agent, template: "echo-server", tool: "echo", succeeded: true, seconds: 0.002, at: at(minute, 5))
        history.recordCall(agent: agent, template: "echo-server", tool: "echo", succeeded: false, seconds: 0.004, at: at(minute, 20))
        history.recordCall(agent: agent, template: "echo-server", tool: "echo", succeeded: true, seconds: 0.010, at: at(minute, 59))
    }

    // MARK: Recording and querying

    @Test func aQueryRightAfterCallsSeesThemWithoutAFlush() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let history = history(store)
        recordThreeEchoes(history)

        let points = try await history.history(agent: "a1", period: .minute, from: at(0), to: at(0, 30))
        #expect(store.allKeys().isEmpty)
        #expect(points.count == 1)
        let point = try #require(points.first)
        #expect(point.start == at(0))
        #expect(point.calls == 3)
        #expect(point.errors == 1)
        #expect(abs(point.errorRate - 1.0 / 3) < 1e-12)
        #expect(point.template == "echo-server")
        let latency = try #require(point.latency)
        #expect(abs(latency.p50 - 0.004) / 0.004 <= LatencyHistogram.relativeError)
        #expect(latency.maximum == 0.010)
        #expect(abs(latency.mean - 0.016 / 3) < 1e-12)
        #expect(point.tools.keys.sorted() == ["echo"])
        #expect(point.tools["echo"]?.calls == 3)
    }

    @Test func callsThatAreNotToolCallsAreCountedUnderTheEmptyToolName() async throws {
        let history = history(InMemoryKeyValueStore(clock: ManualClock(at(0))))
        history.recordCall(agent: "a1", template: nil, tool: nil, succeeded: true, seconds: 1.5, at: at(0, 1))
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.01, at: at(0, 2))

        let point = try #require(try await history.history(agent: "a1", period: .minute, from: at(0), to: at(0)).first)
        #expect(point.calls == 2)
        #expect(point.tools[""]?.calls == 1)
        #expect(point.tools["echo"]?.calls == 1)
    }

    @Test func callsAreBucketedByTheMinuteTheyEndedIn() async throws {
        let history = history(InMemoryKeyValueStore(clock: ManualClock(at(0))))
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.01, at: at(0, 59))
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.01, at: at(1, 0))
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: false, seconds: 0.01, at: at(1, 59))
        // Late, for a minute already passed.
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.01, at: at(0, 30))

        let points = try await history.history(agent: "a1", period: .minute, from: at(0), to: at(5))
        #expect(points.map(\.start) == [at(0), at(1)])
        #expect(points.map(\.calls) == [2, 2])
        #expect(points.map(\.errors) == [0, 1])
    }

    @Test func aToolQueryCountsThatToolAlone() async throws {
        let history = history(InMemoryKeyValueStore(clock: ManualClock(at(0))))
        recordThreeEchoes(history)
        history.recordCall(agent: "a1", template: nil, tool: "search", succeeded: false, seconds: 2, at: at(0, 30))
        history.recordCall(agent: "a1", template: nil, tool: "search", succeeded: false, seconds: 2, at: at(2, 30))

        let echo = try await history.history(agent: "a1", period: .minute, from: at(0), to: at(2), tool: "echo")
        #expect(echo.count == 1)
        #expect(echo.first?.calls == 3)
        #expect(echo.first?.tools.keys.sorted() == ["echo"])
        #expect(echo.first?.latency?.maximum == 0.010)

        let search = try await history.history(agent: "a1", period: .minute, from: at(0), to: at(2), tool: "search")
        #expect(search.map(\.calls) == [1, 1])
        #expect(search.map(\.errorRate) == [1, 1])
    }

    @Test func resourceSamplesAreSummarisedPerMinute() async throws {
        let history = history(InMemoryKeyValueStore(clock: ManualClock(at(0))))
        history.sampleResources(agent: "a1", template: "t", load: 1, cpuPercent: 10, memoryBytes: 300, at: at(0, 10))
        history.sampleResources(agent: "a1", template: "t", load: 4, cpuPercent: 30, memoryBytes: 500, at: at(0, 20))
        history.sampleResources(agent: "a1", template: "t", load: 1, cpuPercent: nil, memoryBytes: 400, at: at(0, 30))

        let point = try #require(try await history.history(agent: "a1", period: .minute, from: at(0), to: at(0)).first)
        #expect(point.calls == 0)
        #expect(point.latency == nil)
        #expect(point.load == SampleSummary(average: 2, maximum: 4))
        #expect(point.cpuPercent == SampleSummary(average: 20, maximum: 30))
        #expect(point.memoryBytes == MemorySummary(last: 400, maximum: 500))
    }

    @Test func aPointRendersAsCamelCaseJSONWithISOTimes() async throws {
        let history = history(InMemoryKeyValueStore(clock: ManualClock(at(0))))
        recordThreeEchoes(history, minute: 1)
        history.sampleResources(agent: "a1", template: "echo-server", load: 2, cpuPercent: 12.5, memoryBytes: 1_000, at: at(1, 10))

        let point = try #require(try await history.history(agent: "a1", period: .minute, from: at(1), to: at(1)).first)
        let json = point.json
        #expect(json["start"] == "2026-12-07T18:01:00.000Z")
        #expect(json["period"] == "minute")
        #expect(json["calls"] == 3)
        #expect(json["errors"] == 1)
        #expect(json["errorRate"] == .double(0.3333))
        #expect(json["latency"]?["max"] == .double(0.01))
        #expect(json["latency"]?.objectValue?.keys.sorted() == ["max", "mean", "p50", "p95", "p99"])
        #expect(json["load"] == ["average": .double(2), "maximum": .double(2)])
        #expect(json["cpuPercent"] == ["average": .double(12.5), "maximum": .double(12.5)])
        #expect(json["memoryBytes"] == ["last": 1_000, "maximum": 1_000])
        #expect(json["tools"]?["echo"]?["calls"] == 3)
        #expect(json["tools"]?["echo"]?["errors"] == 1)
    }

    // MARK: Flushing

    @Test func aFlushWritesClosedMinutesWithTheirHourAndDay() async throws {
        let clock = ManualClock(at(1, 30))
        let store = InMemoryKeyValueStore(clock: clock)
        let history = history(store)
        recordThreeEchoes(history, minute: 0)
        history.recordCall(agent: "a1", template: "echo-server", tool: "echo", succeeded: true, seconds: 0.003, at: at(1, 10))

        await history.flush(now: at(1, 30))

        // The open minute of 18:01 waits; 18:00 is written, with the hour and the day it is in.
        let minuteKey = "minute/a1/00\(startOfTheHour)/r1"
        let hourKey = "hour/a1/00\(startOfTheHour)/r1"
        let dayKey = "day/a1/00\(startOfTheDay)/r1"
        // Beside the agent's own series, the sums of its template and of the whole gateway.
        let sums = ["*", "template:echo-server"].flatMap { subject in
            ["day/\(subject)/00\(startOfTheDay)/r1", "hour/\(subject)/00\(startOfTheHour)/r1", "minute/\(subject)/00\(startOfTheHour)/r1"]
        }
        #expect(store.allKeys() == (sums + [dayKey, hourKey, minuteKey]).sorted())
        #expect(store.bucket("minute/*/00\(startOfTheHour)/r1")?.tools["echo"]?.calls == 3)
        #expect(store.bucket("hour/template:echo-server/00\(startOfTheHour)/r1")?.tools["echo"]?.errors == 1)
        #expect(store.getNow(minuteKey, namespace: namespace)?.expiresAt == clock.now().advanced(by: .seconds(86_400)))
        #expect(store.getNow(hourKey, namespace: namespace)?.expiresAt == clock.now().advanced(by: .seconds(30 * 86_400)))
        #expect(store.getNow(dayKey, namespace: namespace)?.expiresAt == clock.now().advanced(by: .seconds(400 * 86_400)))

        let document = try #require(store.getNow(minuteKey, namespace: namespace)).value
        let stored = try RawJSON(validating: document).decoded()
        #expect(stored["version"] == 1)
        #expect(stored["agent"] == "a1")
        #expect(stored["replica"] == "r1")
        #expect(stored["period"] == "minute")
        #expect(stored["start"] == "2026-12-07T18:00:00.000Z")
        #expect(stored["template"] == "echo-server")
        #expect(stored["tools"]?["echo"]?["calls"] == 3)
        #expect(stored["tools"]?["echo"]?["errors"] == 1)
        #expect(stored["tools"]?["echo"]?["latency"]?["count"] == 3)
        #expect(store.bucket(hourKey)?.tools["echo"]?.calls == 3)

        // Shutdown writes the open minute too, and rolls it up.
        clock.advance(by: .seconds(10))
        await history.flushAll(now: at(1, 40))
        #expect(store.allKeys().count == 12)
        #expect(store.bucket("minute/a1/00\(startOfTheHour + 60)/r1")?.tools["echo"]?.calls == 1)
        #expect(store.bucket(hourKey)?.tools["echo"]?.calls == 4)
        #expect(store.bucket(dayKey)?.tools["echo"]?.calls == 4)
    }

    @Test func aFlushWithNothingNewWritesNothing() async throws {
        let store = FlakyStore()
        let history = history(store)
        recordThreeEchoes(history)
        await history.flush(now: at(1))
        let writes = store.writeCount
        // A minute, an hour and a day for the agent, its template's sum and the gateway's.
        #expect(writes == 9)
        await history.flush(now: at(2))
        await history.flush(now: at(3))
        #expect(store.writeCount == writes)
    }

    @Test func hourAndDayQueriesRollUpTheMinutes() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let history = history(store)
        var expectedHour = LatencyHistogram()
        for (minute, seconds) in [(0, 0.010), (1, 0.020), (59, 0.500)] as [(Int64, Double)] {
            history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: minute != 1, seconds: seconds, at: at(minute, 1))
            expectedHour.record(seconds)
        }
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 3, at: at(65, 1))
        await history.flush(now: at(70))

        let hours = try await history.history(agent: "a1", period: .hour, from: at(0), to: at(119))
        #expect(hours.map(\.start) == [at(0), at(60)])
        #expect(hours.map(\.calls) == [3, 1])
        #expect(hours.map(\.errors) == [1, 0])
        #expect(hours.first?.latency == expectedHour.summary)

        let days = try await history.history(agent: "a1", period: .day, from: at(0), to: at(0))
        #expect(days.count == 1)
        #expect(days.first?.start == Timestamp(millisecondsSinceEpoch: startOfTheDay * 1_000))
        #expect(days.first?.calls == 4)
        #expect(days.first?.latency?.maximum == 3)

        // A range is from the bucket holding `from` through the one holding `to`.
        let lateMinutes = try await history.history(agent: "a1", period: .minute, from: at(1, 30), to: at(59, 10))
        #expect(lateMinutes.map(\.start) == [at(1), at(59)])
        let limited = try await history.history(agent: "a1", period: .minute, from: at(0), to: at(100), limit: 2)
        #expect(limited.map(\.start) == [at(0), at(1)])
    }

    @Test func unflushedMinutesAreAddedToStoredHoursOnce() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let history = history(store)
        recordThreeEchoes(history, minute: 0)
        recordThreeEchoes(history, minute: 1)
        await history.flush(now: at(1, 30))
        recordThreeEchoes(history, minute: 2)

        // Stored: the hour with minute 0. In memory: minute 1 (closed, not flushed), minute 2 (open).
        let hour = try await history.history(agent: "a1", period: .hour, from: at(0), to: at(0))
        #expect(hour.map(\.calls) == [9])
        let minutes = try await history.history(agent: "a1", period: .minute, from: at(0), to: at(2))
        #expect(minutes.map(\.calls) == [3, 3, 3])

        await history.flush(now: at(3))
        let again = try await history.history(agent: "a1", period: .hour, from: at(0), to: at(0))
        #expect(again.map(\.calls) == [9])
        #expect(store.bucket("hour/a1/00\(startOfTheHour)/r1")?.tools["echo"]?.calls == 9)
    }

    @Test func aLateSampleForAFlushedMinuteIsWrittenAndRolledUpOnce() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let history = history(store)
        recordThreeEchoes(history, minute: 0)
        await history.flush(now: at(1))
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.001, at: at(0, 59))
        await history.flush(now: at(1, 5))

        #expect(store.bucket("minute/a1/00\(startOfTheHour)/r1")?.tools["echo"]?.calls == 4)
        #expect(store.bucket("hour/a1/00\(startOfTheHour)/r1")?.tools["echo"]?.calls == 4)
        let hour = try await history.history(agent: "a1", period: .hour, from: at(0), to: at(0))
        #expect(hour.map(\.calls) == [4])
    }

    @Test func aLateSampleAfterTheHourClosedIsAddedToTheStoredHour() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let history = history(store)
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.01, at: at(59, 1))
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.01, at: at(60, 1))
        // The hour of 18:00 is written, closed, and let go of.
        await history.flush(now: at(60, 10))
        history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: false, seconds: 0.01, at: at(59, 59))
        await history.flush(now: at(61))

        #expect(store.bucket("hour/a1/00\(startOfTheHour)/r1")?.tools["echo"]?.calls == 2)
        #expect(store.bucket("hour/a1/00\(startOfTheHour + 3_600)/r1")?.tools["echo"]?.calls == 1)
        let hours = try await history.history(agent: "a1", period: .hour, from: at(0), to: at(60))
        #expect(hours.map(\.calls) == [2, 1])
        #expect(hours.map(\.errors) == [1, 0])
    }

    @Test func replicasWriteTheirOwnKeysAndQueriesMergeThem() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let first = history(store, replica: "r1")
        let second = history(store, replica: "r2")
        first.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.001, at: at(0, 1))
        second.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: false, seconds: 1.0, at: at(0, 2))
        second.recordCall(agent: "a1", template: nil, tool: "other", succeeded: true, seconds: 0.5, at: at(0, 3))
        await first.flush(now: at(1))
        await second.flush(now: at(1))

        #expect(store.allKeys().contains("minute/a1/00\(startOfTheHour)/r1"))
        #expect(store.allKeys().contains("minute/a1/00\(startOfTheHour)/r2"))

        // Any replica, or one that recorded nothing, sees the merged bucket.
        let reader = history(store, replica: "r3")
        for replica in [first, second, reader] {
            for period in HistoryPeriod.allCases {
                let point = try #require(try await replica.history(agent: "a1", period: period, from: at(0), to: at(0)).first)
                #expect(point.calls == 3)
                #expect(point.errors == 1)
                #expect(point.tools.keys.sorted() == ["echo", "other"])
                #expect(point.tools["echo"]?.latency?.maximum == 1.0)
            }
        }

        // This replica's unflushed calls join the other's stored ones.
        first.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.001, at: at(0, 50))
        let point = try #require(try await first.history(agent: "a1", period: .minute, from: at(0), to: at(0)).first)
        #expect(point.calls == 4)
    }

    @Test func aRestartWithinTheHourKeepsTheHoursEarlierMinutes() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let before = history(store, replica: "r1")
        recordThreeEchoes(before, minute: 0)
        recordThreeEchoes(before, minute: 1)
        before.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.1, at: at(2, 10))
        await before.flushAll(now: at(2, 15))

        // The same replica starts again within the same minute and the same hour.
        let after = history(store, replica: "r1")
        after.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: false, seconds: 0.2, at: at(2, 40))
        after.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.3, at: at(3, 5))
        // Before its first flush, the hour is the stored one plus what it holds.
        let early = try await after.history(agent: "a1", period: .hour, from: at(0), to: at(0))
        #expect(early.map(\.calls) == [9])
        await after.flush(now: at(4))

        #expect(store.bucket("hour/a1/00\(startOfTheHour)/r1")?.tools["echo"]?.calls == 9)
        #expect(store.bucket("day/a1/00\(startOfTheDay)/r1")?.tools["echo"]?.calls == 9)
        #expect(store.bucket("minute/a1/00\(startOfTheHour + 120)/r1")?.tools["echo"]?.calls == 2)
        #expect(store.bucket("minute/a1/00\(startOfTheHour + 180)/r1")?.tools["echo"]?.calls == 1)

        for reader in [after, history(store, replica: "r9")] {
            let hour = try await reader.history(agent: "a1", period: .hour, from: at(0), to: at(0))
            #expect(hour.map(\.calls) == [9])
            #expect(hour.map(\.errors) == [3])
            let minutes = try await reader.history(agent: "a1", period: .minute, from: at(0), to: at(3))
            #expect(minutes.map(\.calls) == [3, 3, 2, 1])
        }
    }

    // MARK: Bounds and failures

    @Test func pastTheSeriesBoundNewToolsFoldIntoOtherAndNewAgentsAreDropped() async throws {
        // Four series: a1's tools x and y, and the gateway's sum of the same.
        let history = history(InMemoryKeyValueStore(clock: ManualClock(at(0))), maximumSeries: 4)
        for tool in ["x", "y", "z", "w"] {
            history.recordCall(agent: "a1", template: nil, tool: tool, succeeded: true, seconds: 0.01, at: at(0, 1))
        }
        history.recordCall(agent: "a2", template: nil, tool: "x", succeeded: true, seconds: 0.01, at: at(0, 2))
        history.sampleResources(agent: "a3", template: nil, load: 1, cpuPercent: nil, memoryBytes: nil, at: at(0, 3))

        #expect(history.droppedSamples == 2)
        let point = try #require(try await history.history(agent: "a1", period: .minute, from: at(0), to: at(0)).first)
        #expect(point.calls == 4)
        #expect(point.tools.keys.sorted() == ["(other)", "x", "y"])
        #expect(point.tools["(other)"]?.calls == 2)
        #expect(try await history.history(agent: "a2", period: .minute, from: at(0), to: at(0)).isEmpty)
        // The gateway's sum, admitted before the bound, still counts a2's call.
        let gateway = try #require(try await history.history(agent: HistorySubject.gateway, period: .minute, from: at(0), to: at(0)).first)
        #expect(gateway.calls == 5)
        #expect(gateway.tools["x"]?.calls == 2)
        #expect(gateway.tools["(other)"]?.calls == 2)
    }

    @Test func aFailingStoreKeepsTheFiguresForTheNextFlush() async throws {
        let store = FlakyStore()
        let history = history(store)
        recordThreeEchoes(history, minute: 0)
        store.isDown = true
        await history.flush(now: at(1))
        await history.flush(now: at(2))
        #expect(store.writeCount == 0)
        #expect(history.droppedSamples == 0)
        await #expect(throws: BackendUnavailable.self) {
            try await history.history(agent: "a1", period: .minute, from: at(0), to: at(0))
        }

        store.isDown = false
        await history.flush(now: at(3))
        #expect(store.inner.bucket("minute/a1/00\(startOfTheHour)/r1")?.tools["echo"]?.calls == 3)
        #expect(store.inner.bucket("hour/a1/00\(startOfTheHour)/r1")?.tools["echo"]?.calls == 3)
        #expect(store.inner.bucket("day/a1/00\(startOfTheDay)/r1")?.tools["echo"]?.calls == 3)
        let hour = try await history.history(agent: "a1", period: .hour, from: at(0), to: at(0))
        #expect(hour.map(\.calls) == [3])
    }

    @Test func whileTheStoreFailsAtMostSixtyClosedMinutesAreKept() async throws {
        let store = FlakyStore()
        let history = history(store)
        store.isDown = true
        for minute in Int64(0)..<70 {
            history.recordCall(agent: "a1", template: nil, tool: "echo", succeeded: true, seconds: 0.01, at: at(minute, 30))
            await history.flush(now: at(minute, 45))
        }
        await history.flush(now: at(70))
        // The ten oldest minutes are gone, the agent's and the gateway sum's; the hour and day
        // they rolled up into are not.
        #expect(history.droppedSamples == 20)

        store.isDown = false
        await history.flush(now: at(70, 10))
        let minutes = try await history.history(agent: "a1", period: .minute, from: at(0), to: at(70))
        #expect(minutes.count == 60)
        #expect(minutes.first?.start == at(10))
        let hours = try await history.history(agent: "a1", period: .hour, from: at(0), to: at(70))
        #expect(hours.map(\.calls) == [60, 10])
        let days = try await history.history(agent: "a1", period: .day, from: at(0), to: at(70))
        #expect(days.map(\.calls) == [70])
    }

    @Test func writtenMinutesAreLetGoOfAfterAQuarterOfAnHour() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let history = history(store)
        recordThreeEchoes(history, minute: 0)
        await history.flush(now: at(1))
        #expect(history.recentFigures(window: .seconds(15 * 60), now: at(15, 59))["a1"]?.calls == 3)
        await history.flush(now: at(17))
        #expect(history.recentFigures(window: .seconds(15 * 60), now: at(17))["a1"] == nil)
        // The store still has them.
        let minutes = try await history.history(agent: "a1", period: .minute, from: at(0), to: at(17))
        #expect(minutes.map(\.calls) == [3])
    }

    // MARK: Recent figures

    @Test func recentFiguresCoverTheMinutesThatOverlapTheWindow() {
        let history = history(InMemoryKeyValueStore(clock: ManualClock(at(0))))
        recordThreeEchoes(history, minute: 0, agent: "a1")
        recordThreeEchoes(history, minute: 2, agent: "a1")
        history.recordCall(agent: "a2", template: "slow", tool: "s", succeeded: true, seconds: 2, at: at(3, 10))

        let lastMinute = history.recentFigures(window: .seconds(60), now: at(3, 30))
        #expect(lastMinute["a1"] == RecentAgentFigures(calls: 3, errors: 1, latencyP99: lastMinute["a1"]?.latencyP99, template: "echo-server"))
        #expect(lastMinute["a2"]?.calls == 1)
        #expect(lastMinute["a2"]?.latencyP99 == 2)
        #expect(lastMinute["a2"]?.template == "slow")

        let lastFive = history.recentFigures(window: .seconds(300), now: at(3, 30))
        #expect(lastFive["a1"]?.calls == 6)
        #expect(lastFive["a1"]?.errors == 2)
        #expect(abs(lastFive["a1"]!.errorRate - 1.0 / 3) < 1e-12)
    }

    // MARK: Keys

    @Test func aTemplatesSumCountsEveryInstanceAndTheGatewaysEveryTemplate() async throws {
        let history = history(InMemoryKeyValueStore(clock: ManualClock(at(0))))
        recordThreeEchoes(history, agent: "echo-server#1")
        recordThreeEchoes(history, agent: "echo-server#2")
        history.recordCall(agent: "search#1", template: "search", tool: "find", succeeded: true, seconds: 0.02, at: at(0, 7))

        let template = try #require(try await history.history(agent: HistorySubject.template("echo-server"), period: .minute, from: at(0), to: at(0)).first)
        #expect(template.calls == 6)
        #expect(template.errors == 2)
        #expect(template.template == "echo-server")
        let gateway = try #require(try await history.history(agent: HistorySubject.gateway, period: .minute, from: at(0), to: at(0)).first)
        #expect(gateway.calls == 7)
        #expect(gateway.tools.keys.sorted() == ["echo", "find"])
        let tool = try #require(try await history.history(agent: HistorySubject.gateway, period: .minute, from: at(0), to: at(0), tool: "find").first)
        #expect(tool.calls == 1)
        // Alert rules judge agents: the sums are not among them.
        #expect(Set(history.recentFigures(window: .seconds(120), now: at(0, 59)).keys) == ["echo-server#1", "echo-server#2", "search#1"])
    }

    @Test func keySegmentsArePercentEncodedAndParseBack() {
        #expect(HistoryKey.segment("plain-agent.1") == "plain-agent.1")
        #expect(HistoryKey.segment("eu/west%1") == "eu%2Fwest%251")
        let key = HistoryKey.key(period: .hour, agent: "a%1", start: startOfTheHour, replica: "host/2")
        #expect(key == "hour/a%251/00\(startOfTheHour)/host%2F2")
        let parsed = HistoryKey.parse(key, prefix: HistoryKey.prefix(period: .hour, agent: "a%1"))
        #expect(parsed?.start == startOfTheHour)
        #expect(parsed?.replica == "host%2F2")
    }

    @Test func aReplicaNameWithASlashStillMergesAsItself() async throws {
        let store = InMemoryKeyValueStore(clock: ManualClock(at(0)))
        let history = history(store, replica: "pod/7")
        recordThreeEchoes(history)
        await history.flush(now: at(1))
        recordThreeEchoes(history, minute: 0)
        let point = try #require(try await history.history(agent: "a1", period: .minute, from: at(0), to: at(0)).first)
        #expect(point.calls == 6)
        #expect(store.allKeys().contains("minute/a1/00\(startOfTheHour)/pod%2F7"))
    }
}

@Suite("Performance history: concurrent recording")
struct ConcurrentRecordingTests {
    @Test func callsRecordedFromManyTasksAtOnceAreAllCounted() async throws {
        let history = PerformanceHistory(store: InMemoryKeyValueStore(clock: ManualClock(at(0))), replica: "r1")
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for call in 0..<1_000 {
                        history.recordCall(
                            agent: "a\(task % 2)", template: nil, tool: "t\(call % 3)", succeeded: call % 10 != 0,
                            seconds: 0.001 * Double(call % 50 + 1), at: at(Int64(call % 2), Int64(task)))
                    }
                }
            }
        }
        for agent in ["a0", "a1"] {
            let points = try await history.history(agent: agent, period: .hour, from: at(0), to: at(0))
            #expect(points.map(\.calls) == [4_000])
            #expect(points.map(\.errors) == [400])
        }
    }
}
