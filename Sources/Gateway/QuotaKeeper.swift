import Access
import Backend
import JSONRPC
import Logging
import Redis

/// Counts what principals and tenants hold against `auth.quotas` (protocol-spec 12.7.2): in
/// this process alone, or in Redis so that replicas share each count.
///
/// A hold is taken before the thing it counts exists (a connection's principal, a subscription,
/// a task, an agent's registration) and given back when it ends, by whoever sees it end (a task
/// may finish on another replica). A replica's holdings in Redis are kept apart, so that those
/// of a replica that died are given back by the others, and its own old ones when it restarts.
final class QuotaKeeper: Sendable {
    let settings: QuotaSettings
    private let ledger: any QuotaLedger
    /// The same ledger when it is this process's: decided in place, without a task.
    private let localLedger: LocalQuotaLedger?
    private let redisLedger: RedisQuotaLedger?
    /// With Redis, the count of unfinished tasks: a share no replica owns, since a task outlives
    /// the replica that took it (and is given back by whichever ends it).
    private let taskLedger: RedisQuotaLedger?
    private let logger: Logger

    init(settings: QuotaSettings, redis: (client: RedisClient, replica: String, keyPrefix: String)?, logger: Logger) {
        self.settings = settings
        self.logger = logger
        if let redis {
            let shared = RedisQuotaLedger(client: redis.client, replica: redis.replica, keyPrefix: "\(redis.keyPrefix)quota:")
            redisLedger = shared
            taskLedger = RedisQuotaLedger(client: redis.client, replica: Self.tasksShare, keyPrefix: "\(redis.keyPrefix)quota:")
            localLedger = nil
            ledger = shared
        } else {
            let local = LocalQuotaLedger()
            redisLedger = nil
            taskLedger = nil
            localLedger = local
            ledger = local
        }
    }

    /// The share unfinished tasks are counted in (not a replica id: those have no slash).
    private static let tasksShare = "tasks/shared"

    private func ledger(for key: String) -> any QuotaLedger {
        if let taskLedger, key.hasPrefix(QuotaResource.queuedTasks.rawValue + ":") { return taskLedger }
        return ledger
    }

    /// Whether holds of `resource` are counted for anyone.
    func counts(_ resource: QuotaResource) -> Bool {
        settings.counts(resource)
    }

    /// Takes `amount` of `resource` for `principal` from each quota that applies, or from none:
    /// throws the refusal (`-32008`), or `-32016` when the shared count cannot be reached.
    func acquire(_ resource: QuotaResource, for principal: Principal, amount: Int = 1) async throws(JSONRPCError) -> QuotaHold {
        let checks = settings.checks(resource, for: principal)
        guard !checks.isEmpty, amount > 0 else { return QuotaHold() }
        var taken: [String] = []
        do {
            for check in checks {
                switch try await ledger(for: check.key).acquire(key: check.key, amount: amount, limit: check.limit) {
                case .granted:
                    taken.append(check.key)
                case .refused(let held, _):
                    release(QuotaHold(keys: taken, amount: amount))
                    throw check.refusal(principal: principal.name, held: held).jsonRPCError
                case .ledgerFull(let maximum):
                    release(QuotaHold(keys: taken, amount: amount))
                    throw JSONRPCError.internalError("the quota ledger already counts \(maximum) keys")
                }
            }
        } catch let error as JSONRPCError {
            throw error
        } catch {
            release(QuotaHold(keys: taken, amount: amount))
            throw JSONRPCError.backendUnavailable("\(error)")
        }
        return QuotaHold(keys: taken, amount: amount)
    }

    /// As `acquire`, decided in place when the counts are this process's; nil when they are in
    /// Redis (then `acquire` it is).
    func acquireNow(_ resource: QuotaResource, for principal: Principal, amount: Int = 1) -> Result<QuotaHold, JSONRPCError>? {
        guard let localLedger else { return nil }
        let checks = settings.checks(resource, for: principal)
        guard !checks.isEmpty, amount > 0 else { return .success(QuotaHold()) }
        var taken: [String] = []
        for check in checks {
            switch localLedger.acquire(key: check.key, amount: amount, limit: check.limit) {
            case .granted:
                taken.append(check.key)
            case .refused(let held, _):
                for key in taken { localLedger.release(key: key, amount: amount) }
                return .failure(check.refusal(principal: principal.name, held: held).jsonRPCError)
            case .ledgerFull(let maximum):
                for key in taken { localLedger.release(key: key, amount: amount) }
                return .failure(JSONRPCError.internalError("the quota ledger already counts \(maximum) keys"))
            }
        }
        return .success(QuotaHold(keys: taken, amount: amount))
    }

    /// Gives a hold back; in the background, since whoever ends a thing does not wait on it.
    func release(_ hold: QuotaHold) {
        guard !hold.keys.isEmpty else { return }
        if let localLedger {
            // In place: a close followed at once by a new connection finds the place free.
            for key in hold.keys { localLedger.release(key: key, amount: hold.amount) }
            return
        }
        let logger = self.logger
        Task {
            for key in hold.keys {
                do {
                    try await self.ledger(for: key).release(key: key, amount: hold.amount)
                } catch {
                    logger.warning("quotas: could not give back \(hold.amount) of \(key): \(error)")
                }
            }
        }
    }

    /// What `key` holds now (for tests and status).
    func held(_ key: String) async throws -> Int {
        try await ledger(for: key).held(key: key)
    }

    /// With replicas: what this replica held before it restarted is given back, at its start.
    func forgetOwnPastHoldings() async {
        guard let redisLedger else { return }
        do {
            let keys = try await redisLedger.forget(replica: redisLedger.replica)
            if keys > 0 { logger.notice("quotas: gave back what this replica held before it restarted (\(keys) counts)") }
        } catch {
            logger.warning("quotas: could not give back what this replica held before it restarted: \(error)")
        }
    }

    /// With replicas: what a replica that is gone held is given back.
    func forget(replica: String) async {
        guard let redisLedger else { return }
        do {
            let keys = try await redisLedger.forget(replica: replica)
            if keys > 0 { logger.notice("quotas: gave back what replica \(replica) held (\(keys) counts)") }
        } catch {
            logger.warning("quotas: could not give back what replica \(replica) held: \(error)")
        }
    }
}

/// What one thing holds: a count of `amount` under each of `keys`.
struct QuotaHold: Sendable, Hashable {
    var keys: [String] = []
    var amount = 1
}
