@testable import Access
import Synchronization
import Testing

/// Time that moves only when a test says so, in monotonic nanoseconds.
final class ManualClock: Sendable {
    private let nanoseconds = Atomic<Int64>(1_000_000_000)

    var now: Int64 { nanoseconds.load(ordering: .relaxed) }

    func advance(nanoseconds delta: Int64) {
        nanoseconds.add(delta, ordering: .relaxed)
    }

    func advance(seconds: Double) {
        advance(nanoseconds: Int64((seconds * 1e9).rounded()))
    }

    var function: LocalRateLimiter.Clock { { self.now } }
}

@Suite struct RateLimiterTests {
    let clock = ManualClock()

    @Test func aFreshKeyGetsItsBurstAtOnceThenOnePerInterval() {
        let limiter = LocalRateLimiter(clock: clock.function)
        let limit = RateLimit(perSecond: 10, burst: 5)
        for _ in 0..<5 { #expect(limiter.admit(key: "alice", limit: limit) == .allowed) }
        #expect(!limiter.admit(key: "alice", limit: limit).isAllowed)
        for _ in 0..<20 {
            clock.advance(seconds: 0.1)
            #expect(limiter.admit(key: "alice", limit: limit) == .allowed)
            #expect(!limiter.admit(key: "alice", limit: limit).isAllowed)
        }
    }

    @Test func retryAfterIsTheExactWaitUntilTheRequestWouldPass() {
        let limiter = LocalRateLimiter(clock: clock.function)
        let limit = RateLimit(perSecond: 4, burst: 2)
        #expect(limiter.admit(key: "k", limit: limit) == .allowed)
        clock.advance(seconds: 0.05)
        #expect(limiter.admit(key: "k", limit: limit) == .allowed)
        // TAT is start + 0.5 s; the next cell may start once TAT is within the 0.5 s window of now
        // plus one interval: at start + 0.25 s, i.e. 0.2 s from now.
        #expect(limiter.admit(key: "k", limit: limit) == .refused(retryAfterSeconds: 0.2))
        clock.advance(nanoseconds: 200_000_000 - 1)
        #expect(limiter.admit(key: "k", limit: limit) == .refused(retryAfterSeconds: 1e-9))
        clock.advance(nanoseconds: 1)
        #expect(limiter.admit(key: "k", limit: limit) == .allowed)
    }

    @Test func aRefusalSpendsNothing() {
        let limiter = LocalRateLimiter(clock: clock.function)
        let limit = RateLimit(perSecond: 1, burst: 1)
        #expect(limiter.admit(key: "k", limit: limit) == .allowed)
        for _ in 0..<100 { #expect(limiter.admit(key: "k", limit: limit) == .refused(retryAfterSeconds: 1)) }
        clock.advance(seconds: 1)
        #expect(limiter.admit(key: "k", limit: limit) == .allowed)
    }

    @Test func keysAreIndependent() {
        let limiter = LocalRateLimiter(clock: clock.function)
        let limit = RateLimit(perSecond: 1, burst: 3)
        for _ in 0..<3 { #expect(limiter.admit(key: "alice", limit: limit) == .allowed) }
        #expect(!limiter.admit(key: "alice", limit: limit).isAllowed)
        for _ in 0..<3 { #expect(limiter.admit(key: "bob", limit: limit) == .allowed) }
        #expect(!limiter.admit(key: "bob", limit: limit).isAllowed)
        #expect(limiter.admit(key: "carol", limit: limit) == .allowed)
    }

    @Test func aCostSpendsThatManyCellsAndOneAboveTheBurstNeverPasses() {
        let limiter = LocalRateLimiter(clock: clock.function)
        let limit = RateLimit(perSecond: 10, burst: 10)
        #expect(limiter.admit(key: "k", limit: limit, cost: 7) == .allowed)
        #expect(limiter.admit(key: "k", limit: limit, cost: 4) == .refused(retryAfterSeconds: 0.1))
        #expect(limiter.admit(key: "k", limit: limit, cost: 3) == .allowed)
        #expect(limiter.admit(key: "other", limit: limit, cost: 11) == .refused(retryAfterSeconds: nil))
    }

    @Test func aCostOfZeroAsksWithoutSpending() {
        let limiter = LocalRateLimiter(clock: clock.function)
        let limit = RateLimit(perSecond: 1, burst: 1)
        #expect(limiter.admit(key: "k", limit: limit, cost: 0) == .allowed)
        #expect(limiter.keyCount == 0)
        #expect(limiter.admit(key: "k", limit: limit) == .allowed)
        #expect(limiter.admit(key: "k", limit: limit, cost: 0) == .refused(retryAfterSeconds: 1))
    }

    @Test func aLimitThatAllowsNothingRefusesWithoutARetryTime() {
        let limiter = LocalRateLimiter(clock: clock.function)
        #expect(limiter.admit(key: "k", limit: RateLimit(perSecond: 0, burst: 5)) == .refused(retryAfterSeconds: nil))
        #expect(limiter.admit(key: "k", limit: RateLimit(perSecond: 5, burst: 0)) == .refused(retryAfterSeconds: nil))
        #expect(limiter.admit(key: "k", limit: RateLimit(perSecond: .nan, burst: 5)) == .refused(retryAfterSeconds: nil))
    }

    @Test func aKeyThatHasCaughtUpIsAFreshKeyAgain() {
        let limiter = LocalRateLimiter(clock: clock.function)
        let limit = RateLimit(perSecond: 2, burst: 4)
        for _ in 0..<4 { #expect(limiter.admit(key: "k", limit: limit) == .allowed) }
        clock.advance(seconds: 2)
        for _ in 0..<4 { #expect(limiter.admit(key: "k", limit: limit) == .allowed) }
        #expect(!limiter.admit(key: "k", limit: limit).isAllowed)
    }

    @Test func aMillionDistinctKeysOverTimeDoNotAccumulate() {
        let limiter = LocalRateLimiter(clock: clock.function)
        // Each key's TAT lapses 1 ms after its request; one new key per microsecond, so about a
        // thousand are live at any time.
        let limit = RateLimit(perSecond: 1_000, burst: 1)
        var largest = 0, refused = 0
        for index in 0..<1_000_000 {
            if !limiter.admit(key: "key-\(index)", limit: limit).isAllowed { refused += 1 }
            clock.advance(nanoseconds: 1_000)
            if index % 10_000 == 0 { largest = max(largest, limiter.keyCount) }
        }
        #expect(refused == 0)
        #expect(largest < 5_000, "held \(largest) keys at most")
        #expect(limiter.keyCount < 5_000)
        #expect(limiter.capacity <= 16 * 1_024)
        clock.advance(seconds: 1)
        limiter.removeExpired()
        #expect(limiter.keyCount == 0)
        #expect(limiter.capacity == 16 * 16)
    }

    @Test func theCapIsNeverPassedAndExpiredKeysGoFirst() {
        let limiter = LocalRateLimiter(maximumKeys: 64, shards: 1, clock: clock.function)
        let long = RateLimit(perSecond: 0.001, burst: 1)
        let short = RateLimit(perSecond: 1_000, burst: 1)
        // Live for 1000 s: the "keeper"s; a short-lived key lapses after 1 ms.
        for index in 0..<32 { #expect(limiter.admit(key: "keeper-\(index)", limit: long) == .allowed) }
        for index in 0..<32 { #expect(limiter.admit(key: "brief-\(index)", limit: short) == .allowed) }
        #expect(limiter.keyCount == 64)
        clock.advance(seconds: 0.01)
        for index in 0..<32 { #expect(limiter.admit(key: "new-\(index)", limit: long) == .allowed) }
        #expect(limiter.keyCount <= 64)
        for index in 0..<32 { #expect(!limiter.admit(key: "keeper-\(index)", limit: long).isAllowed, "keeper-\(index) was forgotten") }
        // Only live keys now: a new key forgets one of them, and the table stays at its cap.
        for index in 0..<1_000 { #expect(limiter.admit(key: "flood-\(index)", limit: long) == .allowed) }
        #expect(limiter.keyCount == 64)
    }

    @Test func keysSpreadOverShardsStillHaveOneStateEach() {
        let limiter = LocalRateLimiter(shards: 8, clock: clock.function)
        let limit = RateLimit(perSecond: 1, burst: 2)
        for index in 0..<10_000 {
            #expect(limiter.admit(key: "k\(index)", limit: limit) == .allowed)
            #expect(limiter.admit(key: "k\(index)", limit: limit) == .allowed)
        }
        for index in 0..<10_000 { #expect(!limiter.admit(key: "k\(index)", limit: limit).isAllowed) }
        #expect(limiter.keyCount == 10_000)
    }

    @Test func removingFromTheTableKeepsEveryOtherKeyFindable() {
        // Many keys on few home slots (long probe runs), half of them expiring: the backward
        // shift must leave every live key reachable from its home slot.
        var table = ArrivalTable(maximumCount: 10_000)
        let keys = (0..<3_000).map { "key-\($0)" }
        for (index, key) in keys.enumerated() {
            table.insert(key, hash: key.hashValue & 0x3FF, tat: index.isMultiple(of: 2) ? 10 : 1_000, now: 0)
        }
        table.removeExpired(now: 100)
        #expect(table.count == 1_500)
        for (index, key) in keys.enumerated() {
            #expect((table.find(key, hash: key.hashValue & 0x3FF) != nil) == !index.isMultiple(of: 2))
        }
    }
}

@Suite("Rate limits: which apply, and what a refusal says")
struct RateLimitSettingsTests {
    private let settings = RateLimitSettings(
        principal: RateLimit(perSecond: 20, burst: 40), tenants: ["acme": RateLimit(perSecond: 100, burst: 200)],
        otherTenants: RateLimit(perSecond: 50, burst: 50))

    @Test func aPrincipalMeetsItsOwnLimitOrTheDefaultThenItsTenants() {
        let own = Principal(name: "alice", roles: ["client"], tenant: "acme", proof: .apiKey, rateLimit: RateLimit(perSecond: 5, burst: 5))
        #expect(settings.checks(for: own).map(\.key) == ["principal:acme/alice", "tenant:acme"])
        #expect(settings.checks(for: own).map(\.limit) == [RateLimit(perSecond: 5, burst: 5), RateLimit(perSecond: 100, burst: 200)])
        let other = Principal(name: "bob", roles: ["client"], tenant: "globex", proof: .jwt)
        #expect(settings.checks(for: other).map(\.limit) == [RateLimit(perSecond: 20, burst: 40), RateLimit(perSecond: 50, burst: 50)])
    }

    @Test func anonymousRequestsMeetOnlyTheirTenantsLimitAndTheOperatorNone() {
        let anonymous = Principal(name: "anonymous", roles: [], proof: .anonymous)
        #expect(settings.checks(for: anonymous).map(\.scope) == [.tenant])
        #expect(settings.checks(for: .stdioOperator).isEmpty)
        #expect(settings.checks(for: .unconfigured).isEmpty)
        #expect(RateLimitSettings().checks(for: Principal(name: "a", roles: [], proof: .apiKey)).isEmpty)
    }

    @Test func theSectionIsReadAndAMistakeNamesItsPath() throws {
        let read = try RateLimitSettings(auth: [
            "rateLimits": ["principal": ["perSecond": 10], "tenants": ["acme": ["perSecond": 2, "burst": 4], "*": ["perSecond": 1]], "whenRedisUnavailable": "refuse"]
        ])
        #expect(read == RateLimitSettings(
            principal: RateLimit(perSecond: 10, burst: 10), tenants: ["acme": RateLimit(perSecond: 2, burst: 4)],
            otherTenants: RateLimit(perSecond: 1, burst: 1), whenUnavailable: .refuse))
        #expect(throws: AccessConfigurationError.self) { try RateLimitSettings(auth: ["rateLimits": ["principal": ["perSecond": 0]]]) }
        #expect(throws: AccessConfigurationError.self) { try RateLimitSettings(auth: ["rateLimits": ["whenRedisUnavailable": "maybe"]]) }
        #expect(throws: AccessConfigurationError.self) { try RateLimitSettings(auth: ["rateLimits": ["tenants": ["no spaces": ["perSecond": 1]]]]) }
        #expect(throws: AccessConfigurationError.self) { try RateLimitSettings(auth: ["rateLimits": ["perSecond": 1]]) }
    }

    @Test func aRefusalSaysWhoseLimitTheRateAndWhenToRetry() {
        let check = RateCheck(scope: .tenant, name: "acme", limit: RateLimit(perSecond: 50, burst: 10))
        let error = check.refusal(principal: "alice", retryAfterSeconds: 0.0201)
        #expect(error == .limited(
            principal: "alice", limit: "rate:tenant", reason: "tenant acme may make 50 requests per second, in bursts of at most 10",
            retryAfterSeconds: 0.0201))
        #expect(error.jsonRPCError.code == -32008)
        #expect(error.jsonRPCError.data?["retryAfterMs"]?.integerValue == 21)
    }

    @Test func severalLimitsAreSpentAllOrNone() {
        let now = Mutex<Int64>(0)
        let limiter = LocalRateLimiter(clock: { now.withLock { $0 } })
        let wide = (key: "tenant:acme", limit: RateLimit(perSecond: 1, burst: 3))
        let narrow = (key: "principal:alice", limit: RateLimit(perSecond: 1, burst: 1))
        #expect(limiter.admit(all: [narrow, wide]) == nil)
        // The principal's limit refuses: the tenant's cell is not spent.
        #expect(limiter.admit(all: [narrow, wide])?.index == 0)
        #expect(limiter.admit(all: [narrow, wide])?.retryAfterSeconds == 1)
        #expect(limiter.admit(all: [wide]) == nil)
        #expect(limiter.admit(all: [wide]) == nil)
        #expect(limiter.admit(all: [wide])?.index == 0)
    }
}
