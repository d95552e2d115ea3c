import NIOCore
import Synchronization

/// The live connections of a gateway: counts for `gateway/status`, in-flight requests for a
/// graceful drain, and the channels to close at the end.
public final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [UInt64: any Channel] = [:]
        var handles: [UInt64: ConnectionHandle] = [:]
        var accepted: UInt64 = 0
        var inFlight = 0
        var draining = false
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let nextID = Atomic<UInt64>(1)
    /// Read on every request, so kept outside the lock.
    private let drainingFlag = Atomic<Bool>(false)

    public init() {}

    public var isDraining: Bool { drainingFlag.load(ordering: .relaxed) }

    func nextConnectionID() -> UInt64 {
        nextID.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Counts a connection served by the gateway (client-facing; agent pipes are not counted).
    func add(_ channel: any Channel, handle: ConnectionHandle, id: UInt64) {
        state.withLock {
            $0.channels[id] = channel
            $0.handles[id] = handle
            $0.accepted += 1
        }
    }

    func remove(_ id: UInt64) {
        state.withLock {
            _ = $0.channels.removeValue(forKey: id)
            _ = $0.handles.removeValue(forKey: id)
        }
    }

    /// Every client-facing connection, to tell them what changed.
    var handles: [ConnectionHandle] {
        state.withLock { Array($0.handles.values) }
    }

    func requestStarted() {
        state.withLock { $0.inFlight += 1 }
    }

    func requestFinished() {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { state in
            state.inFlight -= 1
            guard state.inFlight == 0, state.draining else { return [] }
            let waiters = state.idleWaiters
            state.idleWaiters = []
            return waiters
        }
        waiters.forEach { $0.resume() }
    }

    public var counts: (open: Int, accepted: UInt64, inFlight: Int) {
        state.withLock { ($0.channels.count, $0.accepted, $0.inFlight) }
    }

    /// From now on new requests are refused.
    func beginDraining() {
        drainingFlag.store(true, ordering: .relaxed)
        let handles = state.withLock { state in
            state.draining = true
            return Array(state.handles.values)
        }
        // Streams that would stay open for ever end now, with their results.
        for handle in handles { handle.endListening() }
    }

    /// Returns when no request is in flight, or when `grace` has passed.
    func waitForInFlight(grace: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let idle = self.state.withLock { state -> Bool in
                        if state.inFlight == 0 { return true }
                        state.idleWaiters.append(continuation)
                        return false
                    }
                    if idle { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: grace) }
            await group.next()
            group.cancelAll()
            // Release a waiter still parked after the grace period ran out.
            let parked = self.state.withLock { state in
                defer { state.idleWaiters = [] }
                return state.idleWaiters
            }
            parked.forEach { $0.resume() }
        }
    }

    /// Closes every connection and returns when all are closed.
    func closeAll() async {
        let channels = state.withLock { Array($0.channels.values) }
        for channel in channels {
            channel.close(promise: nil)
        }
        for channel in channels {
            try? await channel.closeFuture.get()
        }
    }
}
