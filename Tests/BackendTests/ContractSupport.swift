import Backend
import NIOCore
import Testing

/// One behaviour of a backend protocol, written against the protocol alone so that every
/// implementation runs the same cases: `@Test(arguments: KeyValueStoreContract.cases)` with the
/// implementation's own subject (see `InMemoryContractTests` for the embedded backend).
struct ContractCase<Subject: Sendable>: Sendable, CustomTestStringConvertible {
    let name: String
    let body: @Sendable (Subject) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (Subject) async throws -> Void) {
        self.name = name
        self.body = body
    }

    var testDescription: String { name }

    func run(_ subject: Subject) async throws {
        try await body(subject)
    }
}

/// A key-value store under test, and how to make time pass for it.
struct KeyValueStoreSubject: Sendable {
    var store: any KeyValueStore
    /// Prepended to every namespace a case uses, so that cases sharing one server (Redis) do not
    /// see each other's keys. Empty for a fresh in-memory store.
    var isolation: String
    /// Lets `duration` pass for expiry: the embedded backend advances its `ManualClock`; a
    /// server-backed one may have to wait.
    var advanceTime: @Sendable (Duration) async throws -> Void

    func namespace(_ name: String) -> String { isolation + name }
}

/// A pub-sub under test.
struct PubSubSubject: Sendable {
    var pubsub: any PubSub
    /// Prepended to every topic and pattern a case uses (see `KeyValueStoreSubject.isolation`).
    var isolation: String

    func topic(_ name: String) -> String { isolation + name }

    func pattern(_ text: String) throws -> TopicFilter {
        .pattern(try TopicPattern(isolation + text))
    }

    func message(_ topic: String, _ text: String, publisher: String? = nil) -> PubSubMessage {
        PubSubMessage(
            topic: self.topic(topic), payload: ByteBuffer(string: text),
            publishedAt: Timestamp(millisecondsSinceEpoch: 1_767_225_600_000), publisher: publisher)
    }
}

/// A task board under test, fresh for each case, and how to make time pass for it.
struct TaskBoardSubject: Sendable {
    var board: any TaskBoard
    /// Lets `duration` pass for leases, delayed retries, retention and idempotency keys.
    var advanceTime: @Sendable (Duration) async throws -> Void
}

/// A replica directory under test, fresh for each case.
struct ReplicaDirectorySubject: Sendable {
    var directory: any ReplicaDirectory
    /// Lets `duration` pass for the announcements' time to live.
    var advanceTime: @Sendable (Duration) async throws -> Void
}

extension Duration {
    /// The contract's unit of time. A server-backed subject (Redis) keeps its own clock running
    /// while a case makes time pass, and a loaded machine can spend many seconds between two
    /// steps of a case: whole minutes of margin make that real time negligible.
    static func minutes(_ count: Int) -> Duration { .seconds(count * 60) }
}

extension ByteBuffer {
    static func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
    var text: String { String(buffer: self) }
}

extension Subscription.Delivery {
    var text: String { message.payload.text }
}
