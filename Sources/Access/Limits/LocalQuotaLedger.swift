import Synchronization

/// A `QuotaLedger` kept in this process, for one replica (or the embedded gateway).
///
/// Holds an entry only for keys holding more than 0, and at most `maximumKeys` of them: a new
/// key beyond that is refused (`ledgerFull`) rather than evicting another, since forgetting a
/// count would let its key pass its limit.
public final class LocalQuotaLedger: QuotaLedger {
    public static let defaultMaximumKeys = 1_000_000

    private let counts: Mutex<[String: Int]>
    public let maximumKeys: Int

    public init(maximumKeys: Int = LocalQuotaLedger.defaultMaximumKeys) {
        precondition(maximumKeys > 0, "a ledger holds at least one key")
        self.maximumKeys = maximumKeys
        self.counts = Mutex([:])
    }

    /// A negative `amount` counts as 0.
    public func acquire(key: String, amount: Int, limit: Int) -> QuotaDecision {
        let amount = max(amount, 0)
        return counts.withLock { counts in
            let held = counts[key] ?? 0
            let (total, overflow) = held.addingReportingOverflow(amount)
            guard !overflow, total <= limit else { return .refused(held: held, limit: limit) }
            guard total > held else { return .granted(held: held) }
            if held == 0 && counts.count >= maximumKeys { return .ledgerFull(maximumKeys: maximumKeys) }
            counts[key] = total
            return .granted(held: total)
        }
    }

    /// A negative `amount` counts as 0.
    public func release(key: String, amount: Int) {
        guard amount > 0 else { return }
        counts.withLock { counts in
            guard let held = counts[key] else { return }
            counts[key] = held > amount ? held - amount : nil
        }
    }

    public func held(key: String) -> Int {
        counts.withLock { $0[key] ?? 0 }
    }

    /// Keys holding more than 0.
    public var keyCount: Int {
        counts.withLock { $0.count }
    }
}
