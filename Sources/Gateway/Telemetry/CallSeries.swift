import Backend
import Monitoring
import Synchronization
import Telemetry

/// One agent's calls of one tool (prompt, resource), counted where each call ends.
///
/// A relayed call is the gateway's hottest path: it pays one lookup of its series (by agent and
/// name, once for the metrics and the history together) and one uncontended lock. The history
/// gets the tally a minute at a time, or sooner when it is read (`GatewayObservability.drain`).
final class CallSeries: Sendable {
    let agent: String
    let template: String
    let tool: String
    let instruments: ToolCallInstruments?

    struct Tally: Sendable {
        var minute: Int64 = .min
        var calls = 0
        var errors = 0
        var latency = LatencyHistogram()
    }

    private let tally = Mutex(Tally())

    init(agent: String, template: String, tool: String, instruments: ToolCallInstruments?) {
        self.agent = agent
        self.template = template
        self.tool = tool
        self.instruments = instruments
    }

    /// Counts one call that ended at `now`; returns the tally of an earlier minute when this
    /// call begins a new one (the caller hands it to the history).
    func record(succeeded: Bool, seconds: Double, now: Timestamp) -> Tally? {
        let minute = now.millisecondsSinceEpoch / 60_000
        return tally.withLock { tally in
            var closed: Tally?
            if tally.minute != minute {
                if tally.calls > 0 { closed = tally }
                tally = Tally(minute: minute)
            }
            tally.calls += 1
            if !succeeded { tally.errors += 1 }
            tally.latency.record(seconds)
            return closed
        }
    }

    /// What has been counted and not handed over yet.
    func drain() -> Tally? {
        tally.withLock { tally in
            guard tally.calls > 0 else { return nil }
            defer { tally = Tally(minute: tally.minute) }
            return tally
        }
    }
}

/// The series by agent, kind and name, bounded: past the bound a call is recorded directly (a
/// lookup by name in the history and the metrics, as when the series are many anyway).
final class CallSeriesDirectory: Sendable {
    struct Key: Hashable {
        var agent: String
        var kind: UInt8
        var name: String
    }

    static let maximumSeries = 20_000
    private let series = Mutex<[Key: CallSeries]>([:])

    func series(agent: String, kind: UInt8, name: String, make: () -> CallSeries) -> CallSeries? {
        let key = Key(agent: agent, kind: kind, name: name)
        return series.withLock { series in
            if let existing = series[key] { return existing }
            guard series.count < Self.maximumSeries else { return nil }
            let made = make()
            series[key] = made
            return made
        }
    }

    var all: [CallSeries] { series.withLock { Array($0.values) } }
}
