import Access
import Testing

@Suite struct QuotaLedgerTests {
    @Test func acquisitionsAreCountedUpToTheLimitAndNoFurther() {
        let ledger = LocalQuotaLedger()
        #expect(ledger.acquire(key: "alice/tasks", amount: 2, limit: 3) == .granted(held: 2))
        #expect(ledger.acquire(key: "alice/tasks", amount: 1, limit: 3) == .granted(held: 3))
        #expect(ledger.acquire(key: "alice/tasks", amount: 1, limit: 3) == .refused(held: 3, limit: 3))
        #expect(ledger.held(key: "alice/tasks") == 3)
    }

    @Test func aRefusedAcquisitionCountsNothing() {
        let ledger = LocalQuotaLedger()
        #expect(ledger.acquire(key: "k", amount: 5, limit: 4) == .refused(held: 0, limit: 4))
        #expect(ledger.held(key: "k") == 0)
        #expect(ledger.keyCount == 0)
    }

    @Test func releasingFreesRoomForMore() {
        let ledger = LocalQuotaLedger()
        #expect(ledger.acquire(key: "k", amount: 2, limit: 2).isGranted)
        ledger.release(key: "k", amount: 1)
        #expect(ledger.acquire(key: "k", amount: 1, limit: 2) == .granted(held: 2))
    }

    @Test func aCountIsNeverNegativeAndAKeyAtZeroIsNotKept() {
        let ledger = LocalQuotaLedger()
        ledger.release(key: "never", amount: 3)
        #expect(ledger.held(key: "never") == 0)
        #expect(ledger.acquire(key: "k", amount: 2, limit: 10).isGranted)
        ledger.release(key: "k", amount: 5)
        #expect(ledger.held(key: "k") == 0)
        #expect(ledger.keyCount == 0)
        ledger.release(key: "k", amount: -4)
        #expect(ledger.acquire(key: "k", amount: -4, limit: 10) == .granted(held: 0))
        #expect(ledger.held(key: "k") == 0)
    }

    @Test func keysAreCountedApart() {
        let ledger = LocalQuotaLedger()
        #expect(ledger.acquire(key: "alice", amount: 1, limit: 1).isGranted)
        #expect(ledger.acquire(key: "bob", amount: 1, limit: 1).isGranted)
        #expect(!ledger.acquire(key: "alice", amount: 1, limit: 1).isGranted)
    }

    @Test func aLowerLimitRefusesUntilReleasesBringTheCountUnderIt() {
        let ledger = LocalQuotaLedger()
        #expect(ledger.acquire(key: "k", amount: 5, limit: 10).isGranted)
        #expect(ledger.acquire(key: "k", amount: 1, limit: 3) == .refused(held: 5, limit: 3))
        ledger.release(key: "k", amount: 3)
        #expect(ledger.acquire(key: "k", amount: 1, limit: 3) == .granted(held: 3))
    }

    @Test func aFullLedgerRefusesNewKeysButServesTheOnesItHolds() {
        let ledger = LocalQuotaLedger(maximumKeys: 2)
        #expect(ledger.acquire(key: "a", amount: 1, limit: 5).isGranted)
        #expect(ledger.acquire(key: "b", amount: 1, limit: 5).isGranted)
        #expect(ledger.acquire(key: "c", amount: 1, limit: 5) == .ledgerFull(maximumKeys: 2))
        #expect(ledger.acquire(key: "a", amount: 1, limit: 5) == .granted(held: 2))
        ledger.release(key: "b", amount: 1)
        #expect(ledger.acquire(key: "c", amount: 1, limit: 5) == .granted(held: 1))
    }

    @Test func anAmountThatWouldOverflowIsRefused() {
        let ledger = LocalQuotaLedger()
        #expect(ledger.acquire(key: "k", amount: 1, limit: .max).isGranted)
        #expect(!ledger.acquire(key: "k", amount: .max, limit: .max).isGranted)
    }
}
