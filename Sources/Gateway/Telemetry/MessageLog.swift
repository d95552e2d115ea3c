import Backend
import JSONRPC
import Synchronization

/// The seed's `agent_communications`: every message `messages/send` handed to agents, with when
/// it was sent, delivered (written to the recipient's connection) and acknowledged (the agent's
/// answer to a request, or its `messages/acknowledge`), read through `messages/list`.
///
/// The newest `capacity` messages are kept, in this process: a bound, not a backlog.
final class MessageLog: Sendable {
    struct Entry: Sendable {
        var messageID: String
        var sender: String
        var recipients: [String]
        var messageType: String
        var tenant: String?
        var sentAt: Timestamp
        var deliveredAt: Timestamp?
        var acknowledgedAt: Timestamp?
        /// How a request ended: `answered`, `error`, `expired`.
        var outcome: String?
        var sequence: UInt64

        var json: JSONValue {
            var object: [String: JSONValue] = [
                "messageId": .string(messageID), "from": .string(sender), "to": .array(recipients.map(JSONValue.string)),
                "messageType": .string(messageType), "sentAt": .string(sentAt.iso8601),
                "deliveredAt": deliveredAt.map { .string($0.iso8601) } ?? .null,
                "acknowledgedAt": acknowledgedAt.map { .string($0.iso8601) } ?? .null,
            ]
            if let outcome { object["outcome"] = .string(outcome) }
            return .object(object)
        }
    }

    private struct State {
        var entries: [Entry] = []
        /// Where the oldest entry is once the ring is full.
        var start = 0
        var positions: [String: UInt64] = [:]
        var nextSequence: UInt64 = 1
    }

    let capacity: Int
    private let state = Mutex(State())
    private let clock = SystemClock()

    init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    func sent(_ messageID: String, sender: String, recipients: [String], messageType: String, tenant: String?) {
        let now = clock.now()
        state.withLock { state in
            let entry = Entry(
                messageID: messageID, sender: sender, recipients: recipients, messageType: messageType, tenant: tenant, sentAt: now,
                sequence: state.nextSequence)
            state.nextSequence += 1
            if state.entries.count < capacity {
                state.entries.append(entry)
            } else {
                state.positions[state.entries[state.start].messageID] = nil
                state.entries[state.start] = entry
                state.start = (state.start + 1) % capacity
            }
            state.positions[messageID] = entry.sequence
        }
    }

    func delivered(_ messageID: String) { update(messageID) { entry, now in if entry.deliveredAt == nil { entry.deliveredAt = now } } }

    /// The recipient acknowledged it; false when no such message is kept or `agent` is not one of
    /// its recipients.
    @discardableResult
    func acknowledged(_ messageID: String, by agent: String?, outcome: String? = nil) -> Bool {
        update(messageID) { entry, now in
            guard agent.map({ entry.recipients.contains($0) }) ?? true else { return false }
            if entry.acknowledgedAt == nil { entry.acknowledgedAt = now }
            if entry.deliveredAt == nil { entry.deliveredAt = now }
            if let outcome { entry.outcome = outcome }
            return true
        } ?? false
    }

    func ended(_ messageID: String, outcome: String) { update(messageID) { entry, _ in entry.outcome = outcome } }

    @discardableResult
    private func update<T>(_ messageID: String, _ body: (inout Entry, Timestamp) -> T) -> T? {
        let now = clock.now()
        return state.withLock { state in
            guard let sequence = state.positions[messageID], let index = Self.index(of: sequence, in: state) else { return nil }
            return body(&state.entries[index], now)
        }
    }

    private static func index(of sequence: UInt64, in state: State) -> Int? {
        guard let first = state.entries.isEmpty ? nil : state.entries[state.start].sequence, sequence >= first else { return nil }
        let offset = Int(sequence - first)
        guard offset < state.entries.count else { return nil }
        return (state.start + offset) % state.entries.count
    }

    /// Newest first: messages sent or received by `agent` (any when nil), of `tenant` (any when
    /// nil), sent after `since`, older than the `before` cursor (a sequence number).
    func list(agent: String?, tenant: String?, since: Timestamp?, before: UInt64?, limit: Int) -> (entries: [Entry], next: UInt64?) {
        state.withLock { state in
            var found: [Entry] = []
            let count = state.entries.count
            var offset = count - 1
            while offset >= 0 {
                let entry = state.entries[(state.start + offset) % count]
                offset -= 1
                if let before, entry.sequence >= before { continue }
                if let since, entry.sentAt < since { break }
                if let tenant, entry.tenant != tenant { continue }
                if let agent, entry.sender != agent, !entry.recipients.contains(agent) { continue }
                if found.count == limit { return (found, found.last?.sequence) }
                found.append(entry)
            }
            return (found, nil)
        }
    }
}
