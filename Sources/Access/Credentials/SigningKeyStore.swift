import Logging
import NIOCore

/// The current JWT signing keys and when to reload them.
///
/// Keys are loaded at start and reloaded when a token names a `kid` they lack (the provider
/// rotated its keys), at most once per `refetchInterval`, so made-up key ids cannot make the
/// gateway hammer the provider. Concurrent tokens wait on one reload instead of starting
/// their own; a reload that fails keeps the keys there were.
actor SigningKeyStore {
    private let source: JWKSSource
    private let refetchInterval: TimeAmount
    private let group: any EventLoopGroup
    private let logger: Logger

    private(set) var keys = SigningKeySet.empty
    private var lastRefetch: NIODeadline?
    private var reloading: Task<Result<Int, JWKSLoadError>, Never>?

    init(source: JWKSSource, refetchIntervalSeconds: Double, group: any EventLoopGroup, logger: Logger) {
        self.source = source
        self.refetchInterval = .nanoseconds(Int64(refetchIntervalSeconds * 1_000_000_000))
        self.group = group
        self.logger = logger
    }

    /// Loads the keys now, whatever the interval; returns how many there are.
    func load() async throws(JWKSLoadError) -> Int {
        try await reload().get()
    }

    /// The keys, reloaded first when `kid` is not among them and the interval allows.
    func keys(including kid: String?) async -> SigningKeySet {
        if let kid, keys.algorithms[kid] != nil { return keys }
        if kid == nil, !keys.algorithms.isEmpty { return keys }
        if reloading == nil {
            let now = NIODeadline.now()
            if let lastRefetch, now - lastRefetch < refetchInterval { return keys }
            lastRefetch = now
            let key = kid.map { "kid=\(RefusalText.quoted($0))" } ?? "without a kid"
            logger.info("a token names signing key \(key) that is not loaded; reloading the \(source)")
        }
        _ = await reload()
        return keys
    }

    private func reload() async -> Result<Int, JWKSLoadError> {
        if let reloading { return await reloading.value }
        let task = Task { await self.fetch() }
        reloading = task
        let outcome = await task.value
        reloading = nil
        return outcome
    }

    private func fetch() async -> Result<Int, JWKSLoadError> {
        do throws(JWKSLoadError) {
            let document = try await source.load(group: group, logger: logger)
            let loaded = try await SigningKeySet.parse(document, logger: logger)
            keys = loaded
            logger.info("loaded \(loaded.algorithms.count) JWT signing keys from the \(source)")
            return .success(loaded.algorithms.count)
        } catch {
            logger.warning("cannot load JWT signing keys from the \(source): \(error); keeping the \(keys.algorithms.count) loaded before")
            return .failure(error)
        }
    }
}
