import NIOCore

/// Plaintext written to a `TLSHandler` and not yet encrypted, in order, with the flush mark.
///
/// Writes are encrypted at flush time, all of them into one buffer of records, so that a burst of
/// small writes costs one network write. Before the handshake completes nothing can be
/// encrypted, so writes wait here; the flush mark remembers how far the writer had flushed.
struct PendingWrites {
    struct Write {
        var data: ByteBuffer
        var promise: EventLoopPromise<Void>?
    }

    private var writes = CircularBuffer<Write>(initialCapacity: 8)
    /// How many writes at the front have been flushed.
    private var flushedCount = 0
    /// Plaintext bytes waiting, flushed or not.
    private(set) var bytes = 0

    /// Plaintext bytes of the flushed writes.
    private(set) var flushedBytes = 0

    var hasFlushedWrites: Bool { flushedCount > 0 }

    mutating func append(_ data: ByteBuffer, promise: EventLoopPromise<Void>?) {
        writes.append(Write(data: data, promise: promise))
        bytes += data.readableBytes
    }

    mutating func markFlushed() {
        flushedCount = writes.count
        flushedBytes = bytes
    }

    /// The oldest flushed write, removed.
    mutating func popFlushed() -> Write? {
        guard flushedCount > 0, let write = writes.popFirst() else { return nil }
        flushedCount -= 1
        bytes -= write.data.readableBytes
        flushedBytes -= write.data.readableBytes
        return write
    }

    /// Removes every write and returns their promises, for the caller to fail once its own
    /// state is consistent (failing a promise runs callbacks that may call back into the handler).
    mutating func removeAll() -> [EventLoopPromise<Void>] {
        let promises = writes.compactMap(\.promise)
        writes.removeAll()
        flushedCount = 0
        bytes = 0
        flushedBytes = 0
        return promises
    }
}
