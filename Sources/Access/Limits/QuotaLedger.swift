/// What a quota ledger answers to an acquisition.
public enum QuotaDecision: Sendable, Hashable {
    /// Counted; the key now holds `held`.
    case granted(held: Int)
    /// Not counted: `held` plus the amount asked would pass `limit`.
    case refused(held: Int, limit: Int)
    /// Not counted: the ledger already tracks as many keys as it may (`maximumKeys`), and this
    /// key holds nothing yet.
    case ledgerFull(maximumKeys: Int)

    public var isGranted: Bool {
        if case .granted = self { return true }
        return false
    }
}

/// Counts of held resources per key, each under a limit given with every acquisition: queued
/// tasks, memory keys or bytes, subscriptions, connections, agent instances.
///
/// A count is never negative (releasing more than is held leaves 0) and never passes the limit
/// by an acquisition (a lower limit given later refuses until releases bring the count under
/// it). A key holding 0 is not kept.
public protocol QuotaLedger: Sendable {
    /// Adds `amount` to `key`'s count if the result stays within `limit`; otherwise counts
    /// nothing.
    func acquire(key: String, amount: Int, limit: Int) async throws -> QuotaDecision
    /// Takes `amount` from `key`'s count, stopping at 0.
    func release(key: String, amount: Int) async throws
    /// `key`'s count now.
    func held(key: String) async throws -> Int
}
